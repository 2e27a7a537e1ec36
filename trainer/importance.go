package trainer

import (
	"fmt"
	"math"
	"sort"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/sugarme/gotch/ts"
)

// Importance is, per encoder layer, the summed |∂loss/∂mask| of every
// attention head and FFN neuron over Batches batches (model.ImportanceMasks).
// Sums from different shards add up (Merge), so workers score their own
// shards and one combine gives the whole split's scores.
type Importance struct {
	Heads   [][]float64
	FFN     [][]float64
	Batches int
}

// Merge adds o's sums to imp's; the shapes must agree (the same model).
func (imp *Importance) Merge(o Importance) error {
	if o.Batches == 0 {
		return nil
	}
	if imp.Batches == 0 {
		imp.Heads, imp.FFN, imp.Batches = cloneRows(o.Heads), cloneRows(o.FFN), o.Batches
		return nil
	}
	if len(o.Heads) != len(imp.Heads) || len(o.FFN) != len(imp.FFN) {
		return fmt.Errorf("importance of a %d-layer model merged into a %d-layer one", len(o.Heads), len(imp.Heads))
	}
	for l := range imp.Heads {
		if len(o.Heads[l]) != len(imp.Heads[l]) || len(o.FFN[l]) != len(imp.FFN[l]) {
			return fmt.Errorf("layer %d: importance shapes differ", l)
		}
		for i, v := range o.Heads[l] {
			imp.Heads[l][i] += v
		}
		for i, v := range o.FFN[l] {
			imp.FFN[l][i] += v
		}
	}
	imp.Batches += o.Batches
	return nil
}

func cloneRows(r [][]float64) [][]float64 {
	out := make([][]float64, len(r))
	for i := range r {
		out[i] = append([]float64(nil), r[i]...)
	}
	return out
}

// RowsImportance scores heads and FFN neurons of m on up to maxBatches
// batches of rows (in order), with the task's loss against the true labels,
// in eval mode: no dropout, so the scores depend on the data alone.
func RowsImportance(m *model.Bert, rows *dataset.Rows, batchSize, maxBatches int) (Importance, error) {
	imp := Importance{}
	cfg := m.Config
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		imp.Heads = append(imp.Heads, make([]float64, cfg.LayerHeads(l)))
		imp.FFN = append(imp.FFN, make([]float64, cfg.IntermediateSize))
	}
	if batchSize <= 0 {
		batchSize = 32
	}
	masks, err := m.EnableImportanceMasks()
	if err != nil {
		return imp, err
	}
	defer m.DisableImportanceMasks()
	pad := int64(cfg.PadTokenID)
	task, numLabels := cfg.Task(), cfg.NumLabels()
	n := rows.Len()
	for start := 0; start < n && (maxBatches <= 0 || imp.Batches < maxBatches); start += batchSize {
		idx := make([]int, 0, batchSize)
		for i := start; i < min(n, start+batchSize); i++ {
			idx = append(idx, i)
		}
		err := model.WithGrad(true, func() error {
			b, teacher, err := batchTensors(rows, idx, pad, m.Device)
			if err != nil {
				return err
			}
			labels, err := targetTensor(rows, idx, task, numLabels, m.Device)
			if err != nil {
				freeBatch(b, teacher)
				return err
			}
			defer freeBatch(b, labels, teacher)
			out, err := m.Forward(b, false, false)
			if err != nil {
				return err
			}
			defer out.Free()
			var loss *ts.Tensor
			switch task {
			case dataset.MultiLabel:
				loss, err = model.BCEWithLogits(out.Logits, labels, nil)
			case dataset.Regression:
				loss, err = model.MSE(out.Logits, labels)
			default:
				loss, err = model.CrossEntropy(out.Logits, labels)
			}
			if err != nil {
				return err
			}
			defer loss.Drop()
			if err := loss.Backward(); err != nil {
				return err
			}
			return masks.AccumulateGrads(imp.Heads, imp.FFN)
		})
		if err != nil {
			return imp, fmt.Errorf("importance batch at row %d: %w", start, err)
		}
		imp.Batches++
	}
	// Parameters gained gradients too; they are not needed.
	for _, p := range m.Params() {
		if err := model.ResetGrad(p.T); err != nil {
			return imp, err
		}
	}
	return imp, nil
}

// PrunePlan is one pruning round: heads to remove per layer (positions in
// the layer as it is) and, per layer, the FFN neurons to keep.
type PrunePlan struct {
	RemoveHeads map[int][]int
	KeepFFN     [][]int
}

// PlanPrune picks what to remove so the model keeps keepHeads heads in all
// (ranked across layers, at least one per layer) and ffnWidth neurons in
// every layer (ranked within each layer, so the width stays uniform). Head
// scores are normalised per layer by their L2 norm first, as Michel et al.
// do, so layers with larger gradients do not keep every head.
func PlanPrune(cfg *model.Config, imp Importance, keepHeads, ffnWidth int) (PrunePlan, error) {
	plan := PrunePlan{RemoveHeads: map[int][]int{}}
	if len(imp.Heads) != cfg.NumHiddenLayers {
		return plan, fmt.Errorf("importance has %d layers, the model %d", len(imp.Heads), cfg.NumHiddenLayers)
	}
	type head struct {
		layer, pos int
		score      float64
	}
	var heads []head
	total := 0
	for l, scores := range imp.Heads {
		if len(scores) != cfg.LayerHeads(l) {
			return plan, fmt.Errorf("layer %d: %d head scores for %d heads", l, len(scores), cfg.LayerHeads(l))
		}
		var norm float64
		for _, v := range scores {
			norm += v * v
		}
		norm = math.Sqrt(norm)
		if norm == 0 {
			norm = 1
		}
		for p, v := range scores {
			heads = append(heads, head{l, p, v / norm})
		}
		total += len(scores)
	}
	if keepHeads < cfg.NumHiddenLayers || keepHeads > total {
		return plan, fmt.Errorf("keep %d heads: want between %d (one per layer) and %d", keepHeads, cfg.NumHiddenLayers, total)
	}
	sort.SliceStable(heads, func(i, j int) bool { return heads[i].score < heads[j].score })
	left := map[int]int{}
	for l := range imp.Heads {
		left[l] = cfg.LayerHeads(l)
	}
	for _, h := range heads {
		if total <= keepHeads {
			break
		}
		if left[h.layer] == 1 {
			continue // every layer keeps a head
		}
		plan.RemoveHeads[h.layer] = append(plan.RemoveHeads[h.layer], h.pos)
		left[h.layer]--
		total--
	}
	if ffnWidth < 1 || ffnWidth > cfg.IntermediateSize {
		return plan, fmt.Errorf("FFN width %d: want between 1 and %d", ffnWidth, cfg.IntermediateSize)
	}
	for l, scores := range imp.FFN {
		if len(scores) != cfg.IntermediateSize {
			return plan, fmt.Errorf("layer %d: %d neuron scores for width %d", l, len(scores), cfg.IntermediateSize)
		}
		order := make([]int, len(scores))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(i, j int) bool { return scores[order[i]] > scores[order[j]] })
		keep := append([]int(nil), order[:ffnWidth]...)
		sort.Ints(keep)
		plan.KeepFFN = append(plan.KeepFFN, keep)
	}
	return plan, nil
}

// Apply prunes m by the plan.
func (p PrunePlan) Apply(m *model.Bert) error {
	for l, heads := range p.RemoveHeads {
		if err := m.PruneHeads(l, heads); err != nil {
			return err
		}
	}
	if len(p.KeepFFN) > 0 && len(p.KeepFFN[0]) < m.Config.IntermediateSize {
		return m.PruneFFN(p.KeepFFN)
	}
	return nil
}
