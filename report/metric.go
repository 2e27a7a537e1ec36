package report

import (
	"fmt"
	"slices"
	"strings"

	"github.com/beamtune/beamtune/dataset"
)

// Metric names, as --metric_for_best and --gate_metric take them (higher is
// better for each).
const (
	MetricAccuracy  = "accuracy"   // single-label; subset accuracy for multi-label
	MetricF1        = "f1"         // two-class single-label: F1 of class 1 (GLUE's MRPC metric)
	MetricMCC       = "mcc"        // single-label: Matthews correlation (GLUE's CoLA metric)
	MetricMacroF1   = "macro_f1"   // single-label, or multi-label over the labels
	MetricMicroF1   = "micro_f1"   // multi-label
	MetricSamplesF1 = "samples_f1" // multi-label: F1 per example, averaged
	MetricPearson   = "pearson"    // regression
	MetricSpearman  = "spearman"   // regression
	// MetricMean is a multi-task model's score: the mean of its tasks'
	// metrics (GLUE's average). It is not a metric of any one task.
	MetricMean = "mean"
)

// MetricsOf lists the metrics that can select a task's best checkpoint, the
// main one (the default) first.
func MetricsOf(task string) []string {
	switch task {
	case dataset.MultiLabel:
		return []string{MetricMacroF1, MetricMicroF1}
	case dataset.Regression:
		return []string{MetricPearson, MetricSpearman}
	}
	return []string{MetricAccuracy, MetricMacroF1, MetricF1}
}

// GateMetrics lists the metrics the gate can compare for a task: the
// selection metrics and those only the evaluation computes.
func GateMetrics(task string) []string {
	switch task {
	case dataset.MultiLabel:
		return append(MetricsOf(task), MetricSamplesF1, MetricAccuracy)
	case dataset.Regression:
		return MetricsOf(task)
	}
	return append(MetricsOf(task), MetricMCC)
}

// MainMetric is the task's main metric.
func MainMetric(task string) string { return MetricsOf(task)[0] }

// CheckMetric checks that metric ("" for the main one) can select a task's
// checkpoints and returns the metric that will be used.
func CheckMetric(task, metric string) (string, error) {
	return pick("metric_for_best", task, metric, MetricsOf(task))
}

// CheckGateMetric checks that metric ("" for the main one) can gate a task
// and returns the metric that will be used.
func CheckGateMetric(task, metric string) (string, error) {
	return pick("gate_metric", task, metric, GateMetrics(task))
}

func pick(flag, task, metric string, all []string) (string, error) {
	if metric == "" {
		return all[0], nil
	}
	if slices.Contains(all, metric) {
		return metric, nil
	}
	return "", fmt.Errorf("%s %q: a %s task takes %s", flag, metric, task, strings.Join(all, ", "))
}

// Value is the named metric with its 95% interval (zero when none is
// computed); false when m does not hold it.
func (m Metrics) Value(name string) (float64, Interval, bool) {
	if r := m.Regression; r != nil {
		switch name {
		case MetricPearson:
			return r.Pearson, r.PearsonCI, true
		case MetricSpearman:
			return r.Spearman, r.SpearmanCI, true
		}
		return 0, Interval{}, false
	}
	switch name {
	case MetricAccuracy:
		return m.Accuracy, m.AccuracyCI, true
	case MetricMacroF1:
		return m.MacroF1, m.MacroF1CI, true
	}
	if ml := m.MultiLabel; ml != nil {
		switch name {
		case MetricMicroF1:
			return m.MicroF1, ml.MicroF1CI, true
		case MetricSamplesF1:
			return ml.SamplesF1, Interval{}, true
		}
		return 0, Interval{}, false
	}
	switch name {
	case MetricMCC:
		return m.MCC, Interval{}, true
	case MetricF1:
		if len(m.Labels) == 2 {
			return m.PositiveF1, m.PositiveF1CI, true
		}
	}
	return 0, Interval{}, false
}
