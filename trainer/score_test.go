package trainer

import (
	"math"
	"testing"

	"github.com/beamtune/beamtune/dataset"
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
	s := ScoreTask(dataset.SingleLabel, single, [][]float32{{2, 0}, {0, 1}, {3, 0}, {0, 9}})
	near("single accuracy", s.Value, 2.0/3)
	ce := (math.Log(1+math.Exp(-2)) + math.Log(1+math.Exp(-1)) + (3 + math.Log(1+math.Exp(-3)))) / 3
	near("single loss", s.Loss, ce)
	if s.Metric != MetricAccuracy {
		t.Errorf("single metric %q", s.Metric)
	}

	// Multi-label, 3 labels, decided at logit > 0:
	// row 0 true {0,2}, predicted {0}     -> label 0 tp, label 2 fn
	// row 1 true {1},   predicted {1,2}   -> label 1 tp, label 2 fp
	// row 2 true {0},   predicted {0}     -> label 0 tp (exact)
	// F1: label 0 = 2*2/(2*2+0+0) = 1; label 1 = 1; label 2 = 0 -> macro 2/3.
	multi := &dataset.Rows{Multi: [][]int32{{0, 2}, {1}, {0}}}
	m := ScoreTask(dataset.MultiLabel, multi, [][]float32{{1, -1, -1}, {-1, 1, 1}, {1, -1, -1}})
	near("macro-F1", m.Value, 2.0/3)
	near("subset accuracy", m.Accuracy, 1.0/3)
	// Each element's BCE is log(1+e^-1) when right and 1+log(1+e^-1) when wrong; 2 of 9 wrong.
	near("multi loss", m.Loss, math.Log1p(math.Exp(-1))+2.0/9)

	// A label never true nor predicted counts 0 in the macro average.
	none := ScoreTask(dataset.MultiLabel, &dataset.Rows{Multi: [][]int32{{0}}}, [][]float32{{1, -1}})
	near("macro-F1 with an empty label", none.Value, 0.5)

	// Regression: predictions 1,2,3 against 2,4,6 are perfectly correlated.
	reg := &dataset.Rows{Scores: []float32{2, 4, 6}}
	r := ScoreTask(dataset.Regression, reg, [][]float32{{1}, {2}, {3}})
	near("pearson", r.Value, 1)
	near("mse", r.Loss, (1+4+9)/3.0)
	anti := ScoreTask(dataset.Regression, reg, [][]float32{{3}, {2}, {1}})
	near("pearson, reversed", anti.Value, -1)
	flat := ScoreTask(dataset.Regression, reg, [][]float32{{1}, {1}, {1}})
	near("pearson of a constant prediction", flat.Value, 0)
	// Pearson on uneven values: x = 1,2,4 and y = 1,3,2: cov 1/3·(…) worked out as
	// sxy = 1.0, sxx = 4.666…, syy = 2 -> r = 1/sqrt(9.333…).
	odd := ScoreTask(dataset.Regression, &dataset.Rows{Scores: []float32{1, 3, 2}}, [][]float32{{1}, {2}, {4}})
	near("pearson, uneven", odd.Value, 1/math.Sqrt(28.0/3))
}
