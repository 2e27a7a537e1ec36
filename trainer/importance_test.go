package trainer

import (
	"fmt"
	"testing"

	"github.com/beamtune/beamtune/model"
)

// TestPlanPrune ranks heads across layers after per-layer normalisation,
// keeps one head per layer whatever the scores, and keeps the same number of
// FFN neurons in every layer, the highest-scoring ones.
func TestPlanPrune(t *testing.T) {
	cfg := &model.Config{NumHiddenLayers: 2, NumAttentionHeads: 3, HiddenSize: 6, IntermediateSize: 4}
	imp := Importance{
		// Layer 0's scores are 1,000 times larger, but normalised they rank
		// like layer 1's: only the ranks inside each layer's norm matter.
		Heads:   [][]float64{{3000, 4000, 0}, {0.003, 0.004, 0.0001}},
		FFN:     [][]float64{{1, 5, 3, 2}, {9, 0, 8, 1}},
		Batches: 1,
	}
	plan, err := PlanPrune(cfg, imp, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(plan.RemoveHeads); got != "map[0:[2] 1:[2]]" {
		t.Errorf("heads removed %s, want map[0:[2] 1:[2]]", got)
	}
	if got := fmt.Sprint(plan.KeepFFN); got != "[[1 2] [0 2]]" {
		t.Errorf("FFN kept %s, want [[1 2] [0 2]]", got)
	}
	// Keeping 2 heads leaves one per layer, although layer 1's best head
	// scores below both of layer 0's remaining heads would otherwise win.
	plan, err = PlanPrune(cfg, imp, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(plan.RemoveHeads); got != "map[0:[2 0] 1:[2 0]]" {
		t.Errorf("heads removed %s, want map[0:[2 0] 1:[2 0]]", got)
	}
	if _, err := PlanPrune(cfg, imp, 1, 4); err == nil {
		t.Error("keeping fewer heads than layers was accepted")
	}
	if _, err := PlanPrune(cfg, imp, 4, 5); err == nil {
		t.Error("an FFN width above the model's was accepted")
	}
	var sum Importance
	for i := 0; i < 2; i++ {
		if err := sum.Merge(imp); err != nil {
			t.Fatal(err)
		}
	}
	if sum.Batches != 2 || sum.Heads[1][1] != 0.008 || sum.FFN[0][1] != 10 || imp.FFN[0][1] != 5 {
		t.Errorf("merge: %+v (source %+v)", sum, imp)
	}
}
