package model

import (
	"fmt"
	"math"
	"math/rand"
	"reflect"
	"testing"

	"github.com/sugarme/gotch/ts"
)

// TestRowLengths reads lengths from right-padded masks and refuses the rest.
func TestRowLengths(t *testing.T) {
	cases := []struct {
		name string
		mask [][]int64
		want []int64
	}{
		{"right padded", [][]int64{{1, 1, 0, 0}, {1, 1, 1, 1}, {1, 0, 0, 0}}, []int64{2, 4, 1}},
		{"left padded", [][]int64{{0, 1, 1}, {1, 1, 1}}, nil},
		{"hole", [][]int64{{1, 0, 1}, {1, 1, 1}}, nil},
		{"empty row", [][]int64{{0, 0, 0}, {1, 1, 1}}, nil},
	}
	for _, c := range cases {
		var flat []int64
		for _, r := range c.mask {
			flat = append(flat, r...)
		}
		bs, seq := len(c.mask), len(c.mask[0])
		m, err := Int64Tensor(flat, bs, seq, Device{Name: "CPU"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := rowLengths(m, int64(bs), int64(seq))
		drop(m)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: rowLengths = %v, want %v", c.name, got, c.want)
		}
	}
	if got, err := rowLengths(nil, 2, 5); err != nil || !reflect.DeepEqual(got, []int64{5, 5}) {
		t.Errorf("rowLengths(no mask) = %v, %v; want [5 5]", got, err)
	}
}

// TestFusedAttentionEqualsLibtorch runs beamtune's attention kernel and
// libtorch's (scaled_dot_product_attention with the additive mask) on the
// same random projections: rows of different lengths, head sizes that fill
// whole registers and one that does not (24), lengths across the kernel's
// 64-key blocks, and q, k, v as strided views of one packed projection (as
// the int8 layers give them), of unit scale as BERT's are. Real positions
// must agree within 2e-6 (float32 rounding in a different order; measured
// below 1e-6); padded positions must be zero.
func TestFusedAttentionEqualsLibtorch(t *testing.T) {
	if !ownKernels {
		t.Skip("this CPU lacks AVX-512: beamtune's attention kernel does not run here (libtorch's does)")
	}
	defer LockThread()()
	cpu := Device{Name: "CPU"}
	for _, c := range []struct {
		heads, dh int64
		lengths   []int64
		biases    bool // the projections' biases handed to the kernel
	}{
		{12, 32, []int64{1, 5, 16, 17, 30, 30}, true},
		{12, 32, []int64{1, 5, 16, 17, 30, 30}, false},
		{4, 64, []int64{64, 65, 100, 130}, true},
		{3, 24, []int64{7, 33, 9}, true},
	} {
		t.Run(fmt.Sprintf("heads%d_dim%d_bias%v", c.heads, c.dh, c.biases), func(t *testing.T) {
			bs := int64(len(c.lengths))
			seq := int64(0)
			for _, n := range c.lengths {
				seq = max(seq, n)
			}
			width := c.heads * c.dh
			rng := rand.New(rand.NewSource(seq))
			vals := make([]float32, bs*seq*3*width)
			for i := range vals {
				vals[i] = float32(rng.NormFloat64())
			}
			mask := make([]int64, bs*seq)
			for r, n := range c.lengths {
				for p := int64(0); p < n; p++ {
					mask[int64(r)*seq+p] = 1
				}
			}
			var s scope
			defer s.release()
			packed, err := Float32Tensor(vals, []int64{bs, seq, 3 * width}, cpu)
			if err != nil {
				t.Fatal(err)
			}
			mk, err := Int64Tensor(mask, int(bs), int(seq), cpu)
			if err != nil {
				t.Fatal(err)
			}
			defer drop(packed, mk)
			q, k, v := s.narrow(packed, 2, 0, width), s.narrow(packed, 2, width, width), s.narrow(packed, 2, 2*width, width)
			scale := 1 / math.Sqrt(float64(c.dh))
			var bq, bk, bv *ts.Tensor
			if c.biases {
				bvals := make([]float32, 3*width)
				for i := range bvals {
					bvals[i] = float32(0.5 * rng.NormFloat64())
				}
				biases, err := Float32Tensor(bvals, []int64{3 * width}, cpu)
				if err != nil {
					t.Fatal(err)
				}
				defer drop(biases)
				bq, bk, bv = s.contiguous(s.narrow(biases, 0, 0, width)), s.contiguous(s.narrow(biases, 0, width, width)), s.contiguous(s.narrow(biases, 0, 2*width, width))
			}
			fused := s.attentionFused(q, k, v, bq, bk, bv, c.lengths, c.heads, scale)
			if c.biases { // the reference takes the projections with their biases
				q, k, v = s.addT(q, bq), s.addT(k, bk), s.addT(v, bv)
			}

			split := func(x *ts.Tensor) *ts.Tensor { return s.permute(s.view(x, bs, seq, c.heads, c.dh), 0, 2, 1, 3) }
			add := s.view(s.mulScalar(s.oneMinus(s.toFloat(mk)), -math.MaxFloat32), bs, 1, 1, seq)
			ref := s.view(s.contiguous(s.permute(s.attention(split(q), split(k), split(v), add, scale), 0, 2, 1, 3)), bs, seq, width)
			if !s.ok() {
				t.Fatal(s.err)
			}
			got, err := Float32s(fused)
			if err != nil {
				t.Fatal(err)
			}
			want, err := Float32s(ref)
			if err != nil {
				t.Fatal(err)
			}
			var d float64
			for r, n := range c.lengths {
				for p := int64(0); p < seq; p++ {
					for j := int64(0); j < width; j++ {
						i := (int64(r)*seq+p)*width + j
						if p >= n {
							if got[i] != 0 {
								t.Fatalf("row %d, padded position %d: %v, want 0", r, p, got[i])
							}
							continue
						}
						d = math.Max(d, math.Abs(float64(got[i]-want[i])))
					}
				}
			}
			t.Logf("max |Δ| against libtorch at real positions: %.2e", d)
			if d > 2e-6 {
				t.Errorf("beamtune's attention differs from libtorch's by %.2e (limit 2e-6)", d)
			}
		})
	}
}

// TestFusedAttentionForwardEqualsMasked scores padded batches two ways in
// eval mode: with the fused kernel (Forward without hidden states) and with
// libtorch's attention and the additive mask (asking for hidden states keeps
// it). Sorted and unsorted rows must give the same logits.
func TestFusedAttentionForwardEqualsMasked(t *testing.T) {
	if !ownKernels {
		t.Skip("this CPU lacks AVX-512: beamtune's attention kernel does not run here (libtorch's does)")
	}
	defer LockThread()()
	m := loadTiny(t)
	defer m.Free()
	const seq = 12
	for _, lengths := range [][]int64{
		{3, 3, 5, 5, 5, 9, 12},
		{9, 3, 12, 5, 1},
	} {
		t.Run(fmt.Sprint(lengths), func(t *testing.T) {
			bs := len(lengths)
			ids := make([]int64, bs*seq)
			mask := make([]int64, bs*seq)
			for r, n := range lengths {
				for p := int64(0); p < n; p++ {
					ids[int64(r)*seq+p] = (int64(r)*131 + p*17 + 5) % int64(m.Config.VocabSize)
					mask[int64(r)*seq+p] = 1
				}
			}
			x, err := Int64Tensor(ids, bs, seq, m.Device)
			if err != nil {
				t.Fatal(err)
			}
			mk, err := Int64Tensor(mask, bs, seq, m.Device)
			if err != nil {
				t.Fatal(err)
			}
			defer drop(x, mk)
			b := Batch{InputIDs: x, AttentionMask: mk}
			fused := evalLogits(t, m, b)
			var masked []float32
			if err := NoGrad(func() error {
				o, err := m.Forward(b, false, true)
				if err != nil {
					return err
				}
				defer o.Free()
				masked, err = Float32s(o.Logits)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			d := maxAbsDiff(fused, masked)
			t.Logf("max |Δ logits| %.2e", d)
			if d > 1e-5 {
				t.Errorf("logits with the fused kernel differ from the masked form by %.2e (limit 1e-5)", d)
			}
		})
	}
}

// TestAddLayerNormEqualsLibtorch compares beamtune's residual add +
// LayerNorm with libtorch's add then layer_norm on random rows of BERT's
// width and of a width that does not fill whole registers (100).
func TestAddLayerNormEqualsLibtorch(t *testing.T) {
	if !ownKernels {
		t.Skip("this CPU lacks AVX-512: beamtune's kernels do not run here (libtorch's do)")
	}
	defer LockThread()()
	cpu := Device{Name: "CPU"}
	for _, width := range []int64{384, 100} {
		rows := int64(70) // above the kernel's threshold for a second thread
		rng := rand.New(rand.NewSource(width))
		randn := func(n int64, mean, std float64) []float32 {
			v := make([]float32, n)
			for i := range v {
				v[i] = float32(mean + std*rng.NormFloat64())
			}
			return v
		}
		var s scope
		x, err := Float32Tensor(randn(rows*width, 0.5, 2), []int64{rows, width}, cpu)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Float32Tensor(randn(rows*width, -0.2, 1), []int64{rows, width}, cpu)
		if err != nil {
			t.Fatal(err)
		}
		w, err := Float32Tensor(randn(width, 1, 0.1), []int64{width}, cpu)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Float32Tensor(randn(width, 0, 0.1), []int64{width}, cpu)
		if err != nil {
			t.Fatal(err)
		}
		xb, err := Float32Tensor(randn(width, 0, 0.5), []int64{width}, cpu)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Float32s(s.addLayerNorm(x, nil, res, w, b, 1e-12))
		if err != nil || !s.ok() {
			t.Fatal(err, s.err)
		}
		want, err := Float32s(s.layerNorm(s.addT(x, res), w, b, 1e-12))
		if err != nil || !s.ok() {
			t.Fatal(err, s.err)
		}
		d := maxAbsDiff(got, want)
		t.Logf("width %d: max |Δ| against libtorch %.2e", width, d)
		if d > 2e-6 {
			t.Errorf("width %d: add + LayerNorm differs from libtorch's by %.2e (limit 2e-6)", width, d)
		}
		// With the linear layer's bias: LayerNorm((x + xb) + res).
		got, err = Float32s(s.addLayerNorm(x, xb, res, w, b, 1e-12))
		if err != nil || !s.ok() {
			t.Fatal(err, s.err)
		}
		want, err = Float32s(s.layerNorm(s.addT(s.addT(x, xb), res), w, b, 1e-12))
		if err != nil || !s.ok() {
			t.Fatal(err, s.err)
		}
		d = maxAbsDiff(got, want)
		t.Logf("width %d, with the input's bias: max |Δ| against libtorch %.2e", width, d)
		if d > 2e-6 {
			t.Errorf("width %d: bias + add + LayerNorm differs from libtorch's by %.2e (limit 2e-6)", width, d)
		}
		s.release()
		drop(x, xb, res, w, b)
	}
}
