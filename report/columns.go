package report

import (
	"strings"

	"github.com/beamtune/beamtune/dataset"
)

// The quality columns of the model and slice tables depend on the task
// kind; both renderers take them from here, so the Markdown and the HTML
// show the same figures.

// column is one quality column: its header and, for a model's metrics, the
// value and its interval ("" when none).
type column struct {
	head     string
	interval bool // the column has 95% intervals (the Markdown header says so)
	cell     func(m Metrics) (value, ci string)
}

// mdHead is the column's Markdown header.
func (c column) mdHead() string {
	if c.interval {
		return c.head + " (95% CI)"
	}
	return c.head
}

// unlessOld shows "—" for figures a report written before task kinds (Task
// "") did not compute, rather than a misleading 0.
func unlessOld(m Metrics, v string) string {
	if m.Task == "" {
		return "—"
	}
	return v
}

// taskOf is the report's task kind (every model of a report is scored on
// one dataset); single-label for reports written before task kinds.
func taskOf(r *Report) string {
	for _, m := range r.Models {
		if m.Metrics.Task != "" {
			return m.Metrics.Task
		}
	}
	return dataset.SingleLabel
}

// binary says whether a single-label report has two classes (it then shows
// the F1 of class 1, GLUE's F1 for MRPC).
func binary(r *Report) bool {
	for _, m := range r.Models {
		if len(m.Metrics.Labels) == 2 {
			return true
		}
	}
	return false
}

func multi(m Metrics) MultiLabelMetrics {
	if m.MultiLabel != nil {
		return *m.MultiLabel
	}
	return MultiLabelMetrics{}
}

func regression(m Metrics) RegressionMetrics {
	if m.Regression != nil {
		return *m.Regression
	}
	return RegressionMetrics{}
}

// modelColumns are the quality columns of the models table.
func modelColumns(r *Report) []column {
	switch taskOf(r) {
	case dataset.MultiLabel:
		return []column{
			{"Macro-F1", true, func(m Metrics) (string, string) { return fixed(m.MacroF1, 4), ci4(m.MacroF1CI) }},
			{"Micro-F1", true, func(m Metrics) (string, string) { return fixed(m.MicroF1, 4), ci4(multi(m).MicroF1CI) }},
			{"Samples-F1", false, func(m Metrics) (string, string) { return fixed(multi(m).SamplesF1, 4), "" }},
			{"Subset accuracy", false, func(m Metrics) (string, string) { return pct(m.Accuracy), "" }},
			{"Hamming loss", false, func(m Metrics) (string, string) { return fixed(multi(m).HammingLoss, 4), "" }},
			{"Macro PR-AUC", false, func(m Metrics) (string, string) { return fixed(multi(m).MacroAveragePrecision, 4), "" }},
		}
	case dataset.Regression:
		return []column{
			{"Pearson", true, func(m Metrics) (string, string) { return fixed(regression(m).Pearson, 4), ci4(regression(m).PearsonCI) }},
			{"Spearman", true, func(m Metrics) (string, string) {
				return fixed(regression(m).Spearman, 4), ci4(regression(m).SpearmanCI)
			}},
			{"MSE", false, func(m Metrics) (string, string) { return fixed(regression(m).MSE, 4), "" }},
			{"MAE", false, func(m Metrics) (string, string) { return fixed(regression(m).MAE, 4), "" }},
		}
	}
	cols := []column{
		{"Accuracy", true, func(m Metrics) (string, string) { return pct(m.Accuracy), ciPct(m.AccuracyCI) }},
		{"Macro-F1", true, func(m Metrics) (string, string) { return fixed(m.MacroF1, 4), ci4(m.MacroF1CI) }},
	}
	if binary(r) {
		cols = append(cols, column{"F1 (class 1)", true, func(m Metrics) (string, string) { return unlessOld(m, fixed(m.PositiveF1, 4)), ci4(m.PositiveF1CI) }})
	}
	return append(cols,
		column{"MCC", false, func(m Metrics) (string, string) { return unlessOld(m, fixed(m.MCC, 4)), "" }},
		column{"Log loss", false, func(m Metrics) (string, string) { return fixed(m.LogLoss, 4), "" }},
		column{"ECE", false, func(m Metrics) (string, string) { return fixed(m.ECE, 4), "" }},
	)
}

// sliceColumns are the quality columns of the slices table.
func sliceColumns(r *Report) []column {
	switch taskOf(r) {
	case dataset.MultiLabel:
		return []column{
			{"Macro-F1", true, func(m Metrics) (string, string) { return fixed(m.MacroF1, 4), ci4(m.MacroF1CI) }},
			{"Micro-F1", false, func(m Metrics) (string, string) { return fixed(m.MicroF1, 4), "" }},
			{"Subset accuracy", false, func(m Metrics) (string, string) { return pct(m.Accuracy), "" }},
		}
	case dataset.Regression:
		return []column{
			{"Pearson", true, func(m Metrics) (string, string) { return fixed(regression(m).Pearson, 4), ci4(regression(m).PearsonCI) }},
			{"MAE", false, func(m Metrics) (string, string) { return fixed(regression(m).MAE, 4), "" }},
			{"Mean residual", false, func(m Metrics) (string, string) { return signed(regression(m).MeanResidual, 4), "" }},
		}
	}
	return []column{
		{"Accuracy", true, func(m Metrics) (string, string) { return pct(m.Accuracy), ciPct(m.AccuracyCI) }},
		{"Macro-F1", false, func(m Metrics) (string, string) { return fixed(m.MacroF1, 4), "" }},
		{"ECE", false, func(m Metrics) (string, string) { return fixed(m.ECE, 4), "" }},
	}
}

// headline is the figure a model's summary tile shows: the task's main
// metric, with its name and interval.
func headline(task string, m Metrics) (value, name, ci string) {
	switch task {
	case dataset.MultiLabel:
		return fixed(m.MacroF1, 4), "macro-F1", ci4(m.MacroF1CI)
	case dataset.Regression:
		r := regression(m)
		return fixed(r.Pearson, 4), "Pearson", ci4(r.PearsonCI)
	}
	return pct(m.Accuracy), "accuracy", ciPct(m.AccuracyCI)
}

// sliceNote explains the slice columns of a task.
func sliceNote(task string) string {
	switch task {
	case dataset.Regression:
		return "length: examples bucketed by token count; score: the examples whose true score lies in [a, b). Mean residual: mean of prediction − truth (positive: scored too high)."
	case dataset.MultiLabel:
		return "length: examples bucketed by token count."
	}
	return "length: examples bucketed by token count; label: the examples of one true class, where precision and macro-F1 mean little and accuracy is that class's recall."
}

// modelNote explains the models table of a task.
func modelNote(task string) string {
	switch task {
	case dataset.MultiLabel:
		return "Intervals: 95%, seeded Poisson bootstrap. Labels are decided at each model's thresholds (see the per-label tables); subset accuracy counts examples whose whole label set is right; Hamming loss is the share of wrong (example, label) decisions; PR-AUC is threshold-free."
	case dataset.Regression:
		return "Intervals: 95%, seeded Poisson bootstrap (Spearman re-ranks each replicate)."
	}
	return "Intervals: 95%, seeded Poisson bootstrap. MCC: Matthews correlation. ECE: expected calibration error over 15 equal-width confidence bins."
}

// QualityLine is a model's quality columns on one line, as the models table
// shows them: "Accuracy 91.28% (89.33–93.12) · Macro-F1 0.9127 (…) · …".
func QualityLine(r *Report, m Metrics) string {
	var parts []string
	for _, c := range modelColumns(r) {
		parts = append(parts, c.head+" "+withCI(c.cell(m)))
	}
	return strings.Join(parts, " · ")
}
