package trainer

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/beamtune/beamtune/dataset"
)

// Validation metrics that can pick the best checkpoint and drive early
// stopping (higher is better for each). The first of each task in MetricsOf
// is its main metric, the default.
const (
	MetricAccuracy = "accuracy" // single-label
	MetricF1       = "f1"       // single-label with two classes: F1 of class 1 (GLUE's MRPC metric)
	MetricMacroF1  = "macro_f1" // single-label, or multi-label with each label decided at probability 0.5
	MetricMicroF1  = "micro_f1" // multi-label
	MetricPearson  = "pearson"  // regression
	MetricSpearman = "spearman" // regression
)

// MetricsOf lists the metrics a task can select checkpoints by, the main
// one first.
func MetricsOf(task string) []string {
	switch task {
	case dataset.MultiLabel:
		return []string{MetricMacroF1, MetricMicroF1}
	case dataset.Regression:
		return []string{MetricPearson, MetricSpearman}
	}
	return []string{MetricAccuracy, MetricMacroF1, MetricF1}
}

// CheckMetric checks that metric ("" for the main one) fits the task and
// returns the metric that will be used.
func CheckMetric(task, metric string) (string, error) {
	all := MetricsOf(task)
	if metric == "" {
		return all[0], nil
	}
	if slices.Contains(all, metric) {
		return metric, nil
	}
	return "", fmt.Errorf("metric_for_best %q: a %s task selects by %s", metric, task, strings.Join(all, ", "))
}

// TaskScore is how well a model's logits fit rows, for the task: its main
// metric and the task's loss.
type TaskScore struct {
	Metric   string  // MetricAccuracy, MetricMacroF1 or MetricPearson
	Value    float64 // the main metric
	Loss     float64 // cross-entropy, mean binary cross-entropy, or mean squared error
	Accuracy float64 // single-label accuracy; multi-label subset accuracy; 0 for regression
}

// MainMetric is the task's main metric.
func MainMetric(task string) string { return MetricsOf(task)[0] }

// ScoreTask scores logits (per row, in row order) against rows' targets by
// metric ("" for the task's main one, else one of MetricsOf(task)). Rows
// without a target (unlabelled) are left out.
func ScoreTask(task, metric string, rows *dataset.Rows, logits [][]float32) TaskScore {
	if metric == "" {
		metric = MainMetric(task)
	}
	switch task {
	case dataset.MultiLabel:
		return scoreMultiLabel(metric, rows, logits)
	case dataset.Regression:
		return scoreRegression(metric, rows, logits)
	}
	s := TaskScore{Metric: metric}
	var correct, n int
	var tp, fp, fn []int
	for i, lg := range logits {
		y := rows.Labels[i]
		if y < 0 || int(y) >= len(lg) {
			continue
		}
		if tp == nil {
			tp, fp, fn = make([]int, len(lg)), make([]int, len(lg)), make([]int, len(lg))
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
	case MetricF1:
		if len(tp) > 1 {
			s.Value = f1(tp[1], fp[1], fn[1])
		}
	case MetricMacroF1:
		s.Value = macroF1(tp, fp, fn)
	default:
		s.Value = s.Accuracy
	}
	return s
}

// f1 is 2tp / (2tp + fp + fn); 0 when the class was neither true nor
// predicted (scikit-learn's zero_division=0).
func f1(tp, fp, fn int) float64 {
	if d := 2*tp + fp + fn; d > 0 {
		return 2 * float64(tp) / float64(d)
	}
	return 0
}

func macroF1(tp, fp, fn []int) float64 {
	var sum float64
	for j := range tp {
		sum += f1(tp[j], fp[j], fn[j])
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
	if metric == MetricMicroF1 {
		var atp, afp, afn int
		for j := range k {
			atp, afp, afn = atp+tp[j], afp+fp[j], afn+fn[j]
		}
		s.Value = f1(atp, afp, afn)
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
	if metric == MetricSpearman {
		s.Value = pearson(ranks(pred), ranks(truth))
	} else {
		s.Value = pearson(pred, truth)
	}
	return s
}

// ranks are x's ranks (1-based), ties sharing their mean rank: Spearman's
// rho is Pearson's r of the ranks.
func ranks(x []float64) []float64 {
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return x[idx[a]] < x[idx[b]] })
	r := make([]float64, len(x))
	for lo := 0; lo < len(idx); {
		hi := lo
		for hi+1 < len(idx) && x[idx[hi+1]] == x[idx[lo]] {
			hi++
		}
		mean := float64(lo+hi)/2 + 1
		for k := lo; k <= hi; k++ {
			r[idx[k]] = mean
		}
		lo = hi + 1
	}
	return r
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
