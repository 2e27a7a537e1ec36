package model

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/sugarme/gotch/ts"
)

// BenchmarkAttention times one layer's attention in eval mode for 32 rows of
// all-MiniLM-L6-v2's shape (12 heads of 32) at 24, 48 and 96 tokens, from
// the packed projections to the [batch, seq, hidden] context: beamtune's
// kernel (fused) against libtorch 2.1's fused kernel (libtorch: unpadded
// rows, its best case) and its masked attention (masked: what a padded batch
// ran before), 2 threads.
func BenchmarkAttention(b *testing.B) {
	const bs, heads, dh = 32, 12, 32
	const width = heads * dh
	for _, seq := range []int64{24, 48, 96} {
		var s scope
		var packed, mask, q, k, v, add *ts.Tensor
		torchBench(b, func() {
			SetThreads(2)
			vals := make([]float32, bs*seq*3*width)
			rng := rand.New(rand.NewSource(1))
			for i := range vals {
				vals[i] = float32(rng.NormFloat64())
			}
			var err error
			if packed, err = Float32Tensor(vals, []int64{bs, seq, 3 * width}, Device{Name: "CPU"}); err != nil {
				b.Fatal(err)
			}
			if mask, err = Int64Tensor(make1s(bs*int(seq)), bs, int(seq), Device{Name: "CPU"}); err != nil {
				b.Fatal(err)
			}
			q, k, v = s.narrow(packed, 2, 0, width), s.narrow(packed, 2, width, width), s.narrow(packed, 2, 2*width, width)
			add = s.view(s.mulScalar(s.oneMinus(s.toFloat(mask)), -math.MaxFloat32), bs, 1, 1, seq)
			if !s.ok() {
				b.Fatal(s.err)
			}
		})
		lengths := make([]int64, bs)
		for i := range lengths {
			lengths[i] = seq
		}
		scale := 1 / math.Sqrt(dh)
		for _, kernel := range []string{"fused", "libtorch", "masked"} {
			if kernel == "fused" && !ownKernels {
				continue
			}
			b.Run(fmt.Sprintf("%s/tokens=%d", kernel, seq), func(b *testing.B) {
				torchBench(b, func() {
					for range b.N {
						var t scope
						if kernel == "fused" {
							t.attentionFused(q, k, v, nil, nil, nil, lengths, heads, scale)
						} else {
							split := func(x *ts.Tensor) *ts.Tensor { return t.permute(t.view(x, bs, seq, heads, dh), 0, 2, 1, 3) }
							var m *ts.Tensor
							if kernel == "masked" {
								m = add
							}
							o := t.attention(split(q), split(k), split(v), m, scale)
							t.view(t.contiguous(t.permute(o, 0, 2, 1, 3)), bs, seq, width)
						}
						if !t.ok() {
							b.Fatal(t.err)
						}
						t.release()
					}
				})
			})
		}
		s.release()
		drop(packed, mask)
	}
}

func make1s(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = 1
	}
	return out
}

// BenchmarkAddLayerNorm times the residual add + LayerNorm after a layer's
// output projection for 32 rows of 24, 48 and 96 tokens at all-MiniLM-L6-v2's
// width (384), 2 threads: beamtune's one-pass kernel (fused) against
// libtorch's add then layer_norm.
func BenchmarkAddLayerNorm(b *testing.B) {
	const width = 384
	for _, seq := range []int64{24, 48, 96} {
		rows := 32 * seq
		vals := make([]float32, 2*rows*width)
		rng := rand.New(rand.NewSource(1))
		for i := range vals {
			vals[i] = float32(rng.NormFloat64())
		}
		cpu := Device{Name: "CPU"}
		var x, res, w, bias *ts.Tensor
		torchBench(b, func() {
			SetThreads(2)
			var err error
			for _, t := range []struct {
				dst   **ts.Tensor
				vals  []float32
				shape []int64
			}{
				{&x, vals[:rows*width], []int64{32, seq, width}},
				{&res, vals[rows*width:], []int64{32, seq, width}},
				{&w, vals[:width], []int64{width}},
				{&bias, vals[width : 2*width], []int64{width}},
			} {
				if *t.dst, err = Float32Tensor(t.vals, t.shape, cpu); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, kernel := range []string{"fused", "libtorch"} {
			if kernel == "fused" && !ownKernels {
				continue
			}
			b.Run(fmt.Sprintf("%s/tokens=%d", kernel, seq), func(b *testing.B) {
				torchBench(b, func() {
					for range b.N {
						var t scope
						if kernel == "fused" {
							t.addLayerNorm(x, nil, res, w, bias, 1e-12)
						} else {
							t.layerNorm(t.addT(x, res), w, bias, 1e-12)
						}
						if !t.ok() {
							b.Fatal(t.err)
						}
						t.release()
					}
				})
			})
		}
		drop(x, res, w, bias)
	}
}
