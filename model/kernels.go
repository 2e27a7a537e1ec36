package model

// #include <stdint.h>
// // Added to libtch by scripts/setup.sh (gotch patch 8, scripts/gotch/kernels.cpp).
// void *bt_attention(void *query, void *key, void *value, void *query_bias, void *key_bias, void *value_bias, int64_t *lengths, int64_t heads, double scale);
// void *bt_add_layer_norm(void *x, void *x_bias, void *residual, void *weight, void *bias, double eps);
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/sugarme/gotch"
	lib "github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
	"golang.org/x/sys/cpu"
)

// ownKernels says whether eval-mode float32 forwards without gradients run
// beamtune's own CPU kernels (scripts/gotch/kernels.cpp, AVX-512) for
// attention and for the residual add + LayerNorm. Why attention: libtorch
// 2.1's fused CPU kernel takes no mask, so padded batches ran attention op by
// op (scores, mask add, softmax, product), and at BERT's short lengths even
// unpadded batches spent most of the kernel's time in per-block library
// calls: 1.05 ms a layer for 32 rows of 24 tokens against 0.47 ms
// (BenchmarkAttention). Why the add + LayerNorm: libtorch makes three passes
// over the activations (the add, the moments, the normalisation) where one
// row at a time in the cache is enough (BenchmarkAddLayerNorm). The
// attention's projections and the output projections then skip their bias (a
// product without it, mm) and these kernels add it as they read the product:
// libtorch's linear copies the bias into every output row before the product
// (4.6% of an SST-2-length forward). Other CPUs run libtorch's ops; the tests
// compare the two.
var ownKernels = cpu.X86.HasAVX512F

// rowLengths reads a [batch, seq] 0/1 attention mask (nil: no padding) and
// returns each row's tokens, or nil when some row is not tokens then padding
// (left padding, holes) or has none: the kernel needs right padding, and a
// row without tokens gets HF's uniform attention from the additive mask.
func rowLengths(mask *ts.Tensor, bs, seq int64) ([]int64, error) {
	lengths := make([]int64, bs)
	if mask == nil {
		for i := range lengths {
			lengths[i] = seq
		}
		return lengths, nil
	}
	if s := Shape(mask); len(s) != 2 || s[0] != bs || s[1] != seq {
		return nil, fmt.Errorf("attention mask must be [%d %d], got %v", bs, seq, s)
	}
	vals, err := int64s(mask)
	if err != nil {
		return nil, err
	}
	for r := int64(0); r < bs; r++ {
		row := vals[r*seq : (r+1)*seq]
		n := int64(0)
		for n < seq && row[n] != 0 {
			n++
		}
		for _, v := range row[n:] {
			if v != 0 {
				return nil, nil
			}
		}
		if n == 0 {
			return nil, nil
		}
		lengths[r] = n
	}
	return lengths, nil
}

// int64s copies an integer tensor's values into Go memory. (gotch's CopyData
// walks the destination slice element by element through reflection.)
func int64s(t *ts.Tensor) ([]int64, error) {
	c, err := t.Totype(gotch.Int64, false)
	if err != nil {
		return nil, err
	}
	defer drop(c)
	cont, err := c.Contiguous(false)
	if err != nil {
		return nil, err
	}
	defer drop(cont)
	out := make([]int64, cont.Numel())
	if len(out) == 0 {
		return out, nil
	}
	lib.AtCopyData(lib.Ctensor(cont.Ctensor()), unsafe.Pointer(&out[0]), uint(len(out)), 8)
	if err := ts.TorchErr(); err != nil {
		return nil, err
	}
	return out, nil
}

// attentionFused is softmax((q+bq)·(k+bk)ᵀ·scale)·(v+bv) per head over each
// row's first lengths[row] positions, from q, k, v as the projections give
// them ([batch, seq, heads·head_dim], last dimension dense) and the
// projections' biases (nil: none, or already added), to the [batch, seq,
// hidden] context the output projection reads. Positions past a row's
// length are zero: nothing a real token, the pooler or a head reads depends
// on them (padded keys are out of every real row's attention).
func (s *scope) attentionFused(q, k, v, bq, bk, bv *ts.Tensor, lengths []int64, heads int64, scale float64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	p := C.bt_attention(unsafe.Pointer(q.Ctensor()), unsafe.Pointer(k.Ctensor()), unsafe.Pointer(v.Ctensor()),
		ctensorOrNil(bq), ctensorOrNil(bk), ctensorOrNil(bv),
		(*C.int64_t)(unsafe.Pointer(&lengths[0])), C.int64_t(heads), C.double(scale))
	if err := ts.TorchErr(); err != nil {
		return s.add(nil, err, "attention")
	}
	return s.add(ts.New(lib.Ctensor(p)), nil, "attention")
}

// attentionMask is how a layer keeps padding out of attention: add, the
// additive mask ([batch, 1, 1, seq]; nil: no padding), or lengths, each row's
// tokens for beamtune's kernel (inference; see ownKernels).
type attentionMask struct {
	add     *ts.Tensor
	lengths []int64
}

// addLayerNorm is LayerNorm(x + xBias + residual) with weight and bias over
// the last dimension, in one pass per row (x and residual contiguous, of one
// shape; xBias, the bias of the linear layer that made x, may be nil).
func (s *scope) addLayerNorm(x, xBias, residual, w, b *ts.Tensor, eps float64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	p := C.bt_add_layer_norm(unsafe.Pointer(x.Ctensor()), ctensorOrNil(xBias), unsafe.Pointer(residual.Ctensor()),
		unsafe.Pointer(w.Ctensor()), unsafe.Pointer(b.Ctensor()), C.double(eps))
	if err := ts.TorchErr(); err != nil {
		return s.add(nil, err, "add + layer_norm")
	}
	return s.add(ts.New(lib.Ctensor(p)), nil, "add + layer_norm")
}

// ctensorOrNil is t's C handle, or nil for no tensor (an optional argument).
func ctensorOrNil(t *ts.Tensor) unsafe.Pointer {
	if t == nil {
		return nil
	}
	return unsafe.Pointer(t.Ctensor())
}
