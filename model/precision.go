package model

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/sugarme/gotch"
	lib "github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

// Precision is the arithmetic of a model's matrix products (--precision).
//
// In bf16 the encoder's linear layers and its attention products run in
// bfloat16, as torch.autocast does: their inputs and weights are cast to
// bfloat16 inside the autograd graph, so gradients land on the float32
// parameters, and the optimizer's state stays float32. The embeddings, every
// LayerNorm, the residual sums, the pooler, the heads (so the logits), the
// losses and everything the trainer reads stay float32. In eval mode without
// autograd the bfloat16 copies of the weights are made once and kept until
// the weights change (see weightsChanged) or the model is freed.
type Precision string

// The --precision values.
const (
	PrecisionFP32 Precision = "fp32"
	PrecisionBF16 Precision = "bf16"
	// PrecisionFP16 is float16 autocast, for CUDA only: float16's narrow
	// range needs loss scaling in training, which the trainer does not do yet.
	PrecisionFP16 Precision = "fp16"
	// PrecisionAuto is bf16 where the hardware has fast bfloat16 (see
	// FastBF16), else fp32.
	PrecisionAuto Precision = "auto"
)

// ParsePrecision reads a --precision value: fp32 (also "" and float32), bf16
// (bfloat16), fp16 (float16, half) or auto.
func ParsePrecision(s string) (Precision, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "fp32", "float32":
		return PrecisionFP32, nil
	case "bf16", "bfloat16":
		return PrecisionBF16, nil
	case "fp16", "float16", "half":
		return PrecisionFP16, nil
	case "auto":
		return PrecisionAuto, nil
	}
	return "", fmt.Errorf("precision %q: want fp32, bf16, fp16 or auto", s)
}

// ErrFP16OnCPU is what asking for fp16 on a CPU device gets.
const ErrFP16OnCPU = "fp16 needs a CUDA device; use bf16 on CPU"

// ResolvePrecision turns a --precision value into the precision a model on
// dev runs in: auto becomes bf16 or fp32 (FastBF16), fp16 on a CPU is an
// error, and quantize ("", none, int8, int8_per_channel) decides what int8
// inference does with it: int8 layers stay int8 with float32 activations, so
// auto then means fp32 and an explicit bf16 or fp16 is refused.
func ResolvePrecision(spec string, dev Device, f CPUFeatures, quantize string) (Precision, error) {
	p, err := ParsePrecision(spec)
	if err != nil {
		return "", err
	}
	int8 := quantize != "" && quantize != QuantizeNone
	switch p {
	case PrecisionAuto:
		if ok, _ := FastBF16(dev, f); ok && !int8 {
			return PrecisionBF16, nil
		}
		return PrecisionFP32, nil
	case PrecisionFP16:
		if !dev.IsCuda() {
			return "", fmt.Errorf("%s", ErrFP16OnCPU)
		}
	}
	if int8 && p != PrecisionFP32 {
		return "", fmt.Errorf("precision %s with quantize %s: int8 layers run with float32 activations; pick one (--precision=fp32 with --quantize, or --quantize=none with --precision=%s)", p, quantize, p)
	}
	return p, nil
}

// FastBF16 reports whether dev multiplies bfloat16 matrices natively and
// says why: on CPU, AVX-512 BF16 or AMX-BF16 (oneDNN's bf16 kernels; without
// them libtorch emulates bf16 through float32 and it is slower than fp32);
// on CUDA, compute capability 8.0 (Ampere) or newer, read from nvidia-smi.
func FastBF16(dev Device, f CPUFeatures) (bool, string) {
	if dev.IsCuda() {
		cc, err := cudaComputeCapability(int(dev.Value))
		if err != nil {
			return false, "CUDA compute capability unknown (" + err.Error() + ")"
		}
		if cc >= 8.0 {
			return true, fmt.Sprintf("CUDA compute capability %.1f has bf16 tensor cores", cc)
		}
		return false, fmt.Sprintf("CUDA compute capability %.1f has no bf16 tensor cores (needs 8.0+)", cc)
	}
	switch {
	case f.AMXBF16 && f.AVX512BF16:
		return true, "CPU has AMX-BF16 and AVX-512 BF16"
	case f.AMXBF16:
		return true, "CPU has AMX-BF16"
	case f.AVX512BF16:
		return true, "CPU has AVX-512 BF16"
	}
	return false, "CPU has neither AVX-512 BF16 nor AMX-BF16 (bf16 would be emulated, slower than fp32)"
}

// cudaComputeCapability asks nvidia-smi for GPU idx's compute capability
// (gotch has no binding for it).
func cudaComputeCapability(idx int) (float64, error) {
	out, err := exec.Command("nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader", "-i", strconv.Itoa(idx)).Output()
	if err != nil {
		return 0, fmt.Errorf("nvidia-smi: %w", err)
	}
	return strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
}

// lowDType is the tensor type of a reduced precision.
func (p Precision) lowDType() gotch.DType {
	if p == PrecisionFP16 {
		return gotch.Half
	}
	return gotch.BFloat16
}

// lowMin is the most negative finite value of the reduced type.
func (p Precision) lowMin() float64 {
	if p == PrecisionFP16 {
		return -65504
	}
	return -3.3895313892515355e38 // bfloat16: 0xff7f
}

func (p Precision) reduced() bool { return p == PrecisionBF16 || p == PrecisionFP16 }

// SetPrecision makes the model's forward passes run in p, which must be
// resolved (fp32, bf16 or fp16; see ResolvePrecision). fp16 needs a CUDA
// device, and a reduced precision cannot be mixed with int8 layers. The
// parameters stay float32 whatever p is.
func (m *Bert) SetPrecision(p Precision) error {
	switch p {
	case "", PrecisionFP32:
		p = PrecisionFP32
	case PrecisionBF16:
	case PrecisionFP16:
		if !m.Device.IsCuda() {
			return fmt.Errorf("%s", ErrFP16OnCPU)
		}
	case PrecisionAuto:
		return fmt.Errorf("set precision: resolve auto first (ResolvePrecision)")
	default:
		return fmt.Errorf("set precision %q: want fp32, bf16 or fp16", p)
	}
	if p.reduced() && m.Quantized() {
		return fmt.Errorf("precision %s: the model has int8 layers, which run with float32 activations", p)
	}
	m.freeCasts()
	m.precision = p
	return nil
}

// Precision is the precision forward passes run in (fp32 unless SetPrecision
// changed it).
func (m *Bert) Precision() Precision {
	if m.precision == "" {
		return PrecisionFP32
	}
	return m.precision
}

// weightsGen counts changes to the weights of any model in this process
// (optimizer steps, loads, merges, pruning). Cached low-precision weight
// copies record the count they were made at and are remade when it moved:
// a change to one model remakes other models' caches too, which only costs
// one cast.
var weightsGen atomic.Uint64

// weightsChanged marks every cached low-precision copy stale.
func weightsChanged() { weightsGen.Add(1) }

// lowLinear is the cached reduced-precision copy of one linear layer.
type lowLinear struct {
	w, b *ts.Tensor
	src  *ts.Tensor // the float32 weight it was made from
}

// casts holds a model's cached reduced-precision weights.
type casts struct {
	gen    uint64
	layers map[string]*lowLinear
}

// freeCasts frees the cached reduced-precision weights.
func (m *Bert) freeCasts() {
	if m.casts == nil {
		return
	}
	for _, l := range m.casts.layers {
		drop(l.w, l.b)
	}
	m.casts = nil
}

// CachedCasts is how many linear layers hold a cached reduced-precision copy.
func (m *Bert) CachedCasts() int {
	if m.casts == nil {
		return 0
	}
	return len(m.casts.layers)
}

// gradEnabled reads this thread's autograd mode. gotch's AtGradSetEnabled
// reads its C int result as a Go int (8 bytes from a 4-byte value): only the
// low 32 bits are the answer.
func gradEnabled() bool {
	prev := lib.AtGradSetEnabled(1)
	lib.AtGradSetEnabled(prev)
	return int32(prev) != 0
}

// lowPrecisionLinear says which linear layers run in the reduced precision:
// the encoder's (the pooler and heads are tiny and make the logits).
func lowPrecisionLinear(prefix string) bool {
	return strings.HasPrefix(prefix, "bert.encoder.layer.")
}

// lowWeights returns the named linear layer's weight and bias in the reduced
// precision: cached when no gradient can flow (eval mode, autograd off), else
// cast inside the autograd graph so that backward reaches the float32
// parameters.
func (m *Bert) lowWeights(s *scope, prefix string, train bool) (w, b *ts.Tensor) {
	if !s.ok() {
		return nil, nil
	}
	dt := m.Precision().lowDType()
	wf, bf := m.w(prefix+".weight"), m.w(prefix+".bias")
	if train || gradEnabled() {
		return s.cast(wf, dt), s.cast(bf, dt)
	}
	gen := weightsGen.Load()
	if m.casts != nil && m.casts.gen != gen {
		m.freeCasts()
	}
	if m.casts == nil {
		m.casts = &casts{gen: gen, layers: map[string]*lowLinear{}}
	}
	if l := m.casts.layers[prefix]; l != nil && l.src == wf {
		return l.w, l.b
	} else if l != nil {
		drop(l.w, l.b)
		delete(m.casts.layers, prefix)
	}
	lw, err := wf.Totype(dt, false)
	if err != nil {
		s.err = fmt.Errorf("cast %s: %w", prefix, err)
		return nil, nil
	}
	lb, err := bf.Totype(dt, false)
	if err != nil {
		drop(lw)
		s.err = fmt.Errorf("cast %s: %w", prefix, err)
		return nil, nil
	}
	m.casts.layers[prefix] = &lowLinear{w: lw, b: lb, src: wf}
	return lw, lb
}

// softmaxAs is softmax over dim with the output of like's type.
func (s *scope) softmaxAs(a *ts.Tensor, dim int64, like *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := a.Softmax(dim, like.DType(), false)
	return s.add(t, err, "softmax")
}

// cast converts a to dt (inside the autograd graph); a tensor already of
// type dt is returned as it is.
func (s *scope) cast(a *ts.Tensor, dt gotch.DType) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	if a.DType() == dt {
		return a
	}
	t, err := a.Totype(dt, false)
	return s.add(t, err, "cast")
}

// The --save_dtype values: the type of an exported folder's weights.
const (
	SaveFP32 = "fp32"
	SaveBF16 = "bf16"
)

// CheckSaveDType validates a --save_dtype value ("" is fp32).
func CheckSaveDType(s string) error {
	switch s {
	case "", SaveFP32, SaveBF16:
		return nil
	}
	return fmt.Errorf("save_dtype %q: want fp32 or bf16", s)
}

// SetSaveDType sets the type Export writes the weights in: fp32 ("") or
// bf16 (model.safetensors in BF16, config.json's torch_dtype "bfloat16";
// half the bytes, and Load converts back to float32). The parameters in
// memory, checkpoints and LoRA adapter folders stay float32.
func (m *Bert) SetSaveDType(s string) error {
	if err := CheckSaveDType(s); err != nil {
		return err
	}
	m.saveDType = s
	return nil
}
