package model

// #include <stdint.h>
// #include <stdlib.h>
// // Added to libtch by scripts/setup.sh (gotch patch 6, scripts/gotch/int8_linear.cpp).
// void *bt_int8_linear_prepack(void *weight, double *scales, int64_t n_scales, void *bias, int onednn);
// void *bt_int8_linear(void *input, void *packed, int reduce_range);
// void ati_free(void *);
import "C"

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"unsafe"

	lib "github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
	"golang.org/x/sys/cpu"
)

// Quantization names, as the --quantize flag spells them.
const (
	QuantizeNone = "none"
	QuantizeInt8 = "int8" // one weight scale per matrix, as PyTorch's quantize_dynamic default
	// QuantizeInt8PerChannel gives every output row its own weight scale.
	QuantizeInt8PerChannel = "int8_per_channel"
)

// Int8Options tunes QuantizeInt8.
type Int8Options struct {
	// PerChannel gives every output row its own weight scale instead of one
	// per matrix. PyTorch's quantize_dynamic default is per tensor.
	PerChannel bool
}

// CPUFeatures are the instructions the int8 path depends on.
type CPUFeatures struct {
	AVX2 bool // fbgemm's int8 kernels need at least AVX2
	// VNNI (AVX-512 VNNI or AVX-VNNI) multiplies u8×s8 into 32-bit sums. Without it
	// fbgemm's kernels add pairs in 16 bits, which can saturate, so activations are
	// then quantized to 7 bits as PyTorch does (reduce_range).
	VNNI bool
	// AVX512BF16 and AMXBF16 multiply bfloat16 natively (oneDNN's bf16
	// kernels); without either, bf16 is emulated and slower than fp32.
	AVX512BF16, AMXBF16 bool
}

// HostCPU reports this machine's features (CPUID, as the kernel's
// /proc/cpuinfo flags avx2, avx512_vnni/avx_vnni, avx512_bf16, amx_bf16).
func HostCPU() CPUFeatures {
	return CPUFeatures{AVX2: cpu.X86.HasAVX2, VNNI: cpu.X86.HasAVX512VNNI || cpu.X86.HasAVXVNNI,
		AVX512BF16: cpu.X86.HasAVX512BF16, AMXBF16: cpu.X86.HasAMXBF16}
}

// Int8Unsupported says why int8 inference cannot run on dev with these CPU
// features, or "" when it can.
func Int8Unsupported(dev Device, f CPUFeatures) string {
	switch {
	case dev.IsCuda():
		return "int8 inference runs on CPU only (libtorch's oneDNN and fbgemm kernels); the model is on " + DeviceName(dev)
	case !f.AVX2:
		return "this CPU lacks AVX2, which libtorch's fbgemm int8 kernels need"
	}
	return ""
}

// Int8Kernels names the kernels int8 layers run on a CPU with features f
// (meaningful when Int8Unsupported says int8 runs there).
func Int8Kernels(f CPUFeatures) string {
	if f.VNNI {
		return "libtorch's oneDNN kernels (VNNI)"
	}
	return "libtorch's fbgemm kernels with 7-bit activations (no VNNI)"
}

// int8Linear is one linear layer (or several stacked, see
// newFusedInt8Linear) whose weight is int8, packed once for oneDNN or fbgemm;
// each call quantizes its input per batch (dynamic quantization).
type int8Linear struct {
	packed      unsafe.Pointer // torch::jit::IValue holding the packed weight and the bias
	reduceRange bool
}

// QuantizeWeight quantizes a row-major [rows, cols] matrix symmetrically to
// int8 (zero point 0), with one scale for the matrix or one per row, exactly as
// PyTorch's symmetric MinMax weight observers and quantize ops do (tested
// against them): in float32, scale = max(max|w| / 127.5, float32 epsilon), and
// q = round-half-even(w / scale) per tensor or round-half-even(w · (1/scale))
// per channel, clamped to [-128, 127].
func QuantizeWeight(w []float32, rows, cols int, perRow bool) (q []int8, scales []float64, err error) {
	if rows <= 0 || cols <= 0 || len(w) != rows*cols {
		return nil, nil, fmt.Errorf("quantize weight: %d values for [%d %d]", len(w), rows, cols)
	}
	const eps = float32(1.1920928955078125e-07) // torch.finfo(float32).eps, the observers' floor
	groups, size := 1, rows*cols
	if perRow {
		groups, size = rows, cols
	}
	q = make([]int8, len(w))
	scales = make([]float64, groups)
	for g := 0; g < groups; g++ {
		part := w[g*size : (g+1)*size]
		var amax float32
		for _, v := range part {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, nil, fmt.Errorf("quantize weight: non-finite value")
			}
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		scale := max(amax/127.5, eps)
		inv := 1 / scale
		scales[g] = float64(scale)
		out := q[g*size : (g+1)*size]
		for i, v := range part {
			x := v / scale
			if perRow {
				x = v * inv
			}
			out[i] = int8(math.Max(-128, math.Min(127, math.RoundToEven(float64(x)))))
		}
	}
	return q, scales, nil
}

// newFusedInt8Linear quantizes one linear layer's weight ([out, in] float32)
// and packs it with its bias, or packs several layers that read the same
// input (a layer's query, key and value) as one: their weights stacked by rows,
// their biases concatenated, so a call quantizes the input once and runs one
// larger matrix product instead of three. Each part is quantized on its own,
// as if packed alone; with one scale per matrix, the stacked weight carries
// each part's scale on every one of its rows (a per-row scale vector), so the
// output equals the separate layers' outputs.
func newFusedInt8Linear(ws, biases []*ts.Tensor, opts Int8Options, f CPUFeatures) (*int8Linear, error) {
	if len(ws) == 0 || len(ws) != len(biases) {
		return nil, fmt.Errorf("int8 linear: %d weights, %d biases", len(ws), len(biases))
	}
	var q []int8
	var scales []float64
	var rows, cols int64
	for i, w := range ws {
		shape := Shape(w)
		if len(shape) != 2 || (i > 0 && shape[1] != cols) {
			return nil, fmt.Errorf("int8 linear: weight %d shape %v", i, shape)
		}
		cols = shape[1]
		vals, err := Float32s(w)
		if err != nil {
			return nil, err
		}
		qi, si, err := QuantizeWeight(vals, int(shape[0]), int(cols), opts.PerChannel)
		if err != nil {
			return nil, err
		}
		q = append(q, qi...)
		if len(ws) > 1 && !opts.PerChannel {
			for r := int64(0); r < shape[0]; r++ {
				scales = append(scales, si[0])
			}
		} else {
			scales = append(scales, si...)
		}
		rows += shape[0]
	}
	qt, err := ts.OfSlice(q)
	if err != nil {
		return nil, err
	}
	defer drop(qt)
	q2, err := qt.Reshape([]int64{rows, cols}, false)
	if err != nil {
		return nil, err
	}
	defer drop(q2)
	bias := biases[0]
	if len(biases) > 1 {
		if bias, err = ts.Cat(biases, 0); err != nil {
			return nil, fmt.Errorf("int8 linear: stacking biases: %w", err)
		}
		defer drop(bias) // the packed weight holds its own reference
	}
	cs := (*C.double)(C.malloc(C.size_t(len(scales)) * C.size_t(unsafe.Sizeof(C.double(0)))))
	defer C.free(unsafe.Pointer(cs))
	copy(unsafe.Slice((*float64)(unsafe.Pointer(cs)), len(scales)), scales)
	var cb unsafe.Pointer
	if bias != nil {
		cb = unsafe.Pointer(bias.Ctensor())
	}
	// With VNNI (or AMX) the layer is packed for oneDNN's int8 kernels:
	// measured on the Xeon of BENCHMARKS.md, a 384→1,536 layer on 1,024
	// tokens ran about 5× faster than fbgemm's. Without VNNI, fbgemm with
	// 7-bit activations (reduce_range) avoids saturating 16-bit sums.
	onednn := C.int(0)
	if f.VNNI {
		onednn = 1
	}
	defer LockThread()() // libtorch's last error is per OS thread
	prepackMu.Lock()     // without AVX-512, the engine switch inside is process-wide
	p := C.bt_int8_linear_prepack(unsafe.Pointer(q2.Ctensor()), cs, C.int64_t(len(scales)), cb, onednn)
	prepackMu.Unlock()
	if err := ts.TorchErr(); err != nil {
		return nil, fmt.Errorf("int8 prepack: %w", err)
	}
	if p == nil {
		return nil, fmt.Errorf("int8 prepack returned nothing")
	}
	return &int8Linear{packed: p, reduceRange: !f.VNNI}, nil
}

// prepackMu serialises prepacks: on CPUs with VNNI but without AVX-512 each
// sets libtorch's process-wide quantized engine for the duration of the call.
var prepackMu sync.Mutex

// forward computes x·Wᵀ + b with int8 weights and per-batch int8 activations.
func (l *int8Linear) forward(x *ts.Tensor) (*ts.Tensor, error) {
	rr := C.int(0)
	if l.reduceRange {
		rr = 1
	}
	p := C.bt_int8_linear(unsafe.Pointer(x.Ctensor()), l.packed, rr)
	if err := ts.TorchErr(); err != nil {
		return nil, fmt.Errorf("int8 linear: %w", err)
	}
	return ts.New(lib.Ctensor(p)), nil
}

func (l *int8Linear) free() {
	if l != nil && l.packed != nil {
		C.ati_free(l.packed)
		l.packed = nil
	}
}

// Quantize applies a --quantize mode ("", none, int8 or int8_per_channel) to a loaded model and
// returns the mode in force. When int8 cannot run here (see Int8Unsupported)
// the model stays float32, the result is QuantizeNone and fallback says why,
// for one log line: the float32 folder is the artifact, so nothing is lost.
func Quantize(m *Bert, mode string, f CPUFeatures) (applied, fallback string, err error) {
	if err := CheckQuantize(mode); err != nil {
		return "", "", err
	}
	if mode == "" || mode == QuantizeNone {
		return QuantizeNone, "", nil
	}
	if why := Int8Unsupported(m.Device, f); why != "" {
		return QuantizeNone, why + "; running float32", nil
	}
	if err := m.QuantizeInt8(Int8Options{PerChannel: mode == QuantizeInt8PerChannel}, f); err != nil {
		return "", "", err
	}
	return mode, "", nil
}

// CheckQuantize validates a --quantize value without loading anything.
func CheckQuantize(mode string) error {
	switch mode {
	case "", QuantizeNone, QuantizeInt8, QuantizeInt8PerChannel:
		return nil
	}
	return fmt.Errorf("quantize %q: want none, int8 or int8_per_channel", mode)
}

// QuantizeInt8 packs every linear layer of the encoder and the pooler as int8
// for inference; the classifier stays float32 (it is tiny, and its logits are
// what every metric reads). The float32 weights stay too: Forward in train
// mode and Export use them. The model must be on the CPU and f must have AVX2
// (see Int8Unsupported).
func (m *Bert) QuantizeInt8(opts Int8Options, f CPUFeatures) error {
	if why := Int8Unsupported(m.Device, f); why != "" {
		return fmt.Errorf("%s", why)
	}
	if m.lora != nil {
		return fmt.Errorf("quantize: merge the LoRA adapter first (MergeLoRA)")
	}
	if m.Precision().reduced() {
		return fmt.Errorf("quantize: the model runs in %s; int8 layers take float32 activations (set precision fp32 first)", m.Precision())
	}
	m.freeInt8()
	packed := map[string]*int8Linear{}
	pack := func(prefix string, parts ...string) error {
		var ws, bs []*ts.Tensor
		for _, part := range parts {
			ws = append(ws, m.byName[part+".weight"].T)
			bs = append(bs, m.byName[part+".bias"].T)
		}
		l, err := newFusedInt8Linear(ws, bs, opts, f)
		if err != nil {
			for _, l := range packed {
				l.free()
			}
			return fmt.Errorf("%s: %w", prefix, err)
		}
		packed[prefix] = l
		return nil
	}
	for _, p := range m.params {
		prefix, ok := strings.CutSuffix(p.Name, ".weight")
		if !ok || !quantizedLinear(prefix) {
			continue
		}
		if self, ok := strings.CutSuffix(prefix, ".attention.self.query"); ok {
			// query, key and value read the same input: one packed layer.
			a := self + ".attention.self."
			if err := pack(a+qkvName, a+"query", a+"key", a+"value"); err != nil {
				return err
			}
			continue
		}
		if strings.HasSuffix(prefix, ".attention.self.key") || strings.HasSuffix(prefix, ".attention.self.value") {
			continue
		}
		if err := pack(prefix, prefix); err != nil {
			return err
		}
	}
	m.int8 = packed
	return nil
}

// qkvName names, under a layer's attention.self., the int8 layer that packs
// its query, key and value together (not an HF parameter: it lives only in
// memory, built from the three at load).
const qkvName = "qkv"

// Quantized reports whether QuantizeInt8 has packed the model.
func (m *Bert) Quantized() bool { return len(m.int8) > 0 }

// quantizedLinear says which linear layers QuantizeInt8 packs.
func quantizedLinear(prefix string) bool {
	if prefix == "bert.pooler.dense" {
		return true
	}
	if !strings.HasPrefix(prefix, "bert.encoder.layer.") || strings.Contains(prefix, "LayerNorm") {
		return false
	}
	return strings.HasSuffix(prefix, ".query") || strings.HasSuffix(prefix, ".key") ||
		strings.HasSuffix(prefix, ".value") || strings.HasSuffix(prefix, ".dense")
}

func (m *Bert) freeInt8() {
	for _, l := range m.int8 {
		l.free()
	}
	m.int8 = nil
}
