package transforms

import (
	"math"
	"reflect"
	"sort"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/report"
)

// Regression metrics. Spearman's rank correlation needs every point's rank,
// which no fixed-size sum gives, so the accumulator keeps the points: 16
// bytes a row (16 MB for a million-row evaluation split). Merging appends;
// ExtractOutput sorts the points by their example hash first, so the result
// does not depend on how Beam split and merged them.

func init() {
	register.Combiner3[regressionAccum, Prediction, report.Metrics](&RegressionMetricsFn{})
	beam.RegisterType(reflect.TypeOf(regressionAccum{}))
}

// RegressionMetricsFn combines regression predictions (Score against
// TrueScore) into Metrics: Pearson and Spearman with bootstrap intervals,
// MSE, MAE, the mean residual and a sample of points for the scatter plot.
// Rows with a non-finite score or target are ignored.
type RegressionMetricsFn struct {
	Bootstrap int // replicates; 0 means DefaultBootstrap, < 0 disables intervals
	Seed      int64
}

type regressionAccum struct {
	Hash  []uint64 // bootstrapExampleHash of each row's ID
	Pred  []float32
	Truth []float32
}

func (fn *RegressionMetricsFn) CreateAccumulator() regressionAccum { return regressionAccum{} }

func (fn *RegressionMetricsFn) AddInput(a regressionAccum, p Prediction) regressionAccum {
	if !finite(p.Score) || !finite(p.TrueScore) {
		return a
	}
	a.Hash = append(a.Hash, bootstrapExampleHash(fn.Seed, p.ID))
	a.Pred = append(a.Pred, p.Score)
	a.Truth = append(a.Truth, p.TrueScore)
	return a
}

func finite(v float32) bool { return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) }

func (fn *RegressionMetricsFn) MergeAccumulators(a, b regressionAccum) regressionAccum {
	a.Hash = append(a.Hash, b.Hash...)
	a.Pred = append(a.Pred, b.Pred...)
	a.Truth = append(a.Truth, b.Truth...)
	return a
}

func (fn *RegressionMetricsFn) ExtractOutput(a regressionAccum) report.Metrics {
	n := len(a.Hash)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(x, y int) bool {
		i, j := order[x], order[y]
		if a.Hash[i] != a.Hash[j] {
			return a.Hash[i] < a.Hash[j]
		}
		if a.Truth[i] != a.Truth[j] {
			return a.Truth[i] < a.Truth[j]
		}
		return a.Pred[i] < a.Pred[j]
	})
	hash := make([]uint64, n)
	pred, truth := make([]float64, n), make([]float64, n)
	for x, i := range order {
		hash[x], pred[x], truth[x] = a.Hash[i], float64(a.Pred[i]), float64(a.Truth[i])
	}
	r := &report.RegressionMetrics{}
	m := report.Metrics{Task: dataset.Regression, Examples: int64(n), Regression: r}
	if n == 0 {
		return m
	}
	for i := range n {
		d := pred[i] - truth[i]
		r.MSE += d * d
		r.MAE += math.Abs(d)
		r.MeanResidual += d
	}
	r.MSE /= float64(n)
	r.MAE /= float64(n)
	r.MeanResidual /= float64(n)
	r.Pearson = report.Pearson(pred, truth, nil)
	r.Spearman = report.Spearman(pred, truth, nil)
	// The first points in hash order are a pseudo-random sample.
	for i := range min(n, report.ScatterPoints) {
		r.Points = append(r.Points, [2]float32{float32(truth[i]), float32(pred[i])})
	}
	if reps := (&MetricsFn{Bootstrap: fn.Bootstrap}).replicates(); reps > 0 {
		w := make([]int64, n)
		pearsons, spearmans := make([]float64, 0, reps), make([]float64, 0, reps)
		for b := range reps {
			var total int64
			for i, h := range hash {
				w[i] = poissonOne(bootstrapReplicateHash(h, b))
				total += w[i]
			}
			if total == 0 {
				continue
			}
			pearsons = append(pearsons, report.Pearson(pred, truth, w))
			spearmans = append(spearmans, report.Spearman(pred, truth, w))
		}
		r.PearsonCI = percentileInterval(pearsons)
		r.SpearmanCI = percentileInterval(spearmans)
	}
	return m
}
