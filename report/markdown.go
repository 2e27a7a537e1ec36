package report

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"
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

	b.WriteString("## Models\n\n")
	if len(r.Models) == 0 {
		b.WriteString("_No models were evaluated._\n\n")
	} else {
		t := mdTable{
			head:  []string{"Model", "Params", "Layers", "Size (MB)", "Accuracy (95% CI)", "Macro-F1 (95% CI)", "Log loss", "ECE", "p50 ms (batch 1)", "p95 ms (batch 1)", "Examples/s (batch 32)", "Threads"},
			right: []bool{false, true, true, true, true, true, true, true, true, true, true, true},
		}
		seqLens := map[int]bool{}
		for _, m := range r.Models {
			mt := m.Metrics
			threads := "—"
			if m.Speed.Threads > 0 {
				threads = strconv.Itoa(m.Speed.Threads)
			}
			if m.Speed.SeqLen > 0 {
				seqLens[m.Speed.SeqLen] = true
			}
			t.rows = append(t.rows, []string{
				"**" + mdEscaper.Replace(m.Name) + "**",
				human(m.Params),
				strconv.Itoa(m.Layers),
				megabytes(m.SizeBytes),
				withCI(pct(mt.Accuracy), ciPct(mt.AccuracyCI)),
				withCI(fixed(mt.MacroF1, 4), ci4(mt.MacroF1CI)),
				fixed(mt.LogLoss, 4),
				fixed(mt.ECE, 4),
				measured(m.Speed.LatencyP50Ms, 2, ""),
				measured(m.Speed.LatencyP95Ms, 2, ""),
				measured(m.Speed.ExamplesPerSec, 1, ""),
				threads,
			})
		}
		t.write(&b)
		b.WriteString("Confidence intervals: 95%, seeded Poisson bootstrap. ECE: 15 equal-width confidence bins.")
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
		t := mdTable{
			head:  []string{"Base", "Other", "Accuracy kept", "Δ accuracy (points)", "Δ macro-F1", "Speedup (batch 32)", "Size ratio"},
			right: []bool{false, false, true, true, true, true, true},
		}
		for _, c := range r.Comparisons {
			t.rows = append(t.rows, []string{
				mdEscaper.Replace(c.Base), mdEscaper.Replace(c.Other),
				measured(100*c.AccuracyKept, 2, "%"),
				signed(100*c.AccuracyDelta, 2),
				signed(c.MacroF1Delta, 4),
				measured(c.Speedup, 2, "×"),
				measured(c.SizeRatio, 3, "×"),
			})
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
		fmt.Fprintf(&b, "- Micro-F1: %s · weighted F1: %s\n", fixed(mt.MicroF1, 4), fixed(mt.WeightedF1, 4))
		if len(mt.TopK) > 0 {
			fmt.Fprintf(&b, "- Top-k accuracy: %s\n", topKText(mt))
		}
		b.WriteString("\n")
		if len(mt.PerClass) > 0 {
			b.WriteString("### Per class\n\n")
			t := mdTable{head: []string{"Class", "Precision", "Recall", "F1", "Support"}, right: []bool{false, true, true, true, true}}
			for _, c := range mt.PerClass {
				t.rows = append(t.rows, []string{mdEscaper.Replace(c.Label), fixed(c.Precision, 4), fixed(c.Recall, 4), fixed(c.F1, 4), thousands(c.Support)})
			}
			t.write(&b)
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
			t.write(&b)
		}
	}

	var slices [][]string
	for _, m := range r.Models {
		for _, s := range m.Slices {
			sm := s.Metrics
			slices = append(slices, []string{
				mdEscaper.Replace(m.Name), mdEscaper.Replace(s.Column), mdEscaper.Replace(s.Value),
				thousands(sm.Examples),
				withCI(pct(sm.Accuracy), ciPct(sm.AccuracyCI)),
				fixed(sm.MacroF1, 4), fixed(sm.ECE, 4),
			})
		}
	}
	if len(slices) > 0 {
		b.WriteString("## Slices\n\n")
		t := mdTable{head: []string{"Model", "Column", "Value", "Examples", "Accuracy (95% CI)", "Macro-F1", "ECE"}, right: []bool{false, false, false, true, true, true, true}, rows: slices}
		t.write(&b)
	}
	return b.Bytes()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
