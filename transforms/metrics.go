package transforms

import (
	"fmt"
	"math"
	"math/big"
	"reflect"
	"sort"
	"strconv"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/report"
)

// Classification metrics, computed two ways that must agree:
//
//   - MetricsFn, a Beam CombineFn whose accumulator is a set of sums, so Beam
//     can pre-combine on every worker and merge partial results in any order;
//   - ComputeMetrics, a plain single-pass computation over a slice, written
//     independently of the combiner (tests check one against the other, and
//     callers outside a pipeline can use it directly).
//
// Confidence intervals come from a Poisson bootstrap: every example gets, in
// each replicate b, a weight w ~ Poisson(1) drawn from a hash of (seed,
// example ID, b) rather than from a random stream. A resample therefore does
// not depend on which worker saw the example, on bundle boundaries or on the
// merge order, and the replicates' counts are sums like everything else in
// the accumulator. (This assumes example IDs are unique: rows sharing an ID
// share their weights.)

func init() {
	register.Combiner3[metricsAccum, Prediction, report.Metrics](&MetricsFn{})
	register.Function1x2(keyPredictionByModel)
	register.Function2x1(toModelMetrics)
	register.DoFn2x0[Prediction, func(metricsSliceKey, Prediction)](&keyPredictionBySliceFn{})
	register.Emitter2[metricsSliceKey, Prediction]()
	register.Function2x1(toModelSliceMetrics)
	for _, t := range []any{metricsAccum{}, report.Metrics{}, ModelMetrics{}, ModelSliceMetrics{}, report.SliceMetrics{}, metricsSliceKey{}} {
		beam.RegisterType(reflect.TypeOf(t))
	}
}

const (
	// CalibrationBins is the number of equal-width bins over the top
	// probability used for ECE and the reliability diagram.
	CalibrationBins = 15
	// DefaultBootstrap is the number of bootstrap replicates when none is set.
	DefaultBootstrap = 1000
	// maxTopK is the largest k reported as top-k accuracy.
	maxTopK = 5
	// minProb clips the true class's probability before the log, so a
	// confidently wrong prediction costs -log(1e-15) ≈ 34.5, not +Inf (the
	// same clip as scikit-learn's log_loss).
	minProb = 1e-15
)

// ModelMetrics is one model's metrics, as EvaluateMetrics emits them.
type ModelMetrics struct {
	Model   string         `json:"model"`
	Metrics report.Metrics `json:"metrics"`
}

// ModelSliceMetrics is one model's metrics on one slice of the evaluation set,
// as SliceMetricsOf emits them.
type ModelSliceMetrics struct {
	Model string              `json:"model"`
	Slice report.SliceMetrics `json:"slice"`
}

// MetricsFn combines predictions into Metrics.
//
// A row is scored when its true label is known and in range (0 <= Label < K),
// its Pred is in range and it has exactly K probabilities; other rows are
// ignored (Label -1 marks an unlabelled row; the rest are malformed).
//
// Correctness means Pred == Label; calibration uses the top probability as the
// confidence, which is the confidence in Pred when Pred is the argmax (as
// inference produces it). Top-k ranks classes by probability, ties broken
// towards the lower class index.
//
// The accumulator holds K×K confusion counts, 15 calibration bins, the
// top-k hit counts and, per bootstrap replicate, 3K weighted counts (support,
// predicted and true positives per class: all that accuracy and macro-F1
// need). That is B·3K int64s, 96 KiB for K = 4 and B = 1000, and it grows
// linearly in K rather than as K² (a full per-replicate confusion matrix would
// be 3.2 MiB at K = 20). Accumulators are allocated on the first scored row,
// so an empty one (e.g. a key's accumulator in a bundle that saw none of its
// rows) encodes to a few bytes.
type MetricsFn struct {
	Labels    []string // class names; index = class id
	Bootstrap int      // replicates; 0 means DefaultBootstrap, < 0 disables intervals
	Seed      int64    // seeds the bootstrap weights
}

// metricsAccum is MetricsFn's accumulator. Every field is a sum over scored
// rows, so merging is element-wise addition. Integer counts merge exactly in
// any order; the two float sums (log loss, confidence) only up to rounding.
type metricsAccum struct {
	Examples   int64
	Confusion  []int64   // K×K, row-major: [true][pred]
	LogLoss    float64   // Σ -log(clip(p_true))
	BinCount   []int64   // CalibrationBins
	BinConf    []float64 // Σ top probability per bin
	BinCorrect []int64   // correct rows per bin
	TopKHits   []int64   // [i] counts rows whose true class ranks within the top i+2
	// Boot holds B blocks of 3K weighted counts: support[K], predicted[K],
	// truePositives[K].
	Boot []int64
}

// replicates is the number of bootstrap replicates the fn computes.
func (fn *MetricsFn) replicates() int {
	switch {
	case fn.Bootstrap == 0:
		return DefaultBootstrap
	case fn.Bootstrap < 0:
		return 0
	}
	return fn.Bootstrap
}

// topKCount is how many k values (2, 3, ...) top-k accuracy is reported for.
func topKCount(k int) int {
	if k <= 2 {
		return 0
	}
	return min(maxTopK, k-1) - 1
}

// scorable says whether a prediction counts towards the metrics of K classes.
func scorable(p Prediction, k int) bool {
	return p.Label >= 0 && int(p.Label) < k && p.Pred >= 0 && int(p.Pred) < k && len(p.Probs) == k
}

// sized returns s, allocated to n elements when empty; an error when it holds
// a different number (an accumulator made for another label set).
func sized[T int64 | float64](s []T, n int, name string) ([]T, error) {
	switch len(s) {
	case n:
		return s, nil
	case 0:
		return make([]T, n), nil
	}
	return s, fmt.Errorf("metrics accumulator: %s has %d entries, want %d (label set changed?)", name, len(s), n)
}

// shape allocates a's empty fields and checks the others' sizes.
func (fn *MetricsFn) shape(a *metricsAccum) error {
	k := len(fn.Labels)
	var err error
	if a.Confusion, err = sized(a.Confusion, k*k, "confusion"); err != nil {
		return err
	}
	if a.BinCount, err = sized(a.BinCount, CalibrationBins, "bin counts"); err != nil {
		return err
	}
	if a.BinConf, err = sized(a.BinConf, CalibrationBins, "bin confidences"); err != nil {
		return err
	}
	if a.BinCorrect, err = sized(a.BinCorrect, CalibrationBins, "bin correct"); err != nil {
		return err
	}
	if a.TopKHits, err = sized(a.TopKHits, topKCount(k), "top-k hits"); err != nil {
		return err
	}
	a.Boot, err = sized(a.Boot, fn.replicates()*3*k, "bootstrap counts")
	return err
}

// empty says whether a has seen no scored row and holds no counts.
func (a *metricsAccum) empty() bool {
	return a.Examples == 0 && len(a.Confusion) == 0 && len(a.Boot) == 0
}

func (fn *MetricsFn) CreateAccumulator() metricsAccum { return metricsAccum{} }

func (fn *MetricsFn) AddInput(a metricsAccum, p Prediction) (metricsAccum, error) {
	k := len(fn.Labels)
	if !scorable(p, k) {
		return a, nil
	}
	if err := fn.shape(&a); err != nil {
		return a, err
	}
	t, q := int(p.Label), int(p.Pred)
	a.Examples++
	a.Confusion[t*k+q]++
	a.LogLoss -= math.Log(clipProb(p.Probs[t]))

	conf := topProb(p.Probs)
	bin := calibrationBin(conf)
	a.BinCount[bin]++
	a.BinConf[bin] += conf
	if t == q {
		a.BinCorrect[bin]++
	}

	if len(a.TopKHits) > 0 {
		r := classRank(p.Probs, t)
		for i := range a.TopKHits {
			if r < i+2 {
				a.TopKHits[i]++
			}
		}
	}

	// The bootstrap dominates the cost (B draws per row): hash the ID once,
	// then one SplitMix64 step and a table scan per replicate.
	if len(a.Boot) > 0 {
		h := bootstrapExampleHash(fn.Seed, p.ID)
		stride := 3 * k
		for b, off := 0, 0; off < len(a.Boot); b, off = b+1, off+stride {
			w := poissonOne(bootstrapReplicateHash(h, b))
			if w == 0 {
				continue
			}
			blk := a.Boot[off : off+stride]
			blk[t] += w
			blk[k+q] += w
			if t == q {
				blk[2*k+t] += w
			}
		}
	}
	return a, nil
}

func (fn *MetricsFn) MergeAccumulators(a, b metricsAccum) (metricsAccum, error) {
	if b.empty() {
		return a, nil
	}
	if a.empty() {
		// Adopt b's arrays instead of allocating: Beam does not reuse an
		// accumulator once it has been merged into another.
		return b, fn.shape(&b)
	}
	if err := fn.shape(&a); err != nil {
		return a, err
	}
	if err := fn.shape(&b); err != nil {
		return a, err
	}
	a.Examples += b.Examples
	a.LogLoss += b.LogLoss
	addInts(a.Confusion, b.Confusion)
	addInts(a.BinCount, b.BinCount)
	addInts(a.BinCorrect, b.BinCorrect)
	addInts(a.TopKHits, b.TopKHits)
	addInts(a.Boot, b.Boot)
	for i, v := range b.BinConf {
		a.BinConf[i] += v
	}
	return a, nil
}

func addInts(dst, src []int64) {
	for i, v := range src {
		dst[i] += v
	}
}

func (fn *MetricsFn) ExtractOutput(a metricsAccum) (report.Metrics, error) {
	if err := fn.shape(&a); err != nil {
		return report.Metrics{}, err
	}
	k := len(fn.Labels)
	n := a.Examples
	m := report.Metrics{
		Task:      dataset.SingleLabel,
		Examples:  n,
		Labels:    append([]string(nil), fn.Labels...),
		Confusion: make([][]int64, k),
		PerClass:  make([]report.ClassMetrics, k),
	}
	support := make([]int64, k)
	predicted := make([]int64, k)
	tp := make([]int64, k)
	for i := range k {
		m.Confusion[i] = append([]int64(nil), a.Confusion[i*k:(i+1)*k]...)
		for j, c := range m.Confusion[i] {
			support[i] += c
			predicted[j] += c
		}
		tp[i] = a.Confusion[i*k+i]
	}
	var correct int64
	for i := range k {
		correct += tp[i]
		m.PerClass[i] = report.ClassMetrics{
			Label:     fn.Labels[i],
			Precision: ratio(tp[i], predicted[i]),
			Recall:    ratio(tp[i], support[i]),
			F1:        f1Score(tp[i], support[i], predicted[i]),
			Support:   support[i],
		}
	}
	m.Accuracy = ratio(correct, n)
	m.MacroF1 = macroF1(tp, support, predicted)
	m.MCC = matthews(correct, n, support, predicted)
	if k == 2 {
		m.PositiveF1 = m.PerClass[1].F1
	}
	m.MicroF1 = f1Score(correct, n, n) // every scored row is one prediction
	for i := range k {
		if n > 0 {
			m.WeightedF1 += float64(support[i]) * m.PerClass[i].F1 / float64(n)
		}
	}
	if n > 0 {
		m.LogLoss = a.LogLoss / float64(n)
	}

	m.Reliability = make([]report.ReliabilityBin, CalibrationBins)
	for i := range CalibrationBins {
		bin := report.ReliabilityBin{Lower: binEdge(i), Upper: binEdge(i + 1), Count: a.BinCount[i]}
		if c := a.BinCount[i]; c > 0 {
			bin.Confidence = a.BinConf[i] / float64(c)
			bin.Accuracy = float64(a.BinCorrect[i]) / float64(c)
			m.ECE += float64(c) / float64(n) * math.Abs(bin.Accuracy-bin.Confidence)
		}
		m.Reliability[i] = bin
	}
	for i, hits := range a.TopKHits {
		m.TopK = append(m.TopK, report.TopK{K: i + 2, Accuracy: ratio(hits, n)})
	}

	if len(a.Boot) > 0 {
		stride := 3 * k
		accs := make([]float64, 0, len(a.Boot)/stride)
		f1s := make([]float64, 0, len(a.Boot)/stride)
		var posF1s []float64
		for off := 0; off < len(a.Boot); off += stride {
			sup, pred, hit := a.Boot[off:off+k], a.Boot[off+k:off+2*k], a.Boot[off+2*k:off+3*k]
			var total, right int64
			for i := range k {
				total += sup[i]
				right += hit[i]
			}
			if total == 0 {
				continue // a replicate that drew no example says nothing
			}
			accs = append(accs, float64(right)/float64(total))
			f1s = append(f1s, macroF1(hit, sup, pred))
			if k == 2 {
				posF1s = append(posF1s, f1Score(hit[1], sup[1], pred[1]))
			}
		}
		m.AccuracyCI = percentileInterval(accs)
		m.MacroF1CI = percentileInterval(f1s)
		if k == 2 {
			m.PositiveF1CI = percentileInterval(posF1s)
		}
	}
	return m, nil
}

// matthews is the Matthews correlation coefficient of a K-class confusion
// matrix given by its trace, total, row sums (support) and column sums
// (predicted): (c·s − Σ p_k t_k) / √((s² − Σ p_k²)(s² − Σ t_k²)), 0 when a
// factor of the denominator is 0 (scikit-learn's matthews_corrcoef).
func matthews(correct, n int64, support, predicted []int64) float64 {
	c, s := float64(correct), float64(n)
	var pt, pp, tt float64
	for i := range support {
		p, t := float64(predicted[i]), float64(support[i])
		pt += p * t
		pp += p * p
		tt += t * t
	}
	den := (s*s - pp) * (s*s - tt)
	if den == 0 {
		return 0
	}
	return (c*s - pt) / math.Sqrt(den)
}

// ratio is num/den, 0 when den is 0 (scikit-learn's zero_division=0).
func ratio(num, den int64) float64 {
	if den == 0 {
		return 0
	}
	return float64(num) / float64(den)
}

// f1Score is 2tp/(2tp+fp+fn) = 2tp/(support+predicted): the harmonic mean of
// precision and recall, without the rounding of computing those first, and 0
// when undefined.
func f1Score(tp, support, predicted int64) float64 {
	if support+predicted == 0 {
		return 0
	}
	return float64(2*tp) / float64(support+predicted)
}

// macroF1 averages F1 over the classes present in the truth or the
// predictions, as scikit-learn does when not given the label list: a class
// absent from the evaluation set (or from a bootstrap replicate, or a slice)
// is not scored as a zero.
func macroF1(tp, support, predicted []int64) float64 {
	var sum float64
	var present int
	for i := range tp {
		if support[i]+predicted[i] == 0 {
			continue
		}
		sum += f1Score(tp[i], support[i], predicted[i])
		present++
	}
	if present == 0 {
		return 0
	}
	return sum / float64(present)
}

// percentileInterval is the 95% percentile interval of a bootstrap
// distribution; the zero Interval when there are no replicates.
func percentileInterval(vals []float64) report.Interval {
	if len(vals) == 0 {
		return report.Interval{}
	}
	sort.Float64s(vals)
	return report.Interval{Low: percentile(vals, 0.025), High: percentile(vals, 0.975)}
}

// percentile interpolates linearly between the closest ranks of sorted
// values (numpy's default, "type 7"): position q·(n-1).
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	h := q * float64(len(sorted)-1)
	lo := int(math.Floor(h))
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// probValue reads a probability, NaN as -Inf so a broken score never ranks
// first or counts as confidence.
func probValue(p float32) float64 {
	v := float64(p)
	if math.IsNaN(v) {
		return math.Inf(-1)
	}
	return v
}

// clipProb clips a probability to [minProb, 1]; NaN counts as minProb.
func clipProb(p float32) float64 {
	v := float64(p)
	if !(v >= minProb) {
		return minProb
	}
	return min(v, 1)
}

// topProb is the largest probability, clamped to [0, 1] so that bad scores
// still fall in a bin.
func topProb(probs []float32) float64 {
	top := math.Inf(-1)
	for _, p := range probs {
		top = max(top, probValue(p))
	}
	return min(max(top, 0), 1)
}

// calibrationBin is the bin of a confidence in [0, 1]: [i/15, (i+1)/15),
// with 1 in the last bin.
func calibrationBin(conf float64) int {
	return min(int(conf*CalibrationBins), CalibrationBins-1)
}

func binEdge(i int) float64 { return float64(i) / CalibrationBins }

// classRank is the 0-based rank of class t when classes are ordered by
// probability, highest first, ties towards the lower index.
func classRank(probs []float32, t int) int {
	pt := probValue(probs[t])
	r := 0
	for j, p := range probs {
		if v := probValue(p); v > pt || (v == pt && j < t) {
			r++
		}
	}
	return r
}

// The Poisson(1) bootstrap draw. The weight of an example in replicate b is
// the inverse CDF of Poisson(1) at u = SplitMix64(hash(seed, id) + b·γ) / 2^64:
// counter-based, so any worker computes the same weight for an example
// without coordination, and one 64-bit mix plus ~2 table comparisons on
// average per draw.

const splitMixGamma = 0x9e3779b97f4a7c15

// splitMix64 is SplitMix64's step-and-finalize (Steele, Lea, Flood 2014).
func splitMix64(z uint64) uint64 {
	z += splitMixGamma
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// bootstrapExampleHash hashes the ID (FNV-1a) and mixes in the seed.
func bootstrapExampleHash(seed int64, id string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return splitMix64(splitMix64(uint64(seed)) ^ h)
}

// bootstrapReplicateHash is the b-th output of a SplitMix64 stream started
// at the example's hash.
func bootstrapReplicateHash(h uint64, b int) uint64 {
	return splitMix64(h + uint64(b)*splitMixGamma)
}

// bootstrapWeight is example id's weight in replicate b.
func bootstrapWeight(seed int64, id string, b int) int64 {
	return poissonOne(bootstrapReplicateHash(bootstrapExampleHash(seed, id), b))
}

// poissonOne maps a uniform 64-bit value to a Poisson(1) draw: the number of
// CDF thresholds at or below it. Half the draws stop at the first comparison.
func poissonOne(u uint64) int64 {
	var w int64
	for w < int64(len(poissonOneCDF)) && u >= poissonOneCDF[w] {
		w++
	}
	return w
}

// poissonOneCDF[k] is floor(P(X <= k)·2^64) for X ~ Poisson(1), computed in
// 256-bit arithmetic (math/big is exact and identical on every platform,
// unlike math.Exp, whose last bit varies by architecture), up to the last k
// whose threshold is below 2^64 and distinct from the previous one (k = 20).
var poissonOneCDF = func() []uint64 {
	const prec = 256
	newF := func() *big.Float { return new(big.Float).SetPrec(prec) }
	// e^-1 = Σ_{j>=0} (-1)^j / j!: step n adds term = 1/(n-1)! with sign
	// (-1)^(n-1). 60 terms are far beyond 256 bits.
	einv, term := newF(), newF().SetInt64(1)
	for n := 1; n <= 60; n++ {
		if n%2 == 1 {
			einv.Add(einv, term)
		} else {
			einv.Sub(einv, term)
		}
		term.Quo(term, newF().SetInt64(int64(n)))
	}
	two64 := new(big.Int).Lsh(big.NewInt(1), 64)
	var out []uint64
	cdf, pmf := newF(), newF().Set(einv)
	for k := 0; ; k++ {
		if k > 0 {
			pmf.Quo(pmf, newF().SetInt64(int64(k)))
		}
		cdf.Add(cdf, pmf)
		scaled, _ := newF().SetMantExp(cdf, 64).Int(nil)
		if scaled.Cmp(two64) >= 0 || !scaled.IsUint64() {
			break
		}
		t := scaled.Uint64()
		if len(out) > 0 && t == out[len(out)-1] {
			break
		}
		out = append(out, t)
	}
	return out
}()

// ComputeMetrics computes the metrics of preds directly, in plain loops,
// without MetricsFn's accumulator: the reference the combiner is tested
// against, and a way to score predictions outside a pipeline. bootstrap is
// the number of replicates (0: DefaultBootstrap; < 0: no intervals). Scoring
// rules are MetricsFn's.
func ComputeMetrics(preds []Prediction, labels []string, bootstrap int, seed int64) report.Metrics {
	k := len(labels)
	if bootstrap == 0 {
		bootstrap = DefaultBootstrap
	}
	var rows []Prediction
	for _, p := range preds {
		if p.Label < 0 || int(p.Label) >= k || p.Pred < 0 || int(p.Pred) >= k || len(p.Probs) != k {
			continue
		}
		rows = append(rows, p)
	}
	n := len(rows)

	confusion := make([][]int64, k)
	for i := range confusion {
		confusion[i] = make([]int64, k)
	}
	var logLoss float64
	binN := make([]int64, CalibrationBins)
	binConf := make([]float64, CalibrationBins)
	binRight := make([]int64, CalibrationBins)
	var ks []int
	if k > 2 {
		for kk := 2; kk <= min(maxTopK, k-1); kk++ {
			ks = append(ks, kk)
		}
	}
	topHits := make([]int64, len(ks))
	order := make([]int, k)
	for _, p := range rows {
		confusion[p.Label][p.Pred]++

		pt := float64(p.Probs[p.Label])
		if math.IsNaN(pt) || pt < minProb {
			pt = minProb
		} else if pt > 1 {
			pt = 1
		}
		logLoss += -math.Log(pt)

		conf := 0.0
		for _, q := range p.Probs {
			if v := float64(q); v > conf {
				conf = v
			}
		}
		conf = math.Min(conf, 1)
		b := int(math.Floor(conf * CalibrationBins))
		if b == CalibrationBins {
			b--
		}
		binN[b]++
		binConf[b] += conf
		if p.Pred == p.Label {
			binRight[b]++
		}

		// Top-k by sorting the classes: by probability, highest first, NaN
		// last, ties to the lower index.
		for i := range order {
			order[i] = i
		}
		probs := p.Probs
		sort.SliceStable(order, func(x, y int) bool {
			a, b := float64(probs[order[x]]), float64(probs[order[y]])
			if math.IsNaN(b) {
				return !math.IsNaN(a)
			}
			return a > b
		})
		for i, kk := range ks {
			for _, c := range order[:kk] {
				if c == int(p.Label) {
					topHits[i]++
				}
			}
		}
	}

	m := report.Metrics{Task: dataset.SingleLabel, Examples: int64(n), Labels: append([]string(nil), labels...), Confusion: confusion}
	var correct int64
	f1 := make([]float64, k)
	for i := 0; i < k; i++ {
		var row, col int64
		for j := 0; j < k; j++ {
			row += confusion[i][j]
			col += confusion[j][i]
		}
		tp := confusion[i][i]
		correct += tp
		cm := report.ClassMetrics{Label: labels[i], Support: row}
		if col > 0 {
			cm.Precision = float64(tp) / float64(col)
		}
		if row > 0 {
			cm.Recall = float64(tp) / float64(row)
		}
		if row+col > 0 {
			cm.F1 = float64(2*tp) / float64(row+col)
		}
		f1[i] = cm.F1
		m.PerClass = append(m.PerClass, cm)
	}
	if n > 0 {
		m.Accuracy = float64(correct) / float64(n)
		m.MicroF1 = float64(2*correct) / float64(2*n)
		m.LogLoss = logLoss / float64(n)
		for i := 0; i < k; i++ {
			m.WeightedF1 += float64(m.PerClass[i].Support) * f1[i] / float64(n)
		}
		for i := range ks {
			m.TopK = append(m.TopK, report.TopK{K: ks[i], Accuracy: float64(topHits[i]) / float64(n)})
		}
	} else {
		for i := range ks {
			m.TopK = append(m.TopK, report.TopK{K: ks[i]})
		}
	}
	m.MacroF1 = macroF1OfConfusion(confusion)
	m.MCC = mccOfConfusion(confusion)
	if k == 2 {
		m.PositiveF1 = f1[1]
	}

	for b := 0; b < CalibrationBins; b++ {
		rb := report.ReliabilityBin{Lower: float64(b) / CalibrationBins, Upper: float64(b+1) / CalibrationBins, Count: binN[b]}
		if binN[b] > 0 {
			rb.Confidence = binConf[b] / float64(binN[b])
			rb.Accuracy = float64(binRight[b]) / float64(binN[b])
			m.ECE += float64(binN[b]) / float64(n) * math.Abs(rb.Accuracy-rb.Confidence)
		}
		m.Reliability = append(m.Reliability, rb)
	}

	// The bootstrap, replicate by replicate: a weighted confusion matrix per
	// replicate, from the same per-example weights MetricsFn draws.
	if bootstrap > 0 {
		var accs, f1s, posF1s []float64
		cb := make([][]int64, k)
		for i := range cb {
			cb[i] = make([]int64, k)
		}
		for b := 0; b < bootstrap; b++ {
			for i := range cb {
				clear(cb[i])
			}
			var total, right int64
			for _, p := range rows {
				w := bootstrapWeight(seed, p.ID, b)
				cb[p.Label][p.Pred] += w
				total += w
				if p.Label == p.Pred {
					right += w
				}
			}
			if total == 0 {
				continue
			}
			accs = append(accs, float64(right)/float64(total))
			f1s = append(f1s, macroF1OfConfusion(cb))
			if k == 2 {
				posF1s = append(posF1s, report.F1(cb[1][1], cb[0][1], cb[1][0]))
			}
		}
		sort.Float64s(accs)
		sort.Float64s(f1s)
		sort.Float64s(posF1s)
		if len(accs) > 0 {
			m.AccuracyCI = report.Interval{Low: percentile(accs, 0.025), High: percentile(accs, 0.975)}
			m.MacroF1CI = report.Interval{Low: percentile(f1s, 0.025), High: percentile(f1s, 0.975)}
		}
		if len(posF1s) > 0 {
			m.PositiveF1CI = report.Interval{Low: percentile(posF1s, 0.025), High: percentile(posF1s, 0.975)}
		}
	}
	return m
}

// macroF1OfConfusion is the macro F1 of a confusion matrix, over the classes
// present in its rows or columns.
func macroF1OfConfusion(c [][]int64) float64 {
	var sum float64
	var present int
	for i := range c {
		var row, col int64
		for j := range c {
			row += c[i][j]
			col += c[j][i]
		}
		if row+col == 0 {
			continue
		}
		sum += float64(2*c[i][i]) / float64(row+col)
		present++
	}
	if present == 0 {
		return 0
	}
	return sum / float64(present)
}

// mccOfConfusion is the Matthews correlation of a confusion matrix, as the
// covariance of the one-hot truth and prediction over the product of their
// standard deviations, in float64 sums.
func mccOfConfusion(c [][]int64) float64 {
	k := len(c)
	var n float64
	rows, cols := make([]float64, k), make([]float64, k)
	for i := range c {
		for j := range c {
			v := float64(c[i][j])
			n += v
			rows[i] += v
			cols[j] += v
		}
	}
	var cov, vt, vp float64
	for i := range k {
		cov += float64(c[i][i])*n - rows[i]*cols[i]
		vt += rows[i] * (n - rows[i])
		vp += cols[i] * (n - cols[i])
	}
	if vt == 0 || vp == 0 {
		return 0
	}
	return cov / math.Sqrt(vt*vp)
}

// EvaluateMetrics computes each model's metrics over a PCollection of
// Prediction, keyed by Prediction.Model so that several models' predictions
// are scored in one pass, with the task's combiner (MetricsFn,
// MultiLabelMetricsFn or RegressionMetricsFn). It returns a PCollection of
// ModelMetrics, one per model seen. Intervals use DefaultBootstrap
// replicates.
func EvaluateMetrics(s beam.Scope, preds beam.PCollection, task string, labels []string, seed int64) beam.PCollection {
	s = s.Scope("EvaluateMetrics")
	keyed := beam.ParDo(s, keyPredictionByModel, preds)
	combined := beam.CombinePerKey(s, metricsCombiner(task, labels, seed), keyed)
	return beam.ParDo(s, toModelMetrics, combined)
}

// metricsCombiner is the CombineFn that scores a task's predictions.
func metricsCombiner(task string, labels []string, seed int64) any {
	switch task {
	case dataset.MultiLabel:
		return &MultiLabelMetricsFn{Labels: labels, Seed: seed}
	case dataset.Regression:
		return &RegressionMetricsFn{Seed: seed}
	}
	return &MetricsFn{Labels: labels, Seed: seed}
}

func keyPredictionByModel(p Prediction) (string, Prediction) { return p.Model, p }

func toModelMetrics(model string, m report.Metrics) ModelMetrics {
	return ModelMetrics{Model: model, Metrics: m}
}

// metricsSliceKey groups predictions by model and slice.
type metricsSliceKey struct {
	Model, Column, Value string
}

// SliceMetricsOf computes each model's metrics per slice of the labelled
// predictions: per token-length bucket (column "length"), per true label of
// a single-label task (column "label", value the label's name) and per unit
// interval of the true score of a regression task (column "score", value
// e.g. "3-4" for [3, 4)). lengthEdges are inclusive upper bounds: edges 16,
// 32 make buckets "1-16", "17-32" and "33+"; rows without a length (Length
// <= 0) fall in "unknown". Without edges there are no length slices.
// Unlabelled single-label rows belong to no slice. Output order is
// unspecified.
func SliceMetricsOf(s beam.Scope, preds beam.PCollection, task string, labels []string, seed int64, lengthEdges []int32) beam.PCollection {
	s = s.Scope("SliceMetrics")
	keyed := beam.ParDo(s, &keyPredictionBySliceFn{Task: task, Labels: labels, Edges: normalizeEdges(lengthEdges)}, preds)
	combined := beam.CombinePerKey(s, metricsCombiner(task, labels, seed), keyed)
	return beam.ParDo(s, toModelSliceMetrics, combined)
}

// normalizeEdges sorts the positive edges and drops duplicates.
func normalizeEdges(edges []int32) []int32 {
	var out []int32
	for _, e := range edges {
		if e > 0 {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	uniq := out[:0]
	for i, e := range out {
		if i == 0 || e != out[i-1] {
			uniq = append(uniq, e)
		}
	}
	return uniq
}

// lengthBucket names the bucket of a token length for sorted, distinct,
// positive edges.
func lengthBucket(length int32, edges []int32) string {
	if length <= 0 {
		return "unknown"
	}
	lo := int32(1)
	for _, e := range edges {
		if length <= e {
			return strconv.Itoa(int(lo)) + "-" + strconv.Itoa(int(e))
		}
		lo = e + 1
	}
	return strconv.Itoa(int(lo)) + "+"
}

// keyPredictionBySliceFn emits each labelled prediction once per slice
// column it belongs to.
type keyPredictionBySliceFn struct {
	Task   string
	Labels []string
	Edges  []int32 // normalized
}

func (fn *keyPredictionBySliceFn) ProcessElement(p Prediction, emit func(metricsSliceKey, Prediction)) {
	single := fn.Task != dataset.MultiLabel && fn.Task != dataset.Regression
	if single && (p.Label < 0 || int(p.Label) >= len(fn.Labels)) {
		return
	}
	if len(fn.Edges) > 0 {
		emit(metricsSliceKey{Model: p.Model, Column: "length", Value: lengthBucket(p.Length, fn.Edges)}, p)
	}
	switch {
	case single:
		emit(metricsSliceKey{Model: p.Model, Column: "label", Value: fn.Labels[p.Label]}, p)
	case fn.Task == dataset.Regression && finite(p.TrueScore):
		lo := math.Floor(float64(p.TrueScore))
		emit(metricsSliceKey{Model: p.Model, Column: "score", Value: strconv.FormatFloat(lo, 'g', -1, 64) + "-" + strconv.FormatFloat(lo+1, 'g', -1, 64)}, p)
	}
}

func toModelSliceMetrics(k metricsSliceKey, m report.Metrics) ModelSliceMetrics {
	return ModelSliceMetrics{Model: k.Model, Slice: report.SliceMetrics{Column: k.Column, Value: k.Value, Metrics: m}}
}
