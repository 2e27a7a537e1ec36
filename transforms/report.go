package transforms

// Writing, reading and rendering the evaluation report. report.json is the
// source of truth; report.md (for terminals, PR comments, Git hosting) and
// report.html (one self-contained page with inline SVG charts, for people)
// are pure functions of it, so a renderer change never needs a re-evaluation:
// ReadReport + WriteReport regenerates both.
//
// Unexported helpers are prefixed "rpt": the transforms package is large and
// shared, and short names like "pct" or "finite" invite collisions.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/beamtune/beamtune/storage"
)

// File names WriteReport creates in the report folder.
const (
	ReportJSONFile     = "report.json"
	ReportMarkdownFile = "report.md"
	ReportHTMLFile     = "report.html"
)

// maxReportBytes bounds what ReadReport loads: a report with long training
// logs is a few MB; a wrong path pointing at a dataset should fail, not OOM.
const maxReportBytes = 256 << 20

// WriteReport writes r to dir (a local folder or gs:// prefix) as
// report.json (indented), report.md and report.html. Each file is written
// atomically through the storage package. report.json is written last, so
// its presence means the whole set is there (the Markdown and HTML files
// next to it match it); a failure never leaves a partial report.json, and an
// earlier report.json stays untouched if any write fails.
//
// An empty r.Schema is written as ReportSchema (r itself is not modified); a
// different schema is refused, since the renderers only know this one. A
// NaN or ±Inf anywhere in r is refused with the field's path, before
// anything is written: JSON cannot encode them, and a report that silently
// turned them into 0 would mislead.
func WriteReport(ctx context.Context, dir string, r *Report) error {
	if r == nil {
		return errors.New("report: nil report")
	}
	rep := *r // shallow copy: only Schema changes, slices are shared read-only
	switch rep.Schema {
	case "":
		rep.Schema = ReportSchema
	case ReportSchema:
	default:
		return fmt.Errorf("report: schema %q cannot be written (this version writes %q)", rep.Schema, ReportSchema)
	}
	if p := rptNonFinite(reflect.ValueOf(rep), "report"); p != "" {
		return fmt.Errorf("report: %s is not a finite number (JSON cannot encode NaN or Inf); nothing written", p)
	}
	js, err := json.MarshalIndent(&rep, "", "  ")
	if err != nil {
		return fmt.Errorf("report: encoding JSON: %w", err)
	}
	js = append(js, '\n')
	// Render everything before the first write, so no failure can leave the
	// set half written. JSON goes last: it is the marker of a complete set.
	files := []struct {
		name string
		data []byte
	}{
		{ReportMarkdownFile, RenderMarkdown(&rep)},
		{ReportHTMLFile, RenderHTML(&rep)},
		{ReportJSONFile, js},
	}
	for _, f := range files {
		if err := storage.WriteFile(ctx, storage.Join(dir, f.name), f.data); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	return nil
}

// ReadReport reads dir/report.json and checks its schema. Unknown fields are
// ignored (additions within a schema version stay readable); a different or
// missing schema is an error, because field meanings may have changed.
func ReadReport(ctx context.Context, dir string) (*Report, error) {
	p := storage.Join(dir, ReportJSONFile)
	data, err := storage.ReadFileLimit(ctx, p, maxReportBytes)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return ParseReport(data, p)
}

// ParseReport decodes and checks a report.json read from p (named in
// errors). It is ReadReport without the storage, so the parsing of files
// from elsewhere can be tested and fuzzed on its own.
func ParseReport(data []byte, p string) (*Report, error) {
	// Check the schema before decoding the rest: a future version may change
	// field types, and "wrong schema" is the useful message then, not a type
	// error deep inside.
	var head struct {
		Schema *string `json:"schema"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("report: %s: %w", p, err)
	}
	switch {
	case head.Schema == nil:
		return nil, fmt.Errorf("report: %s has no schema field (want %q)", p, ReportSchema)
	case *head.Schema != ReportSchema:
		return nil, fmt.Errorf("report: %s has schema %q, this version reads %q", p, *head.Schema, ReportSchema)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("report: %s: %w", p, err)
	}
	return &r, nil
}

// rptNonFinite returns the JSON path of the first NaN or ±Inf float in v,
// or "" when there is none.
func rptNonFinite(v reflect.Value, path string) string {
	switch v.Kind() {
	case reflect.Float32, reflect.Float64:
		if !rptFinite(v.Float()) {
			return path
		}
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			return rptNonFinite(v.Elem(), path)
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if p := rptNonFinite(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name := strings.Split(f.Tag.Get("json"), ",")[0]
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if p := rptNonFinite(v.Field(i), path+"."+name); p != "" {
				return p
			}
		}
	}
	return ""
}

// ---------------------------------------------------------------------------
// Number formatting, shared by both renderers so the Markdown and the HTML
// always show the same digits.

func rptFinite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// rptFixed formats x with prec decimals; "n/a" for NaN/Inf (the renderers
// take reports that WriteReport would refuse, e.g. straight from code).
func rptFixed(x float64, prec int) string {
	if !rptFinite(x) {
		return "n/a"
	}
	s := strconv.FormatFloat(x, 'f', prec, 64)
	if strings.Trim(s, "-0.") == "" {
		s = strings.TrimPrefix(s, "-") // no "-0.00"
	}
	return s
}

// rptPct formats a fraction as a percentage with 2 decimals: 0.91284 -> 91.28%.
func rptPct(x float64) string {
	if !rptFinite(x) {
		return "n/a"
	}
	return rptFixed(100*x, 2) + "%"
}

// rptSigned formats with an explicit sign: +1.23, -0.40, 0.00.
func rptSigned(x float64, prec int) string {
	s := rptFixed(x, prec)
	if rptFinite(x) && !strings.HasPrefix(s, "-") && strings.Trim(s, "0.") != "" {
		s = "+" + s
	}
	return s
}

// rptSig formats x with at most 4 significant digits and no exponent, for
// values of unknown scale (gate check values and thresholds).
func rptSig(x float64) string {
	if !rptFinite(x) {
		return "n/a"
	}
	if x == 0 {
		return "0"
	}
	dec := 4 - int(math.Floor(math.Log10(math.Abs(x)))) - 1
	if dec < 0 {
		dec = 0
	}
	if dec > 8 {
		dec = 8
	}
	s := rptFixed(x, dec)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// rptThousands formats an integer with comma separators: 7600 -> 7,600.
func rptThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// rptHuman formats a parameter count: 22713216 -> 22.71M.
func rptHuman(n int64) string {
	f := float64(n)
	switch {
	case n <= 0:
		return "—"
	case f >= 1e9:
		return rptFixed(f/1e9, 2) + "B"
	case f >= 1e6:
		return rptFixed(f/1e6, 2) + "M"
	case f >= 1e3:
		return rptFixed(f/1e3, 1) + "k"
	}
	return strconv.FormatInt(n, 10)
}

// rptMB formats a byte count in MB (10^6 bytes, as model hubs do).
func rptMB(b int64) string {
	if b <= 0 {
		return "—"
	}
	mb := float64(b) / 1e6
	if mb < 10 {
		return rptFixed(mb, 2)
	}
	return rptFixed(mb, 1)
}

// rptMeasured formats a speed figure; 0 means "not measured" (the speed
// runs are optional and Compare leaves ratios at 0 when a base is missing).
func rptMeasured(x float64, prec int, suffix string) string {
	if x == 0 {
		return "—"
	}
	return rptFixed(x, prec) + suffix
}

func rptCIPct(ci Interval) string {
	if ci.Low == 0 && ci.High == 0 {
		return ""
	}
	return rptFixed(100*ci.Low, 2) + "–" + rptFixed(100*ci.High, 2)
}

func rptCI4(ci Interval) string {
	if ci.Low == 0 && ci.High == 0 {
		return ""
	}
	return rptFixed(ci.Low, 4) + "–" + rptFixed(ci.High, 4)
}

// rptWithCI joins a value and its interval: "91.28% (89.33–93.12)".
func rptWithCI(v, ci string) string {
	if ci == "" {
		return v
	}
	return v + " (" + ci + ")"
}

func rptTopK(m Metrics) string {
	parts := make([]string, 0, len(m.TopK))
	for _, k := range m.TopK {
		parts = append(parts, fmt.Sprintf("top-%d %s", k.K, rptPct(k.Accuracy)))
	}
	return strings.Join(parts, ", ")
}

func rptVerdictWord(v string) string {
	switch v {
	case "blessed":
		return "BLESSED"
	case "rejected":
		return "REJECTED"
	case "":
		return "NO VERDICT"
	}
	return strings.ToUpper(v)
}

// rptLabel returns the name of class i of m, falling back to its index when
// Labels is shorter than the confusion matrix (a malformed report should
// still render).
func rptLabel(m Metrics, i int) string {
	if i < len(m.Labels) && m.Labels[i] != "" {
		return m.Labels[i]
	}
	return "class " + strconv.Itoa(i)
}

// ---------------------------------------------------------------------------
// Markdown

// rptMD escapes text for a Markdown table cell or paragraph: characters that
// would start formatting, break the table (|) or be read as HTML (<, >).
// Newlines become spaces, a cell is one line.
var rptMD = strings.NewReplacer(
	`\`, `\\`, "|", `\|`, "`", "\\`", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`,
	"<", "&lt;", ">", "&gt;", "\r\n", " ", "\n", " ", "\r", " ",
)

type rptMDTable struct {
	head  []string
	right []bool // right-aligned (numeric) columns
	rows  [][]string
}

func (t *rptMDTable) write(b *bytes.Buffer) {
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
	fmt.Fprintf(&b, "- Dataset: %s\n", rptMD.Replace(rptOr(r.Dataset, "—")))
	fmt.Fprintf(&b, "- Split: %s\n", rptMD.Replace(rptOr(r.Split, "—")))
	fmt.Fprintf(&b, "- Examples: %s\n", rptThousands(r.Examples))
	if r.CreatedAt != "" {
		fmt.Fprintf(&b, "- Created: %s\n", rptMD.Replace(r.CreatedAt))
	}
	fmt.Fprintf(&b, "- Schema: %s\n\n", rptMD.Replace(rptOr(r.Schema, ReportSchema)))

	b.WriteString("## Models\n\n")
	if len(r.Models) == 0 {
		b.WriteString("_No models were evaluated._\n\n")
	} else {
		t := rptMDTable{
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
				"**" + rptMD.Replace(m.Name) + "**",
				rptHuman(m.Params),
				strconv.Itoa(m.Layers),
				rptMB(m.SizeBytes),
				rptWithCI(rptPct(mt.Accuracy), rptCIPct(mt.AccuracyCI)),
				rptWithCI(rptFixed(mt.MacroF1, 4), rptCI4(mt.MacroF1CI)),
				rptFixed(mt.LogLoss, 4),
				rptFixed(mt.ECE, 4),
				rptMeasured(m.Speed.LatencyP50Ms, 2, ""),
				rptMeasured(m.Speed.LatencyP95Ms, 2, ""),
				rptMeasured(m.Speed.ExamplesPerSec, 1, ""),
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
		t := rptMDTable{
			head:  []string{"Base", "Other", "Accuracy kept", "Δ accuracy (points)", "Δ macro-F1", "Speedup (batch 32)", "Size ratio"},
			right: []bool{false, false, true, true, true, true, true},
		}
		for _, c := range r.Comparisons {
			t.rows = append(t.rows, []string{
				rptMD.Replace(c.Base), rptMD.Replace(c.Other),
				rptMeasured(100*c.AccuracyKept, 2, "%"),
				rptSigned(100*c.AccuracyDelta, 2),
				rptSigned(c.MacroF1Delta, 4),
				rptMeasured(c.Speedup, 2, "×"),
				rptMeasured(c.SizeRatio, 3, "×"),
			})
		}
		t.write(&b)
	}

	if g := r.Gate; g != nil {
		icon := ""
		switch g.Verdict {
		case "blessed":
			icon = "✅ "
		case "rejected":
			icon = "❌ "
		}
		fmt.Fprintf(&b, "## Promotion gate: %s**%s**\n\n", icon, rptVerdictWord(g.Verdict))
		if g.Champion == "" {
			fmt.Fprintf(&b, "Challenger **%s**; no champion yet.\n\n", rptMD.Replace(g.Challenger))
		} else {
			fmt.Fprintf(&b, "Challenger **%s** against champion **%s**.\n\n", rptMD.Replace(g.Challenger), rptMD.Replace(g.Champion))
		}
		if len(g.Reasons) > 0 {
			b.WriteString("Reasons:\n\n")
			for _, reason := range g.Reasons {
				fmt.Fprintf(&b, "- %s\n", rptMD.Replace(reason))
			}
			b.WriteString("\n")
		}
		if len(g.Checks) > 0 {
			t := rptMDTable{head: []string{"Check", "Value", "Threshold", "Result", "Detail"}, right: []bool{false, true, true}}
			for _, c := range g.Checks {
				res := "❌ fail"
				if c.Passed {
					res = "✅ pass"
				}
				t.rows = append(t.rows, []string{rptMD.Replace(c.Name), rptSig(c.Value), rptSig(c.Threshold), res, rptMD.Replace(c.Detail)})
			}
			t.write(&b)
		}
	}

	for _, m := range r.Models {
		mt := m.Metrics
		fmt.Fprintf(&b, "## Model %s\n\n", rptMD.Replace(m.Name))
		if m.Dir != "" {
			fmt.Fprintf(&b, "- Folder: %s\n", rptMD.Replace(m.Dir))
		}
		fmt.Fprintf(&b, "- Examples: %s\n", rptThousands(mt.Examples))
		fmt.Fprintf(&b, "- Micro-F1: %s · weighted F1: %s\n", rptFixed(mt.MicroF1, 4), rptFixed(mt.WeightedF1, 4))
		if len(mt.TopK) > 0 {
			fmt.Fprintf(&b, "- Top-k accuracy: %s\n", rptTopK(mt))
		}
		b.WriteString("\n")
		if len(mt.PerClass) > 0 {
			b.WriteString("### Per class\n\n")
			t := rptMDTable{head: []string{"Class", "Precision", "Recall", "F1", "Support"}, right: []bool{false, true, true, true, true}}
			for _, c := range mt.PerClass {
				t.rows = append(t.rows, []string{rptMD.Replace(c.Label), rptFixed(c.Precision, 4), rptFixed(c.Recall, 4), rptFixed(c.F1, 4), rptThousands(c.Support)})
			}
			t.write(&b)
		}
		if len(mt.Confusion) > 0 {
			b.WriteString("### Confusion matrix\n\nRows: true class; columns: predicted class.\n\n")
			t := rptMDTable{head: []string{`true \ predicted`}, right: []bool{false}}
			for j := range mt.Confusion {
				t.head = append(t.head, rptMD.Replace(rptLabel(mt, j)))
				t.right = append(t.right, true)
			}
			for i, row := range mt.Confusion {
				cells := []string{"**" + rptMD.Replace(rptLabel(mt, i)) + "**"}
				for j := range mt.Confusion {
					v := ""
					if j < len(row) {
						v = rptThousands(row[j])
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
				rptMD.Replace(m.Name), rptMD.Replace(s.Column), rptMD.Replace(s.Value),
				rptThousands(sm.Examples),
				rptWithCI(rptPct(sm.Accuracy), rptCIPct(sm.AccuracyCI)),
				rptFixed(sm.MacroF1, 4), rptFixed(sm.ECE, 4),
			})
		}
	}
	if len(slices) > 0 {
		b.WriteString("## Slices\n\n")
		t := rptMDTable{head: []string{"Model", "Column", "Value", "Examples", "Accuracy (95% CI)", "Macro-F1", "ECE"}, right: []bool{false, false, false, true, true, true, true}, rows: slices}
		t.write(&b)
	}
	return b.Bytes()
}

func rptOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// ---------------------------------------------------------------------------
// HTML

// Colours: Tableau 10, distinguishable and colour-blind tolerant; model i
// always gets rptPalette[i] in every chart.
var rptPalette = []string{"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

const (
	rptTrainColour = "#4e79a7"
	rptEvalColour  = "#e8702a"
)

func rptColour(i int) string { return rptPalette[i%len(rptPalette)] }

// rptEsc escapes text for HTML and SVG content and double-quoted attributes.
func rptEsc(s string) string { return html.EscapeString(s) }

// rptNum formats an SVG coordinate: one decimal is below a pixel's
// resolution and keeps the file small.
func rptNum(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }

// rptIDs gives each model a unique, HTML-safe id fragment derived from its
// name, so tests and links can address its charts (#loss-student).
func rptIDs(models []ModelReport) []string {
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

// rptCSS is the page's only styling. System fonts only: the page must render
// offline and identically from a bucket, a laptop or a CI artifact.
const rptCSS = `
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
	ids := rptIDs(r.Models)
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
	fmt.Fprintf(&b, "<title>%s</title>\n<style>%s</style>\n</head>\n<body>\n", rptEsc(title), rptCSS)

	b.WriteString("<header class=\"top\"><div class=\"wrap\">\n<h1>Evaluation report</h1>\n<div class=\"meta\">")
	fmt.Fprintf(&b, "<span>Dataset <b>%s</b></span>", rptEsc(rptOr(r.Dataset, "—")))
	fmt.Fprintf(&b, "<span>Split <b>%s</b></span>", rptEsc(rptOr(r.Split, "—")))
	fmt.Fprintf(&b, "<span>Examples <b>%s</b></span>", rptThousands(r.Examples))
	if r.CreatedAt != "" {
		fmt.Fprintf(&b, "<span>Created <b>%s</b></span>", rptEsc(r.CreatedAt))
	}
	b.WriteString("</div>\n</div></header>\n<main class=\"wrap\">\n")

	rptHTMLSummary(&b, r)
	rptHTMLModels(&b, r)
	rptHTMLComparisons(&b, r)
	rptHTMLGate(&b, r.Gate)

	if len(r.Models) > 0 { // without models the Models section says so; no empty charts
		rptHTMLCharts(&b, r, ids)
	}
	fmt.Fprintf(&b, "</main>\n<footer><div class=\"wrap\">Generated by beamtune · schema %s · report.json holds every number shown here.</div></footer>\n</body>\n</html>\n",
		rptEsc(rptOr(r.Schema, ReportSchema)))
	return []byte(b.String())
}

// rptHTMLCharts writes the chart sections: training loss, calibration,
// per-class metrics, confusion matrices, then the slice table.
func rptHTMLCharts(b *strings.Builder, r *Report, ids []string) {
	b.WriteString("<section id=\"training\">\n<h2>Training loss</h2>\n<div class=\"grid\">\n")
	for i, m := range r.Models {
		fmt.Fprintf(b, "<div class=\"card\"><h3>%s</h3>\n", rptEsc(m.Name))
		rptLossChart(b, "loss-"+ids[i], m)
		b.WriteString("</div>\n")
	}
	b.WriteString("</div>\n</section>\n")

	b.WriteString("<section id=\"calibration\">\n<h2>Calibration</h2>\n<div class=\"grid narrow\">\n")
	for i, m := range r.Models {
		fmt.Fprintf(b, "<div class=\"card\"><h3>%s</h3>\n", rptEsc(m.Name))
		rptReliabilityChart(b, "reliability-"+ids[i], m)
		b.WriteString("</div>\n")
	}
	b.WriteString("</div>\n</section>\n")

	// The F1 chart shares a grid row with the per-class tables when it is
	// small (few classes) and takes the whole row when it is not.
	b.WriteString("<section id=\"per-class\">\n<h2>Per-class metrics</h2>\n<div class=\"grid narrow\">\n")
	var f1 strings.Builder
	if w := rptF1Chart(&f1, "f1-per-class", r.Models); w > 560 {
		b.WriteString("<div class=\"card wide\">\n")
	} else {
		b.WriteString("<div class=\"card\"><h3>F1 by class</h3>\n")
	}
	b.WriteString(f1.String())
	b.WriteString("</div>\n")
	rptHTMLPerClass(b, r)
	b.WriteString("</div>\n</section>\n")

	// Matrices of many classes are wider than a narrow card; scaling them
	// down would make the labels unreadable, so they get wider cards.
	grid, widest := "grid narrow", 0.0
	charts := make([]string, len(r.Models))
	for i, m := range r.Models {
		var c strings.Builder
		widest = math.Max(widest, rptConfusionChart(&c, "confusion-"+ids[i], m))
		charts[i] = c.String()
	}
	if widest > 370 {
		grid = "grid"
	}
	fmt.Fprintf(b, "<section id=\"confusion\">\n<h2>Confusion matrices</h2>\n<div class=\"%s\">\n", grid)
	for i, m := range r.Models {
		fmt.Fprintf(b, "<div class=\"card\"><h3>%s</h3>\n%s</div>\n", rptEsc(m.Name), charts[i])
	}
	b.WriteString("</div>\n</section>\n")

	rptHTMLSlices(b, r)
}

// rptTable writes an HTML table; head is plain text, cells are HTML
// fragments the caller has already escaped. kinds has one letter per
// column: 'l' text, 'n' number (right-aligned), 'w' text that may wrap
// (long labels and details, which would otherwise push the numbers out of
// a narrow card).
func rptTable(b *strings.Builder, class string, head []string, kinds string, rows [][]string) {
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
		fmt.Fprintf(b, "<th%s>%s</th>", attr(i), rptEsc(h))
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

// rptValCI is a table cell: the value, and its interval on a muted line.
func rptValCI(v, ci string) string {
	if ci == "" {
		return rptEsc(v)
	}
	return rptEsc(v) + "<span class=\"ci\">" + rptEsc(ci) + "</span>"
}

// rptHTMLSummary writes one tile per model (accuracy, macro-F1, throughput)
// and the gate verdict banner: the answer first, the detail below.
func rptHTMLSummary(b *strings.Builder, r *Report) {
	if len(r.Models) > 0 {
		b.WriteString("<div class=\"kpis\">\n")
		for i, m := range r.Models {
			mt := m.Metrics
			fmt.Fprintf(b, "<div class=\"kpi\" style=\"--c:%s\"><div class=\"name\">%s</div>", rptColour(i), rptEsc(m.Name))
			fmt.Fprintf(b, "<div class=\"big\">%s</div>", rptEsc(rptPct(mt.Accuracy)))
			sub := "accuracy"
			if ci := rptCIPct(mt.AccuracyCI); ci != "" {
				sub += " · 95% CI " + ci
			}
			fmt.Fprintf(b, "<div class=\"sub\">%s</div>", rptEsc(sub))
			sub = "macro-F1 " + rptFixed(mt.MacroF1, 4)
			if m.Speed.ExamplesPerSec > 0 {
				sub += " · " + rptFixed(m.Speed.ExamplesPerSec, 1) + " examples/s"
			}
			if m.SizeBytes > 0 {
				sub += " · " + rptMB(m.SizeBytes) + " MB"
			}
			fmt.Fprintf(b, "<div class=\"sub\">%s</div></div>\n", rptEsc(sub))
		}
		b.WriteString("</div>\n")
	}
	if g := r.Gate; g != nil {
		class := "verdict"
		if g.Verdict == "blessed" || g.Verdict == "rejected" {
			class += " " + g.Verdict
		}
		fmt.Fprintf(b, "<div class=\"%s\" id=\"verdict\"><span class=\"word\">%s</span> &nbsp;", class, rptVerdictWord(g.Verdict))
		if g.Champion == "" {
			fmt.Fprintf(b, "challenger <b>%s</b>, no champion yet", rptEsc(g.Challenger))
		} else {
			fmt.Fprintf(b, "challenger <b>%s</b> against champion <b>%s</b>", rptEsc(g.Challenger), rptEsc(g.Champion))
		}
		if len(g.Reasons) > 0 {
			b.WriteString("<ul>")
			for _, reason := range g.Reasons {
				fmt.Fprintf(b, "<li>%s</li>", rptEsc(reason))
			}
			b.WriteString("</ul>")
		}
		b.WriteString("</div>\n")
	}
}

func rptHTMLModels(b *strings.Builder, r *Report) {
	b.WriteString("<section id=\"models\">\n<h2>Models</h2>\n")
	if len(r.Models) == 0 {
		b.WriteString("<p class=\"empty\">no models were evaluated</p>\n</section>\n")
		return
	}
	// Non-breaking spaces (\u00a0) decide where the narrow numeric headers
	// wrap; the intervals are explained in the note below the table.
	head := []string{"Model", "Params", "Layers", "Size\u00a0MB", "Accuracy", "Macro-F1", "Log\u00a0loss", "ECE",
		"p50\u00a0ms batch\u00a01", "p95\u00a0ms batch\u00a01", "Examples/s batch\u00a032", "Threads"}
	kinds := "lnnnnnnnnnnn"
	var rows [][]string
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
		name := "<b>" + rptEsc(m.Name) + "</b>"
		if m.Dir != "" {
			name += "<span class=\"ci\">" + rptEsc(m.Dir) + "</span>"
		}
		rows = append(rows, []string{
			name, rptHuman(m.Params), strconv.Itoa(m.Layers), rptMB(m.SizeBytes),
			rptValCI(rptPct(mt.Accuracy), rptCIPct(mt.AccuracyCI)),
			rptValCI(rptFixed(mt.MacroF1, 4), rptCI4(mt.MacroF1CI)),
			rptFixed(mt.LogLoss, 4), rptFixed(mt.ECE, 4),
			rptMeasured(m.Speed.LatencyP50Ms, 2, ""), rptMeasured(m.Speed.LatencyP95Ms, 2, ""),
			rptMeasured(m.Speed.ExamplesPerSec, 1, ""), threads,
		})
	}
	rptTable(b, "models", head, kinds, rows)
	note := "Under accuracy and macro-F1: 95% confidence interval (seeded Poisson bootstrap). ECE: expected calibration error over 15 equal-width confidence bins."
	if len(seqLens) > 0 {
		var ls []string
		for l := range seqLens {
			ls = append(ls, strconv.Itoa(l))
		}
		sort.Strings(ls)
		note += " Speed measured at " + strings.Join(ls, "/") + " tokens per example."
	}
	note += " — means not measured."
	fmt.Fprintf(b, "<p class=\"note\">%s</p>\n</section>\n", rptEsc(note))
}

// rptSignClass colours a delta: green when the other model is better.
func rptSignClass(x float64, s string) string {
	switch {
	case !rptFinite(x) || strings.Trim(s, "+-0.") == "":
		return rptEsc(s)
	case x > 0:
		return "<span class=\"pos\">" + rptEsc(s) + "</span>"
	}
	return "<span class=\"neg\">" + rptEsc(s) + "</span>"
}

func rptHTMLComparisons(b *strings.Builder, r *Report) {
	if len(r.Comparisons) == 0 {
		return
	}
	b.WriteString("<section id=\"comparisons\">\n<h2>Comparisons</h2>\n")
	head := []string{"Base", "Other", "Accuracy kept", "Δ accuracy (points)", "Δ macro-F1", "Speedup (batch 32)", "Size ratio"}
	kinds := "llnnnnn"
	var rows [][]string
	for _, c := range r.Comparisons {
		da := rptSigned(100*c.AccuracyDelta, 2)
		df := rptSigned(c.MacroF1Delta, 4)
		rows = append(rows, []string{
			rptEsc(c.Base), "<b>" + rptEsc(c.Other) + "</b>",
			rptEsc(rptMeasured(100*c.AccuracyKept, 2, "%")),
			rptSignClass(c.AccuracyDelta, da), rptSignClass(c.MacroF1Delta, df),
			rptEsc(rptMeasured(c.Speedup, 2, "×")), rptEsc(rptMeasured(c.SizeRatio, 3, "×")),
		})
	}
	rptTable(b, "comparisons", head, kinds, rows)
	b.WriteString("<p class=\"note\">Accuracy kept: other ÷ base accuracy. Speedup: other ÷ base examples per second at batch 32. Size ratio: other ÷ base weight bytes.</p>\n</section>\n")
}

func rptHTMLGate(b *strings.Builder, g *GateResult) {
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
		rows = append(rows, []string{rptEsc(c.Name), rptEsc(rptSig(c.Value)), rptEsc(rptSig(c.Threshold)), res, rptEsc(c.Detail)})
	}
	rptTable(b, "gate-checks", []string{"Check", "Value", "Threshold", "Result", "Detail"}, "wnnlw", rows)
	b.WriteString("</section>\n")
}

func rptHTMLPerClass(b *strings.Builder, r *Report) {
	for _, m := range r.Models {
		mt := m.Metrics
		fmt.Fprintf(b, "<div class=\"card\"><h3>%s</h3>\n", rptEsc(m.Name))
		if len(mt.PerClass) == 0 {
			b.WriteString("<p class=\"empty\">no per-class metrics</p>\n</div>\n")
			continue
		}
		var rows [][]string
		for _, c := range mt.PerClass {
			rows = append(rows, []string{rptEsc(c.Label), rptFixed(c.Precision, 4), rptFixed(c.Recall, 4), rptFixed(c.F1, 4), rptThousands(c.Support)})
		}
		rptTable(b, "per-class", []string{"Class", "Precision", "Recall", "F1", "Support"}, "wnnnn", rows)
		note := "Micro-F1 " + rptFixed(mt.MicroF1, 4) + " · weighted F1 " + rptFixed(mt.WeightedF1, 4)
		if len(mt.TopK) > 0 {
			note += " · " + rptTopK(mt)
		}
		fmt.Fprintf(b, "<p class=\"note\">%s</p>\n</div>\n", rptEsc(note))
	}
}

func rptHTMLSlices(b *strings.Builder, r *Report) {
	var rows [][]string
	for _, m := range r.Models {
		for _, s := range m.Slices {
			sm := s.Metrics
			rows = append(rows, []string{
				rptEsc(m.Name), rptEsc(s.Column), rptEsc(s.Value), rptThousands(sm.Examples),
				rptValCI(rptPct(sm.Accuracy), rptCIPct(sm.AccuracyCI)), rptFixed(sm.MacroF1, 4), rptFixed(sm.ECE, 4),
			})
		}
	}
	if len(rows) == 0 {
		return
	}
	b.WriteString("<section id=\"slices\">\n<h2>Slices</h2>\n")
	rptTable(b, "slices", []string{"Model", "Column", "Value", "Examples", "Accuracy, 95% CI", "Macro-F1", "ECE"}, "wwwnnnn", rows)
	b.WriteString("<p class=\"note\">length: examples bucketed by token count; label: the examples of one true class, where precision and macro-F1 mean little and accuracy is that class&#39;s recall.</p>\n</section>\n")
}

// ---------------------------------------------------------------------------
// SVG charts

// rptEmpty stands in for a chart without data: a blank plot would look like
// a rendering bug, a sentence says what is missing.
func rptEmpty(b *strings.Builder, id, msg string) {
	fmt.Fprintf(b, "<p class=\"empty\" id=\"%s\">%s</p>\n", rptEsc(id), rptEsc(msg))
}

// rptSVGOpen starts a chart: id and class for tests and links, a <title>
// that screen readers announce and browsers show as a tooltip.
func rptSVGOpen(b *strings.Builder, id, class string, w, h float64, title, desc string) {
	fmt.Fprintf(b, "<svg id=\"%s\" class=\"chart %s\" viewBox=\"0 0 %s %s\" width=\"%s\" height=\"%s\" role=\"img\" aria-labelledby=\"%s-title\">",
		rptEsc(id), class, rptNum(w), rptNum(h), rptNum(w), rptNum(h), rptEsc(id))
	fmt.Fprintf(b, "<title id=\"%s-title\">%s</title><desc>%s</desc>\n", rptEsc(id), rptEsc(title), rptEsc(desc))
}

// rptNice rounds x to 1, 2, 5 or 10 times a power of ten (Heckbert's "nice
// numbers"), so axis ticks land on values people read at a glance.
func rptNice(x float64, round bool) float64 {
	if x <= 0 || !rptFinite(x) {
		return 1
	}
	exp := math.Floor(math.Log10(x))
	f := x / math.Pow(10, exp)
	var nf float64
	if round {
		switch {
		case f < 1.5:
			nf = 1
		case f < 3:
			nf = 2
		case f < 7:
			nf = 5
		default:
			nf = 10
		}
	} else {
		switch {
		case f <= 1:
			nf = 1
		case f <= 2:
			nf = 2
		case f <= 5:
			nf = 5
		default:
			nf = 10
		}
	}
	return nf * math.Pow(10, exp)
}

// rptTicks returns about n nice tick values covering [lo, hi]; the first and
// last are the axis domain. integer keeps steps whole (training steps).
func rptTicks(lo, hi float64, n int, integer bool) (ticks []float64, step float64) {
	if hi < lo {
		lo, hi = hi, lo
	}
	if hi == lo {
		pad := math.Abs(lo) * 0.1
		if pad == 0 {
			pad = 1
		}
		lo, hi = lo-pad, hi+pad
	}
	step = rptNice((hi-lo)/float64(n-1), true)
	if integer && step < 1 {
		step = 1
	}
	// Integer tick indices (with a tolerance for 0.9/0.1 = 9.000000000000002)
	// keep float error from adding a spurious tick or accumulating.
	first := math.Floor(lo/step + 1e-9)
	last := math.Ceil(hi/step - 1e-9)
	for i := first; i <= last && len(ticks) < 100; i++ { // bounded: never loop forever
		ticks = append(ticks, i*step)
	}
	return ticks, step
}

// rptTickLabel formats a tick with as many decimals as the step needs;
// thousands as "k" so step axes stay narrow.
func rptTickLabel(v, step float64) string {
	if step >= 1000 && math.Mod(v, 1000) == 0 && v != 0 {
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "k"
	}
	dec := 0
	if step < 1 {
		dec = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	return rptFixed(v, dec)
}

type rptPoint struct{ x, y float64 }

// rptThin keeps at most max points of a sorted series, always the first and
// the last: a polyline with more points than the plot has pixels only makes
// the file bigger.
func rptThin(p []rptPoint, max int) []rptPoint {
	if len(p) <= max {
		return p
	}
	stride := float64(len(p)-1) / float64(max-1)
	out := make([]rptPoint, 0, max)
	for i := 0; i < max; i++ {
		out = append(out, p[int(math.Round(float64(i)*stride))])
	}
	return out
}

// rptLossChart draws train loss (a line over every logged step) and
// validation loss (line and markers at each eval) against the step.
func rptLossChart(b *strings.Builder, id string, m ModelReport) {
	if len(m.TrainingLog) == 0 {
		rptEmpty(b, id, "no training log")
		return
	}
	var train, eval []rptPoint
	for _, e := range m.TrainingLog {
		if !rptFinite(e.Loss) {
			continue
		}
		p := rptPoint{float64(e.Step), e.Loss}
		switch e.Kind {
		case "train":
			train = append(train, p)
		case "eval":
			eval = append(eval, p)
		}
	}
	if len(train)+len(eval) == 0 {
		rptEmpty(b, id, "the training log has no loss values")
		return
	}
	// A resumed run can log steps out of order; lines must go left to right.
	byStep := func(p []rptPoint) { sort.SliceStable(p, func(i, j int) bool { return p[i].x < p[j].x }) }
	byStep(train)
	byStep(eval)
	train = rptThin(train, 1200)

	minX, maxX, minY, maxY := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range [][]rptPoint{train, eval} {
		for _, p := range s {
			minX, maxX = math.Min(minX, p.x), math.Max(maxX, p.x)
			minY, maxY = math.Min(minY, p.y), math.Max(maxY, p.y)
		}
	}
	xt, xstep := rptTicks(minX, maxX, 7, true)
	yt, ystep := rptTicks(minY, maxY, 6, false)
	const W, H = 560.0, 300.0
	const ml, mr, mt, mb = 54.0, 16.0, 30.0, 42.0
	pw, ph := W-ml-mr, H-mt-mb
	x0, x1, y0, y1 := xt[0], xt[len(xt)-1], yt[0], yt[len(yt)-1]
	sx := func(v float64) float64 { return ml + (v-x0)/(x1-x0)*pw }
	sy := func(v float64) float64 { return mt + ph - (v-y0)/(y1-y0)*ph }

	desc := fmt.Sprintf("%d train loss points and %d validation loss points over steps %s to %s", len(train), len(eval), rptTickLabel(minX, 1), rptTickLabel(maxX, 1))
	rptSVGOpen(b, id, "loss-chart", W, H, "Loss curves: "+m.Name, desc)
	for _, v := range yt {
		y := sy(v)
		fmt.Fprintf(b, "<line class=\"gridline\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", rptNum(ml), rptNum(y), rptNum(ml+pw), rptNum(y))
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"end\">%s</text>\n", rptNum(ml-6), rptNum(y+3.5), rptTickLabel(v, ystep))
	}
	for _, v := range xt {
		x := sx(v)
		fmt.Fprintf(b, "<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", rptNum(x), rptNum(mt+ph), rptNum(x), rptNum(mt+ph+4))
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>\n", rptNum(x), rptNum(mt+ph+16), rptTickLabel(v, xstep))
	}
	fmt.Fprintf(b, "<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", rptNum(ml), rptNum(mt+ph), rptNum(ml+pw), rptNum(mt+ph))
	fmt.Fprintf(b, "<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>\n", rptNum(ml), rptNum(mt), rptNum(ml), rptNum(mt+ph))
	fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">step</text>", rptNum(ml+pw/2), rptNum(H-6))
	fmt.Fprintf(b, "<text x=\"14\" y=\"%s\" text-anchor=\"middle\" transform=\"rotate(-90 14 %s)\">loss</text>\n", rptNum(mt+ph/2), rptNum(mt+ph/2))

	line := func(p []rptPoint, class, colour string, width float64) {
		var pts strings.Builder
		for i, q := range p {
			if i > 0 {
				pts.WriteByte(' ')
			}
			pts.WriteString(rptNum(sx(q.x)) + "," + rptNum(sy(q.y)))
		}
		fmt.Fprintf(b, "<polyline class=\"series %s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" stroke-linejoin=\"round\" points=\"%s\"/>\n", class, colour, rptNum(width), pts.String())
	}
	if len(train) > 1 {
		line(train, "train", rptTrainColour, 1.5)
	} else if len(train) == 1 { // one point is no line: show it
		fmt.Fprintf(b, "<circle class=\"series train\" cx=\"%s\" cy=\"%s\" r=\"3\" fill=\"%s\"/>\n", rptNum(sx(train[0].x)), rptNum(sy(train[0].y)), rptTrainColour)
	}
	if len(eval) > 1 {
		line(eval, "eval", rptEvalColour, 2)
	}
	if len(eval) <= 200 { // markers show where evals happened; too many become a smear
		for _, q := range eval {
			fmt.Fprintf(b, "<circle class=\"marker eval\" cx=\"%s\" cy=\"%s\" r=\"3.2\" fill=\"#fff\" stroke=\"%s\" stroke-width=\"1.8\"><title>step %s: validation loss %s</title></circle>",
				rptNum(sx(q.x)), rptNum(sy(q.y)), rptEvalColour, rptTickLabel(q.x, 1), rptFixed(q.y, 4))
		}
		b.WriteString("\n")
	}
	// Legend above the plot, right-aligned, so it never hides a curve.
	lx := ml + pw - 250
	b.WriteString("<g class=\"legend\">")
	if len(train) > 0 {
		fmt.Fprintf(b, "<line x1=\"%s\" y1=\"14\" x2=\"%s\" y2=\"14\" stroke=\"%s\" stroke-width=\"2.5\"/><text x=\"%s\" y=\"18\">train loss</text>", rptNum(lx), rptNum(lx+22), rptTrainColour, rptNum(lx+28))
	}
	if len(eval) > 0 {
		fmt.Fprintf(b, "<line x1=\"%s\" y1=\"14\" x2=\"%s\" y2=\"14\" stroke=\"%s\" stroke-width=\"2.5\"/><text x=\"%s\" y=\"18\">validation loss</text>",
			rptNum(lx+110), rptNum(lx+132), rptEvalColour, rptNum(lx+138))
		if len(eval) <= 200 { // the legend shows the marker only where the plot has them
			fmt.Fprintf(b, "<circle cx=\"%s\" cy=\"14\" r=\"3.2\" fill=\"#fff\" stroke=\"%s\" stroke-width=\"1.8\"/>", rptNum(lx+121), rptEvalColour)
		}
	}
	b.WriteString("</g>\n</svg>\n")

	// Caption: the numbers a reader looks for in a loss plot.
	var cap []string
	if len(train) > 0 {
		cap = append(cap, "final train loss "+rptFixed(train[len(train)-1].y, 4))
	}
	if len(eval) > 0 {
		best := eval[0]
		for _, q := range eval {
			if q.y < best.y {
				best = q
			}
		}
		cap = append(cap, "best validation loss "+rptFixed(best.y, 4)+" at step "+rptTickLabel(best.x, 1))
	}
	bestAcc, bestStep, haveAcc := 0.0, int64(0), false
	for _, e := range m.TrainingLog {
		if e.Kind == "eval" && rptFinite(e.Accuracy) && (!haveAcc || e.Accuracy > bestAcc) {
			bestAcc, bestStep, haveAcc = e.Accuracy, e.Step, e.Accuracy > 0
		}
	}
	if haveAcc {
		cap = append(cap, "best validation accuracy "+rptPct(bestAcc)+" at step "+strconv.FormatInt(bestStep, 10))
	}
	fmt.Fprintf(b, "<div class=\"cap\">%s</div>\n", rptEsc(strings.Join(cap, " · ")))
}

// rptReliabilityChart draws the reliability diagram: per non-empty
// confidence bin, a bar up to the bin's accuracy and a red band from there
// to its mean confidence (the calibration gap), with the diagonal of perfect
// calibration; below, a strip showing how many examples fall in each bin,
// since a large gap in a near-empty bin matters little.
func rptReliabilityChart(b *strings.Builder, id string, m ModelReport) {
	type bin struct {
		lo, hi, conf, acc float64
		n                 int64
	}
	var bins []bin
	var maxN int64
	for _, r := range m.Metrics.Reliability {
		if r.Count <= 0 || !rptFinite(r.Accuracy) || !rptFinite(r.Confidence) || !rptFinite(r.Lower) || !rptFinite(r.Upper) {
			continue // empty bins have no accuracy to show
		}
		clamp := func(v float64) float64 { return math.Max(0, math.Min(1, v)) }
		bins = append(bins, bin{clamp(r.Lower), clamp(r.Upper), clamp(r.Confidence), clamp(r.Accuracy), r.Count})
		if r.Count > maxN {
			maxN = r.Count
		}
	}
	if len(bins) == 0 {
		rptEmpty(b, id, "no reliability bins")
		return
	}
	const P = 270.0 // plot side
	const ml, mt = 60.0, 26.0
	const strip = 34.0 // count strip height
	W := ml + P + 16
	H := mt + P + 40 + strip + 20
	sx := func(v float64) float64 { return ml + v*P }
	sy := func(v float64) float64 { return mt + P - v*P }
	rptSVGOpen(b, id, "reliability-chart", W, H, "Reliability diagram: "+m.Name,
		fmt.Sprintf("accuracy against confidence in %d non-empty bins; ECE %s", len(bins), rptFixed(m.Metrics.ECE, 4)))
	for i := 0; i <= 5; i++ {
		v := float64(i) / 5
		fmt.Fprintf(b, "<line class=\"gridline\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", rptNum(ml), rptNum(sy(v)), rptNum(ml+P), rptNum(sy(v)))
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"end\">%s</text>", rptNum(ml-6), rptNum(sy(v)+3.5), rptFixed(v, 1))
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s</text>\n", rptNum(sx(v)), rptNum(mt+P+15), rptFixed(v, 1))
	}
	for _, q := range bins {
		x0, x1 := sx(q.lo)+0.75, sx(q.hi)-0.75
		if x1-x0 < 1 {
			x1 = x0 + 1
		}
		tip := fmt.Sprintf("confidence %s–%s: %s examples, accuracy %s, mean confidence %s",
			rptFixed(q.lo, 2), rptFixed(q.hi, 2), rptThousands(q.n), rptPct(q.acc), rptPct(q.conf))
		fmt.Fprintf(b, "<rect class=\"bin\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"#4e79a7\"><title>%s</title></rect>",
			rptNum(x0), rptNum(sy(q.acc)), rptNum(x1-x0), rptNum(sy(0)-sy(q.acc)), rptEsc(tip))
		top, bot := math.Max(q.acc, q.conf), math.Min(q.acc, q.conf)
		if top-bot > 0.002 {
			fmt.Fprintf(b, "<rect class=\"gap\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"#e15759\" fill-opacity=\"0.35\" stroke=\"#e15759\" stroke-width=\"0.8\"/>",
				rptNum(x0), rptNum(sy(top)), rptNum(x1-x0), rptNum(sy(bot)-sy(top)))
		}
		h := float64(q.n) / float64(maxN) * strip
		if h < 1 {
			h = 1 // a bin with a handful of examples must stay visible
		}
		fmt.Fprintf(b, "<rect class=\"count\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"#9aa5b1\"><title>%s examples</title></rect>\n",
			rptNum(x0), rptNum(mt+P+40+strip-h), rptNum(x1-x0), rptNum(h), rptThousands(q.n))
	}
	fmt.Fprintf(b, "<line class=\"diagonal\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\" stroke=\"#57606a\" stroke-width=\"1.2\" stroke-dasharray=\"5 4\"/>\n", rptNum(sx(0)), rptNum(sy(0)), rptNum(sx(1)), rptNum(sy(1)))
	fmt.Fprintf(b, "<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/><line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>",
		rptNum(ml), rptNum(mt+P), rptNum(ml+P), rptNum(mt+P), rptNum(ml), rptNum(mt), rptNum(ml), rptNum(mt+P))
	fmt.Fprintf(b, "<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>\n", rptNum(ml), rptNum(mt+P+40+strip), rptNum(ml+P), rptNum(mt+P+40+strip))
	fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">confidence (top probability)</text>", rptNum(ml+P/2), rptNum(mt+P+29))
	fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"end\">examples</text>", rptNum(ml-6), rptNum(mt+P+40+strip-2))
	fmt.Fprintf(b, "<text x=\"14\" y=\"%s\" text-anchor=\"middle\" transform=\"rotate(-90 14 %s)\">accuracy</text>\n", rptNum(mt+P/2), rptNum(mt+P/2))
	fmt.Fprintf(b, "<g class=\"legend\"><rect x=\"%s\" y=\"7\" width=\"12\" height=\"10\" fill=\"#4e79a7\"/><text x=\"%s\" y=\"16\">accuracy</text>", rptNum(ml), rptNum(ml+16))
	fmt.Fprintf(b, "<rect x=\"%s\" y=\"7\" width=\"12\" height=\"10\" fill=\"#e15759\" fill-opacity=\"0.35\" stroke=\"#e15759\" stroke-width=\"0.8\"/><text x=\"%s\" y=\"16\">gap</text>", rptNum(ml+76), rptNum(ml+92))
	fmt.Fprintf(b, "<line x1=\"%s\" y1=\"12\" x2=\"%s\" y2=\"12\" stroke=\"#57606a\" stroke-width=\"1.2\" stroke-dasharray=\"5 4\"/><text x=\"%s\" y=\"16\">perfect calibration</text></g>\n", rptNum(ml+124), rptNum(ml+146), rptNum(ml+151))
	b.WriteString("</svg>\n")
	fmt.Fprintf(b, "<div class=\"cap\">ECE %s · log loss %s · %d of %d bins non-empty</div>\n",
		rptFixed(m.Metrics.ECE, 4), rptFixed(m.Metrics.LogLoss, 4), len(bins), len(m.Metrics.Reliability))
}

// rptF1Chart draws per-class F1 as grouped bars: one group per class, one
// bar per model in the model's colour, so a student losing one class shows.
// It returns the chart's width (0 for the no-data note) for the layout.
func rptF1Chart(b *strings.Builder, id string, models []ModelReport) float64 {
	var labels []string
	index := map[string]int{}
	for _, m := range models {
		for _, c := range m.Metrics.PerClass {
			if _, ok := index[c.Label]; !ok {
				index[c.Label] = len(labels)
				labels = append(labels, c.Label)
			}
		}
	}
	if len(labels) == 0 {
		rptEmpty(b, id, "no per-class metrics")
		return 0
	}
	K, M := float64(len(labels)), float64(len(models))
	const ml, mr, mt = 44.0, 12.0, 30.0
	const maxPlot = 1080.0
	gap := 18.0
	bar := math.Min(34, (maxPlot/K-gap)/M)
	if bar < 2 {
		bar, gap = 2, 4 // many classes: thin bars, the width grows instead
	}
	group := bar*M + gap
	// Few classes: spread the groups over a minimum width (room for the
	// legend too) and let the bars grow a little, not float in white space.
	const minPlot = 360.0
	if group*K < minPlot {
		group = minPlot / K
		bar = math.Min(56, (group-24)/M)
		gap = group - bar*M
	}
	pw := group * K
	longest := 0
	for _, l := range labels {
		longest = max(longest, len([]rune(rptShort(l, 18))))
	}
	rotate := float64(longest)*6.5 > group-4
	mb := 40.0
	if rotate {
		mb = 26 + float64(longest)*5
	}
	const ph = 220.0
	W := ml + pw + mr
	H := mt + ph + mb
	sy := func(v float64) float64 { return mt + ph - v*ph }
	rptSVGOpen(b, id, "f1-chart", W, H, "Per-class F1 by model",
		fmt.Sprintf("F1 of %d classes for %d models", len(labels), len(models)))
	for i := 0; i <= 5; i++ {
		v := float64(i) / 5
		fmt.Fprintf(b, "<line class=\"gridline\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/><text x=\"%s\" y=\"%s\" text-anchor=\"end\">%s</text>\n",
			rptNum(ml), rptNum(sy(v)), rptNum(ml+pw), rptNum(sy(v)), rptNum(ml-6), rptNum(sy(v)+3.5), rptFixed(v, 1))
	}
	for mi, m := range models {
		for _, c := range m.Metrics.PerClass {
			if !rptFinite(c.F1) {
				continue
			}
			f1 := math.Max(0, math.Min(1, c.F1))
			gi := float64(index[c.Label])
			x := ml + gi*group + gap/2 + float64(mi)*bar
			fmt.Fprintf(b, "<rect class=\"bar\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"%s\"><title>%s · %s: F1 %s (precision %s, recall %s, support %s)</title></rect>",
				rptNum(x+0.5), rptNum(sy(f1)), rptNum(bar-1), rptNum(sy(0)-sy(f1)), rptColour(mi),
				rptEsc(m.Name), rptEsc(c.Label), rptFixed(c.F1, 4), rptFixed(c.Precision, 4), rptFixed(c.Recall, 4), rptThousands(c.Support))
			if bar >= 26 {
				fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\" style=\"font-size:9.5px\">%s</text>", rptNum(x+bar/2), rptNum(sy(f1)-3), rptFixed(c.F1, 2))
			}
		}
		b.WriteString("\n")
	}
	for gi, l := range labels {
		cx := ml + float64(gi)*group + group/2
		ty := mt + ph + 15
		if rotate {
			fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"end\" transform=\"rotate(-40 %s %s)\">%s<title>%s</title></text>\n",
				rptNum(cx), rptNum(ty), rptNum(cx), rptNum(ty), rptEsc(rptShort(l, 18)), rptEsc(l))
		} else {
			fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s<title>%s</title></text>\n", rptNum(cx), rptNum(ty), rptEsc(rptShort(l, 18)), rptEsc(l))
		}
	}
	fmt.Fprintf(b, "<line class=\"axis\" x1=\"%s\" y1=\"%s\" x2=\"%s\" y2=\"%s\"/>", rptNum(ml), rptNum(sy(0)), rptNum(ml+pw), rptNum(sy(0)))
	fmt.Fprintf(b, "<text x=\"12\" y=\"%s\" text-anchor=\"middle\" transform=\"rotate(-90 12 %s)\">F1</text>\n", rptNum(mt+ph/2), rptNum(mt+ph/2))
	b.WriteString("<g class=\"legend\">")
	lx := ml
	for mi, m := range models {
		name := rptShort(m.Name, 24)
		fmt.Fprintf(b, "<rect x=\"%s\" y=\"7\" width=\"12\" height=\"10\" fill=\"%s\"/><text x=\"%s\" y=\"16\">%s</text>", rptNum(lx), rptColour(mi), rptNum(lx+16), rptEsc(name))
		lx += 16 + float64(len([]rune(name)))*6.5 + 18
	}
	b.WriteString("</g>\n</svg>\n")
	return W
}

// rptShort truncates long labels for axes; the full text is in <title>.
func rptShort(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// rptBlue maps a share in [0,1] to a white-to-navy scale (three stops,
// interpolated in RGB), the convention for "more is darker" heat maps.
func rptBlue(t float64) string {
	stops := [][3]float64{{247, 251, 255}, {107, 174, 214}, {8, 48, 107}}
	t = math.Max(0, math.Min(1, t))
	seg := 0
	u := t * 2
	if u > 1 {
		seg, u = 1, u-1
	}
	a, c := stops[seg], stops[seg+1]
	return fmt.Sprintf("#%02x%02x%02x", int(math.Round(a[0]+(c[0]-a[0])*u)), int(math.Round(a[1]+(c[1]-a[1])*u)), int(math.Round(a[2]+(c[2]-a[2])*u)))
}

// rptConfusionChart draws the confusion matrix as a heat map: rows are true
// classes, columns predictions, each cell shaded by its share of the row (so
// a rare class's errors are as visible as a common one's) and labelled with
// its count. It returns the chart's width (0 for the no-data note).
func rptConfusionChart(b *strings.Builder, id string, m ModelReport) float64 {
	cm := m.Metrics.Confusion
	K := len(cm)
	if K == 0 {
		rptEmpty(b, id, "no confusion matrix")
		return 0
	}
	cell := math.Floor(math.Min(76, math.Max(16, 360/float64(K))))
	longest := 0
	for i := 0; i < K; i++ {
		longest = max(longest, len([]rune(rptShort(rptLabel(m.Metrics, i), 16))))
	}
	labelW := float64(longest)*6.6 + 10
	rotate := float64(longest)*6.6 > cell-6
	colH := 20.0
	if rotate {
		colH = float64(longest)*4.8 + 12
	}
	ml := 26 + labelW
	mt := 22 + colH
	side := cell * float64(K)
	legendH := 40.0
	mr := 16.0
	if rotate { // the last column's slanted label reaches past the matrix
		mr = float64(longest)*4.7 + 8
	}
	W := math.Max(ml+side+mr, 300)
	H := mt + side + legendH
	rptSVGOpen(b, id, "confusion-chart", W, H, "Confusion matrix: "+m.Name,
		fmt.Sprintf("%d by %d confusion matrix; rows are true classes, columns predicted classes; shade is the share of the true class", K, K))
	fmt.Fprintf(b, "<text class=\"title\" x=\"%s\" y=\"13\" text-anchor=\"middle\">predicted</text>", rptNum(ml+side/2))
	fmt.Fprintf(b, "<text class=\"title\" x=\"12\" y=\"%s\" text-anchor=\"middle\" transform=\"rotate(-90 12 %s)\">true</text>\n", rptNum(mt+side/2), rptNum(mt+side/2))
	for j := 0; j < K; j++ {
		l := rptLabel(m.Metrics, j)
		cx := ml + (float64(j)+0.5)*cell
		if rotate {
			y := mt - 6
			fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"start\" transform=\"rotate(-45 %s %s)\">%s<title>%s</title></text>\n",
				rptNum(cx), rptNum(y), rptNum(cx), rptNum(y), rptEsc(rptShort(l, 16)), rptEsc(l))
		} else {
			fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"middle\">%s<title>%s</title></text>\n", rptNum(cx), rptNum(mt-7), rptEsc(rptShort(l, 16)), rptEsc(l))
		}
	}
	font := math.Min(13, cell*0.3)
	for i, row := range cm {
		l := rptLabel(m.Metrics, i)
		fmt.Fprintf(b, "<text x=\"%s\" y=\"%s\" text-anchor=\"end\">%s<title>%s</title></text>\n", rptNum(ml-6), rptNum(mt+(float64(i)+0.5)*cell+4), rptEsc(rptShort(l, 16)), rptEsc(l))
		var total int64
		for _, v := range row {
			total += v
		}
		for j := 0; j < K; j++ {
			var v int64
			if j < len(row) {
				v = row[j]
			}
			share := 0.0
			if total > 0 {
				share = float64(v) / float64(total)
			}
			x, y := ml+float64(j)*cell, mt+float64(i)*cell
			fmt.Fprintf(b, "<rect class=\"cell\" x=\"%s\" y=\"%s\" width=\"%s\" height=\"%s\" fill=\"%s\" stroke=\"#fff\" stroke-width=\"1\"><title>true %s, predicted %s: %s (%s of true %s)</title></rect>",
				rptNum(x), rptNum(y), rptNum(cell), rptNum(cell), rptBlue(share), rptEsc(l), rptEsc(rptLabel(m.Metrics, j)), rptThousands(v), rptPct(share), rptEsc(l))
			if cell >= 24 { // smaller cells cannot hold a readable number; the tooltip has it
				fill := "#1f2328"
				if share > 0.5 {
					fill = "#ffffff"
				}
				fmt.Fprintf(b, "<text class=\"cell-text\" x=\"%s\" y=\"%s\" text-anchor=\"middle\" style=\"fill:%s;font-size:%spx\">%s</text>",
					rptNum(x+cell/2), rptNum(y+cell/2+font*0.35), fill, rptNum(font), rptThousands(v))
			}
		}
		b.WriteString("\n")
	}
	// Colour key: five swatches from 0% to 100% of the true class.
	ky := mt + side + 14
	fmt.Fprintf(b, "<g class=\"legend\"><text x=\"%s\" y=\"%s\" text-anchor=\"end\">share of row</text>", rptNum(ml-6), rptNum(ky+10))
	for i := 0; i <= 4; i++ {
		t := float64(i) / 4
		x := ml + float64(i)*34
		fmt.Fprintf(b, "<rect x=\"%s\" y=\"%s\" width=\"34\" height=\"12\" fill=\"%s\"/><text x=\"%s\" y=\"%s\" text-anchor=\"middle\" style=\"font-size:9.5px\">%d%%</text>",
			rptNum(x), rptNum(ky), rptBlue(t), rptNum(x+17), rptNum(ky+23), i*25)
	}
	b.WriteString("</g>\n</svg>\n")
	return W
}
