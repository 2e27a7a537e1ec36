package report

import (
	"fmt"
	"html"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/beamtune/beamtune/dataset"
)

// Colours: Tableau 10, distinguishable and colour-blind tolerant; model i
// always gets palette[i] in every chart.
var palette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

const (
	trainColour = "#4e79a7"
	evalColour  = "#e8702a"
)

func colour(i int) string { return palette[i%len(palette)] }

// esc escapes text for HTML and SVG content and double-quoted attributes.
func esc(s string) string { return html.EscapeString(s) }

// num formats an SVG coordinate: one decimal is below a pixel's
// resolution and keeps the file small.
func num(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }

// chartIDs gives each model a unique, HTML-safe id fragment derived from its
// name, so tests and links can address its charts (#loss-student).
func chartIDs(models []ModelReport) []string {
	ids := make([]string, len(models))
	seen := map[string]int{}
	for i, m := range models {
		var b strings.Builder
		dash := false
		for _, c := range strings.ToLower(m.Name) {
			if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
				b.WriteRune(c)
				dash = false
			} else if !dash && b.Len() > 0 {
				b.WriteByte('-')
				dash = true
			}
		}
		id := strings.TrimSuffix(b.String(), "-")
		if id == "" {
			id = "model-" + strconv.Itoa(i+1)
		}
		seen[id]++
		if seen[id] > 1 {
			id += "-" + strconv.Itoa(seen[id])
		}
		ids[i] = id
	}
	return ids
}

// css is the page's only styling. System fonts only: the page must render
// offline and identically from a bucket, a laptop or a CI artifact.
const css = `
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--ok:#116329;--ok-bg:#dafbe1;--ok-line:#8fdfa5;--bad:#a40e26;--bad-bg:#ffebe9;--bad-line:#ffaba8}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:#fff;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue","DejaVu Sans",Arial,sans-serif}
header.top{background:#14213d;color:#fff;padding:22px 0 18px}
.wrap{max-width:1220px;margin:0 auto;padding:0 28px}
header.top h1{margin:0 0 6px;font-size:24px;font-weight:650;letter-spacing:.2px}
header.top .meta{display:flex;flex-wrap:wrap;gap:6px 22px;color:#c9d1e0;font-size:13px}
header.top .meta b{color:#fff;font-weight:600;word-break:break-all}
main{padding-bottom:40px}
h2{font-size:18px;font-weight:650;margin:30px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:14px;font-weight:650;margin:0 0 8px}
p.note{color:var(--muted);font-size:12.5px;margin:6px 0 0}
.scroll{overflow-x:auto}
table.data{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
table.data th,table.data td{padding:6px 9px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
table.data th{background:var(--soft);color:var(--muted);font-weight:600;font-size:12px;line-height:1.3;vertical-align:bottom}
table.data td{white-space:nowrap}
table.data td.wrap{white-space:normal;overflow-wrap:anywhere;min-width:7em}
table.data.per-class th,table.data.per-class td{padding:5px 7px}
table.data.per-class td.wrap{min-width:5em}
table.data .num{text-align:right}
table.data tbody tr:hover{background:#fafbfc}
.ci{display:block;color:var(--muted);font-size:11.5px}
.pos{color:#1a7f37}.neg{color:#cf222e}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:12px;margin-top:18px}
.kpi{border:1px solid var(--line);border-radius:8px;padding:12px 14px;border-top:4px solid var(--c)}
.kpi .name{font-weight:650}
.kpi .big{font-size:26px;font-weight:650;line-height:1.2;font-variant-numeric:tabular-nums}
.kpi .sub{color:var(--muted);font-size:12.5px}
.verdict{margin-top:18px;border-radius:8px;padding:14px 18px;border:1px solid var(--line);background:var(--soft)}
.verdict .word{font-size:20px;font-weight:700;letter-spacing:.6px}
.verdict ul{margin:6px 0 0;padding-left:20px}
.verdict.blessed{background:var(--ok-bg);border-color:var(--ok-line);color:var(--ok)}
.verdict.rejected{background:var(--bad-bg);border-color:var(--bad-line);color:var(--bad)}
.pill{display:inline-block;padding:0 9px;border-radius:10px;font-size:12px;font-weight:650;line-height:20px}
.pill.pass{background:var(--ok-bg);color:var(--ok)}
.pill.fail{background:var(--bad-bg);color:var(--bad)}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:16px}
.grid.narrow{grid-template-columns:repeat(auto-fill,minmax(370px,1fr))}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 14px;background:#fff;min-width:0;display:flex;flex-direction:column}
.card.wide{grid-column:1/-1}
.card svg{display:block;max-width:100%;height:auto;margin:0 auto}
.card .cap{color:var(--muted);font-size:12px;margin-top:4px}
.empty{color:var(--muted);font-style:italic;text-align:center;padding:40px 0;background:var(--soft);border-radius:6px;margin:0}
.card .empty{flex:1;display:flex;align-items:center;justify-content:center}
svg text{font-size:11px;fill:#59636e}
svg .axis{stroke:#8c959f;stroke-width:1}
svg .gridline{stroke:#e8ecf0;stroke-width:1}
svg .title{font-size:12px;fill:#1f2328;font-weight:600}
svg .cell-text{font-size:12px;font-weight:600}
footer{color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding:14px 0 28px}
@media print{header.top{background:#fff;color:#000}header.top .meta,header.top .meta b{color:#000}.card,table{break-inside:avoid}}
`

// RenderHTML renders r as one self-contained HTML page: inline CSS, inline
// SVG charts drawn here, no scripts, no external fonts or images (a
// Content-Security-Policy meta tag makes the browser enforce that), so the
// file can be opened from a bucket, a mail attachment or an air-gapped
// machine. Every text from the report is escaped. Charts: loss curves per
// model, reliability diagram per model, per-class F1 across models,
// confusion heat map per model; tables: headline, comparisons, gate checks,
// per-class, slices. Missing data gives a short note instead of an empty
// chart.
func RenderHTML(r *Report) []byte {
	var b strings.Builder
	if r == nil {
		r = &Report{}
	}
	ids := chartIDs(r.Models)
	title := "Evaluation report"
	if r.Dataset != "" {
		title += " — " + r.Dataset
	}
	b.WriteString("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
	b.WriteString("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n")
	// The page needs nothing but itself: forbid everything else, so a future
	// edit that adds a script or a remote asset fails loudly in the browser
	// test instead of quietly needing the network.
	b.WriteString("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n")
	b.WriteString("<meta name=\"generator\" content=\"beamtune\">\n")
	fmt.Fprintf(&b, "<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n", esc(title), css)

	b.WriteString("<header class=\"top\"><div class=\"wrap\">\n<h1>Evaluation report</h1>\n<div class=\"meta\">")
	fmt.Fprintf(&b, "<span>Dataset <b>%s</b></span>", esc(orDefault(r.Dataset, "—")))
	fmt.Fprintf(&b, "<span>Split <b>%s</b></span>", esc(orDefault(r.Split, "—")))
	fmt.Fprintf(&b, "<span>Examples <b>%s</b></span>", thousands(r.Examples))
	if r.CreatedAt != "" {
		fmt.Fprintf(&b, "<span>Created <b>%s</b></span>", esc(r.CreatedAt))
	}
	b.WriteString("</div>\n</div></header>\n<main class=\"wrap\">\n")

	htmlSummary(&b, r)
	htmlModels(&b, r)
	htmlComparisons(&b, r)
	htmlGate(&b, r.Gate)

	if len(r.Models) > 0 { // without models the Models section says so; no empty charts
		htmlCharts(&b, r, ids)
	}
	fmt.Fprintf(&b, "</main>\n<footer><div class=\"wrap\">Generated by beamtune · schema %s · report.json holds every number shown here.</div></footer>\n</body>\n</html>\n",
		esc(orDefault(r.Schema, Schema)))
	return []byte(b.String())
}

// htmlCharts writes the chart sections: training loss, calibration,
// per-class metrics, confusion matrices, then the slice table.
func htmlCharts(b *strings.Builder, r *Report, ids []string) {
	b.WriteString("<section id=\"training\">\n<h2>Training loss</h2>\n<div class=\"grid\">\n")
	for i, m := range r.Models {
		fmt.Fprintf(b, "<div class=\"card\"><h3>%s</h3>\n", esc(m.Name))
		lossChart(b, "loss-"+ids[i], m)
		b.WriteString("</div>\n")
	}
	b.WriteString("</div>\n</section>\n")

	switch taskOf(r) {
	case dataset.Regression:
		b.WriteString("<section id=\"scatter\">\n<h2>Predicted against true scores</h2>\n<div class=\"grid narrow\">\n")
		for i, m := range r.Models {
			fmt.Fprintf(b, "<div class=\"card\"><h3>%s</h3>\n", esc(m.Name))
			scatterChart(b, "scatter-"+ids[i], m)
			b.WriteString("</div>\n")
		}
		b.WriteString("</div>\n</section>\n")
		htmlSlices(b, r)
		return
	case dataset.MultiLabel:
		b.WriteString("<section id=\"per-class\">\n<h2>Per-label metrics</h2>\n<div class=\"grid narrow\">\n")
		var f1 strings.Builder
		f1Chart(&f1, "f1-per-class", r.Models)
		b.WriteString("<div class=\"card wide\">\n" + f1.String() + "</div>\n")
		htmlPerClass(b, r)
		b.WriteString("</div>\n</section>\n")
		htmlSlices(b, r)
		return
	}
	b.WriteString("<section id=\"calibration\">\n<h2>Calibration</h2>\n<div class=\"grid narrow\">\n")
	for i, m := range r.Models {
		fmt.Fprintf(b, "<div class=\"card\"><h3>%s</h3>\n", esc(m.Name))
		reliabilityChart(b, "reliability-"+ids[i], m)
		b.WriteString("</div>\n")
	}
	b.WriteString("</div>\n</section>\n")

	// The F1 chart shares a grid row with the per-class tables when it is
	// small (few classes) and takes the whole row when it is not.
	b.WriteString("<section id=\"per-class\">\n<h2>Per-class metrics</h2>\n<div class=\"grid narrow\">\n")
	var f1 strings.Builder
	if w := f1Chart(&f1, "f1-per-class", r.Models); w > 560 {
		b.WriteString("<div class=\"card wide\">\n")
	} else {
		b.WriteString("<div class=\"card\"><h3>F1 by class</h3>\n")
	}
	b.WriteString(f1.String())
	b.WriteString("</div>\n")
	htmlPerClass(b, r)
	b.WriteString("</div>\n</section>\n")

	// Matrices of many classes are wider than a narrow card; scaling them
	// down would make the labels unreadable, so they get wider cards.
	grid, widest := "grid narrow", 0.0
	charts := make([]string, len(r.Models))
	for i, m := range r.Models {
		var c strings.Builder
		widest = math.Max(widest, confusionChart(&c, "confusion-"+ids[i], m))
		charts[i] = c.String()
	}
	if widest > 370 {
		grid = "grid"
	}
	fmt.Fprintf(b, "<section id=\"confusion\">\n<h2>Confusion matrices</h2>\n<div class=\"%s\">\n", grid)
	for i, m := range r.Models {
		fmt.Fprintf(b, "<div class=\"card\"><h3>%s</h3>\n%s</div>\n", esc(m.Name), charts[i])
	}
	b.WriteString("</div>\n</section>\n")

	htmlSlices(b, r)
}

// htmlTable writes an HTML table; head is plain text, cells are HTML
// fragments the caller has already escaped. kinds has one letter per
// column: 'l' text, 'n' number (right-aligned), 'w' text that may wrap
// (long labels and details, which would otherwise push the numbers out of
// a narrow card).
func htmlTable(b *strings.Builder, class string, head []string, kinds string, rows [][]string) {
	attr := func(i int) string {
		if i >= len(kinds) {
			return ""
		}
		switch kinds[i] {
		case 'n':
			return " class=\"num\""
		case 'w':
			return " class=\"wrap\""
		}
		return ""
	}
	fmt.Fprintf(b, "<div class=\"scroll\"><table class=\"data %s\">\n<thead><tr>", class)
	for i, h := range head {
		fmt.Fprintf(b, "<th%s>%s</th>", attr(i), esc(h))
	}
	b.WriteString("</tr></thead>\n<tbody>\n")
	for _, row := range rows {
		b.WriteString("<tr>")
		for i, c := range row {
			fmt.Fprintf(b, "<td%s>%s</td>", attr(i), c)
		}
		b.WriteString("</tr>\n")
	}
	b.WriteString("</tbody></table></div>\n")
}

// valueCI is a table cell: the value, and its interval on a muted line.
func valueCI(v, ci string) string {
	if ci == "" {
		return esc(v)
	}
	return esc(v) + "<span class=\"ci\">" + esc(ci) + "</span>"
}

// htmlSummary writes one tile per model (accuracy, macro-F1, throughput)
// and the gate verdict banner: the answer first, the detail below.
func htmlSummary(b *strings.Builder, r *Report) {
	if len(r.Models) > 0 {
		b.WriteString("<div class=\"kpis\">\n")
		task := taskOf(r)
		for i, m := range r.Models {
			mt := m.Metrics
			fmt.Fprintf(b, "<div class=\"kpi\" style=\"--c:%s\"><div class=\"name\">%s</div>", colour(i), esc(m.Name))
			value, name, ci := headline(task, mt)
			fmt.Fprintf(b, "<div class=\"big\">%s</div>", esc(value))
			sub := name
			if ci != "" {
				sub += " · 95% CI " + ci
			}
			fmt.Fprintf(b, "<div class=\"sub\">%s</div>", esc(sub))
			switch task {
			case dataset.MultiLabel:
				sub = "micro-F1 " + fixed(mt.MicroF1, 4)
			case dataset.Regression:
				sub = "Spearman " + fixed(regression(mt).Spearman, 4)
			default:
				sub = "macro-F1 " + fixed(mt.MacroF1, 4)
			}
			if m.Speed.ExamplesPerSec > 0 {
				sub += " · " + fixed(m.Speed.ExamplesPerSec, 1) + " examples/s"
			}
			if m.SizeBytes > 0 {
				sub += " · " + megabytes(m.SizeBytes) + " MB"
			}
			fmt.Fprintf(b, "<div class=\"sub\">%s</div></div>\n", esc(sub))
		}
		b.WriteString("</div>\n")
	}
	if g := r.Gate; g != nil {
		class := "verdict"
		if g.Verdict == VerdictBlessed || g.Verdict == VerdictRejected {
			class += " " + g.Verdict
		}
		fmt.Fprintf(b, "<div class=\"%s\" id=\"verdict\"><span class=\"word\">%s</span> &nbsp;", class, verdictWord(g.Verdict))
		if g.Champion == "" {
			fmt.Fprintf(b, "challenger <b>%s</b>, no champion yet", esc(g.Challenger))
		} else {
			fmt.Fprintf(b, "challenger <b>%s</b> against champion <b>%s</b>", esc(g.Challenger), esc(g.Champion))
		}
		if len(g.Reasons) > 0 {
			b.WriteString("<ul>")
			for _, reason := range g.Reasons {
				fmt.Fprintf(b, "<li>%s</li>", esc(reason))
			}
			b.WriteString("</ul>")
		}
		b.WriteString("</div>\n")
	}
}

func htmlModels(b *strings.Builder, r *Report) {
	b.WriteString("<section id=\"models\">\n<h2>Models</h2>\n")
	if len(r.Models) == 0 {
		b.WriteString("<p class=\"empty\">no models were evaluated</p>\n</section>\n")
		return
	}
	// Non-breaking spaces (\u00a0) decide where the narrow numeric headers
	// wrap; the intervals are explained in the note below the table.
	cols := modelColumns(r)
	head := []string{"Model", "Params", "Layers", "Size\u00a0MB"}
	kinds := "lnnn"
	for _, c := range cols {
		head = append(head, strings.ReplaceAll(c.head, " ", "\u00a0"))
		kinds += "n"
	}
	head = append(head, "p50\u00a0ms batch\u00a01", "p95\u00a0ms batch\u00a01", "Examples/s batch\u00a032", "Threads")
	kinds += "nnnn"
	var rows [][]string
	seqLens := map[int]bool{}
	for _, m := range r.Models {
		threads := "—"
		if m.Speed.Threads > 0 {
			threads = strconv.Itoa(m.Speed.Threads)
		}
		if m.Speed.SeqLen > 0 {
			seqLens[m.Speed.SeqLen] = true
		}
		name := "<b>" + esc(m.Name) + "</b>"
		if m.Quantize != "" && m.Quantize != "none" {
			name += " <span class=\"ci\">" + esc(m.Quantize) + "</span>"
		}
		if m.Adapter != "" {
			name += " <span class=\"ci\">" + esc(m.Adapter) + "</span>"
		}
		if m.Dir != "" {
			name += "<span class=\"ci\">" + esc(m.Dir) + "</span>"
		}
		row := []string{name, m.ParamsCell(), strconv.Itoa(m.Layers), megabytes(m.SizeBytes)}
		for _, c := range cols {
			row = append(row, valueCI(c.cell(m.Metrics)))
		}
		rows = append(rows, append(row,
			measured(m.Speed.LatencyP50Ms, 2, ""), measured(m.Speed.LatencyP95Ms, 2, ""),
			measured(m.Speed.ExamplesPerSec, 1, ""), threads,
		))
	}
	htmlTable(b, "models", head, kinds, rows)
	note := modelNote(taskOf(r)) + " Intervals are under their values."
	if len(seqLens) > 0 {
		var ls []string
		for l := range seqLens {
			ls = append(ls, strconv.Itoa(l))
		}
		sort.Strings(ls)
		note += " Speed measured at " + strings.Join(ls, "/") + " tokens per example."
	}
	note += " — means not measured."
	fmt.Fprintf(b, "<p class=\"note\">%s</p>\n</section>\n", esc(note))
}

// signClass colours a delta: green when the other model is better.
func signClass(x float64, s string) string {
	switch {
	case !finite(x) || strings.Trim(s, "+-0.") == "":
		return esc(s)
	case x > 0:
		return "<span class=\"pos\">" + esc(s) + "</span>"
	}
	return "<span class=\"neg\">" + esc(s) + "</span>"
}

func htmlComparisons(b *strings.Builder, r *Report) {
	if len(r.Comparisons) == 0 {
		return
	}
	b.WriteString("<section id=\"comparisons\">\n<h2>Comparisons</h2>\n")
	task := taskOf(r)
	head := []string{"Base", "Other", "Metric", "Kept", "Δ metric"}
	kinds := "lllnn"
	if task != dataset.Regression {
		head = append(head, "Δ accuracy (points)", "Δ macro-F1")
		kinds += "nn"
	}
	head = append(head, "Speedup (batch 32)", "Size ratio")
	kinds += "nn"
	var rows [][]string
	for _, c := range r.Comparisons {
		dm := signed(comparisonDelta(c), 4)
		row := []string{esc(c.Base), "<b>" + esc(c.Other) + "</b>", esc(comparisonMetric(c)),
			esc(measured(100*comparisonKept(c), 2, "%")), signClass(comparisonDelta(c), dm)}
		if task != dataset.Regression {
			da := signed(100*c.AccuracyDelta, 2)
			df := signed(c.MacroF1Delta, 4)
			row = append(row, signClass(c.AccuracyDelta, da), signClass(c.MacroF1Delta, df))
		}
		rows = append(rows, append(row, esc(measured(c.Speedup, 2, "×")), esc(measured(c.SizeRatio, 3, "×"))))
	}
	htmlTable(b, "comparisons", head, kinds, rows)
	b.WriteString("<p class=\"note\">Metric: the task&#39;s main metric; kept: other ÷ base on it. Speedup: other ÷ base examples per second at batch 32. Size ratio: other ÷ base weight bytes.</p>\n</section>\n")
}

func htmlGate(b *strings.Builder, g *GateResult) {
	if g == nil {
		return
	}
	b.WriteString("<section id=\"gate\">\n<h2>Promotion gate</h2>\n")
	if len(g.Checks) == 0 {
		b.WriteString("<p class=\"note\">The gate ran no checks.</p>\n</section>\n")
		return
	}
	var rows [][]string
	for _, c := range g.Checks {
		res := "<span class=\"pill fail\">✗ fail</span>"
		if c.Passed {
			res = "<span class=\"pill pass\">✓ pass</span>"
		}
		rows = append(rows, []string{esc(c.Name), esc(sig(c.Value)), esc(sig(c.Threshold)), res, esc(c.Detail)})
	}
	htmlTable(b, "gate-checks", []string{"Check", "Value", "Threshold", "Result", "Detail"}, "wnnlw", rows)
	b.WriteString("</section>\n")
}

func htmlPerClass(b *strings.Builder, r *Report) {
	for _, m := range r.Models {
		mt := m.Metrics
		fmt.Fprintf(b, "<div class=\"card\"><h3>%s</h3>\n", esc(m.Name))
		if len(mt.PerClass) == 0 {
			b.WriteString("<p class=\"empty\">no per-class metrics</p>\n</div>\n")
			continue
		}
		var rows [][]string
		if ml := mt.MultiLabel; ml != nil {
			for _, c := range mt.PerClass {
				rows = append(rows, []string{esc(c.Label), fixed(c.Precision, 4), fixed(c.Recall, 4), fixed(c.F1, 4), thousands(c.Support),
					fixed(c.AveragePrecision, 4), fixed(c.Threshold, 2)})
			}
			htmlTable(b, "per-class", []string{"Label", "Precision", "Recall", "F1", "Support", "PR-AUC", "Threshold"}, "wnnnnnn", rows)
			note := "Thresholds: " + thresholdText(ml.Thresholds) + " · labels per example " + fixed(ml.LabelCardinality, 3) +
				" true, " + fixed(ml.PredictedCardinality, 3) + " predicted · weighted F1 " + fixed(mt.WeightedF1, 4)
			fmt.Fprintf(b, "<p class=\"note\">%s</p>\n</div>\n", esc(note))
			continue
		}
		for _, c := range mt.PerClass {
			rows = append(rows, []string{esc(c.Label), fixed(c.Precision, 4), fixed(c.Recall, 4), fixed(c.F1, 4), thousands(c.Support)})
		}
		htmlTable(b, "per-class", []string{"Class", "Precision", "Recall", "F1", "Support"}, "wnnnn", rows)
		note := "Micro-F1 " + fixed(mt.MicroF1, 4) + " · weighted F1 " + fixed(mt.WeightedF1, 4)
		if len(mt.TopK) > 0 {
			note += " · " + topKText(mt)
		}
		fmt.Fprintf(b, "<p class=\"note\">%s</p>\n</div>\n", esc(note))
	}
}

func htmlSlices(b *strings.Builder, r *Report) {
	cols := sliceColumns(r)
	var rows [][]string
	for _, m := range r.Models {
		for _, sl := range m.Slices {
			row := []string{esc(m.Name), esc(sl.Column), esc(sl.Value), thousands(sl.Metrics.Examples)}
			for _, c := range cols {
				row = append(row, valueCI(c.cell(sl.Metrics)))
			}
			rows = append(rows, row)
		}
	}
	if len(rows) == 0 {
		return
	}
	head := []string{"Model", "Column", "Value", "Examples"}
	kinds := "wwwn"
	for _, c := range cols {
		head = append(head, c.head)
		kinds += "n"
	}
	b.WriteString("<section id=\"slices\">\n<h2>Slices</h2>\n")
	htmlTable(b, "slices", head, kinds, rows)
	fmt.Fprintf(b, "<p class=\"note\">%s</p>\n</section>\n", esc(sliceNote(taskOf(r))))
}
