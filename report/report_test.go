package report

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	xhtml "golang.org/x/net/html"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/storage/gcstest"
)

// go test ./report -run Report -update-report rewrites the golden files
// under testdata/report/ from the fixtures (review the diff before keeping).
var updateGolden = flag.Bool("update-report", false, "rewrite testdata/report golden files")

const goldenDir = "../testdata/report"

// ---------------------------------------------------------------------------
// Fixtures. Built by hand from confusion matrices (not through metrics.go,
// which is tested on its own), with numbers shaped like real runs: SST-2
// dev (872 examples, teacher and distilled student) and AG News test (7,600
// examples, 4 classes, champion and a rejected challenger).

// testMetrics derives precision, recall, F1, accuracy and the F1
// averages from a confusion matrix; the caller adds what a matrix does not
// determine (intervals, log loss, calibration, top-k).
func testMetrics(labels []string, cm [][]int64) Metrics {
	k := len(labels)
	m := Metrics{Labels: labels, Confusion: cm}
	var total, correct int64
	pred := make([]int64, k)
	for i := range cm {
		for j, v := range cm[i] {
			total += v
			pred[j] += v
			if i == j {
				correct += v
			}
		}
	}
	m.Examples = total
	m.Accuracy = float64(correct) / float64(total)
	m.MicroF1 = m.Accuracy // single-label: micro-F1 is accuracy
	present := 0
	for i, l := range labels {
		var support int64
		for _, v := range cm[i] {
			support += v
		}
		tp := cm[i][i]
		div := func(a, b float64) float64 { // 0 when undefined, as metrics.go does
			if b == 0 {
				return 0
			}
			return a / b
		}
		p := div(float64(tp), float64(pred[i]))
		r := div(float64(tp), float64(support))
		f1 := div(2*p*r, p+r)
		m.PerClass = append(m.PerClass, ClassMetrics{Label: l, Precision: p, Recall: r, F1: f1, Support: support})
		if support+pred[i] > 0 { // macro-F1 over the classes present
			m.MacroF1 += f1
			present++
		}
		m.WeightedF1 += f1 * float64(support) / float64(total)
	}
	m.MacroF1 /= float64(present)
	// Normal-approximation half widths stand in for the bootstrap.
	h := 1.96 * math.Sqrt(m.Accuracy*(1-m.Accuracy)/float64(total))
	m.AccuracyCI = Interval{Low: m.Accuracy - h, High: m.Accuracy + h}
	m.MacroF1CI = Interval{Low: m.MacroF1 - 1.1*h, High: m.MacroF1 + 1.05*h}
	return m
}

// testReliability spreads n predictions over 15 equal-width bins from
// minConf up, most of them confident, with accuracy a little below the
// confidence (the usual over-confidence of fine-tuned transformers).
func testReliability(n int64, minConf, overconf float64) []ReliabilityBin {
	const bins = 15
	var out []ReliabilityBin
	weights := make([]float64, bins)
	var sum float64
	for i := 0; i < bins; i++ {
		lo := float64(i) / bins
		if lo+1.0/bins <= minConf {
			continue
		}
		weights[i] = math.Pow(1.55, float64(i))
		sum += weights[i]
	}
	var used int64
	for i := 0; i < bins; i++ {
		lo, hi := float64(i)/bins, float64(i+1)/bins
		b := ReliabilityBin{Lower: lo, Upper: hi}
		if weights[i] > 0 {
			b.Count = int64(math.Round(float64(n) * weights[i] / sum))
			if i == bins-1 {
				b.Count = n - used
			}
			used += b.Count
			b.Confidence = math.Max(lo, minConf) + (hi-math.Max(lo, minConf))*0.55
			b.Accuracy = math.Max(0, b.Confidence-overconf*(1-b.Confidence)*4)
		}
		out = append(out, b)
	}
	return out
}

// testLog is a training log: a train loss every `every` steps decaying
// towards floor with deterministic noise, an eval every evalEvery steps
// that bottoms out and creeps up (mild over-fitting), as real runs do.
func testLog(steps, every, evalEvery int, start, floor, tau float64, phase float64) []LogEntry {
	var log []LogEntry
	perEpoch := float64(steps) / 3
	for s := every; s <= steps; s += every {
		x := float64(s)
		noise := 0.035*math.Sin(x*0.37+phase) + 0.02*math.Sin(x*1.91+2*phase)
		loss := floor + (start-floor)*math.Exp(-x/tau) + noise*math.Exp(-x/(3*tau))*2
		lr := 5e-5 * math.Min(1, x/(0.1*float64(steps))) * (1 - x/float64(steps+1))
		log = append(log, LogEntry{Kind: "train", Step: int64(s), Epoch: math.Round(x/perEpoch*1000) / 1000, Loss: math.Round(loss*1e4) / 1e4,
			LR: math.Round(lr*1e9) / 1e9, GradNorm: math.Round((1.5+math.Sin(x))*1000) / 1000, ExamplesSec: math.Round(2100+50*math.Cos(x)) / 10, Time: fmt.Sprintf("2025-06-01T10:%02d:%02dZ", (s/60)%60, s%60)})
		if s%evalEvery == 0 {
			ev := floor + 0.06 + (start-floor)*0.7*math.Exp(-x/tau) + 0.00004*math.Max(0, x-float64(steps)/2)
			acc := 0.93 - 0.4*math.Exp(-x/tau) - 0.00001*math.Max(0, x-float64(steps)/2)
			log = append(log, LogEntry{Kind: "eval", Step: int64(s), Epoch: math.Round(x/perEpoch*1000) / 1000, Loss: math.Round(ev*1e4) / 1e4,
				Accuracy: math.Round(acc*1e4) / 1e4, Time: fmt.Sprintf("2025-06-01T10:%02d:%02dZ", (s/60)%60, s%60)})
		}
	}
	return log
}

// testSlices are token-length slices whose counts add up to the model's.
func testSlices(labels []string, parts [][][]int64) []SliceMetrics {
	names := []string{"1-16", "17-32", "33+"}
	var out []SliceMetrics
	for i, cm := range parts {
		m := testMetrics(labels, cm)
		m.ECE = 0.02 + 0.01*float64(i)
		m.LogLoss = 0.25 + 0.05*float64(i)
		out = append(out, SliceMetrics{Column: "length", Value: names[i], Metrics: m})
	}
	// Per-label slices hold the examples of one true class.
	for i, l := range labels {
		var cm [][]int64
		for r := range labels {
			row := make([]int64, len(labels))
			for _, part := range parts {
				if r == i {
					for j := range row {
						row[j] += part[r][j]
					}
				}
			}
			cm = append(cm, row)
		}
		m := testMetrics(labels, cm)
		m.AccuracyCI, m.MacroF1CI = Interval{}, Interval{}
		out = append(out, SliceMetrics{Column: "label", Value: l, Metrics: m})
	}
	return out
}

// fixtureBinary: SST-2 dev, a MiniLM teacher and a 3-layer student with
// training logs, one comparison and a blessed gate with no champion yet.
func fixtureBinary() *Report {
	labels := []string{"negative", "positive"}
	teacher := testMetrics(labels, [][]int64{{389, 39}, {37, 407}})
	teacher.LogLoss, teacher.ECE = 0.2412, 0.0187
	teacher.Reliability = testReliability(872, 0.5, 0.01)
	student := testMetrics(labels, [][]int64{{378, 50}, {44, 400}})
	student.LogLoss, student.ECE = 0.2871, 0.0312
	student.Reliability = testReliability(872, 0.5, 0.02)
	return &Report{
		CreatedAt: "2025-06-01T11:02:03Z",
		Dataset:   "gs://bt-data/prepared/sst2",
		Split:     "validation",
		Examples:  872,
		Models: []ModelReport{
			{
				Name: "teacher", Dir: "gs://bt-models/sst2/teacher", Params: 22713216, Layers: 6, SizeBytes: 90864192,
				Speed:       Speed{Threads: 2, LatencyP50Ms: 11.84, LatencyP95Ms: 14.02, ExamplesPerSec: 152.3, SeqLen: 128},
				Metrics:     teacher,
				Slices:      testSlices(labels, [][][]int64{{{120, 8}, {9, 131}}, {{180, 19}, {17, 190}}, {{89, 12}, {11, 86}}}),
				TrainingLog: testLog(600, 10, 60, 0.70, 0.18, 110, 0),
			},
			{
				Name: "student", Dir: "gs://bt-models/sst2/student", Params: 11357952, Layers: 3, SizeBytes: 22990848,
				Speed:       Speed{Threads: 2, LatencyP50Ms: 3.91, LatencyP95Ms: 4.77, ExamplesPerSec: 488.6, SeqLen: 128},
				Metrics:     student,
				Slices:      testSlices(labels, [][][]int64{{{118, 10}, {11, 129}}, {{175, 24}, {21, 186}}, {{85, 16}, {12, 85}}}),
				TrainingLog: testLog(900, 10, 90, 0.72, 0.22, 160, 1.3),
			},
		},
		Comparisons: []Comparison{{
			Base: "teacher", Other: "student",
			AccuracyKept:  (778.0 / 872) / (796.0 / 872),
			AccuracyDelta: 778.0/872 - 796.0/872,
			MacroF1Delta:  student.MacroF1 - teacher.MacroF1,
			Speedup:       488.6 / 152.3,
			SizeRatio:     22990848.0 / 90864192,
		}},
		Gate: &GateResult{
			Challenger: "student", Verdict: "blessed",
			Reasons: []string{"no champion yet: the first model that passes the floor is promoted"},
			Checks: []GateCheck{{Name: "min_accuracy", Value: 100 * 778.0 / 872, Threshold: 85, Passed: true,
				Detail: "accuracy 89.22% against a floor of 85.00%"}},
		},
	}
}

// fixtureAGNews: 4 classes, top-k, a champion without a training log and
// a challenger the gate rejects on accuracy and one class's recall.
func fixtureAGNews() *Report {
	labels := []string{"World", "Sports", "Business", "Sci/Tech"}
	champ := testMetrics(labels, [][]int64{
		{1735, 40, 75, 50},
		{12, 1868, 10, 10},
		{45, 12, 1640, 203},
		{40, 15, 160, 1685},
	})
	champ.LogLoss, champ.ECE = 0.2795, 0.0243
	champ.TopK = []TopK{{K: 2, Accuracy: 0.9712}, {K: 3, Accuracy: 0.9905}}
	champ.Reliability = testReliability(7600, 0.25, 0.012)
	chall := testMetrics(labels, [][]int64{
		{1720, 45, 80, 55},
		{15, 1862, 12, 11},
		{50, 14, 1590, 246},
		{45, 18, 150, 1687},
	})
	chall.LogLoss, chall.ECE = 0.3104, 0.0391
	chall.TopK = []TopK{{K: 2, Accuracy: 0.9655}, {K: 3, Accuracy: 0.9887}}
	chall.Reliability = testReliability(7600, 0.25, 0.025)
	dAcc := 100 * (chall.Accuracy - champ.Accuracy)
	dF1 := 100 * (chall.MacroF1 - champ.MacroF1)
	var checks []GateCheck
	checks = append(checks,
		GateCheck{Name: "accuracy_drop", Value: dAcc, Threshold: -0.2, Passed: false,
			Detail: fmt.Sprintf("accuracy %.2f%% vs champion %.2f%% (%+.2f points; allowed -0.20)", 100*chall.Accuracy, 100*champ.Accuracy, dAcc)},
		GateCheck{Name: "macro_f1_drop", Value: dF1, Threshold: -0.5, Passed: false,
			Detail: fmt.Sprintf("macro-F1 %.2f vs champion %.2f (%+.2f points; allowed -0.50)", 100*chall.MacroF1, 100*champ.MacroF1, dF1)})
	var reasons []string
	for i, l := range labels {
		d := 100 * (chall.PerClass[i].Recall - champ.PerClass[i].Recall)
		c := GateCheck{Name: "recall_drop:" + l, Value: d, Threshold: -2, Passed: d >= -2,
			Detail: fmt.Sprintf("recall of class %q %.2f%% vs champion %.2f%% (%+.2f points; allowed -2.00)", l, 100*chall.PerClass[i].Recall, 100*champ.PerClass[i].Recall, d)}
		checks = append(checks, c)
	}
	for _, c := range checks {
		if !c.Passed {
			reasons = append(reasons, c.Detail)
		}
	}
	return &Report{
		Schema:    Schema,
		CreatedAt: "2025-06-02T08:30:00Z",
		Dataset:   "/data/prepared/ag_news",
		Split:     "test",
		Examples:  7600,
		Models: []ModelReport{
			{
				Name: "champion", Dir: "gs://bt-registry/ag_news/v3", Params: 22714756, Layers: 6, SizeBytes: 90870356,
				Speed:   Speed{Threads: 2, LatencyP50Ms: 12.1, LatencyP95Ms: 15.3, ExamplesPerSec: 149.8, SeqLen: 128},
				Metrics: champ,
			},
			{
				Name: "challenger", Dir: "/runs/ag_news/distill-7/best", Params: 11359492, Layers: 3, SizeBytes: 45437972,
				Speed:       Speed{Threads: 2, LatencyP50Ms: 6.2, LatencyP95Ms: 7.9, ExamplesPerSec: 301.4, SeqLen: 128},
				Metrics:     chall,
				TrainingLog: testLog(1500, 15, 150, 1.39, 0.25, 260, 0.4),
			},
		},
		Comparisons: []Comparison{{
			Base: "champion", Other: "challenger",
			AccuracyKept: chall.Accuracy / champ.Accuracy, AccuracyDelta: chall.Accuracy - champ.Accuracy,
			MacroF1Delta: chall.MacroF1 - champ.MacroF1, Speedup: 301.4 / 149.8, SizeRatio: 45437972.0 / 90870356,
		}},
		Gate: &GateResult{Challenger: "challenger", Champion: "champion", Verdict: "rejected", Reasons: reasons, Checks: checks},
	}
}

// fixtureMany stresses the layout: 20 classes (one with a long label),
// three models, a long training log that the chart thins, and no gate.
func fixtureMany() *Report {
	const k = 20
	labels := make([]string, k)
	for i := range labels {
		labels[i] = fmt.Sprintf("topic_%02d", i)
	}
	labels[7] = "a very long class name that must be truncated"
	r := &Report{CreatedAt: "2025-06-03T09:00:00Z", Dataset: "/data/prepared/topics20", Split: "test", Examples: 4000}
	for mi, name := range []string{"base", "distilled-6L", "distilled-3L"} {
		cm := make([][]int64, k)
		for i := range cm {
			cm[i] = make([]int64, k)
			wrong := int64(10 + 4*mi + (i*7)%13)
			cm[i][i] = 200 - wrong
			for w := int64(0); w < wrong; w++ {
				cm[i][(i+1+int(w)%3)%k]++
			}
		}
		m := testMetrics(labels, cm)
		m.LogLoss, m.ECE = 0.41+0.05*float64(mi), 0.03+0.01*float64(mi)
		m.TopK = []TopK{{2, 0.97}, {3, 0.985}, {4, 0.99}, {5, 0.995}}
		if mi < 2 {
			m.Reliability = testReliability(4000, 0.05, 0.01*float64(mi+1))
		}
		mr := ModelReport{Name: name, Dir: "/models/" + name, Params: int64(22e6 / (mi + 1)), Layers: 6 / (mi + 1) * 2 / 2, SizeBytes: int64(88e6 / (mi + 1)), Metrics: m}
		if mi == 1 {
			mr.TrainingLog = testLog(6000, 2, 20, 3.0, 0.4, 900, 0.7) // 3,000 train and 300 eval points
		}
		r.Models = append(r.Models, mr)
	}
	return r
}

var fixtures = []struct {
	name   string
	build  func() *Report
	golden bool // pinned under testdata/report/<name> (the stress fixture is too big to commit)
}{
	{"binary", fixtureBinary, true},
	{"agnews", fixtureAGNews, true},
	{"many", fixtureMany, false},
	// Real evaluate output per task kind, committed as docs/examples
	// (bench/examples.sh): pinned there, so not again as goldens.
	{"mrpc", exampleReport("mrpc"), false},
	{"stsb", exampleReport("stsb"), false},
	{"goemotions", exampleReport("goemotions"), false},
}

// exampleReport builds a fixture from docs/examples/<name>/report.json.
func exampleReport(name string) func() *Report {
	return func() *Report {
		data, err := os.ReadFile(filepath.Join("..", "docs", "examples", name, JSONFile))
		if err != nil {
			panic(fmt.Sprintf("example report %s: %v (bench/examples.sh writes it)", name, err))
		}
		r, err := Parse(data, name)
		if err != nil {
			panic(fmt.Sprintf("example report %s: %v", name, err))
		}
		return r
	}
}

// ---------------------------------------------------------------------------
// HTML parsing helpers (shared with report_browser_test.go).

func parseHTML(t *testing.T, page []byte) *xhtml.Node {
	t.Helper()
	doc, err := xhtml.Parse(bytes.NewReader(page))
	if err != nil {
		t.Fatalf("parsing HTML: %v", err)
	}
	return doc
}

func attrOf(n *xhtml.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *xhtml.Node, class string) bool {
	for _, c := range strings.Fields(attrOf(n, "class")) {
		if c == class {
			return true
		}
	}
	return false
}

func findAll(n *xhtml.Node, match func(*xhtml.Node) bool) []*xhtml.Node {
	var out []*xhtml.Node
	var walk func(*xhtml.Node)
	walk = func(n *xhtml.Node) {
		if n.Type == xhtml.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func byID(t *testing.T, doc *xhtml.Node, id string) *xhtml.Node {
	t.Helper()
	found := findAll(doc, func(n *xhtml.Node) bool { return attrOf(n, "id") == id })
	if len(found) != 1 {
		t.Fatalf("want exactly one element with id %q, found %d", id, len(found))
	}
	return found[0]
}

// elems returns n's descendants with tag (and class, when not "").
func elems(n *xhtml.Node, tag, class string) []*xhtml.Node {
	return findAll(n, func(e *xhtml.Node) bool { return e.Data == tag && (class == "" || hasClass(e, class)) })
}

func textOf(n *xhtml.Node) string {
	var b strings.Builder
	var walk func(*xhtml.Node)
	walk = func(n *xhtml.Node) {
		if n.Type == xhtml.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// svgTitle is the text of the chart's own <title> (its first child).
func svgTitle(svg *xhtml.Node) string {
	for c := svg.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == xhtml.ElementNode && c.Data == "title" {
			return textOf(c)
		}
	}
	return ""
}

// checkCharts asserts the charts of a rendered report (from RenderHTML
// or from a browser's DOM) are present with real content. It returns the
// number of SVG charts.
func checkCharts(t *testing.T, doc *xhtml.Node, r *Report) int {
	t.Helper()
	ids := chartIDs(r.Models)
	for i, m := range r.Models {
		// (a) loss curves, or the note for a model without a log.
		lossEl := byID(t, doc, "loss-"+ids[i])
		if len(m.TrainingLog) == 0 {
			if lossEl.Data != "p" || textOf(lossEl) != "no training log" {
				t.Errorf("%s: want <p>no training log</p>, got <%s>%q", m.Name, lossEl.Data, textOf(lossEl))
			}
		} else {
			var nTrain, nEval int
			for _, e := range m.TrainingLog {
				switch e.Kind {
				case "train":
					nTrain++
				case "eval":
					nEval++
				}
			}
			if lossEl.Data != "svg" || !hasClass(lossEl, "loss-chart") || !strings.Contains(svgTitle(lossEl), m.Name) {
				t.Fatalf("%s: loss chart is <%s class=%q> titled %q", m.Name, lossEl.Data, attrOf(lossEl, "class"), svgTitle(lossEl))
			}
			train := elems(lossEl, "polyline", "train")
			eval := elems(lossEl, "polyline", "eval")
			if len(train) != 1 || len(eval) != 1 {
				t.Fatalf("%s: want one train and one eval polyline, got %d and %d", m.Name, len(train), len(eval))
			}
			// Long logs are thinned to 1,200 train points; markers only
			// up to 200 evals.
			if got := len(strings.Fields(attrOf(train[0], "points"))); got != min(nTrain, 1200) || got < 2 {
				t.Errorf("%s: train polyline has %d points, log has %d train entries", m.Name, got, nTrain)
			}
			if got := len(strings.Fields(attrOf(eval[0], "points"))); got != nEval || got < 5 {
				t.Errorf("%s: eval polyline has %d points, log has %d eval entries", m.Name, got, nEval)
			}
			if got, want := len(elems(lossEl, "circle", "eval")), nEval; nEval <= 200 && got != want || nEval > 200 && got != 0 {
				t.Errorf("%s: %d eval markers for %d evals", m.Name, got, nEval)
			}
			// Axes: at least 3 labelled ticks each way plus axis titles and a legend.
			texts := elems(lossEl, "text", "")
			var all []string
			for _, x := range texts {
				all = append(all, textOf(x))
			}
			joined := strings.Join(all, "|")
			for _, want := range []string{"step", "loss", "train loss", "validation loss"} {
				if !strings.Contains("|"+joined+"|", "|"+want+"|") {
					t.Errorf("%s: loss chart lacks text %q (has %s)", m.Name, want, joined)
				}
			}
			if len(texts) < 10 {
				t.Errorf("%s: loss chart has only %d text elements, want tick labels", m.Name, len(texts))
			}
		}

		switch taskOf(r) {
		case dataset.Regression:
			// (b') the scatter plot: one point per sampled pair, the y = x line.
			sc := byID(t, doc, "scatter-"+ids[i])
			if got, want := len(elems(sc, "circle", "")), len(m.Metrics.Regression.Points); got != want || want == 0 {
				t.Errorf("%s: scatter has %d points, the report %d", m.Name, got, want)
			}
			if len(elems(sc, "line", "diagonal")) != 1 {
				t.Errorf("%s: scatter plot has no y = x line", m.Name)
			}
			continue
		case dataset.MultiLabel:
			continue // no confusion matrix or calibration for label sets
		}
		// (b) confusion heat map: K×K cells, each labelled with its count.
		k := len(m.Metrics.Confusion)
		cm := byID(t, doc, "confusion-"+ids[i])
		cells := elems(cm, "rect", "cell")
		if len(cells) != k*k {
			t.Errorf("%s: %d confusion cells, want %d", m.Name, len(cells), k*k)
		}
		var counts []string
		for _, x := range elems(cm, "text", "cell-text") {
			counts = append(counts, textOf(x))
		}
		var want []string
		for _, row := range m.Metrics.Confusion {
			for _, v := range row {
				want = append(want, thousands(v))
			}
		}
		// Cells too small for a readable number (many classes) carry it in
		// their tooltip only.
		if k > 15 {
			want = nil
		}
		if !reflect.DeepEqual(counts, want) {
			t.Errorf("%s: confusion cell texts %v, want %v", m.Name, counts, want)
		}
		// The diagonal of a good model is the darkest part of each row.
		for r := 0; r < k; r++ {
			if fill := attrOf(cells[r*k+r], "fill"); fill == blueShade(0) {
				t.Errorf("%s: diagonal cell %d is unshaded", m.Name, r)
			}
		}

		// (c) reliability: one bar per non-empty bin, a diagonal.
		rel := byID(t, doc, "reliability-"+ids[i])
		nonEmpty := 0
		for _, b := range m.Metrics.Reliability {
			if b.Count > 0 {
				nonEmpty++
			}
		}
		if nonEmpty == 0 {
			if rel.Data != "p" || textOf(rel) != "no reliability bins" {
				t.Errorf("%s: no bins but <%s>%q", m.Name, rel.Data, textOf(rel))
			}
			continue
		}
		if got := len(elems(rel, "rect", "bin")); got != nonEmpty {
			t.Errorf("%s: %d reliability bars, want %d (one per non-empty bin)", m.Name, got, nonEmpty)
		}
		if got := len(elems(rel, "rect", "count")); got != nonEmpty {
			t.Errorf("%s: %d count bars, want %d", m.Name, got, nonEmpty)
		}
		if len(elems(rel, "line", "diagonal")) != 1 {
			t.Errorf("%s: reliability diagram has no diagonal", m.Name)
		}
	}

	// (d) per-class F1: one bar per model and class.
	if taskOf(r) != dataset.Regression {
		f1 := byID(t, doc, "f1-per-class")
		want := 0
		for _, m := range r.Models {
			want += len(m.Metrics.PerClass)
		}
		if got := len(elems(f1, "rect", "bar")); got != want {
			t.Errorf("per-class F1 chart has %d bars, want %d", got, want)
		}
	}

	// Every chart is addressable and titled.
	svgs := elems(doc, "svg", "chart")
	for _, s := range svgs {
		if attrOf(s, "id") == "" || svgTitle(s) == "" {
			t.Errorf("chart without id or <title>: class=%q", attrOf(s, "class"))
		}
	}

	// (e) gate verdict and comparison tables.
	if r.Gate != nil {
		v := byID(t, doc, "verdict")
		if !hasClass(v, r.Gate.Verdict) {
			t.Errorf("verdict banner class %q, want %q", attrOf(v, "class"), r.Gate.Verdict)
		}
		if got := len(elems(doc, "span", "pill")); got != len(r.Gate.Checks) {
			t.Errorf("%d check pills, want %d", got, len(r.Gate.Checks))
		}
	}
	if got, want := len(findAll(doc, func(n *xhtml.Node) bool { return n.Data == "table" && hasClass(n, "comparisons") })), min(len(r.Comparisons), 1); got != want {
		t.Errorf("%d comparison tables, want %d", got, want)
	}
	return len(svgs)
}

// ---------------------------------------------------------------------------

func TestReportHTMLCharts(t *testing.T) {
	for _, f := range fixtures {
		t.Run(f.name, func(t *testing.T) {
			r := f.build()
			page := RenderHTML(r)
			doc := parseHTML(t, page)
			n := checkCharts(t, doc, r)
			// Loss charts only for models with a log; single-label:
			// reliability only with bins, confusion per model, one F1
			// chart; multi-label: the F1 chart; regression: a scatter
			// plot per model.
			want := 0
			switch taskOf(r) {
			case dataset.Regression:
				want = len(r.Models)
			case dataset.MultiLabel:
				want = 1
			default:
				want = len(r.Models) + 1
				for _, m := range r.Models {
					if len(m.Metrics.Reliability) > 0 {
						want++
					}
				}
			}
			for _, m := range r.Models {
				if len(m.TrainingLog) > 0 {
					want++
				}
			}
			if n != want {
				t.Errorf("%d SVG charts, want %d", n, want)
			}
			if !bytes.Equal(page, RenderHTML(r)) {
				t.Error("RenderHTML is not deterministic")
			}
		})
	}
}

// TestReportHTMLSelfContained: nothing on the page may fetch anything or run
// code, so it renders offline, from a bucket or an attachment.
func TestReportHTMLSelfContained(t *testing.T) {
	page := string(RenderHTML(fixtureAGNews()))
	for _, bad := range []string{"<script", "<link", "<img", "<iframe", "src=", "href=", "url(", "@import", "http://", "https://", "javascript:"} {
		if strings.Contains(strings.ToLower(page), bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	if !strings.Contains(page, `http-equiv="Content-Security-Policy" content="default-src 'none'`) {
		t.Error("page lacks its Content-Security-Policy")
	}
	if !strings.HasPrefix(page, "<!DOCTYPE html>") {
		t.Error("page does not start with a doctype (quirks mode)")
	}
}

// TestReportHTMLEscapes feeds hostile names and labels through every text
// path: they must come out as text, never as markup.
func TestReportHTMLEscapes(t *testing.T) {
	evil := `<script>alert("x")</script>&amp;'`
	r := fixtureBinary()
	r.Dataset = evil
	r.Models[0].Name = evil
	r.Models[0].Metrics.Labels[0] = evil
	r.Models[0].Metrics.PerClass[0].Label = evil
	r.Models[1].Slices[0].Value = evil
	r.Gate.Reasons = append(r.Gate.Reasons, evil)
	r.Gate.Checks[0].Detail = evil
	r.Comparisons[0].Base = evil
	page := RenderHTML(r)
	if bytes.Contains(page, []byte("<script")) {
		t.Fatal("unescaped <script> in the page")
	}
	doc := parseHTML(t, page)
	if n := len(elems(doc, "script", "")); n != 0 {
		t.Fatalf("%d script elements", n)
	}
	// The text survives intact: the parser decodes it back.
	text := textOf(doc)
	if c := strings.Count(text, evil); c < 8 {
		t.Errorf("hostile text appears %d times as text, want it everywhere it was used", c)
	}
	// The id derived from the name is safe too.
	if id := chartIDs(r.Models)[0]; strings.ContainsAny(id, `<>"'& `) {
		t.Errorf("unsafe id %q", id)
	}
	md := string(RenderMarkdown(r))
	if strings.Contains(md, "<script") {
		t.Error("Markdown contains a raw <script> tag")
	}
}

// TestReportHTMLDegrades: missing data gives notes, NaN never reaches an
// SVG attribute, zero-count bins are skipped.
func TestReportHTMLDegrades(t *testing.T) {
	r := fixtureAGNews()
	ch := &r.Models[1]
	ch.TrainingLog = []LogEntry{{Kind: "train", Step: 10, Loss: math.NaN()}, {Kind: "eval", Step: 10, Loss: math.Inf(1)}}
	ch.Metrics.Reliability = []ReliabilityBin{{Lower: 0, Upper: 0.5}, {Lower: 0.5, Upper: 1}}
	ch.Metrics.PerClass = nil
	ch.Metrics.Confusion = nil
	ch.Metrics.ECE = math.NaN()
	r.Models[0].Metrics.Reliability[14].Count = 0 // one empty bin among full ones
	page := RenderHTML(r)
	doc := parseHTML(t, page)
	ids := chartIDs(r.Models)
	for id, want := range map[string]string{
		"loss-" + ids[0]:        "no training log",
		"loss-" + ids[1]:        "the training log has no loss values",
		"reliability-" + ids[1]: "no reliability bins",
		"confusion-" + ids[1]:   "no confusion matrix",
	} {
		if got := textOf(byID(t, doc, id)); got != want {
			t.Errorf("%s: %q, want %q", id, got, want)
		}
	}
	nonEmpty := 0
	for _, b := range r.Models[0].Metrics.Reliability {
		if b.Count > 0 {
			nonEmpty++
		}
	}
	if got := len(elems(byID(t, doc, "reliability-"+ids[0]), "rect", "bin")); got != nonEmpty {
		t.Errorf("%d bars for %d non-empty bins", got, nonEmpty)
	}
	if got := len(elems(byID(t, doc, "f1-per-class"), "rect", "bar")); got != 4 {
		t.Errorf("F1 chart: %d bars, want the champion's 4", got)
	}
	if bytes.Contains(page, []byte("NaN")) || bytes.Contains(page, []byte("Inf")) {
		t.Error("page contains NaN or Inf")
	}
	// A single-point log still draws (as a dot), an empty report still renders.
	r.Models[1].TrainingLog = []LogEntry{{Kind: "train", Step: 5, Loss: 0.5}}
	doc = parseHTML(t, RenderHTML(r))
	if len(elems(byID(t, doc, "loss-"+ids[1]), "circle", "train")) != 1 {
		t.Error("one-point training log does not show its point")
	}
	for _, empty := range []*Report{{}, nil} {
		if p := RenderHTML(empty); !bytes.Contains(p, []byte("no models")) {
			t.Errorf("empty report: %s", p)
		}
		_ = RenderMarkdown(empty)
	}
}

func TestReportMarkdown(t *testing.T) {
	md := string(RenderMarkdown(fixtureBinary()))
	for _, want := range []string{
		"# Evaluation report\n",
		"- Dataset: gs://bt-data/prepared/sst2\n",
		"- Examples: 872\n",
		"| Model | Params | Layers | Size (MB) | Accuracy (95% CI) | Macro-F1 (95% CI) | F1 (class 1) (95% CI) | MCC | Log loss | ECE | p50 ms (batch 1) | p95 ms (batch 1) | Examples/s (batch 32) | Threads |\n|---|---:|",
		// 796/872 correct; normal-approximation interval of the fixture.
		// A report without a task kind predates MCC and the class-1 F1: "—".
		"| **teacher** | 22.71M | 6 | 90.9 | 91.28% (89.41–93.16) | 0.9128 (0.8922–0.9325) | — | — | 0.2412 | 0.0187 | 11.84 | 14.02 | 152.3 | 2 |\n",
		"| **student** | 11.36M | 3 | 23.0 | 89.22% (87.16–91.28) |",
		"Speed measured at 128 tokens per example.",
		"| teacher | student | accuracy | 97.74% | -0.0206 | -2.06 | -0.0207 | 3.21× | 0.253× |\n",
		"## Promotion gate: ✅ **BLESSED**\n",
		"Challenger **student**; no champion yet.",
		"- no champion yet: the first model that passes the floor is promoted\n",
		"| min\\_accuracy | 89.22 | 85 | ✅ pass | accuracy 89.22% against a floor of 85.00% |\n",
		"| negative | 0.9131 | 0.9089 | 0.9110 | 428 |\n",
		"| true \\ predicted | negative | positive |\n",
		"| **negative** | 389 | 39 |\n| **positive** | 37 | 407 |\n",
		"| teacher | length | 1-16 | 268 | 93.66% (90.74–96.57) | 0.9365 | 0.0200 |\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
	ag := string(RenderMarkdown(fixtureAGNews()))
	for _, want := range []string{
		"## Promotion gate: ❌ **REJECTED**\n",
		"Challenger **challenger** against champion **champion**.",
		"- accuracy 90.25% vs champion 91.16% (-0.91 points; allowed -0.20)\n",
		"| recall\\_drop:Business | -2.632 | -2 | ❌ fail |",
		"- Top-k accuracy: top-2 97.12%, top-3 99.05%\n",
		"| true \\ predicted | World | Sports | Business | Sci/Tech |\n",
		"| **Business** | 45 | 12 | 1,640 | 203 |\n",
		"- Examples: 7,600\n",
	} {
		if !strings.Contains(ag, want) {
			t.Errorf("AG News Markdown lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("binary Markdown:\n%s", md)
	}
}

// TestReportGolden pins the JSON encoding (the v1 schema on disk) and the
// Markdown; Read must also read the committed JSON back to the
// fixture, so a change that breaks old reports fails here.
func TestReportGolden(t *testing.T) {
	ctx := context.Background()
	for _, f := range fixtures {
		if !f.golden {
			continue
		}
		t.Run(f.name, func(t *testing.T) {
			dir := t.TempDir()
			r := f.build()
			if err := Write(ctx, dir, r); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join(goldenDir, f.name)
			for _, name := range []string{JSONFile, MarkdownFile} {
				got, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				if *updateGolden {
					if err := os.MkdirAll(golden, 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(golden, name), got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(filepath.Join(golden, name))
				if err != nil {
					t.Fatalf("%v (run with -update-report to create)", err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s differs from %s (run with -update-report and review the diff)", name, filepath.Join(golden, name))
				}
			}
			back, err := Read(ctx, golden)
			if err != nil {
				t.Fatal(err)
			}
			r.Schema = Schema
			if !reflect.DeepEqual(back, r) {
				t.Error("committed report.json does not read back to the fixture")
			}
		})
	}
}

func TestReportJSONRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "eval", "run-1") // created on demand
	r := fixtureBinary()
	if err := Write(ctx, dir, r); err != nil {
		t.Fatal(err)
	}
	if r.Schema != "" {
		t.Error("Write modified the caller's report")
	}
	back, err := Read(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	r.Schema = Schema
	if !reflect.DeepEqual(back, r) {
		t.Error("report does not round-trip")
	}
	data, _ := os.ReadFile(filepath.Join(dir, JSONFile))
	if !bytes.HasPrefix(data, []byte("{\n  \"schema\": \"beamtune.report/v1\",\n")) {
		t.Errorf("report.json is not indented with the schema first: %.60q", data)
	}
	// The Markdown and HTML on disk are the renderings of that report.
	for name, want := range map[string][]byte{MarkdownFile: RenderMarkdown(r), HTMLFile: RenderHTML(r)} {
		if got, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(got, want) {
			t.Errorf("%s on disk differs from the rendering", name)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("folder holds %d entries, want the 3 report files", len(entries))
	}

	// Schemas: other versions and schema-less files are refused.
	for _, c := range []struct{ body, want string }{
		{`{"schema":"beamtune.report/v2","models":"changed type"}`, `schema "beamtune.report/v2"`},
		{`{"models":[]}`, "no schema"},
		{`{"schema":"beamtune.report/v1"`, "unexpected end"},
	} {
		d := t.TempDir()
		os.WriteFile(filepath.Join(d, JSONFile), []byte(c.body), 0o644)
		if _, err := Read(ctx, d); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Read(%s): %v, want error containing %q", c.body, err, c.want)
		}
	}
	if _, err := Read(ctx, t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing report: %v, want fs.ErrNotExist", err)
	}
	if err := Write(ctx, t.TempDir(), &Report{Schema: "beamtune.report/v0"}); err == nil {
		t.Error("Write accepted a foreign schema")
	}
}

// noReportFiles fails if anything report-like (final or temporary)
// exists under dir.
func noReportFiles(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "report.") && !d.IsDir() {
			t.Errorf("found %s after a failed write", p)
		}
		return nil
	})
}

func TestReportWriteFailures(t *testing.T) {
	ctx := context.Background()

	t.Run("parent is a file", func(t *testing.T) {
		root := t.TempDir()
		os.WriteFile(filepath.Join(root, "file"), []byte("x"), 0o644)
		if err := Write(ctx, filepath.Join(root, "file", "eval"), fixtureBinary()); err == nil {
			t.Fatal("no error")
		}
		noReportFiles(t, root)
	})

	t.Run("read-only folder", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores permission bits; the other cases cover failed writes")
		}
		dir := t.TempDir()
		os.Chmod(dir, 0o555)
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
		if err := Write(ctx, dir, fixtureBinary()); err == nil {
			t.Fatal("no error")
		}
		noReportFiles(t, dir)
	})

	t.Run("NaN refused before any write", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "eval")
		r := fixtureBinary()
		r.Models[1].Speed.LatencyP95Ms = math.NaN()
		err := Write(ctx, dir, r)
		if err == nil || !strings.Contains(err.Error(), "report.models[1].speed.latency_p95_ms") {
			t.Fatalf("err = %v, want it to name the NaN field", err)
		}
		noReportFiles(t, filepath.Dir(dir))
	})

	t.Run("cancelled context", func(t *testing.T) {
		dir := t.TempDir()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := Write(cctx, dir, fixtureBinary()); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		noReportFiles(t, dir)
	})

	// report.json is written last: when the JSON itself cannot be written,
	// no file named report.json appears and no temporary file is left.
	t.Run("json write fails", func(t *testing.T) {
		dir := t.TempDir()
		os.Mkdir(filepath.Join(dir, JSONFile), 0o755) // a folder in the way: rename fails
		if err := Write(ctx, dir, fixtureBinary()); err == nil {
			t.Fatal("no error")
		}
		if st, err := os.Stat(filepath.Join(dir, JSONFile)); err != nil || !st.IsDir() {
			t.Errorf("report.json: %v %v", st, err)
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				t.Errorf("temporary file %s left behind", e.Name())
			}
		}
	})

	// An earlier complete report stays intact when rewriting it fails midway.
	t.Run("old report kept", func(t *testing.T) {
		dir := t.TempDir()
		old := fixtureAGNews()
		if err := Write(ctx, dir, old); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(filepath.Join(dir, JSONFile))
		os.Remove(filepath.Join(dir, HTMLFile))
		os.Mkdir(filepath.Join(dir, HTMLFile), 0o755) // the HTML write fails
		if err := Write(ctx, dir, fixtureBinary()); err == nil {
			t.Fatal("no error")
		}
		after, _ := os.ReadFile(filepath.Join(dir, JSONFile))
		if !bytes.Equal(before, after) {
			t.Error("report.json changed although the rewrite failed")
		}
		if _, err := Read(ctx, dir); err != nil {
			t.Error(err)
		}
	})
}

// fakeGCS starts an in-process fake GCS server with one bucket and points
// the storage package at it through a real client (gcstest, as storage's
// own tests do), restoring the environment-based client afterwards.
func fakeGCS(t *testing.T, bucket string) *gcstest.Server {
	t.Helper()
	return gcstest.Start(t, bucket)
}

func TestReportWriteGCS(t *testing.T) {
	ctx := context.Background()
	gcstest.Start(t, "bt-reports")
	r := fixtureAGNews()
	dir := "gs://bt-reports/ag_news/eval-7"
	if err := Write(ctx, dir, r); err != nil {
		t.Fatal(err)
	}
	local := t.TempDir()
	if err := Write(ctx, local, r); err != nil {
		t.Fatal(err)
	}
	objs, err := storage.Glob(ctx, dir+"/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 {
		t.Errorf("objects under %s: %v, want the 3 report files", dir, objs)
	}
	for _, name := range []string{JSONFile, MarkdownFile, HTMLFile} {
		got, err := storage.ReadFile(ctx, storage.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want, _ := os.ReadFile(filepath.Join(local, name))
		if len(got) == 0 || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes from GCS, %d locally, contents differ", name, len(got), len(want))
		}
	}
	back, err := Read(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Error("gs:// report does not round-trip")
	}

	// A missing bucket fails and publishes nothing.
	if err := Write(ctx, "gs://no-such-bucket/x", r); err == nil {
		t.Error("write to a missing bucket succeeded")
	}
	if ok, err := storage.Exists(ctx, "gs://no-such-bucket/x/"+JSONFile); ok {
		t.Errorf("report.json exists in a missing bucket (%v)", err)
	}
}

func TestReportFormatting(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{pct(0.912844), "91.28%"},
		{pct(math.NaN()), "n/a"},
		{fixed(-0.00001, 2), "0.00"},
		{signed(-0.0206, 2), "-0.02"},
		{signed(0.5, 1), "+0.5"},
		{signed(0, 2), "0.00"},
		{sig(-2.6315789), "-2.632"},
		{sig(97.7386), "97.74"},
		{sig(12345.6), "12346"},
		{sig(0.000123456), "0.0001235"},
		{sig(85), "85"},
		{thousands(7600), "7,600"},
		{thousands(-1234567), "-1,234,567"},
		{thousands(999), "999"},
		{human(22713216), "22.71M"},
		{human(4386), "4.4k"},
		{human(1_200_000_000), "1.20B"},
		{megabytes(90864192), "90.9"},
		{megabytes(4_386_000), "4.39"},
		{tickLabel(2000, 1000), "2k"},
		{tickLabel(0.4, 0.2), "0.4"},
		{tickLabel(0.25, 0.05), "0.25"},
		{mdEscaper.Replace("a|b_c\nd<e>"), `a\|b\_c d&lt;e&gt;`},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	ticks, step := niceTicks(0.18, 0.9, 6, false)
	if step != 0.1 || len(ticks) != 9 || math.Abs(ticks[0]-0.1) > 1e-9 || math.Abs(ticks[len(ticks)-1]-0.9) > 1e-9 {
		t.Errorf("ticks %v step %v", ticks, step)
	}
	ticks, step = niceTicks(5, 600, 7, true)
	if step != 100 || ticks[0] != 0 || ticks[len(ticks)-1] != 600 {
		t.Errorf("ticks %v step %v", ticks, step)
	}
	if ticks, _ = niceTicks(3, 3, 5, false); len(ticks) < 2 {
		t.Errorf("degenerate range gave %v", ticks)
	}
	ids := chartIDs([]ModelReport{{Name: "Student v2"}, {Name: "student-v2"}, {Name: "ü"}})
	if !reflect.DeepEqual(ids, []string{"student-v2", "student-v2-2", "model-3"}) {
		t.Errorf("ids %v", ids)
	}
}

// TestReportShowsAdapters: a LoRA adapter's row names it and its trained
// share of the parameters, in Markdown and in HTML; a plain model's row
// shows its count alone.
func TestReportShowsAdapters(t *testing.T) {
	r := fixtureBinary()
	r.Models[1].Adapter, r.Models[1].TrainableParams = "LoRA r=8", 74_498
	md := string(RenderMarkdown(r))
	text := textOf(parseHTML(t, RenderHTML(r)))
	for _, want := range []string{"LoRA r=8", human(r.Models[1].Params) + " (74.5k trained)"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q", want)
		}
		if !strings.Contains(text, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if strings.Count(md, "trained)") != 1 {
		t.Errorf("the plain model's row shows a trained share too:\n%s", md)
	}
}
