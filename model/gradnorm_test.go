package model

import (
	"math"
	"math/rand"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestSumSquaresFused checks gradnorm.c's sums against a float64 sum in Go
// (to 1e-12 relative) and libtorch's float32 norm (to 2e-5), on lengths
// across its 32-element blocks and 65,536-element chunks; the same bits on
// 1, 2 and 3 threads; and Inf and NaN passing through, which the fp16 loss
// scaler relies on to skip a step.
func TestSumSquaresFused(t *testing.T) {
	defer LockThread()()
	rng := rand.New(rand.NewSource(5))
	lengths := []int{1, 31, 32, 33, 384, 65_535, 65_536, 200_001}
	var grads []*ts.Tensor
	defer func() { drop(grads...) }()
	var want float64
	for _, n := range lengths {
		vals := make([]float32, n)
		for i := range vals {
			vals[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.Intn(7)-3)))
			want += float64(vals[i]) * float64(vals[i])
		}
		g, err := Float32Tensor(vals, []int64{int64(n)}, Device{Name: "CPU"})
		if err != nil {
			t.Fatal(err)
		}
		grads = append(grads, g)
	}
	var sums []float64
	for _, threads := range []int{1, 2, 3} {
		sum, ok, err := sumSquares(grads, threads)
		if err != nil || !ok {
			t.Fatalf("%d threads: ok %v, %v", threads, ok, err)
		}
		sums = append(sums, sum)
	}
	if sums[0] != sums[1] || sums[0] != sums[2] {
		t.Errorf("sums differ with the thread count: %v", sums)
	}
	if d := math.Abs(sums[0]-want) / want; d > 1e-12 {
		t.Errorf("sum of squares %.17g, float64 reference %.17g: relative difference %.3g", sums[0], want, d)
	}
	torch, err := torchNorm(grads)
	if err != nil {
		t.Fatal(err)
	}
	// libtorch accumulates in float32: over 265 k terms of mixed magnitude
	// its norm is off by a few parts per million (measured 4.1e-6).
	if d := math.Abs(math.Sqrt(sums[0])-torch) / torch; d > 2e-5 {
		t.Errorf("norm %.9g, libtorch's %.9g: relative difference %.3g", math.Sqrt(sums[0]), torch, d)
	}
	t.Logf("norm %.9g; float64 reference %.9g; libtorch (float32) %.9g", math.Sqrt(sums[0]), math.Sqrt(want), torch)

	for _, bad := range []float32{float32(math.Inf(1)), float32(math.NaN())} {
		vals := make([]float32, 70_000)
		vals[69_999] = bad
		g, err := Float32Tensor(vals, []int64{70_000}, Device{Name: "CPU"})
		if err != nil {
			t.Fatal(err)
		}
		sum, _, err := sumSquares([]*ts.Tensor{grads[0], g}, 2)
		drop(g)
		if err != nil {
			t.Fatal(err)
		}
		if !math.IsInf(sum, 1) && !math.IsNaN(sum) || math.IsNaN(float64(bad)) != math.IsNaN(sum) {
			t.Errorf("a gradient holding %v: sum %v", bad, sum)
		}
	}

	// A gradient that is not contiguous goes to libtorch's form.
	m, err := ts.Randn([]int64{4, 6}, gotch.Float, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer drop(m)
	tr, err := m.Transpose(0, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	defer drop(tr)
	if _, ok, err := sumSquares([]*ts.Tensor{tr}, 2); ok || err != nil {
		t.Errorf("transposed gradient: ok %v, %v; want the libtorch form", ok, err)
	}
}
