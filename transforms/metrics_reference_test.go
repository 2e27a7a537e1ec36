package transforms

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/beamtune/beamtune/inference"
	"github.com/beamtune/beamtune/report"
)

// The combiners against scikit-learn and SciPy: testdata/metrics/
// reference.json holds seeded predictions of each task kind and the values
// the Python libraries compute on them (scripts/metric_fixtures.sh). Each
// combiner sees the predictions split over three accumulators, merged, as
// Beam would.

type referenceSet struct {
	Labels     []string        `json:"labels"`
	Truth      json.RawMessage `json:"truth"`
	Probs      [][]float64     `json:"probs"`
	Pred       []float64       `json:"pred"`
	Thresholds []float64       `json:"thresholds"`
	Expected   map[string]any  `json:"expected"`
}

func readReference(t *testing.T) map[string]referenceSet {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "metrics", "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		t.Fatal(err)
	}
	out := map[string]referenceSet{}
	for name, raw := range all {
		if name == "generator" {
			continue
		}
		var s referenceSet
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = s
	}
	return out
}

// combineInThree runs a CombineFn's methods over preds split into three
// accumulators merged in a shuffled order.
func combineInThree[A any](t *testing.T, preds []Prediction, create func() A, add func(A, Prediction) (A, error), merge func(A, A) (A, error)) A {
	t.Helper()
	parts := []A{create(), create(), create()}
	for i, p := range preds {
		var err error
		if parts[i%3], err = add(parts[i%3], p); err != nil {
			t.Fatal(err)
		}
	}
	acc, err := merge(parts[2], parts[0])
	if err != nil {
		t.Fatal(err)
	}
	if acc, err = merge(acc, parts[1]); err != nil {
		t.Fatal(err)
	}
	return acc
}

func nearRef(t *testing.T, set, name string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol {
		t.Errorf("%s %s = %.12g, reference %.12g (|Δ| %.3g > %.0g)", set, name, got, want, math.Abs(got-want), tol)
	}
}

func expectedList(t *testing.T, s referenceSet, name string) []float64 {
	t.Helper()
	raw, ok := s.Expected[name].([]any)
	if !ok {
		t.Fatalf("reference has no list %s", name)
	}
	out := make([]float64, len(raw))
	for i, v := range raw {
		out[i] = v.(float64)
	}
	return out
}

func TestMetricsAgainstScikitLearn(t *testing.T) {
	ref := readReference(t)
	for _, name := range []string{"binary", "multiclass"} {
		s := ref[name]
		var truth []int32
		if err := json.Unmarshal(s.Truth, &truth); err != nil {
			t.Fatal(err)
		}
		var preds []Prediction
		for i, pr := range s.Probs {
			probs := make([]float32, len(pr))
			for j, v := range pr {
				probs[j] = float32(v)
			}
			p := Prediction{ID: fmt.Sprint(i), Label: truth[i], Probs: probs}
			best := 0
			for j := range probs {
				if probs[j] > probs[best] {
					best = j
				}
			}
			p.Pred = int32(best)
			preds = append(preds, p)
		}
		fn := &MetricsFn{Labels: s.Labels, Bootstrap: -1}
		acc := combineInThree(t, preds, fn.CreateAccumulator, fn.AddInput, fn.MergeAccumulators)
		m, err := fn.ExtractOutput(acc)
		if err != nil {
			t.Fatal(err)
		}
		e := s.Expected
		nearRef(t, name, "accuracy", m.Accuracy, e["accuracy"].(float64), 1e-12)
		nearRef(t, name, "macro_f1", m.MacroF1, e["macro_f1"].(float64), 1e-12)
		nearRef(t, name, "micro_f1", m.MicroF1, e["micro_f1"].(float64), 1e-12)
		nearRef(t, name, "weighted_f1", m.WeightedF1, e["weighted_f1"].(float64), 1e-12)
		nearRef(t, name, "mcc", m.MCC, e["mcc"].(float64), 1e-12)
		// scikit-learn renormalizes float32 probabilities that do not sum to
		// exactly 1; the combiner takes them as they are.
		nearRef(t, name, "log_loss", m.LogLoss, e["log_loss"].(float64), 1e-6)
		if v, ok := e["positive_f1"]; ok {
			nearRef(t, name, "positive_f1", m.PositiveF1, v.(float64), 1e-12)
		}
		for j, c := range m.PerClass {
			nearRef(t, name, "precision "+c.Label, c.Precision, expectedList(t, s, "precision")[j], 1e-12)
			nearRef(t, name, "recall "+c.Label, c.Recall, expectedList(t, s, "recall")[j], 1e-12)
		}
		// The plain-loop reference agrees on the new figures too.
		ref := ComputeMetrics(preds, s.Labels, -1, 0)
		nearRef(t, name, "ComputeMetrics mcc", ref.MCC, m.MCC, 1e-12)
		nearRef(t, name, "ComputeMetrics positive_f1", ref.PositiveF1, m.PositiveF1, 1e-12)
	}
}

func TestMultiLabelMetricsAgainstScikitLearn(t *testing.T) {
	s := readReference(t)["multilabel"]
	var truth [][]int32
	if err := json.Unmarshal(s.Truth, &truth); err != nil {
		t.Fatal(err)
	}
	var preds []Prediction
	for i, pr := range s.Probs {
		logits := make([]float32, len(pr))
		for j, v := range pr {
			logits[j] = float32(math.Log(v / (1 - v)))
		}
		d := inference.Decide("multi_label_classification", s.Thresholds, logits)
		p := Prediction{Pred: d.Pred, Probs: d.Probs, PredLabels: d.PredLabels}
		// The logit round trip can move a probability by an ulp; keep the
		// reference's probabilities and decisions exactly.
		p.PredLabels = p.PredLabels[:0]
		for j, v := range pr {
			p.Probs[j] = float32(v)
			if v > s.Thresholds[j] {
				p.PredLabels = append(p.PredLabels, int32(j))
			}
		}
		p.ID, p.TrueLabels = fmt.Sprint(i), truth[i]
		preds = append(preds, p)
	}
	fn := &MultiLabelMetricsFn{Labels: s.Labels, Bootstrap: 200, Seed: 3}
	acc := combineInThree(t, preds, fn.CreateAccumulator, fn.AddInput, fn.MergeAccumulators)
	m, err := fn.ExtractOutput(acc)
	if err != nil {
		t.Fatal(err)
	}
	e, ml := s.Expected, m.MultiLabel
	nearRef(t, "multilabel", "macro_f1", m.MacroF1, e["macro_f1"].(float64), 1e-12)
	nearRef(t, "multilabel", "micro_f1", m.MicroF1, e["micro_f1"].(float64), 1e-12)
	nearRef(t, "multilabel", "weighted_f1", m.WeightedF1, e["weighted_f1"].(float64), 1e-12)
	nearRef(t, "multilabel", "samples_f1", ml.SamplesF1, e["samples_f1"].(float64), 1e-12)
	nearRef(t, "multilabel", "subset_accuracy", m.Accuracy, e["subset_accuracy"].(float64), 1e-12)
	nearRef(t, "multilabel", "hamming_loss", ml.HammingLoss, e["hamming_loss"].(float64), 1e-12)
	nearRef(t, "multilabel", "label_cardinality", ml.LabelCardinality, e["label_cardinality"].(float64), 1e-12)
	nearRef(t, "multilabel", "predicted_cardinality", ml.PredictedCardinality, e["predicted_cardinality"].(float64), 1e-12)
	for j, c := range m.PerClass {
		nearRef(t, "multilabel", "precision "+c.Label, c.Precision, expectedList(t, s, "precision")[j], 1e-12)
		nearRef(t, "multilabel", "recall "+c.Label, c.Recall, expectedList(t, s, "recall")[j], 1e-12)
		nearRef(t, "multilabel", "f1 "+c.Label, c.F1, expectedList(t, s, "f1")[j], 1e-12)
		nearRef(t, "multilabel", "PR-AUC "+c.Label, c.AveragePrecision, expectedList(t, s, "average_precision")[j], 1e-12)
	}
	for _, iv := range []struct {
		name string
		v    float64
		ci   report.Interval
	}{{"macro_f1", m.MacroF1, m.MacroF1CI}, {"micro_f1", m.MicroF1, ml.MicroF1CI}} {
		if !(iv.ci.Low < iv.v && iv.v < iv.ci.High && iv.ci.High-iv.ci.Low < 0.3) {
			t.Errorf("%s %.4f: interval %v", iv.name, iv.v, iv.ci)
		}
	}
}

func TestRegressionMetricsAgainstSciPy(t *testing.T) {
	s := readReference(t)["regression"]
	var truth []float64
	if err := json.Unmarshal(s.Truth, &truth); err != nil {
		t.Fatal(err)
	}
	var preds []Prediction
	for i := range truth {
		preds = append(preds, Prediction{ID: fmt.Sprint(i), Label: -1, Pred: -1, Score: float32(s.Pred[i]), TrueScore: float32(truth[i])})
	}
	fn := &RegressionMetricsFn{Bootstrap: 300, Seed: 3}
	add := func(a regressionAccum, p Prediction) (regressionAccum, error) { return fn.AddInput(a, p), nil }
	merge := func(a, b regressionAccum) (regressionAccum, error) { return fn.MergeAccumulators(a, b), nil }
	r := fn.ExtractOutput(combineInThree(t, preds, fn.CreateAccumulator, add, merge)).Regression
	e := s.Expected
	nearRef(t, "regression", "pearson", r.Pearson, e["pearson"].(float64), 1e-12)
	nearRef(t, "regression", "spearman", r.Spearman, e["spearman"].(float64), 1e-12)
	nearRef(t, "regression", "mse", r.MSE, e["mse"].(float64), 1e-12)
	nearRef(t, "regression", "mae", r.MAE, e["mae"].(float64), 1e-12)
	nearRef(t, "regression", "mean_residual", r.MeanResidual, e["mean_residual"].(float64), 1e-12)
	if !(r.PearsonCI.Low < r.Pearson && r.Pearson < r.PearsonCI.High) || !(r.SpearmanCI.Low < r.Spearman && r.Spearman < r.SpearmanCI.High) {
		t.Errorf("intervals %v around %.4f, %v around %.4f", r.PearsonCI, r.Pearson, r.SpearmanCI, r.Spearman)
	}
	// The same points in another order give the same figures, intervals too.
	rev := append([]Prediction(nil), preds...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	r2 := fn.ExtractOutput(combineInThree(t, rev, fn.CreateAccumulator, add, merge)).Regression
	if r2.PearsonCI != r.PearsonCI || r2.SpearmanCI != r.SpearmanCI || r2.Pearson != r.Pearson {
		t.Errorf("order changed the result: %v %v vs %v %v", r2.PearsonCI, r2.SpearmanCI, r.PearsonCI, r.SpearmanCI)
	}
}
