package model

import (
	"math"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestHiddenCLSLossByHand checks the hidden-state term against a by-hand
// computation: only the [CLS] position counts, pairs are averaged, the
// projection maps the student's width to the teacher's, and gradients reach
// both the student states and the projection.
func TestHiddenCLSLossByHand(t *testing.T) {
	// Two pairs, batch 2, sequence 3, student width 2.
	s0 := []float32{ // [2, 3, 2]
		1, 2, 9, 9, 9, 9, // row 0: CLS (1, 2), then positions that must not count
		-1, 0.5, 7, 7, 7, 7,
	}
	s1 := []float32{
		0, 1, 5, 5, 5, 5,
		2, -2, 5, 5, 5, 5,
	}
	// Teacher width 3: the projection is [3, 2].
	proj := []float32{1, 0, 0, 1, 1, 1}
	t0 := []float32{1, 1, 3, 0, 0, 0} // [2, 3]
	t1 := []float32{0, 0, 0, 2, -2, 1}

	mk := func(v []float32, shape ...int64) *Param {
		x, err := Float32Tensor(v, shape, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.RequiresGrad_(true); err != nil {
			t.Fatal(err)
		}
		return &Param{T: x}
	}
	ps0, ps1 := mk(s0, 2, 3, 2), mk(s1, 2, 3, 2)
	pp0, pp1 := mk(proj, 3, 2), mk(proj, 3, 2)
	pt0, pt1 := mk(t0, 2, 3), mk(t1, 2, 3)
	defer FreeParams([]*Param{ps0, ps1, pp0, pp1, pt0, pt1})

	// By hand: cls·Pᵀ = (a, b, a+b); MSE over the 2×3 values; mean of pairs.
	mse := func(s, tt []float32) float64 {
		var sum float64
		for r := 0; r < 2; r++ {
			a, b := float64(s[r*6]), float64(s[r*6+1])
			y := []float64{a, b, a + b}
			for k := range y {
				d := y[k] - float64(tt[r*3+k])
				sum += d * d
			}
		}
		return sum / 6
	}
	want := (mse(s0, t0) + mse(s1, t1)) / 2

	loss, err := HiddenCLSLoss([]*ts.Tensor{ps0.T, ps1.T}, []*ts.Tensor{pt0.T, pt1.T}, []*ts.Tensor{pp0.T, pp1.T})
	if err != nil {
		t.Fatal(err)
	}
	defer drop(loss)
	got := float64(values(t, loss)[0])
	if math.Abs(got-want) > 1e-5 {
		t.Fatalf("hidden loss %v, by hand %v", got, want)
	}
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]*Param{"student state": ps0, "projection": pp0} {
		g, err := p.T.Grad(false)
		if err != nil {
			t.Fatal(err)
		}
		gv := values(t, g)
		drop(g)
		var norm float64
		for _, v := range gv {
			norm += float64(v) * float64(v)
		}
		if norm == 0 {
			t.Errorf("no gradient reached the %s", name)
		}
		if name == "student state" {
			// Positions after [CLS] must get no gradient.
			for i, v := range gv {
				if i%6 >= 2 && v != 0 {
					t.Errorf("gradient %v at non-[CLS] value %d", v, i)
				}
			}
		}
	}

	// Shapes that do not fit are an error, not a panic.
	bad, err := HiddenCLSLoss([]*ts.Tensor{ps0.T}, []*ts.Tensor{ps0.T}, []*ts.Tensor{nil})
	if err == nil {
		defer drop(bad)
		t.Errorf("a [2,2] [CLS] batch against a [2,3,2] teacher tensor should be refused")
	}
	if _, err := HiddenCLSLoss([]*ts.Tensor{ps0.T}, nil, nil); err == nil {
		t.Error("mismatched pair counts should be refused")
	}
}

// TestDistillLossesPerTask checks the multi-label and regression
// distillation losses against by-hand values.
func TestDistillLossesPerTask(t *testing.T) {
	defer LockThread()()
	tensor := func(v []float32, shape ...int64) *ts.Tensor {
		x, err := Float32Tensor(v, shape, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	// bce(z, y) with logits, for a soft or hard target y.
	bce := func(z, y float64) float64 { return math.Max(z, 0) - z*y + math.Log1p(math.Exp(-math.Abs(z))) }

	zs := []float32{1.5, -0.5, 0.2, 2.0} // student logits [2, 2]
	zt := []float32{3.0, -1.0, -0.4, 1.0}
	y := []float32{1, 0, 0, 1}
	const temp, alpha, w = 2.0, 0.7, 0.3
	var soft, hard, mse float64
	for i := range zs {
		soft += bce(float64(zs[i])/temp, sig(float64(zt[i])/temp))
		hard += bce(float64(zs[i]), float64(y[i]))
		d := float64(zs[i] - zt[i])
		mse += d * d
	}
	want := alpha*temp*temp*soft/4 + (1-alpha)*hard/4 + w*mse/4
	s, tt, yt := tensor(zs, 2, 2), tensor(zt, 2, 2), tensor(y, 2, 2)
	defer drop(s, tt, yt)
	loss, err := DistillMultiLabelLoss(s, tt, yt, temp, alpha, w)
	if err != nil {
		t.Fatal(err)
	}
	got := float64(values(t, loss)[0])
	drop(loss)
	if math.Abs(got-want) > 1e-5 {
		t.Errorf("multi-label distillation loss %v, by hand %v", got, want)
	}

	// Regression: student [3, 1] against teacher scores [3, 1] and targets [3].
	rs, rt, ry := tensor([]float32{1, 2, 3}, 3, 1), tensor([]float32{1.5, 2, 2}, 3, 1), tensor([]float32{2, 2, 4}, 3)
	defer drop(rs, rt, ry)
	rl, err := DistillRegressionLoss(rs, rt, ry, 0.25)
	if err != nil {
		t.Fatal(err)
	}
	rgot := float64(values(t, rl)[0])
	drop(rl)
	rwant := 0.25*(0.25+0+1)/3 + 0.75*(1+0+1)/3
	if math.Abs(rgot-rwant) > 1e-6 {
		t.Errorf("regression distillation loss %v, by hand %v", rgot, rwant)
	}
	if _, err := DistillMultiLabelLoss(s, tt, yt, 0, alpha, 0); err == nil {
		t.Error("a zero temperature was accepted")
	}
}
