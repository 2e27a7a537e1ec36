package model

// #include <stdint.h>
// // Declared by gotch's libtch (torch_api.h) and linked from it; gotch has no
// // error-returning Go wrappers for these.
// void at_manual_seed(int64_t);
// int at_get_num_threads();
// void at_set_num_threads(int n_threads);
// int atc_cuda_is_available();
// int atc_cuda_device_count();
// // Added to libtch by scripts/setup.sh (gotch patch 5).
// void at_reset_grad(void *);
import "C"

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/sugarme/gotch"
	lib "github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

// This file is the thin layer between beamtune and gotch. Rules it enforces:
//   - no Must* call: gotch's Must helpers end the whole process on any error;
//   - grad mode and libtorch's last error are per OS thread, so torch work runs
//     on a goroutine locked to its thread (LockThread);
//   - intermediates are dropped explicitly (scope), because the patched gotch no
//     longer carries the 100 KB ballast that made Go's GC run its finalizers.

// Device is where tensors live.
type Device = gotch.Device

// ParseDevice resolves "auto", "cpu", "cuda" or "cuda:N". auto picks CUDA when
// this libtorch has it and a GPU is visible, else CPU.
func ParseDevice(s string) (Device, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch {
	case s == "" || s == "auto":
		if CUDAAvailable() {
			return gotch.CudaBuilder(0), nil
		}
		return gotch.CPU, nil
	case s == "cpu":
		return gotch.CPU, nil
	case s == "cuda" || strings.HasPrefix(s, "cuda:"):
		idx := 0
		if rest, ok := strings.CutPrefix(s, "cuda:"); ok {
			n, err := strconv.Atoi(rest)
			if err != nil || n < 0 {
				return Device{}, fmt.Errorf("device %q: bad CUDA index", s)
			}
			idx = n
		}
		if !CUDAAvailable() {
			return Device{}, fmt.Errorf("device %q: this libtorch has no usable CUDA (CPU build, no driver, or no GPU); use --device=cpu or run scripts/setup.sh --cuda on a GPU machine", s)
		}
		if n := CUDADeviceCount(); idx >= n {
			return Device{}, fmt.Errorf("device %q: only %d CUDA device(s) visible", s, n)
		}
		return gotch.CudaBuilder(uint(idx)), nil
	}
	return Device{}, fmt.Errorf("device %q: want auto, cpu, cuda or cuda:N", s)
}

// DeviceName is the flag spelling of d.
func DeviceName(d Device) string {
	if d.IsCuda() {
		return fmt.Sprintf("cuda:%d", d.Value)
	}
	return "cpu"
}

// CUDAAvailable reports whether libtorch can use a GPU.
func CUDAAvailable() bool { return C.atc_cuda_is_available() != 0 }

// CUDADeviceCount is the number of visible GPUs.
func CUDADeviceCount() int { return int(C.atc_cuda_device_count()) }

// SetThreads sets libtorch's intra-op thread count; n <= 0 keeps libtorch's default.
func SetThreads(n int) {
	if n > 0 {
		C.at_set_num_threads(C.int(n))
	}
}

// Threads is libtorch's intra-op thread count.
func Threads() int { return int(C.at_get_num_threads()) }

// Seed seeds libtorch's global generators (CPU and CUDA): dropout masks and
// random initialisation become repeatable. Use WithSeed when other goroutines
// may draw random numbers at the same time.
func Seed(seed int64) { C.at_manual_seed(C.int64_t(seed)) }

// rngMu serialises users of libtorch's global generator. gotch exposes no
// per-call generator, and trials of a sweep run in one process on prism, so
// without it their dropout draws would interleave and runs would not repeat.
var rngMu sync.Mutex

// WithSeed seeds the global generator and runs fn while no other WithSeed
// caller can draw from it: fn's random draws depend on seed alone.
func WithSeed(seed int64, fn func() error) error {
	rngMu.Lock()
	defer rngMu.Unlock()
	Seed(seed)
	return fn()
}

// LockThread pins the calling goroutine to its OS thread for torch work and
// returns the function that releases it. Tests and one-shot commands call it
// at the top of a goroutine that runs tensor ops; beamtune's pipelines run
// theirs through OnTorchThread instead (one thread for the whole process).
func LockThread() (unlock func()) {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}

// WithGrad runs fn with autograd on or off on this thread and restores the
// previous mode afterwards (gotch's NoGrad always turns grad back on).
//
// libtorch keeps the grad mode per OS thread, so the goroutine is pinned to
// its thread for the call: otherwise the Go scheduler could move it between
// the set and the restore, leaving some other thread with autograd off and a
// later training step on that thread failing in backward.
func WithGrad(enabled bool, fn func() error) error {
	defer LockThread()()
	want := 0
	if enabled {
		want = 1
	}
	prev := lib.AtGradSetEnabled(want)
	if err := ts.TorchErr(); err != nil {
		return err
	}
	defer lib.AtGradSetEnabled(prev)
	return fn()
}

// resetGrad sets t's gradient to None (undefined), so the next backward
// stores a fresh one; Grad then reports it as not defined.
func resetGrad(t *ts.Tensor) error {
	defer LockThread()() // libtorch's last error is per OS thread
	C.at_reset_grad(t.Ctensor())
	return ts.TorchErr()
}

// ResetGrad drops t's gradient (sets it to None).
func ResetGrad(t *ts.Tensor) error { return resetGrad(t) }

// NoGrad runs fn without recording autograd history.
func NoGrad(fn func() error) error { return WithGrad(false, fn) }

// drop frees tensors now; nil entries are skipped. Errors are ignored: freeing
// only fails for a tensor already freed, which leaves nothing to release.
func drop(tensors ...*ts.Tensor) {
	for _, t := range tensors {
		if t != nil {
			_ = t.Drop()
		}
	}
}

// scope runs a chain of tensor ops, stops at the first error and frees every
// intermediate it made unless the result is kept. It keeps forward passes
// readable: each op is one line, with no error check and no Drop after it.
type scope struct {
	err   error
	temps []*ts.Tensor
}

// add records the result of an op.
func (s *scope) add(t *ts.Tensor, err error, op string) *ts.Tensor {
	if err != nil {
		if s.err == nil {
			s.err = fmt.Errorf("%s: %w", op, err)
		}
		return nil
	}
	s.temps = append(s.temps, t)
	return t
}

// ok reports whether the chain has not failed; each op checks it first so a
// failed op's nil result is never used.
func (s *scope) ok() bool { return s.err == nil }

// keep removes t from the temporaries so release leaves it alive.
func (s *scope) keep(t *ts.Tensor) *ts.Tensor {
	for i, x := range s.temps {
		if x == t {
			s.temps = append(s.temps[:i], s.temps[i+1:]...)
			break
		}
	}
	return t
}

// release frees every temporary that was not kept.
func (s *scope) release() {
	drop(s.temps...)
	s.temps = s.temps[:0]
}

// scalar ops take a *ts.Scalar that owns C memory; these helpers free it.
func withScalar(v float64, f func(*ts.Scalar) (*ts.Tensor, error)) (*ts.Tensor, error) {
	sc := ts.FloatScalar(v)
	defer sc.Drop()
	return f(sc)
}

func (s *scope) linear(x, w, b *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := ts.Linear(x, w, b)
	return s.add(t, err, "linear")
}

// attention is softmax(q·kᵀ·scale + mask)·v in one libtorch call (no dropout).
func (s *scope) attention(q, k, v, mask *ts.Tensor, scale float64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	if mask == nil {
		// gotch's wrapper reads the mask's handle even when it is nil;
		// libtorch itself takes a missing mask (and then runs its fused
		// kernel), so call it directly.
		var out lib.Ctensor
		lib.AtgScaledDotProductAttention(&out, lib.Ctensor(q.Ctensor()), lib.Ctensor(k.Ctensor()), lib.Ctensor(v.Ctensor()), nil, 0, 0, scale, 0)
		if err := ts.TorchErr(); err != nil {
			return s.add(nil, err, "attention")
		}
		return s.add(ts.New(out), nil, "attention")
	}
	t, err := ts.ScaledDotProductAttention(q, k, v, mask, 0, false, []float64{scale})
	return s.add(t, err, "attention")
}

// take looks up idx (any shape) in the flat table.
func (s *scope) take(table, idx *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := table.Take(idx, false)
	return s.add(t, err, "take")
}

func (s *scope) addT(a, b *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := a.Add(b, false)
	return s.add(t, err, "add")
}

// sumScaled is total + w*t, or w*t when total is nil.
func (s *scope) sumScaled(total, t *ts.Tensor, w float64) *ts.Tensor {
	t = s.mulScalar(t, w)
	if total == nil {
		return t
	}
	return s.addT(total, t)
}

func (s *scope) mulT(a, b *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := a.Mul(b, false)
	return s.add(t, err, "mul")
}

func (s *scope) mulScalar(a *ts.Tensor, v float64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := withScalar(v, func(sc *ts.Scalar) (*ts.Tensor, error) { return a.MulScalar(sc, false) })
	return s.add(t, err, "mul")
}

func (s *scope) oneMinus(a *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := withScalar(1, func(one *ts.Scalar) (*ts.Tensor, error) { return a.RsubScalar(one, false) })
	return s.add(t, err, "rsub")
}

func (s *scope) arange(n int64, dev Device) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	end := ts.IntScalar(n)
	defer end.Drop()
	t, err := ts.Arange(end, gotch.Int64, dev)
	return s.add(t, err, "arange")
}

func (s *scope) matmul(a, b *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := a.Matmul(b, false)
	return s.add(t, err, "matmul")
}

func (s *scope) view(a *ts.Tensor, shape ...int64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := a.Reshape(shape, false)
	return s.add(t, err, "reshape")
}

// hasPadding reports whether a 0/1 attention mask has a 0 anywhere.
func hasPadding(mask *ts.Tensor) (bool, error) {
	least, err := mask.Min(false)
	if err != nil {
		return false, err
	}
	defer drop(least)
	v, err := least.Float64Value([]int64{})
	if err != nil {
		return false, err
	}
	return v == 0, nil
}

// narrow is a view of length entries of dim from start (no copy).
func (s *scope) narrow(a *ts.Tensor, dim, start, length int64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := a.Narrow(dim, start, length, false)
	return s.add(t, err, "narrow")
}

func (s *scope) permute(a *ts.Tensor, dims ...int64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := a.Permute(dims, false)
	return s.add(t, err, "permute")
}

func (s *scope) transpose(a *ts.Tensor, d0, d1 int64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := a.Transpose(d0, d1, false)
	return s.add(t, err, "transpose")
}

func (s *scope) contiguous(a *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := a.Contiguous(false)
	return s.add(t, err, "contiguous")
}

func (s *scope) softmax(a *ts.Tensor, dim int64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := a.Softmax(dim, gotch.Float, false)
	return s.add(t, err, "softmax")
}

func (s *scope) logSoftmax(a *ts.Tensor, dim int64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := a.LogSoftmax(dim, gotch.Float, false)
	return s.add(t, err, "log_softmax")
}

func (s *scope) dropout(a *ts.Tensor, p float64, train bool) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	if !train || p == 0 {
		return a
	}
	t, err := ts.Dropout(a, p, true)
	return s.add(t, err, "dropout")
}

func (s *scope) layerNorm(a, w, b *ts.Tensor, eps float64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	shape, err := w.Size()
	if err != nil {
		s.err = fmt.Errorf("layer_norm: %w", err)
		return nil
	}
	t, err := ts.LayerNorm(a, shape, w, b, eps, false)
	return s.add(t, err, "layer_norm")
}

func (s *scope) embedding(w, ids *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := ts.Embedding(w, ids, -1, false, false)
	return s.add(t, err, "embedding")
}

func (s *scope) activation(a *ts.Tensor, name string) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	var t *ts.Tensor
	var err error
	switch name {
	case "gelu":
		t, err = a.Gelu("none", false)
	case "gelu_new", "gelu_pytorch_tanh":
		t, err = a.Gelu("tanh", false)
	case "relu":
		t, err = a.Relu(false)
	default:
		err = fmt.Errorf("unsupported activation %q", name)
	}
	return s.add(t, err, name)
}

func (s *scope) tanh(a *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := a.Tanh(false)
	return s.add(t, err, "tanh")
}

func (s *scope) selectIdx(a *ts.Tensor, dim, idx int64) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := a.Select(dim, idx, false)
	return s.add(t, err, "select")
}

func (s *scope) toFloat(a *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	t, err := a.Totype(gotch.Float, false)
	return s.add(t, err, "to_float")
}

// Int64Tensor makes a [rows, cols] int64 tensor on dev from row-major data.
func Int64Tensor(data []int64, rows, cols int, dev Device) (*ts.Tensor, error) {
	if len(data) != rows*cols {
		return nil, fmt.Errorf("int64 tensor: %d values for shape [%d %d]", len(data), rows, cols)
	}
	t, err := ts.OfSlice(data)
	if err != nil {
		return nil, err
	}
	v, err := t.Reshape([]int64{int64(rows), int64(cols)}, true)
	if err != nil {
		return nil, err
	}
	return toDevice(v, dev)
}

// Float32Tensor makes a float32 tensor of the given shape on dev.
func Float32Tensor(data []float32, shape []int64, dev Device) (*ts.Tensor, error) {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	if int64(len(data)) != n {
		return nil, fmt.Errorf("float32 tensor: %d values for shape %v", len(data), shape)
	}
	t, err := ts.OfSlice(data)
	if err != nil {
		return nil, err
	}
	v, err := t.Reshape(shape, true)
	if err != nil {
		return nil, err
	}
	return toDevice(v, dev)
}

// toDevice moves t to dev, freeing the source when a copy was made.
func toDevice(t *ts.Tensor, dev Device) (*ts.Tensor, error) {
	if !dev.IsCuda() {
		return t, nil
	}
	return t.To(dev, true)
}

// Float32s copies a tensor's values (any device, any float dtype) into Go memory.
func Float32s(t *ts.Tensor) ([]float32, error) {
	c, err := t.Totype(gotch.Float, false)
	if err != nil {
		return nil, err
	}
	defer drop(c)
	if dev, err := c.Device(); err == nil && dev.IsCuda() {
		cpu, err := c.To(gotch.CPU, false)
		if err != nil {
			return nil, err
		}
		defer drop(cpu)
		c = cpu
	}
	cont, err := c.Contiguous(false)
	if err != nil {
		return nil, err
	}
	defer drop(cont)
	n := cont.Numel()
	out := make([]float32, n)
	if n == 0 {
		return out, nil
	}
	if err := cont.CopyData(out, n); err != nil {
		return nil, err
	}
	return out, nil
}

// Float32Scalar reads a one-element tensor.
func Float32Scalar(t *ts.Tensor) (float32, error) {
	v, err := Float32s(t)
	if err != nil {
		return 0, err
	}
	if len(v) != 1 {
		return 0, fmt.Errorf("expected a scalar tensor, got %d values", len(v))
	}
	return v[0], nil
}

// Shape is t's size, or nil when t is undefined.
func Shape(t *ts.Tensor) []int64 {
	s, err := t.Size()
	if err != nil {
		return nil
	}
	return s
}
