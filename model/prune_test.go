package model

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sugarme/gotch/ts"
)

// tinyBatch is two padded rows for the tiny parity model (vocab 1,000).
func tinyBatch(t *testing.T, m *Bert) Batch {
	t.Helper()
	ids := []int64{101, 592, 88, 3, 307, 102, 0, 0, 101, 23, 185, 1, 659, 28, 154, 102}
	mask := []int64{1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}
	for i := range ids {
		ids[i] %= int64(m.Config.VocabSize)
	}
	x, err := Int64Tensor(ids, 2, 8, m.Device)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := Int64Tensor(mask, 2, 8, m.Device)
	if err != nil {
		t.Fatal(err)
	}
	return Batch{InputIDs: x, AttentionMask: mk}
}

func loadTiny(t *testing.T) *Bert {
	t.Helper()
	m, _, err := Load(filepath.Join("..", "testdata", "parity", "tiny-bert"), LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func evalLogits(t *testing.T, m *Bert, b Batch) []float32 {
	t.Helper()
	var out []float32
	if err := NoGrad(func() error {
		o, err := m.Forward(b, false, false)
		if err != nil {
			return err
		}
		defer o.Free()
		out, err = Float32s(o.Logits)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// setMask replaces one mask tensor by the given values (a new leaf).
func setMask(t *testing.T, dst **ts.Tensor, vals []float32) {
	t.Helper()
	x, err := Float32Tensor(vals, []int64{int64(len(vals))}, Device{Name: "CPU"})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.RequiresGrad_(true); err != nil {
		t.Fatal(err)
	}
	drop(*dst)
	*dst = x
}

func ones(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// TestMaskingEqualsPruning: masks of ones change nothing; a zero head mask
// (or FFN neuron mask, in every layer) gives the logits of the model with
// that head (neuron) pruned away.
func TestMaskingEqualsPruning(t *testing.T) {
	defer LockThread()()
	m := loadTiny(t)
	defer m.Free()
	b := tinyBatch(t, m)
	defer drop(b.InputIDs, b.AttentionMask)
	plain := evalLogits(t, m, b)
	mk, err := m.EnableImportanceMasks()
	if err != nil {
		t.Fatal(err)
	}
	// Scoring with masks runs libtorch's attention, without them beamtune's
	// kernel (where the CPU has AVX-512): float32 rounding differs.
	if d := maxAbsDiff(evalLogits(t, m, b), plain); d > 1e-6 {
		t.Fatalf("masks of ones changed the logits by %g", d)
	}
	heads := ones(4)
	heads[2] = 0
	setMask(t, &mk.Heads[1], heads)
	ffn := ones(64)
	ffn[5], ffn[40] = 0, 0
	setMask(t, &mk.FFN[0], ffn)
	setMask(t, &mk.FFN[1], ffn)
	masked := evalLogits(t, m, b)
	m.DisableImportanceMasks()
	if d := maxAbsDiff(masked, plain); d < 1e-6 {
		t.Fatalf("zero masks left the logits unchanged (diff %g): the masks are not applied", d)
	}
	if err := m.PruneHeads(1, []int{2}); err != nil {
		t.Fatal(err)
	}
	var keep []int
	for i := 0; i < 64; i++ {
		if i != 5 && i != 40 {
			keep = append(keep, i)
		}
	}
	if err := m.PruneFFN([][]int{keep, keep}); err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(evalLogits(t, m, b), masked); d > 1e-5 {
		t.Errorf("pruned model differs from the masked one by %g", d)
	}
	if m.Config.LayerHeads(1) != 3 || m.Config.IntermediateSize != 62 || m.NumParams() != m.Config.ParamCount() {
		t.Errorf("after pruning: heads %d, intermediate %d, params %d (config says %d)", m.Config.LayerHeads(1), m.Config.IntermediateSize, m.NumParams(), m.Config.ParamCount())
	}
	// Errors name what is wrong.
	for _, c := range []struct {
		err  error
		want string
	}{
		{m.PruneHeads(1, []int{0, 1, 2}), "would leave none"},
		{m.PruneHeads(0, []int{4}), "cannot remove head 4"},
		{m.PruneFFN([][]int{{1, 2}, {1}}), "uniform"},
		{m.PruneVocab([]int{1, 2}), "pad_token_id"},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("got %v, want an error containing %q", c.err, c.want)
		}
	}
}

// TestImportanceIsTheMaskGradient checks the importance signal against
// central finite differences of the loss in each mask entry.
func TestImportanceIsTheMaskGradient(t *testing.T) {
	defer LockThread()()
	m := loadTiny(t)
	defer m.Free()
	b := tinyBatch(t, m)
	defer drop(b.InputIDs, b.AttentionMask)
	weights := []float32{0.3, -1.2, 0.7, 1.1, 0.4, -0.5} // L = Σ logits · weights
	loss := func() float64 {
		l := evalLogits(t, m, b)
		var s float64
		for i := range l {
			s += float64(l[i] * weights[i])
		}
		return s
	}
	mk, err := m.EnableImportanceMasks()
	if err != nil {
		t.Fatal(err)
	}
	defer m.DisableImportanceMasks()
	w, err := Float32Tensor(weights, []int64{2, 3}, m.Device)
	if err != nil {
		t.Fatal(err)
	}
	defer drop(w)
	err = WithGrad(true, func() error {
		out, err := m.Forward(b, false, false)
		if err != nil {
			return err
		}
		defer out.Free()
		prod, err := out.Logits.Mul(w, false)
		if err != nil {
			return err
		}
		defer drop(prod)
		sum, err := prod.Sum(prod.DType(), false)
		if err != nil {
			return err
		}
		defer drop(sum)
		return sum.Backward()
	})
	if err != nil {
		t.Fatal(err)
	}
	heads, ffn := [][]float64{make([]float64, 4), make([]float64, 4)}, [][]float64{make([]float64, 64), make([]float64, 64)}
	if err := mk.AccumulateGrads(heads, ffn); err != nil {
		t.Fatal(err)
	}
	const eps = 1e-2
	check := func(what string, dst **ts.Tensor, n, i int, got float64) {
		v := ones(n)
		v[i] = 1 + eps
		setMask(t, dst, v)
		up := loss()
		v[i] = 1 - eps
		setMask(t, dst, v)
		down := loss()
		setMask(t, dst, ones(n))
		fd := math.Abs(up-down) / (2 * eps)
		if math.Abs(fd-got) > 2e-3+0.02*fd {
			t.Errorf("%s: importance %.6f, finite difference %.6f", what, got, fd)
		}
		t.Logf("%s: importance %.6f, finite difference %.6f", what, got, fd)
	}
	for l := 0; l < 2; l++ {
		for h := 0; h < 4; h++ {
			check("layer "+string(rune('0'+l))+" head "+string(rune('0'+h)), &mk.Heads[l], 4, h, heads[l][h])
		}
		check("layer "+string(rune('0'+l))+" neuron 7", &mk.FFN[l], 64, 7, ffn[l][7])
	}
	var total float64
	for _, v := range heads[0] {
		total += v
	}
	if total == 0 {
		t.Error("all head importances are zero")
	}
}
