package report

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/beamtune/beamtune/dataset"
)

// mdEscaper escapes text for a Markdown table cell or paragraph: characters that
// would start formatting, break the table (|) or be read as HTML (<, >).
// Newlines become spaces, a cell is one line.
var mdEscaper = strings.NewReplacer(
	`\`, `\\`, "|", `\|`, "`", "\\`", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`,
	"<", "&lt;", ">", "&gt;", "\r\n", " ", "\n", " ", "\r", " ",
)

type mdTable struct {
	head  []string
	right []bool // right-aligned (numeric) columns
	rows  [][]string
}

func (t *mdTable) write(b *bytes.Buffer) {
	b.WriteString("|")
	for _, h := range t.head {
		b.WriteString(" " + h + " |")
	}
	b.WriteString("\n|")
	for i := range t.head {
		if i < len(t.right) && t.right[i] {
			b.WriteString("---:|")
		} else {
			b.WriteString("---|")
		}
	}
	b.WriteString("\n")
	for _, r := range t.rows {
		b.WriteString("|")
		for _, c := range r {
			b.WriteString(" " + c + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

// RenderMarkdown renders r as GitHub-flavoured Markdown: the headline table
// of every model, comparisons, the gate verdict with its checks, then per
// model its per-class table and confusion matrix, then the slices. All text
// from the report is escaped; numbers use the same formats as the HTML.
func RenderMarkdown(r *Report) []byte {
	var b bytes.Buffer
	if r == nil {
		b.WriteString("# Evaluation report\n\n_No report._\n")
		return b.Bytes()
	}
	b.WriteString("# Evaluation report\n\n")
	fmt.Fprintf(&b, "- Dataset: %s\n", mdEscaper.Replace(orDefault(r.Dataset, "—")))
	fmt.Fprintf(&b, "- Split: %s\n", mdEscaper.Replace(orDefault(r.Split, "—")))
	fmt.Fprintf(&b, "- Examples: %s\n", thousands(r.Examples))
	if r.CreatedAt != "" {
		fmt.Fprintf(&b, "- Created: %s\n", mdEscaper.Replace(r.CreatedAt))
	}
	fmt.Fprintf(&b, "- Schema: %s\n\n", mdEscaper.Replace(orDefault(r.Schema, Schema)))

	task := taskOf(r)
	b.WriteString("## Models\n\n")
	if len(r.Models) == 0 {
		b.WriteString("_No models were evaluated._\n\n")
	} else {
		cols := modelColumns(r)
		t := mdTable{head: []string{"Model", "Params", "Layers", "Size (MB)"}, right: []bool{false, true, true, true}}
		for _, c := range cols {
			t.head = append(t.head, c.mdHead())
			t.right = append(t.right, true)
		}
		t.head = append(t.head, "p50 ms (batch 1)", "p95 ms (batch 1)", "Examples/s (batch 32)", "Threads")
		t.right = append(t.right, true, true, true, true)
		seqLens := map[int]bool{}
		for _, m := range r.Models {
			threads := "—"
			if m.Speed.Threads > 0 {
				threads = strconv.Itoa(m.Speed.Threads)
			}
			if m.Speed.SeqLen > 0 {
				seqLens[m.Speed.SeqLen] = true
			}
			label := "**" + mdEscaper.Replace(m.Name) + "**"
			if m.Quantize != "" && m.Quantize != "none" {
				label += " (" + mdEscaper.Replace(m.Quantize) + ")"
			}
			if m.Adapter != "" {
				label += " (" + mdEscaper.Replace(m.Adapter) + ")"
			}
			row := []string{label, m.ParamsCell(), strconv.Itoa(m.Layers), megabytes(m.SizeBytes)}
			for _, c := range cols {
				row = append(row, withCI(c.cell(m.Metrics)))
			}
			t.rows = append(t.rows, append(row,
				measured(m.Speed.LatencyP50Ms, 2, ""),
				measured(m.Speed.LatencyP95Ms, 2, ""),
				measured(m.Speed.ExamplesPerSec, 1, ""),
				threads,
			))
		}
		t.write(&b)
		b.WriteString(modelNote(task))
		if len(seqLens) > 0 {
			var ls []string
			for l := range seqLens {
				ls = append(ls, strconv.Itoa(l))
			}
			sort.Strings(ls)
			fmt.Fprintf(&b, " Speed measured at %s tokens per example.", strings.Join(ls, "/"))
		}
		b.WriteString(" — means not measured.\n\n")
	}

	if len(r.Comparisons) > 0 {
		b.WriteString("## Comparisons\n\n")
		t := mdTable{head: []string{"Base", "Other", "Metric", "Kept", "Δ metric"}, right: []bool{false, false, false, true, true}}
		if task != dataset.Regression {
			t.head = append(t.head, "Δ accuracy (points)", "Δ macro-F1")
			t.right = append(t.right, true, true)
		}
		t.head = append(t.head, "Speedup (batch 32)", "Size ratio")
		t.right = append(t.right, true, true)
		for _, c := range r.Comparisons {
			row := []string{mdEscaper.Replace(c.Base), mdEscaper.Replace(c.Other), mdEscaper.Replace(comparisonMetric(c)),
				measured(100*comparisonKept(c), 2, "%"), signed(comparisonDelta(c), 4)}
			if task != dataset.Regression {
				row = append(row, signed(100*c.AccuracyDelta, 2), signed(c.MacroF1Delta, 4))
			}
			t.rows = append(t.rows, append(row, measured(c.Speedup, 2, "×"), measured(c.SizeRatio, 3, "×")))
		}
		t.write(&b)
	}

	if g := r.Gate; g != nil {
		icon := ""
		switch g.Verdict {
		case VerdictBlessed:
			icon = "✅ "
		case VerdictRejected:
			icon = "❌ "
		}
		fmt.Fprintf(&b, "## Promotion gate: %s**%s**\n\n", icon, verdictWord(g.Verdict))
		if g.Champion == "" {
			fmt.Fprintf(&b, "Challenger **%s**; no champion yet.\n\n", mdEscaper.Replace(g.Challenger))
		} else {
			fmt.Fprintf(&b, "Challenger **%s** against champion **%s**.\n\n", mdEscaper.Replace(g.Challenger), mdEscaper.Replace(g.Champion))
		}
		if len(g.Reasons) > 0 {
			b.WriteString("Reasons:\n\n")
			for _, reason := range g.Reasons {
				fmt.Fprintf(&b, "- %s\n", mdEscaper.Replace(reason))
			}
			b.WriteString("\n")
		}
		if len(g.Checks) > 0 {
			t := mdTable{head: []string{"Check", "Value", "Threshold", "Result", "Detail"}, right: []bool{false, true, true}}
			for _, c := range g.Checks {
				res := "❌ fail"
				if c.Passed {
					res = "✅ pass"
				}
				t.rows = append(t.rows, []string{mdEscaper.Replace(c.Name), sig(c.Value), sig(c.Threshold), res, mdEscaper.Replace(c.Detail)})
			}
			t.write(&b)
		}
	}

	for _, m := range r.Models {
		mt := m.Metrics
		fmt.Fprintf(&b, "## Model %s\n\n", mdEscaper.Replace(m.Name))
		if m.Dir != "" {
			fmt.Fprintf(&b, "- Folder: %s\n", mdEscaper.Replace(m.Dir))
		}
		fmt.Fprintf(&b, "- Examples: %s\n", thousands(mt.Examples))
		switch task {
		case dataset.MultiLabel:
			markdownMultiLabel(&b, mt)
		case dataset.Regression:
			markdownRegression(&b, mt)
		default:
			markdownSingleLabel(&b, mt)
		}
	}

	scols := sliceColumns(r)
	var slices [][]string
	for _, m := range r.Models {
		for _, sl := range m.Slices {
			row := []string{mdEscaper.Replace(m.Name), mdEscaper.Replace(sl.Column), mdEscaper.Replace(sl.Value), thousands(sl.Metrics.Examples)}
			for _, c := range scols {
				row = append(row, withCI(c.cell(sl.Metrics)))
			}
			slices = append(slices, row)
		}
	}
	if len(slices) > 0 {
		b.WriteString("## Slices\n\n")
		t := mdTable{head: []string{"Model", "Column", "Value", "Examples"}, right: []bool{false, false, false, true}, rows: slices}
		for _, c := range scols {
			t.head = append(t.head, c.mdHead())
			t.right = append(t.right, true)
		}
		t.write(&b)
		b.WriteString(mdEscaper.Replace(sliceNote(task)) + "\n")
	}
	return b.Bytes()
}

// markdownSingleLabel writes a single-label model's details: micro and
// weighted F1, top-k, per class, confusion matrix.
func markdownSingleLabel(b *bytes.Buffer, mt Metrics) {
	fmt.Fprintf(b, "- Micro-F1: %s · weighted F1: %s\n", fixed(mt.MicroF1, 4), fixed(mt.WeightedF1, 4))
	if len(mt.TopK) > 0 {
		fmt.Fprintf(b, "- Top-k accuracy: %s\n", topKText(mt))
	}
	b.WriteString("\n")
	if len(mt.PerClass) > 0 {
		b.WriteString("### Per class\n\n")
		t := mdTable{head: []string{"Class", "Precision", "Recall", "F1", "Support"}, right: []bool{false, true, true, true, true}}
		for _, c := range mt.PerClass {
			t.rows = append(t.rows, []string{mdEscaper.Replace(c.Label), fixed(c.Precision, 4), fixed(c.Recall, 4), fixed(c.F1, 4), thousands(c.Support)})
		}
		t.write(b)
	}
	if len(mt.Confusion) > 0 {
		b.WriteString("### Confusion matrix\n\nRows: true class; columns: predicted class.\n\n")
		t := mdTable{head: []string{`true \ predicted`}, right: []bool{false}}
		for j := range mt.Confusion {
			t.head = append(t.head, mdEscaper.Replace(classLabel(mt, j)))
			t.right = append(t.right, true)
		}
		for i, row := range mt.Confusion {
			cells := []string{"**" + mdEscaper.Replace(classLabel(mt, i)) + "**"}
			for j := range mt.Confusion {
				v := ""
				if j < len(row) {
					v = thousands(row[j])
				}
				cells = append(cells, v)
			}
			t.rows = append(t.rows, cells)
		}
		t.write(b)
	}
}

// markdownMultiLabel writes a multi-label model's details: cardinalities,
// the threshold rule and the per-label table.
func markdownMultiLabel(b *bytes.Buffer, mt Metrics) {
	ml := multi(mt)
	fmt.Fprintf(b, "- Weighted F1: %s · log loss (per label): %s\n", fixed(mt.WeightedF1, 4), fixed(mt.LogLoss, 4))
	fmt.Fprintf(b, "- Labels per example: %s true, %s predicted\n", fixed(ml.LabelCardinality, 3), fixed(ml.PredictedCardinality, 3))
	fmt.Fprintf(b, "- Thresholds: %s\n\n", mdEscaper.Replace(thresholdText(ml.Thresholds)))
	if len(mt.PerClass) > 0 {
		b.WriteString("### Per label\n\n")
		t := mdTable{head: []string{"Label", "Precision", "Recall", "F1", "Support", "PR-AUC", "Threshold"}, right: []bool{false, true, true, true, true, true, true}}
		for _, c := range mt.PerClass {
			t.rows = append(t.rows, []string{mdEscaper.Replace(c.Label), fixed(c.Precision, 4), fixed(c.Recall, 4), fixed(c.F1, 4),
				thousands(c.Support), fixed(c.AveragePrecision, 4), fixed(c.Threshold, 2)})
		}
		t.write(b)
	}
}

// markdownRegression writes a regression model's error figures (the scatter
// plot is in the HTML report).
func markdownRegression(b *bytes.Buffer, mt Metrics) {
	r := regression(mt)
	fmt.Fprintf(b, "- Pearson %s (%s) · Spearman %s (%s)\n", fixed(r.Pearson, 4), ci4(r.PearsonCI), fixed(r.Spearman, 4), ci4(r.SpearmanCI))
	fmt.Fprintf(b, "- MSE %s · MAE %s · mean residual (prediction − truth) %s\n\n", fixed(r.MSE, 4), fixed(r.MAE, 4), signed(r.MeanResidual, 4))
}

// thresholdText explains a threshold rule.
func thresholdText(rule string) string {
	switch rule {
	case "per_label":
		return "per label, tuned on the validation split when the model was trained"
	case "global":
		return "one for every label, tuned on the validation split when the model was trained"
	case "fixed":
		return "one fixed probability for every label"
	}
	return orDefault(rule, "—")
}

// comparisonMetric, comparisonKept and comparisonDelta read a comparison's
// main metric; comparisons written before task kinds compared accuracy.
func comparisonMetric(c Comparison) string { return orDefault(c.Metric, MetricAccuracy) }

func comparisonKept(c Comparison) float64 {
	if c.Metric == "" {
		return c.AccuracyKept
	}
	return c.MetricKept
}

func comparisonDelta(c Comparison) float64 {
	if c.Metric == "" {
		return c.AccuracyDelta
	}
	return c.MetricDelta
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
