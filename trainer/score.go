package trainer

import (
	"math"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/report"
)

// TaskScore is how well a model's logits fit rows, for the task: its main
// metric and the task's loss.
type TaskScore struct {
	Metric   string  // MetricAccuracy, MetricMacroF1 or MetricPearson
	Value    float64 // the main metric
	Loss     float64 // cross-entropy, mean binary cross-entropy, or mean squared error
	Accuracy float64 // single-label accuracy; multi-label subset accuracy; 0 for regression
}

// ScoreTask scores logits (per row, in row order) against rows' targets by
// metric ("" for the task's main one, else one of report.MetricsOf(task)). Rows
// without a target (unlabelled) are left out.
func ScoreTask(task, metric string, rows *dataset.Rows, logits [][]float32) TaskScore {
	if metric == "" {
		metric = report.MainMetric(task)
	}
	switch task {
	case dataset.MultiLabel:
		return scoreMultiLabel(metric, rows, logits)
	case dataset.Regression:
		return scoreRegression(metric, rows, logits)
	}
	s := TaskScore{Metric: metric}
	var correct, n int
	var tp, fp, fn []int64
	for i, lg := range logits {
		y := rows.Labels[i]
		if y < 0 || int(y) >= len(lg) {
			continue
		}
		if tp == nil {
			tp, fp, fn = make([]int64, len(lg)), make([]int64, len(lg)), make([]int64, len(lg))
		}
		n++
		s.Loss += crossEntropy(lg, int(y))
		if p := Argmax(lg); p == int(y) {
			correct++
			tp[p]++
		} else {
			fp[p]++
			fn[y]++
		}
	}
	if n == 0 {
		return s
	}
	s.Loss /= float64(n)
	s.Accuracy = float64(correct) / float64(n)
	switch metric {
	case report.MetricF1:
		if len(tp) > 1 {
			s.Value = report.F1(tp[1], fp[1], fn[1])
		}
	case report.MetricMacroF1:
		s.Value = macroF1(tp, fp, fn)
	default:
		s.Value = s.Accuracy
	}
	return s
}

func macroF1(tp, fp, fn []int64) float64 {
	var sum float64
	for j := range tp {
		sum += report.F1(tp[j], fp[j], fn[j])
	}
	return sum / float64(len(tp))
}

// scoreMultiLabel decides each label at logit > 0 (probability > 0.5). Its
// macro-F1 averages every label's F1, a label never true nor predicted
// counting 0 (scikit-learn's f1_score(average="macro") with zero_division=0).
func scoreMultiLabel(metric string, rows *dataset.Rows, logits [][]float32) TaskScore {
	s := TaskScore{Metric: metric}
	if len(logits) == 0 {
		return s
	}
	k := len(logits[0])
	tp, fp, fn := make([]int64, k), make([]int64, k), make([]int64, k)
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
	if metric == report.MetricMicroF1 {
		var atp, afp, afn int64
		for j := range k {
			atp, afp, afn = atp+tp[j], afp+fp[j], afn+fn[j]
		}
		s.Value = report.F1(atp, afp, afn)
	} else {
		s.Value = macroF1(tp, fp, fn)
	}
	return s
}

// scoreRegression compares the first logit of each row with its score:
// Pearson's r, and the mean squared error as the loss.
func scoreRegression(metric string, rows *dataset.Rows, logits [][]float32) TaskScore {
	s := TaskScore{Metric: metric}
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
	if metric == report.MetricSpearman {
		s.Value = report.Spearman(pred, truth, nil)
	} else {
		s.Value = report.Pearson(pred, truth, nil)
	}
	return s
}
