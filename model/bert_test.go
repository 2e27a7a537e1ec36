package model

import (
	"math"
	"testing"
)

// TestUnpaddedBatchSkipsMask scores a row without padding twice in eval mode:
// inside a padded batch (beamtune's fused attention over each row's tokens
// where the CPU has AVX-512, else libtorch's masked attention) and alone (no
// padding, so no mask). The logits must agree.
func TestUnpaddedBatchSkipsMask(t *testing.T) {
	defer LockThread()()
	m := loadTiny(t)
	defer m.Free()
	b := tinyBatch(t, m) // row 0 has two padded positions, row 1 none
	defer drop(b.InputIDs, b.AttentionMask)
	padded, err := hasPadding(b.AttentionMask)
	if err != nil || !padded {
		t.Fatalf("hasPadding(tiny batch) = %v, %v; want true", padded, err)
	}
	both := evalLogits(t, m, b)
	ids, err := b.InputIDs.Narrow(0, 1, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	mask, err := b.AttentionMask.Narrow(0, 1, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer drop(ids, mask)
	if padded, err := hasPadding(mask); err != nil || padded {
		t.Fatalf("hasPadding(row 1) = %v, %v; want false", padded, err)
	}
	alone := evalLogits(t, m, Batch{InputIDs: ids, AttentionMask: mask})
	n := m.Config.NumLabels()
	var d float64
	for i := 0; i < n; i++ {
		d = math.Max(d, math.Abs(float64(alone[i]-both[n+i])))
	}
	t.Logf("row 1 alone %v, in the padded batch %v: max diff %.2e", alone, both[n:], d)
	if d > 1e-5 {
		t.Errorf("row 1 scored alone differs from the same row in a padded batch by %.2e (limit 1e-5)", d)
	}
}
