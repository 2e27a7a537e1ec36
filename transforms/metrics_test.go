package transforms

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/coder"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/report"
)

func init() {
	register.DoFn2x1[context.Context, ModelMetrics, error](&writeModelMetricsTestFn{})
	register.DoFn2x1[context.Context, ModelSliceMetrics, error](&writeSliceMetricsTestFn{})
}

// pred builds a labelled prediction whose probabilities are probs.
func pred(id string, label, p int32, probs ...float32) Prediction {
	return Prediction{ID: id, Label: label, Pred: p, Probs: probs}
}

// combine runs MetricsFn over preds in one accumulator.
func combine(t testing.TB, fn *MetricsFn, preds []Prediction) report.Metrics {
	t.Helper()
	a := fn.CreateAccumulator()
	var err error
	for _, p := range preds {
		if a, err = fn.AddInput(a, p); err != nil {
			t.Fatal(err)
		}
	}
	m, err := fn.ExtractOutput(a)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// both returns the combiner's and ComputeMetrics's metrics, failing when they
// differ: every hand-checked case checks both implementations.
func both(t *testing.T, preds []Prediction, labels []string) report.Metrics {
	t.Helper()
	m := combine(t, &MetricsFn{Labels: labels, Bootstrap: 100, Seed: 3}, preds)
	want := ComputeMetrics(preds, labels, 100, 3)
	if d := diffMetrics(m, want, 1e-12); d != "" {
		t.Fatalf("combiner and ComputeMetrics differ: %s", d)
	}
	return m
}

func near(a, b, tol float64) bool {
	return math.Abs(a-b) <= tol*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// diffMetrics describes the first difference between two Metrics: counts and
// intervals must match exactly, other floats within tol (relative).
func diffMetrics(got, want report.Metrics, tol float64) string {
	f := func(name string, g, w float64) string {
		if !near(g, w, tol) {
			return fmt.Sprintf("%s = %.17g, want %.17g", name, g, w)
		}
		return ""
	}
	checks := []string{
		f("accuracy", got.Accuracy, want.Accuracy),
		f("macro_f1", got.MacroF1, want.MacroF1),
		f("micro_f1", got.MicroF1, want.MicroF1),
		f("weighted_f1", got.WeightedF1, want.WeightedF1),
		f("log_loss", got.LogLoss, want.LogLoss),
		f("ece", got.ECE, want.ECE),
	}
	for _, c := range checks {
		if c != "" {
			return c
		}
	}
	if got.Examples != want.Examples {
		return fmt.Sprintf("examples = %d, want %d", got.Examples, want.Examples)
	}
	if got.AccuracyCI != want.AccuracyCI || got.MacroF1CI != want.MacroF1CI {
		return fmt.Sprintf("intervals = %+v %+v, want %+v %+v", got.AccuracyCI, got.MacroF1CI, want.AccuracyCI, want.MacroF1CI)
	}
	if !reflect.DeepEqual(got.Confusion, want.Confusion) {
		return fmt.Sprintf("confusion = %v, want %v", got.Confusion, want.Confusion)
	}
	if !reflect.DeepEqual(got.Labels, want.Labels) {
		return fmt.Sprintf("labels = %v, want %v", got.Labels, want.Labels)
	}
	if len(got.PerClass) != len(want.PerClass) {
		return fmt.Sprintf("per-class = %v, want %v", got.PerClass, want.PerClass)
	}
	for i, g := range got.PerClass {
		w := want.PerClass[i]
		if g.Label != w.Label || g.Support != w.Support || !near(g.Precision, w.Precision, tol) || !near(g.Recall, w.Recall, tol) || !near(g.F1, w.F1, tol) {
			return fmt.Sprintf("class %d = %+v, want %+v", i, g, w)
		}
	}
	if len(got.Reliability) != len(want.Reliability) {
		return fmt.Sprintf("reliability has %d bins, want %d", len(got.Reliability), len(want.Reliability))
	}
	for i, g := range got.Reliability {
		w := want.Reliability[i]
		if g.Count != w.Count || g.Lower != w.Lower || g.Upper != w.Upper || !near(g.Confidence, w.Confidence, tol) || !near(g.Accuracy, w.Accuracy, tol) {
			return fmt.Sprintf("bin %d = %+v, want %+v", i, g, w)
		}
	}
	if !reflect.DeepEqual(got.TopK, want.TopK) {
		return fmt.Sprintf("top-k = %v, want %v", got.TopK, want.TopK)
	}
	return ""
}

func checkFloat(t *testing.T, name string, got, want float64) {
	t.Helper()
	if !near(got, want, 1e-12) {
		t.Errorf("%s = %.17g, want %.17g", name, got, want)
	}
}

// threeClass is a hand-made 3-class set with confusion
//
//	      pred a  b  c   support
//	true a     3  1  0   4
//	     b     0  2  1   3
//	     c     2  0  1   3
//	predicted  5  3  2   (10 rows, 6 correct)
//
// with probability 0.8 on the prediction and 0.1 on the other two classes (0
// on any further class: k > 3 adds classes that never occur).
func threeClass() []Prediction { return threeClassOf(3) }

func threeClassOf(k int) []Prediction {
	var out []Prediction
	add := func(n int, label, p int32) {
		for range n {
			probs := make([]float32, k)
			copy(probs, []float32{0.1, 0.1, 0.1})
			probs[p] = 0.8
			out = append(out, pred(fmt.Sprint(len(out)), label, p, probs...))
		}
	}
	add(3, 0, 0)
	add(1, 0, 1)
	add(2, 1, 1)
	add(1, 1, 2)
	add(1, 2, 2)
	add(2, 2, 0)
	return out
}

func TestMetricsThreeClassByHand(t *testing.T) {
	m := both(t, threeClass(), []string{"a", "b", "c"})
	want := [][]int64{{3, 1, 0}, {0, 2, 1}, {2, 0, 1}}
	if !reflect.DeepEqual(m.Confusion, want) {
		t.Fatalf("confusion = %v, want %v", m.Confusion, want)
	}
	if m.Examples != 10 {
		t.Errorf("examples = %d", m.Examples)
	}
	checkFloat(t, "accuracy", m.Accuracy, 0.6) // 6/10
	// precision = tp/predicted, recall = tp/support, F1 = 2tp/(support+predicted):
	//   a: 3/5 = 0.6,  3/4 = 0.75, 6/9 = 2/3
	//   b: 2/3,        2/3,        4/6 = 2/3
	//   c: 1/2,        1/3,        2/5 = 0.4
	wantClass := []report.ClassMetrics{
		{Label: "a", Precision: 0.6, Recall: 0.75, F1: 2.0 / 3, Support: 4},
		{Label: "b", Precision: 2.0 / 3, Recall: 2.0 / 3, F1: 2.0 / 3, Support: 3},
		{Label: "c", Precision: 0.5, Recall: 1.0 / 3, F1: 0.4, Support: 3},
	}
	for i, w := range wantClass {
		g := m.PerClass[i]
		if g.Label != w.Label || g.Support != w.Support {
			t.Errorf("class %d = %+v, want %+v", i, g, w)
		}
		checkFloat(t, w.Label+" precision", g.Precision, w.Precision)
		checkFloat(t, w.Label+" recall", g.Recall, w.Recall)
		checkFloat(t, w.Label+" f1", g.F1, w.F1)
	}
	checkFloat(t, "macro F1", m.MacroF1, 26.0/45)       // (2/3 + 2/3 + 2/5) / 3 = (26/15) / 3
	checkFloat(t, "micro F1", m.MicroF1, 0.6)           // = accuracy for single-label
	checkFloat(t, "weighted F1", m.WeightedF1, 44.0/75) // (4·2/3 + 3·2/3 + 3·2/5) / 10 = (88/15) / 10
	// Top-2 with probs 0.8 on the prediction and ties at 0.1 broken towards
	// the lower index: the true class is in the top 2 when it is predicted
	// (6 rows) or when it is the lowest-indexed other class. Rows: a→b: top
	// 2 = {b, a} hit; b→c: {c, a} miss; c→a: {a, b} miss. So 7/10.
	if len(m.TopK) != 1 || m.TopK[0].K != 2 {
		t.Fatalf("top-k = %+v, want k = 2 only for 3 classes", m.TopK)
	}
	checkFloat(t, "top-2", m.TopK[0].Accuracy, 0.7)
}

func TestMetricsAbsentClassNotInMacro(t *testing.T) {
	// The same rows with a fourth class that never occurs: it gets zero
	// scores (zero_division = 0) but does not drag the macro average down.
	m := both(t, threeClassOf(4), []string{"a", "b", "c", "d"})
	checkFloat(t, "macro F1", m.MacroF1, 26.0/45)
	if d := m.PerClass[3]; d.Label != "d" || d.Precision != 0 || d.Recall != 0 || d.F1 != 0 || d.Support != 0 {
		t.Errorf("absent class = %+v", d)
	}
	// A class predicted but never true is present: F1 0, counted in macro.
	rows := threeClassOf(4)
	rows[0].Pred, rows[0].Probs = 3, []float32{0.1, 0.1, 0.1, 0.7} // an a→a row becomes a→d
	m = both(t, rows, []string{"a", "b", "c", "d"})
	// a: tp 2, support 4, predicted 4 → F1 4/8 = 0.5; b 2/3; c 0.4; d 0.
	checkFloat(t, "macro F1 with a false class", m.MacroF1, (0.5+2.0/3+0.4+0)/4)
	checkFloat(t, "d precision", m.PerClass[3].Precision, 0)
}

func TestMetricsBinaryByHand(t *testing.T) {
	// neg = 0, pos = 1. TP 3, FN 1, FP 2, TN 4.
	var rows []Prediction
	add := func(n int, label, p int32) {
		for range n {
			probs := []float32{0.3, 0.3}
			probs[p] = 0.7
			rows = append(rows, pred(fmt.Sprint(len(rows)), label, p, probs...))
		}
	}
	add(3, 1, 1)
	add(1, 1, 0)
	add(2, 0, 1)
	add(4, 0, 0)
	m := both(t, rows, []string{"neg", "pos"})
	checkFloat(t, "accuracy", m.Accuracy, 0.7) // 7/10
	// pos: precision 3/5, recall 3/4, F1 6/9 = 2/3.
	checkFloat(t, "pos precision", m.PerClass[1].Precision, 0.6)
	checkFloat(t, "pos recall", m.PerClass[1].Recall, 0.75)
	checkFloat(t, "pos f1", m.PerClass[1].F1, 2.0/3)
	// neg: tp 4, support 6, predicted 5: precision 4/5, recall 2/3, F1 8/11.
	checkFloat(t, "neg precision", m.PerClass[0].Precision, 0.8)
	checkFloat(t, "neg recall", m.PerClass[0].Recall, 2.0/3)
	checkFloat(t, "neg f1", m.PerClass[0].F1, 8.0/11)
	checkFloat(t, "macro F1", m.MacroF1, 23.0/33)         // (2/3 + 8/11)/2 = (46/33)/2
	checkFloat(t, "weighted F1", m.WeightedF1, 116.0/165) // (6·8/11 + 4·2/3)/10 = (232/33)/10
	checkFloat(t, "micro F1", m.MicroF1, 0.7)
	if m.TopK != nil {
		t.Errorf("top-k for 2 classes = %+v, want none", m.TopK)
	}
	if m.PerClass[1].Support != 4 || m.PerClass[0].Support != 6 {
		t.Errorf("supports = %d %d", m.PerClass[0].Support, m.PerClass[1].Support)
	}
}

func TestMetricsZeroDivision(t *testing.T) {
	// Nothing is ever predicted as class 1: its precision is 0, not NaN.
	rows := []Prediction{pred("x", 1, 0, 0.6, 0.4), pred("y", 0, 0, 0.9, 0.1)}
	m := both(t, rows, []string{"0", "1"})
	if c := m.PerClass[1]; c.Precision != 0 || c.Recall != 0 || c.F1 != 0 || c.Support != 1 {
		t.Errorf("class 1 = %+v", c)
	}
	// No scored rows at all: zeros, but the full shape.
	m = both(t, []Prediction{{ID: "u", Label: -1, Pred: 0, Probs: []float32{1, 0}}}, []string{"0", "1"})
	if m.Examples != 0 || m.Accuracy != 0 || len(m.Confusion) != 2 || len(m.Reliability) != CalibrationBins || len(m.PerClass) != 2 {
		t.Errorf("empty metrics = %+v", m)
	}
}

func TestMetricsIgnoresUnlabelledAndMalformed(t *testing.T) {
	good := threeClass()
	rows := append([]Prediction(nil), good...)
	rows = append(rows,
		Prediction{ID: "unlabelled", Label: -1, Pred: 0, Probs: []float32{1, 0, 0}},
		Prediction{ID: "label-out-of-range", Label: 3, Pred: 0, Probs: []float32{1, 0, 0}},
		Prediction{ID: "pred-out-of-range", Label: 0, Pred: 7, Probs: []float32{1, 0, 0}},
		Prediction{ID: "short-probs", Label: 0, Pred: 0, Probs: []float32{1, 0}},
	)
	labels := []string{"a", "b", "c"}
	if d := diffMetrics(both(t, rows, labels), both(t, good, labels), 0); d != "" {
		t.Error(d)
	}
}

func TestMetricsLogLoss(t *testing.T) {
	// p_true = 1, 0.5, 0.25 and 0 (clipped to 1e-15):
	// (0 + ln 2 + ln 4 + 15 ln 10) / 4 = (3 ln 2 + 15 ln 10) / 4 ≈ 9.15455.
	rows := []Prediction{
		pred("a", 0, 0, 1, 0),
		pred("b", 0, 0, 0.5, 0.5),
		pred("c", 1, 0, 0.75, 0.25),
		pred("d", 1, 0, 1, 0),
	}
	m := both(t, rows, []string{"x", "y"})
	checkFloat(t, "log loss", m.LogLoss, (3*math.Ln2+15*math.Ln10)/4)
}

func TestMetricsECE(t *testing.T) {
	// Top probability 0.75 (bin 11 of 15): 4 rows, 3 right: accuracy 0.75, gap 0.
	// Top probability 0.5 (bin 7): 2 rows, none right: gap 0.5.
	// Top probability 1 (the last bin, 14): 4 rows, 2 right: gap 0.5.
	// ECE = 0.4·0 + 0.2·0.5 + 0.4·0.5 = 0.3.
	var rows []Prediction
	add := func(n, right int, top float32) {
		for i := range n {
			label := int32(0)
			if i >= right {
				label = 1
			}
			rows = append(rows, pred(fmt.Sprint(len(rows)), label, 0, top, 1-top))
		}
	}
	add(4, 3, 0.75)
	add(2, 0, 0.5)
	add(4, 2, 1)
	m := both(t, rows, []string{"x", "y"})
	checkFloat(t, "ECE", m.ECE, 0.3)
	if len(m.Reliability) != CalibrationBins {
		t.Fatalf("%d bins", len(m.Reliability))
	}
	wantCount := map[int]int64{7: 2, 11: 4, 14: 4}
	wantAcc := map[int]float64{7: 0, 11: 0.75, 14: 0.5}
	wantConf := map[int]float64{7: 0.5, 11: 0.75, 14: 1}
	for i, b := range m.Reliability {
		checkFloat(t, fmt.Sprintf("bin %d lower", i), b.Lower, float64(i)/15)
		checkFloat(t, fmt.Sprintf("bin %d upper", i), b.Upper, float64(i+1)/15)
		if b.Count != wantCount[i] {
			t.Errorf("bin %d count = %d, want %d", i, b.Count, wantCount[i])
		}
		checkFloat(t, fmt.Sprintf("bin %d accuracy", i), b.Accuracy, wantAcc[i])
		checkFloat(t, fmt.Sprintf("bin %d confidence", i), b.Confidence, wantConf[i])
	}
}

func TestMetricsTopK(t *testing.T) {
	// K = 4: k = 2, 3. True class ranks: 0, 1, 2, 3; then all tied, where
	// ties go to the lower index: class 3 ranks 3, class 1 ranks 1.
	// Top-2 hits: ranks 0, 1, 1 → 3/6; top-3: ranks 0, 1, 2, 1 → 4/6.
	p := []float32{0.4, 0.3, 0.2, 0.1}
	q := []float32{0.25, 0.25, 0.25, 0.25}
	rows := []Prediction{
		pred("a", 0, 0, p...), pred("b", 1, 0, p...), pred("c", 2, 0, p...), pred("d", 3, 0, p...),
		pred("e", 3, 0, q...), pred("f", 1, 0, q...),
	}
	m := both(t, rows, []string{"w", "x", "y", "z"})
	want := []report.TopK{{K: 2, Accuracy: 0.5}, {K: 3, Accuracy: 4.0 / 6}}
	if len(m.TopK) != 2 || m.TopK[0].K != 2 || m.TopK[1].K != 3 {
		t.Fatalf("top-k = %+v, want %+v", m.TopK, want)
	}
	checkFloat(t, "top-2", m.TopK[0].Accuracy, want[0].Accuracy)
	checkFloat(t, "top-3", m.TopK[1].Accuracy, want[1].Accuracy)

	// Which k are reported: 2..min(5, K-1), none for K <= 2.
	for k, want := range map[int][]int{1: nil, 2: nil, 3: {2}, 4: {2, 3}, 6: {2, 3, 4, 5}, 10: {2, 3, 4, 5}} {
		labels := make([]string, k)
		probs := make([]float32, k)
		for i := range labels {
			labels[i] = fmt.Sprint(i)
			probs[i] = 1 / float32(k)
		}
		m := both(t, []Prediction{pred("r", 0, 0, probs...)}, labels)
		var got []int
		for _, tk := range m.TopK {
			got = append(got, tk.K)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("K = %d: top-k ks = %v, want %v", k, got, want)
		}
	}
}

func TestPercentile(t *testing.T) {
	// numpy.percentile([1, 2, 3, 4, 5], [2.5, 97.5]) = [1.1, 4.9]
	v := []float64{1, 2, 3, 4, 5}
	checkFloat(t, "p2.5", percentile(v, 0.025), 1.1)
	checkFloat(t, "p97.5", percentile(v, 0.975), 4.9)
	checkFloat(t, "p100", percentile(v, 1), 5)
	checkFloat(t, "one value", percentile([]float64{7}, 0.025), 7)
}

func TestPoissonOneDraw(t *testing.T) {
	// The thresholds are floor(CDF(k)·2^64) for Poisson(1).
	if len(poissonOneCDF) < 18 {
		t.Fatalf("%d thresholds", len(poissonOneCDF))
	}
	cdf, pmf := 0.0, math.Exp(-1)
	for k, thr := range poissonOneCDF {
		if k > 0 {
			pmf /= float64(k)
		}
		cdf += pmf
		if got := float64(thr) / math.Exp2(64); math.Abs(got-cdf) > 1e-15 {
			t.Errorf("threshold %d = %.17g, want %.17g", k, got, cdf)
		}
		if k > 0 && thr <= poissonOneCDF[k-1] {
			t.Errorf("thresholds not increasing at %d", k)
		}
	}
	if poissonOne(0) != 0 || poissonOne(math.MaxUint64) != int64(len(poissonOneCDF)) {
		t.Errorf("extremes: %d %d", poissonOne(0), poissonOne(math.MaxUint64))
	}
	// The weights of many (example, replicate) pairs follow Poisson(1).
	const n = 400000
	counts := map[int64]int{}
	var sum, sq float64
	for i := range n / 100 {
		id := fmt.Sprintf("ex-%d", i)
		for b := range 100 {
			w := bootstrapWeight(11, id, b)
			counts[w]++
			sum += float64(w)
			sq += float64(w * w)
		}
	}
	mean := sum / n
	variance := sq/n - mean*mean
	if math.Abs(mean-1) > 0.01 || math.Abs(variance-1) > 0.02 {
		t.Errorf("mean %.4f variance %.4f, want 1 and 1", mean, variance)
	}
	p := math.Exp(-1)
	for k := int64(0); k <= 4; k++ {
		if k > 0 {
			p /= float64(k)
		}
		got := float64(counts[k]) / n
		if sd := math.Sqrt(p * (1 - p) / n); math.Abs(got-p) > 5*sd {
			t.Errorf("P(w = %d) = %.5f, want %.5f", k, got, p)
		}
	}
	// Seeds give different resamples; the draw is a pure function.
	same := 0
	for b := range 1000 {
		if bootstrapWeight(1, "x", b) == bootstrapWeight(2, "x", b) {
			same++
		}
		if bootstrapWeight(1, "x", b) != bootstrapWeight(1, "x", b) {
			t.Fatal("weights are not deterministic")
		}
	}
	if same > 500 { // independent draws agree with probability ≈ 0.31
		t.Errorf("seeds 1 and 2 agree on %d of 1000 weights", same)
	}
}

// randomPreds makes n predictions over k classes: mostly argmax predictions
// that are right about 70% of the time, a few non-argmax ones, unlabelled
// and malformed rows.
func randomPreds(rng *rand.Rand, n, k int, model string) []Prediction {
	out := make([]Prediction, 0, n)
	for i := range n {
		label := int32(rng.Intn(k))
		probs := make([]float32, k)
		var sum float32
		for j := range probs {
			probs[j] = rng.Float32()
			sum += probs[j]
		}
		if rng.Float64() < 0.7 {
			probs[label] += sum
			sum += sum
		}
		best := 0
		for j := range probs {
			probs[j] /= sum
			if probs[j] > probs[best] {
				best = j
			}
		}
		p := Prediction{Model: model, ID: fmt.Sprintf("%s-%d", model, i), Label: label, Pred: int32(best), Probs: probs, Length: int32(1 + rng.Intn(100))}
		switch r := rng.Float64(); {
		case r < 0.03:
			p.Label = -1
		case r < 0.05:
			p.Pred = int32(rng.Intn(k)) // not the argmax
		case r < 0.06:
			p.Probs = p.Probs[:k-1] // malformed
		case r < 0.07:
			p.Probs[rng.Intn(k)] = 0 // a zero probability (log loss clip)
		}
		out = append(out, p)
	}
	return out
}

// rowCodecRoundTrip encodes and decodes an accumulator with Beam's row coder,
// as a runner does between a lifted combine's stages.
func rowCodecRoundTrip(t *testing.T, a metricsAccum) metricsAccum {
	t.Helper()
	rt := reflect.TypeOf(a)
	enc, err := coder.RowEncoderForStruct(rt)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := coder.RowDecoderForStruct(rt)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := enc(a, &buf); err != nil {
		t.Fatal(err)
	}
	v, err := dec(&buf)
	if err != nil {
		t.Fatal(err)
	}
	switch v := v.(type) {
	case metricsAccum:
		return v
	case *metricsAccum:
		return *v
	}
	t.Fatalf("decoded %T", v)
	return metricsAccum{}
}

// TestMetricsFnMatchesComputeMetrics simulates bundles: the rows shuffled and
// cut into random chunks, one accumulator per chunk (some empty, some sent
// through the row coder), merged pairwise in random order.
func TestMetricsFnMatchesComputeMetrics(t *testing.T) {
	for _, k := range []int{2, 4} {
		t.Run(fmt.Sprint("K=", k), func(t *testing.T) {
			rng := rand.New(rand.NewSource(int64(k)))
			labels := make([]string, k)
			for i := range labels {
				labels[i] = fmt.Sprint("class", i)
			}
			preds := randomPreds(rng, 2000, k, "m")
			want := ComputeMetrics(preds, labels, 0, 42)
			fn := &MetricsFn{Labels: labels, Seed: 42} // Bootstrap 0: the default 1000

			if d := diffMetrics(combine(t, fn, preds), want, 1e-12); d != "" {
				t.Fatalf("one accumulator: %s", d)
			}
			if want.AccuracyCI.Low >= want.AccuracyCI.High || want.MacroF1CI.Low >= want.MacroF1CI.High {
				t.Fatalf("degenerate intervals %+v %+v", want.AccuracyCI, want.MacroF1CI)
			}

			for trial := range 5 {
				rows := append([]Prediction(nil), preds...)
				rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
				var accs []metricsAccum
				for len(rows) > 0 {
					n := min(len(rows), 1+rng.Intn(300))
					a := fn.CreateAccumulator()
					var err error
					for _, p := range rows[:n] {
						if a, err = fn.AddInput(a, p); err != nil {
							t.Fatal(err)
						}
					}
					rows = rows[n:]
					if rng.Intn(3) == 0 {
						a = rowCodecRoundTrip(t, a)
					}
					accs = append(accs, a)
					if rng.Intn(4) == 0 {
						accs = append(accs, fn.CreateAccumulator())
					}
				}
				for len(accs) > 1 {
					i, j := rng.Intn(len(accs)), rng.Intn(len(accs)-1)
					if j >= i {
						j++
					}
					merged, err := fn.MergeAccumulators(accs[i], accs[j])
					if err != nil {
						t.Fatal(err)
					}
					accs[i] = merged
					accs = append(accs[:j], accs[j+1:]...)
				}
				got, err := fn.ExtractOutput(accs[0])
				if err != nil {
					t.Fatal(err)
				}
				if d := diffMetrics(got, want, 1e-12); d != "" {
					t.Fatalf("trial %d: %s", trial, d)
				}
			}
		})
	}
}

func TestMetricsFnShapeMismatch(t *testing.T) {
	three := &MetricsFn{Labels: []string{"a", "b", "c"}, Bootstrap: 10}
	two := &MetricsFn{Labels: []string{"a", "b"}, Bootstrap: 10}
	a, err := two.AddInput(two.CreateAccumulator(), pred("x", 0, 0, 0.9, 0.1))
	if err != nil {
		t.Fatal(err)
	}
	b, err := three.AddInput(three.CreateAccumulator(), pred("y", 0, 0, 0.9, 0.05, 0.05))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := three.MergeAccumulators(b, a); err == nil {
		t.Error("merging accumulators of different label sets: no error")
	}
	if _, err := three.AddInput(a, pred("z", 0, 0, 0.9, 0.05, 0.05)); err == nil {
		t.Error("adding to an accumulator of another label set: no error")
	}
}

func TestMetricsIntervals(t *testing.T) {
	labels := []string{"a", "b", "c"}
	fn := &MetricsFn{Labels: labels, Seed: 5}
	width := func(n int) float64 {
		rng := rand.New(rand.NewSource(9))
		preds := randomPreds(rng, n, 3, "m")
		m := combine(t, fn, preds)
		if !(m.AccuracyCI.Low <= m.Accuracy && m.Accuracy <= m.AccuracyCI.High) {
			t.Errorf("n = %d: accuracy %.4f outside %+v", n, m.Accuracy, m.AccuracyCI)
		}
		if !(m.MacroF1CI.Low <= m.MacroF1 && m.MacroF1 <= m.MacroF1CI.High) {
			t.Errorf("n = %d: macro F1 %.4f outside %+v", n, m.MacroF1, m.MacroF1CI)
		}
		// The normal approximation's width, 2·1.96·sqrt(p(1-p)/n), within 25%.
		w := m.AccuracyCI.High - m.AccuracyCI.Low
		normal := 2 * 1.96 * math.Sqrt(m.Accuracy*(1-m.Accuracy)/float64(m.Examples))
		if w < 0.75*normal || w > 1.25*normal {
			t.Errorf("n = %d: accuracy CI width %.4f, normal approximation %.4f", n, w, normal)
		}
		return w
	}
	small, large := width(200), width(5000)
	// 25 times the data: about a fifth of the width.
	if !(large < small/3) {
		t.Errorf("CI width %.4f at 200 rows, %.4f at 5000: did not narrow", small, large)
	}
	// Disabled bootstrap: no intervals.
	m := ComputeMetrics(threeClass(), labels, -1, 1)
	if m.AccuracyCI != (report.Interval{}) {
		t.Errorf("bootstrap -1: interval %+v", m.AccuracyCI)
	}
	m = combine(t, &MetricsFn{Labels: labels, Bootstrap: -1}, threeClass())
	if m.AccuracyCI != (report.Interval{}) {
		t.Errorf("MetricsFn bootstrap -1: interval %+v", m.AccuracyCI)
	}
}

func TestLengthBucket(t *testing.T) {
	edges := normalizeEdges([]int32{32, 16, 0, 16, 64})
	if !reflect.DeepEqual(edges, []int32{16, 32, 64}) {
		t.Fatalf("edges = %v", edges)
	}
	for length, want := range map[int32]string{1: "1-16", 16: "1-16", 17: "17-32", 64: "33-64", 65: "65+", 0: "unknown", -3: "unknown"} {
		if got := lengthBucket(length, edges); got != want {
			t.Errorf("length %d: %q, want %q", length, got, want)
		}
	}
}

// writeModelMetricsTestFn writes each element as a JSON file under Dir, so
// the test reads a pipeline's output after it ran.
type writeModelMetricsTestFn struct{ Dir string }

func (fn *writeModelMetricsTestFn) ProcessElement(_ context.Context, m ModelMetrics) error {
	return writeJSONTestFile(fn.Dir, m)
}

type writeSliceMetricsTestFn struct{ Dir string }

func (fn *writeSliceMetricsTestFn) ProcessElement(_ context.Context, m ModelSliceMetrics) error {
	return writeJSONTestFile(fn.Dir, m)
}

func writeJSONTestFile(dir string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "*.json")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readJSONTestFiles[T any](t *testing.T, dir string) []T {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// TestEvaluateMetricsPipeline runs EvaluateMetrics and SliceMetricsOf on
// prism over two models' predictions and checks every output against
// ComputeMetrics on the matching rows.
func TestEvaluateMetricsPipeline(t *testing.T) {
	labels := []string{"neg", "neutral", "pos"}
	const seed = 17
	edges := []int32{32, 64}
	rng := rand.New(rand.NewSource(1))
	preds := append(randomPreds(rng, 400, 3, "teacher"), randomPreds(rng, 300, 3, "student")...)
	rng.Shuffle(len(preds), func(i, j int) { preds[i], preds[j] = preds[j], preds[i] })

	modelDir, sliceDir := t.TempDir(), t.TempDir()
	p, s := beam.NewPipelineWithRoot()
	col := beam.CreateList(s, preds)
	beam.ParDo0(s, &writeModelMetricsTestFn{Dir: modelDir}, EvaluateMetrics(s, col, dataset.SingleLabel, labels, seed))
	beam.ParDo0(s, &writeSliceMetricsTestFn{Dir: sliceDir}, SliceMetricsOf(s, col, dataset.SingleLabel, labels, seed, edges))
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}

	byModel := map[string][]Prediction{}
	for _, p := range preds {
		byModel[p.Model] = append(byModel[p.Model], p)
	}
	got := readJSONTestFiles[ModelMetrics](t, modelDir)
	sort.Slice(got, func(i, j int) bool { return got[i].Model < got[j].Model })
	if len(got) != 2 || got[0].Model != "student" || got[1].Model != "teacher" {
		t.Fatalf("models = %+v", got)
	}
	for _, g := range got {
		want := ComputeMetrics(byModel[g.Model], labels, 0, seed)
		if d := diffMetrics(g.Metrics, want, 1e-12); d != "" {
			t.Errorf("%s: %s", g.Model, d)
		}
	}

	slices := readJSONTestFiles[ModelSliceMetrics](t, sliceDir)
	seen := map[string]bool{}
	for _, g := range slices {
		name := g.Model + "/" + g.Slice.Column + "/" + g.Slice.Value
		seen[name] = true
		var rows []Prediction
		for _, p := range byModel[g.Model] {
			if p.Label < 0 {
				continue
			}
			switch g.Slice.Column {
			case "length":
				if lengthBucket(p.Length, edges) == g.Slice.Value {
					rows = append(rows, p)
				}
			case "label":
				if labels[p.Label] == g.Slice.Value {
					rows = append(rows, p)
				}
			default:
				t.Errorf("unexpected slice column %q", g.Slice.Column)
			}
		}
		want := ComputeMetrics(rows, labels, 0, seed)
		if d := diffMetrics(g.Slice.Metrics, want, 1e-12); d != "" {
			t.Errorf("%s: %s", name, d)
		}
	}
	for _, m := range []string{"teacher", "student"} {
		for _, v := range []string{"length/1-32", "length/33-64", "length/65+", "label/neg", "label/neutral", "label/pos"} {
			if !seen[m+"/"+v] {
				t.Errorf("missing slice %s/%s (have %v)", m, v, seen)
			}
		}
	}
	if len(slices) != 12 {
		t.Errorf("%d slices, want 12", len(slices))
	}
}

// BenchmarkMetricsFn combines 10,000 4-class predictions with 1,000
// bootstrap replicates: the O(N·B) weight draws dominate.
func BenchmarkMetricsFn(b *testing.B) {
	labels := []string{"a", "b", "c", "d"}
	preds := randomPreds(rand.New(rand.NewSource(1)), 10000, 4, "m")
	fn := &MetricsFn{Labels: labels, Seed: 1}
	for b.Loop() {
		a := fn.CreateAccumulator()
		var err error
		for _, p := range preds {
			if a, err = fn.AddInput(a, p); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := fn.ExtractOutput(a); err != nil {
			b.Fatal(err)
		}
	}
}
