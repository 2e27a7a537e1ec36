package report

import (
	"math"
	"sort"
)

// Statistics shared by the training loop's validation scores and the
// evaluation combiners, so that a checkpoint is selected by the same Pearson
// or F1 the report shows. Every function takes optional integer weights (nil:
// each point counts once), which is how a Poisson bootstrap replicate is
// scored without copying the data.

// F1 is 2tp/(2tp+fp+fn), 0 when the class was neither true nor predicted
// (scikit-learn's zero_division=0).
func F1(tp, fp, fn int64) float64 {
	if d := 2*tp + fp + fn; d > 0 {
		return float64(2*tp) / float64(d)
	}
	return 0
}

// Pearson is the weighted Pearson correlation of x and y; 0 when either side
// is constant (undefined there, and a constant prediction is no fit).
func Pearson(x, y []float64, w []int64) float64 {
	var n, mx, my float64
	for i := range x {
		wi := weight(w, i)
		n += wi
		mx += wi * x[i]
		my += wi * y[i]
	}
	if n == 0 {
		return 0
	}
	mx /= n
	my /= n
	var sxy, sxx, syy float64
	for i := range x {
		wi := weight(w, i)
		dx, dy := x[i]-mx, y[i]-my
		sxy += wi * dx * dy
		sxx += wi * dx * dx
		syy += wi * dy * dy
	}
	if sxx == 0 || syy == 0 {
		return 0
	}
	return sxy / math.Sqrt(sxx*syy)
}

// Spearman is the weighted Spearman rank correlation: Pearson's r of the
// ranks, ties sharing their mean rank, where a point of weight w stands for w
// copies (its copies tie with each other).
func Spearman(x, y []float64, w []int64) float64 {
	return Pearson(Ranks(x, w), Ranks(y, w), w)
}

// Ranks are x's 1-based ranks among the weighted points, ties sharing the
// mean rank of the positions they occupy. Points of weight 0 get rank 0 and
// take no position.
func Ranks(x []float64, w []int64) []float64 {
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return x[idx[a]] < x[idx[b]] })
	r := make([]float64, len(x))
	var before float64 // weight of the points ranked below the current group
	for lo := 0; lo < len(idx); {
		hi, group := lo, weight(w, idx[lo])
		for hi+1 < len(idx) && x[idx[hi+1]] == x[idx[lo]] {
			hi++
			group += weight(w, idx[hi])
		}
		// The group fills positions before+1 .. before+group.
		mean := before + (group+1)/2
		for k := lo; k <= hi; k++ {
			if weight(w, idx[k]) > 0 {
				r[idx[k]] = mean
			}
		}
		before += group
		lo = hi + 1
	}
	return r
}

func weight(w []int64, i int) float64 {
	if w == nil {
		return 1
	}
	return float64(w[i])
}

// AveragePrecision is the area under the precision-recall curve as
// scikit-learn's average_precision_score computes it, Σ (R_n − R_{n−1}) P_n
// over the distinct score thresholds, from histograms of the scores of
// positive and negative examples: pos[b] and neg[b] count the examples in
// bin b, bins ordered by score, ascending. Examples in one bin count as tied.
// 0 when there are no positives.
func AveragePrecision(pos, neg []int64) float64 {
	var total int64
	for _, c := range pos {
		total += c
	}
	if total == 0 {
		return 0
	}
	var tp, fp int64
	var ap, prevRecall float64
	for b := len(pos) - 1; b >= 0; b-- {
		if pos[b] == 0 && neg[b] == 0 {
			continue
		}
		tp += pos[b]
		fp += neg[b]
		recall := float64(tp) / float64(total)
		ap += (recall - prevRecall) * float64(tp) / float64(tp+fp)
		prevRecall = recall
	}
	return ap
}
