package trainer

import (
	"math"

	"github.com/beamtune/beamtune/dataset"
)

// Main metrics, one per task: what picks the best checkpoint and early
// stopping (higher is better for each).
const (
	MetricAccuracy = "accuracy" // single-label
	MetricMacroF1  = "macro_f1" // multi-label, each label decided at probability 0.5
	MetricPearson  = "pearson"  // regression
)

// TaskScore is how well a model's logits fit rows, for the task: its main
// metric and the task's loss.
type TaskScore struct {
	Metric   string  // MetricAccuracy, MetricMacroF1 or MetricPearson
	Value    float64 // the main metric
	Loss     float64 // cross-entropy, mean binary cross-entropy, or mean squared error
	Accuracy float64 // single-label accuracy; multi-label subset accuracy; 0 for regression
}

// MainMetric is the task's main metric.
func MainMetric(task string) string {
	switch task {
	case dataset.MultiLabel:
		return MetricMacroF1
	case dataset.Regression:
		return MetricPearson
	}
	return MetricAccuracy
}

// ScoreTask scores logits (per row, in row order) against rows' targets.
// Rows without a target (unlabelled) are left out.
func ScoreTask(task string, rows *dataset.Rows, logits [][]float32) TaskScore {
	switch task {
	case dataset.MultiLabel:
		return scoreMultiLabel(rows, logits)
	case dataset.Regression:
		return scoreRegression(rows, logits)
	}
	s := TaskScore{Metric: MetricAccuracy}
	var correct, n int
	for i, lg := range logits {
		y := rows.Labels[i]
		if y < 0 || int(y) >= len(lg) {
			continue
		}
		n++
		s.Loss += crossEntropy(lg, int(y))
		if Argmax(lg) == int(y) {
			correct++
		}
	}
	if n > 0 {
		s.Loss /= float64(n)
		s.Accuracy = float64(correct) / float64(n)
	}
	s.Value = s.Accuracy
	return s
}

// scoreMultiLabel decides each label at logit > 0 (probability > 0.5). Its
// macro-F1 averages every label's F1, a label never true nor predicted
// counting 0 (scikit-learn's f1_score(average="macro") with zero_division=0).
func scoreMultiLabel(rows *dataset.Rows, logits [][]float32) TaskScore {
	s := TaskScore{Metric: MetricMacroF1}
	if len(logits) == 0 {
		return s
	}
	k := len(logits[0])
	tp, fp, fn := make([]int, k), make([]int, k), make([]int, k)
	var exact, n int
	for i, lg := range logits {
		truth := make([]bool, k)
		for _, l := range rows.Multi[i] {
			if int(l) < k {
				truth[l] = true
			}
		}
		n++
		same := true
		for j, z := range lg {
			pred := z > 0
			y := 0.0
			if truth[j] {
				y = 1
			}
			// Binary cross-entropy with logits, stably: max(z,0) - z*y + log(1+e^-|z|).
			zf := float64(z)
			s.Loss += math.Max(zf, 0) - zf*y + math.Log1p(math.Exp(-math.Abs(zf)))
			switch {
			case pred && truth[j]:
				tp[j]++
			case pred:
				fp[j]++
				same = false
			case truth[j]:
				fn[j]++
				same = false
			}
		}
		if same {
			exact++
		}
	}
	s.Loss /= float64(n * k)
	s.Accuracy = float64(exact) / float64(n)
	for j := range k {
		if d := 2*tp[j] + fp[j] + fn[j]; d > 0 {
			s.Value += 2 * float64(tp[j]) / float64(d)
		}
	}
	s.Value /= float64(k)
	return s
}

// scoreRegression compares the first logit of each row with its score:
// Pearson's r, and the mean squared error as the loss.
func scoreRegression(rows *dataset.Rows, logits [][]float32) TaskScore {
	s := TaskScore{Metric: MetricPearson}
	pred := make([]float64, 0, len(logits))
	truth := make([]float64, 0, len(logits))
	for i, lg := range logits {
		if len(lg) == 0 {
			continue
		}
		p, y := float64(lg[0]), float64(rows.Scores[i])
		pred, truth = append(pred, p), append(truth, y)
		s.Loss += (p - y) * (p - y)
	}
	if len(pred) == 0 {
		return s
	}
	s.Loss /= float64(len(pred))
	s.Value = pearson(pred, truth)
	return s
}

// pearson is Pearson's correlation coefficient; 0 when either side is
// constant (it is undefined there, and a constant prediction is no fit).
func pearson(x, y []float64) float64 {
	var mx, my float64
	for i := range x {
		mx += x[i]
		my += y[i]
	}
	mx /= float64(len(x))
	my /= float64(len(y))
	var sxy, sxx, syy float64
	for i := range x {
		dx, dy := x[i]-mx, y[i]-my
		sxy += dx * dy
		sxx += dx * dx
		syy += dy * dy
	}
	if sxx == 0 || syy == 0 {
		return 0
	}
	return sxy / math.Sqrt(sxx*syy)
}
