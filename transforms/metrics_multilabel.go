package transforms

import (
	"math"
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/report"
)

// Multi-label metrics, as a CombineFn whose accumulator is sums (like
// MetricsFn's): per-label decision counts, per-example sums, per-label
// probability histograms for PR-AUC, and per-replicate weighted decision
// counts for the bootstrap intervals of macro- and micro-F1.

func init() {
	register.Combiner3[multiLabelAccum, Prediction, report.Metrics](&MultiLabelMetricsFn{})
	beam.RegisterType(reflect.TypeOf(multiLabelAccum{}))
}

// PRBins is the number of equal-width probability bins of the per-label
// histograms PR-AUC is computed from: examples whose probabilities share a
// bin count as tied.
const PRBins = 1000

// MultiLabelMetricsFn combines multi-label predictions (Probs, PredLabels
// decided at the model's thresholds, TrueLabels) into Metrics. A row is
// scored when it has one probability per label; label indices out of range
// are ignored.
//
// The accumulator holds 3K decision counts, 2·K·PRBins histogram counts and
// B·3K bootstrap counts: 1.4 MB for K = 28 labels and B = 1000, whatever the
// number of rows.
//
// The thresholds the labels were decided by are each model's own; the
// caller adds them to the report (ClassMetrics.Threshold,
// MultiLabelMetrics.Thresholds).
type MultiLabelMetricsFn struct {
	Labels    []string
	Bootstrap int // replicates; 0 means DefaultBootstrap, < 0 disables intervals
	Seed      int64
}

type multiLabelAccum struct {
	Examples  int64
	Exact     int64   // rows whose predicted set is the true set
	Wrong     int64   // wrong (row, label) decisions
	SamplesF1 float64 // Σ per-row F1
	TrueCount int64   // Σ true labels
	PredCount int64   // Σ predicted labels
	LogLoss   float64 // Σ per-label binary cross-entropy
	Counts    []int64 // 3K: true positives, false positives, false negatives per label
	Pos, Neg  []int64 // K×PRBins: probability histograms of the label's positive and negative rows
	Boot      []int64 // B blocks of 3K weighted counts, as Counts
}

func (fn *MultiLabelMetricsFn) replicates() int {
	return (&MetricsFn{Bootstrap: fn.Bootstrap}).replicates()
}

func (fn *MultiLabelMetricsFn) shape(a *multiLabelAccum) error {
	k := len(fn.Labels)
	var err error
	if a.Counts, err = sized(a.Counts, 3*k, "label counts"); err != nil {
		return err
	}
	if a.Pos, err = sized(a.Pos, k*PRBins, "positive histogram"); err != nil {
		return err
	}
	if a.Neg, err = sized(a.Neg, k*PRBins, "negative histogram"); err != nil {
		return err
	}
	a.Boot, err = sized(a.Boot, fn.replicates()*3*k, "bootstrap counts")
	return err
}

func (a *multiLabelAccum) empty() bool { return a.Examples == 0 && len(a.Counts) == 0 }

func (fn *MultiLabelMetricsFn) CreateAccumulator() multiLabelAccum { return multiLabelAccum{} }

// decisions marks a row's true and predicted labels.
func decisions(p Prediction, k int) (truth, pred []bool) {
	truth, pred = make([]bool, k), make([]bool, k)
	for _, l := range p.TrueLabels {
		if l >= 0 && int(l) < k {
			truth[l] = true
		}
	}
	for _, l := range p.PredLabels {
		if l >= 0 && int(l) < k {
			pred[l] = true
		}
	}
	return truth, pred
}

func (fn *MultiLabelMetricsFn) AddInput(a multiLabelAccum, p Prediction) (multiLabelAccum, error) {
	k := len(fn.Labels)
	if len(p.Probs) != k {
		return a, nil
	}
	if err := fn.shape(&a); err != nil {
		return a, err
	}
	truth, pred := decisions(p, k)
	a.Examples++
	var hit, nTrue, nPred int64
	for j := range k {
		prob := float64(p.Probs[j])
		bin := min(max(int(prob*PRBins), 0), PRBins-1)
		if truth[j] {
			a.Pos[j*PRBins+bin]++
			a.LogLoss -= math.Log(clipProb(p.Probs[j]))
			nTrue++
		} else {
			a.Neg[j*PRBins+bin]++
			a.LogLoss -= math.Log(clipProb(float32(1 - prob)))
		}
		if pred[j] {
			nPred++
		}
		switch {
		case truth[j] && pred[j]:
			a.Counts[j]++
			hit++
		case pred[j]:
			a.Counts[k+j]++
		case truth[j]:
			a.Counts[2*k+j]++
		}
	}
	wrong := nTrue + nPred - 2*hit
	a.Wrong += wrong
	if wrong == 0 {
		a.Exact++
	}
	a.TrueCount += nTrue
	a.PredCount += nPred
	a.SamplesF1 += report.F1(hit, nPred-hit, nTrue-hit)

	if len(a.Boot) > 0 && (nTrue > 0 || nPred > 0) {
		h := bootstrapExampleHash(fn.Seed, p.ID)
		stride := 3 * k
		for b, off := 0, 0; off < len(a.Boot); b, off = b+1, off+stride {
			w := poissonOne(bootstrapReplicateHash(h, b))
			if w == 0 {
				continue
			}
			blk := a.Boot[off : off+stride]
			for j := range k {
				switch {
				case truth[j] && pred[j]:
					blk[j] += w
				case pred[j]:
					blk[k+j] += w
				case truth[j]:
					blk[2*k+j] += w
				}
			}
		}
	}
	return a, nil
}

func (fn *MultiLabelMetricsFn) MergeAccumulators(a, b multiLabelAccum) (multiLabelAccum, error) {
	if b.empty() {
		return a, nil
	}
	if a.empty() {
		return b, fn.shape(&b)
	}
	if err := fn.shape(&a); err != nil {
		return a, err
	}
	if err := fn.shape(&b); err != nil {
		return a, err
	}
	a.Examples += b.Examples
	a.Exact += b.Exact
	a.Wrong += b.Wrong
	a.SamplesF1 += b.SamplesF1
	a.TrueCount += b.TrueCount
	a.PredCount += b.PredCount
	a.LogLoss += b.LogLoss
	addInts(a.Counts, b.Counts)
	addInts(a.Pos, b.Pos)
	addInts(a.Neg, b.Neg)
	addInts(a.Boot, b.Boot)
	return a, nil
}

func (fn *MultiLabelMetricsFn) ExtractOutput(a multiLabelAccum) (report.Metrics, error) {
	if err := fn.shape(&a); err != nil {
		return report.Metrics{}, err
	}
	k := len(fn.Labels)
	n := a.Examples
	m := report.Metrics{Task: dataset.MultiLabel, Examples: n, Labels: append([]string(nil), fn.Labels...),
		MultiLabel: &report.MultiLabelMetrics{}}
	tp, fp, fnn := a.Counts[:k], a.Counts[k:2*k], a.Counts[2*k:]
	m.MacroF1, m.MicroF1, m.WeightedF1 = multiLabelF1s(tp, fp, fnn)
	var apSum float64
	for j := range k {
		cm := report.ClassMetrics{Label: fn.Labels[j], Precision: ratio(tp[j], tp[j]+fp[j]), Recall: ratio(tp[j], tp[j]+fnn[j]),
			F1: report.F1(tp[j], fp[j], fnn[j]), Support: tp[j] + fnn[j],
			AveragePrecision: report.AveragePrecision(a.Pos[j*PRBins:(j+1)*PRBins], a.Neg[j*PRBins:(j+1)*PRBins])}
		apSum += cm.AveragePrecision
		m.PerClass = append(m.PerClass, cm)
	}
	if n > 0 {
		m.Accuracy = ratio(a.Exact, n)
		m.LogLoss = a.LogLoss / float64(n*int64(k))
		ml := m.MultiLabel
		ml.SamplesF1 = a.SamplesF1 / float64(n)
		ml.HammingLoss = float64(a.Wrong) / float64(n*int64(k))
		ml.LabelCardinality = float64(a.TrueCount) / float64(n)
		ml.PredictedCardinality = float64(a.PredCount) / float64(n)
		ml.MacroAveragePrecision = apSum / float64(k)
	}
	if len(a.Boot) > 0 && n > 0 {
		stride := 3 * k
		var macros, micros []float64
		for off := 0; off < len(a.Boot); off += stride {
			blk := a.Boot[off : off+stride]
			macro, micro, _ := multiLabelF1s(blk[:k], blk[k:2*k], blk[2*k:])
			macros, micros = append(macros, macro), append(micros, micro)
		}
		m.MacroF1CI = percentileInterval(macros)
		m.MultiLabel.MicroF1CI = percentileInterval(micros)
	}
	return m, nil
}

// multiLabelF1s are the macro (every label, a label never true nor predicted
// scoring 0: scikit-learn's average="macro" with zero_division=0), micro and
// support-weighted F1 of per-label decision counts.
func multiLabelF1s(tp, fp, fn []int64) (macro, micro, weighted float64) {
	var atp, afp, afn, support int64
	for j := range tp {
		f := report.F1(tp[j], fp[j], fn[j])
		macro += f
		weighted += f * float64(tp[j]+fn[j])
		atp, afp, afn = atp+tp[j], afp+fp[j], afn+fn[j]
		support += tp[j] + fn[j]
	}
	if len(tp) > 0 {
		macro /= float64(len(tp))
	}
	if support > 0 {
		weighted /= float64(support)
	}
	return macro, report.F1(atp, afp, afn), weighted
}
