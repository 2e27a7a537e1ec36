package trainer

import (
	"fmt"
	"math"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
)

// thresholdGrid is the number of candidate thresholds: 0.01, 0.02, ... 0.99.
const thresholdGrid = 99

// TuneThresholds chooses a multi-label model's decision thresholds from its
// logits on the validation rows (see model.Thresholds for the rules). Among
// equally good thresholds the one nearest 0.5 wins, so a label whose F1 is
// flat keeps the usual decision.
func TuneThresholds(rows *dataset.Rows, logits [][]float32, labels []string, split string) *model.Thresholds {
	k := len(labels)
	// tp/fp/fn[g*k+j]: label j decided at grid threshold g.
	tp, fp, fn := make([]int64, thresholdGrid*k), make([]int64, thresholdGrid*k), make([]int64, thresholdGrid*k)
	positives := make([]int64, k)
	truth := make([]bool, k)
	for i, lg := range logits {
		clear(truth)
		for _, l := range rows.Multi[i] {
			if int(l) < k {
				truth[l] = true
				positives[l]++
			}
		}
		for j := 0; j < k && j < len(lg); j++ {
			p := 1 / (1 + math.Exp(-float64(lg[j])))
			for g := range thresholdGrid {
				at := g*k + j
				switch pred := p > gridValue(g); {
				case pred && truth[j]:
					tp[at]++
				case pred:
					fp[at]++
				case truth[j]:
					fn[at]++
				}
			}
		}
	}
	better := func(v, best float64, g, bestG int) bool {
		return v > best || (v == best && math.Abs(gridValue(g)-0.5) < math.Abs(gridValue(bestG)-0.5))
	}
	t := &model.Thresholds{Labels: append([]string(nil), labels...), PerLabel: make([]float64, k),
		TunedOn: fmt.Sprintf("%s (%d rows)", split, len(logits))}
	bestMacro, bestG := -1.0, 0
	for g := range thresholdGrid {
		var sum float64
		for j := range k {
			sum += report.F1(tp[g*k+j], fp[g*k+j], fn[g*k+j])
		}
		if macro := sum / float64(k); better(macro, bestMacro, g, bestG) {
			bestMacro, bestG = macro, g
		}
	}
	t.Global = gridValue(bestG)
	for j := range k {
		if positives[j] == 0 {
			t.PerLabel[j] = t.Global
			continue
		}
		best, bg := -1.0, 0
		for g := range thresholdGrid {
			if v := report.F1(tp[g*k+j], fp[g*k+j], fn[g*k+j]); better(v, best, g, bg) {
				best, bg = v, g
			}
		}
		t.PerLabel[j] = gridValue(bg)
	}
	return t
}

// gridValue is grid threshold g as a probability, rounded to two decimals
// so that the file reads 0.35, not 0.35000000000000003.
func gridValue(g int) float64 { return math.Round(float64(g+1)) / 100 }
