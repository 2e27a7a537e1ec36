package trainer

import (
	"math"
	"testing"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/report"
)

// TestScoreTask checks each task's main metric and loss on values worked
// out by hand.
func TestScoreTask(t *testing.T) {
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 || math.IsNaN(got) {
			t.Errorf("%s = %.12g, want %.12g", name, got, want)
		}
	}
	// Single-label: 2 of 3 labelled rows right; the unlabelled row is left out.
	single := &dataset.Rows{Labels: []int32{0, 1, 1, -1}}
	s := ScoreTask(dataset.SingleLabel, "", single, [][]float32{{2, 0}, {0, 1}, {3, 0}, {0, 9}})
	near("single accuracy", s.Value, 2.0/3)
	ce := (math.Log(1+math.Exp(-2)) + math.Log(1+math.Exp(-1)) + (3 + math.Log(1+math.Exp(-3)))) / 3
	near("single loss", s.Loss, ce)
	if s.Metric != report.MetricAccuracy {
		t.Errorf("single metric %q", s.Metric)
	}

	// Multi-label, 3 labels, decided at logit > 0:
	// row 0 true {0,2}, predicted {0}     -> label 0 tp, label 2 fn
	// row 1 true {1},   predicted {1,2}   -> label 1 tp, label 2 fp
	// row 2 true {0},   predicted {0}     -> label 0 tp (exact)
	// F1: label 0 = 2*2/(2*2+0+0) = 1; label 1 = 1; label 2 = 0 -> macro 2/3.
	multi := &dataset.Rows{Multi: [][]int32{{0, 2}, {1}, {0}}}
	m := ScoreTask(dataset.MultiLabel, "", multi, [][]float32{{1, -1, -1}, {-1, 1, 1}, {1, -1, -1}})
	near("macro-F1", m.Value, 2.0/3)
	near("subset accuracy", m.Accuracy, 1.0/3)
	// Each element's BCE is log(1+e^-1) when right and 1+log(1+e^-1) when wrong; 2 of 9 wrong.
	near("multi loss", m.Loss, math.Log1p(math.Exp(-1))+2.0/9)

	// A label never true nor predicted counts 0 in the macro average.
	none := ScoreTask(dataset.MultiLabel, "", &dataset.Rows{Multi: [][]int32{{0}}}, [][]float32{{1, -1}})
	near("macro-F1 with an empty label", none.Value, 0.5)

	// Regression: predictions 1,2,3 against 2,4,6 are perfectly correlated.
	reg := &dataset.Rows{Scores: []float32{2, 4, 6}}
	r := ScoreTask(dataset.Regression, "", reg, [][]float32{{1}, {2}, {3}})
	near("pearson", r.Value, 1)
	near("mse", r.Loss, (1+4+9)/3.0)
	anti := ScoreTask(dataset.Regression, "", reg, [][]float32{{3}, {2}, {1}})
	near("pearson, reversed", anti.Value, -1)
	flat := ScoreTask(dataset.Regression, "", reg, [][]float32{{1}, {1}, {1}})
	near("pearson of a constant prediction", flat.Value, 0)
	// Pearson on uneven values: x = 1,2,4 and y = 1,3,2: cov 1/3·(…) worked out as
	// sxy = 1.0, sxx = 4.666…, syy = 2 -> r = 1/sqrt(9.333…).
	odd := ScoreTask(dataset.Regression, "", &dataset.Rows{Scores: []float32{1, 3, 2}}, [][]float32{{1}, {2}, {4}})
	near("pearson, uneven", odd.Value, 1/math.Sqrt(28.0/3))
}

// TestSelectionMetrics checks the other metrics a checkpoint can be picked
// by, on values worked out by hand, and which ones each task accepts.
func TestSelectionMetrics(t *testing.T) {
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-9 || math.IsNaN(got) {
			t.Errorf("%s = %.12g, want %.12g", name, got, want)
		}
	}
	// Binary: truth 1,1,0,0,1; predicted 1,0,0,1,1 -> class 1: tp 2, fp 1, fn 1 -> F1 2/3;
	// class 0: tp 1, fp 1, fn 1 -> F1 1/2; macro 7/12.
	rows := &dataset.Rows{Labels: []int32{1, 1, 0, 0, 1}}
	logits := [][]float32{{0, 1}, {1, 0}, {1, 0}, {0, 1}, {0, 1}}
	near("f1", ScoreTask(dataset.SingleLabel, report.MetricF1, rows, logits).Value, 2.0/3)
	near("single macro-F1", ScoreTask(dataset.SingleLabel, report.MetricMacroF1, rows, logits).Value, 7.0/12)
	near("accuracy", ScoreTask(dataset.SingleLabel, report.MetricAccuracy, rows, logits).Value, 3.0/5)

	// Multi-label micro-F1 over every decision: the rows of TestScoreTask
	// give tp 3, fp 1, fn 1 -> 6/8.
	multi := &dataset.Rows{Multi: [][]int32{{0, 2}, {1}, {0}}}
	near("micro-F1", ScoreTask(dataset.MultiLabel, report.MetricMicroF1, multi, [][]float32{{1, -1, -1}, {-1, 1, 1}, {1, -1, -1}}).Value, 0.75)

	// Spearman: monotone but not linear is 1; ties share their mean rank.
	reg := &dataset.Rows{Scores: []float32{1, 2, 3, 4}}
	near("spearman", ScoreTask(dataset.Regression, report.MetricSpearman, reg, [][]float32{{1}, {4}, {9}, {100}}).Value, 1)
	if r := report.Ranks([]float64{10, 20, 20, 5}, nil); r[0] != 2 || r[1] != 3.5 || r[2] != 3.5 || r[3] != 1 {
		t.Errorf("ranks = %v, want [2 3.5 3.5 1]", r)
	}

	for _, c := range []struct {
		task, metric, want string
		ok                 bool
	}{
		{dataset.SingleLabel, "", report.MetricAccuracy, true},
		{dataset.SingleLabel, report.MetricF1, report.MetricF1, true},
		{dataset.MultiLabel, "", report.MetricMacroF1, true},
		{dataset.Regression, report.MetricSpearman, report.MetricSpearman, true},
		{dataset.Regression, report.MetricAccuracy, "", false},
		{dataset.MultiLabel, report.MetricF1, "", false},
	} {
		got, err := report.CheckMetric(c.task, c.metric)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("CheckMetric(%s, %q) = %q, %v", c.task, c.metric, got, err)
		}
	}
}
