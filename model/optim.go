package model

// #cgo CFLAGS: -O3
// #include "adamw.h"
import "C"

import (
	"fmt"
	"log/slog"
	"math"
	"sync"
	"unsafe"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// AdamWConfig holds AdamW's hyperparameters (Loshchilov & Hutter, decoupled
// weight decay). Defaults follow torch.optim.AdamW except WeightDecay.
type AdamWConfig struct {
	Beta1, Beta2 float64
	Eps          float64
	WeightDecay  float64
}

// DefaultAdamW is torch's AdamW defaults with BERT fine-tuning's weight decay.
func DefaultAdamW() AdamWConfig {
	return AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
}

// AdamW updates parameters in place. Weight decay skips parameters whose Decay
// is false (biases, LayerNorm). It is written here, not taken from libtorch's
// C++ optimizer through gotch, because its moment tensors must be saved in
// checkpoints and restored exactly, which gotch's optimizer handle cannot do.
type AdamW struct {
	cfg    AdamWConfig
	params []*Param
	m, v   []*ts.Tensor // first and second moments, one per parameter
	lazy   []*lazyRows  // per parameter: the deferred steps of a row-sparse table, else nil
	steps  int64
	opByOp bool // no fused update (tests)
}

// NewAdamW creates zeroed moments for params.
func NewAdamW(params []*Param, cfg AdamWConfig) (*AdamW, error) {
	o := &AdamW{cfg: cfg, params: params}
	for _, p := range params {
		m, err := p.T.ZerosLike(false)
		if err != nil {
			o.Free()
			return nil, fmt.Errorf("adamw %s: %w", p.Name, err)
		}
		v, err := p.T.ZerosLike(false)
		if err != nil {
			drop(m)
			o.Free()
			return nil, fmt.Errorf("adamw %s: %w", p.Name, err)
		}
		o.m, o.v = append(o.m, m), append(o.v, v)
		o.lazy = append(o.lazy, nil)
		if p.rows != nil {
			if o.lazy[len(o.lazy)-1], err = attachLazyRows(p, m, v, 0); err != nil {
				o.Free()
				return nil, fmt.Errorf("adamw %s: %w", p.Name, err)
			}
		}
	}
	return o, nil
}

// Steps is the number of updates applied so far.
func (o *AdamW) Steps() int64 { return o.steps }

// Free releases the moment tensors. A row-sparse table's rows catch up
// first (the weights stay as a dense update leaves them); that can fail
// only for tensors the optimizer itself checked when it attached, so a
// failure is logged rather than returned.
func (o *AdamW) Free() {
	for i, lazy := range o.lazy {
		if lazy == nil || o.params[i].rows == nil || o.params[i].rows.lazy != lazy {
			continue
		}
		if err := o.params[i].rows.current(o.params[i].T, nil); err != nil {
			slog.Error("adamw: rows of a row-sparse table could not catch up; they stay behind", "param", o.params[i].Name, "err", err)
		}
		o.params[i].rows.lazy = nil
	}
	o.lazy = nil
	drop(o.m...)
	drop(o.v...)
	o.m, o.v = nil, nil
}

// Step applies one update with learning rate lr, using the gradients left by
// Backward multiplied by gradScale (ClipScale's factor; 1 for none). It is
// the single-tensor form of torch.optim.AdamW after clip_grad_norm_:
//
//	g ← g·gradScale
//	p ← p·(1 − lr·wd);  m ← lerp(m, g, 1−β1);  v ← β2·v + (1−β2)·g²
//	p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)
//
// Float32 CPU parameters are updated by one fused pass per parameter
// (adamw.c), split across the libtorch thread count: the op-by-op form is
// eight passes over memory, a quarter of a training step on short sentences
// (BENCHMARKS.md); the fused pass applies gradScale as it reads each
// gradient, where clipping in place would cost another read and write of
// every gradient. Other parameters (CUDA) take the op-by-op form, which
// scales the gradient in place first. A row-sparse table (rowsparse.go)
// updates the rows this step's batches used, each after the steps it
// missed, and records the step for the others.
func (o *AdamW) Step(lr, gradScale float64) error {
	o.steps++
	bc1 := 1 - math.Pow(o.cfg.Beta1, float64(o.steps))
	bc2 := 1 - math.Pow(o.cfg.Beta2, float64(o.steps))
	stepSize := lr / bc1
	c := C.beamtune_adamw_step{
		one_minus_beta1: C.float(1 - o.cfg.Beta1), beta2: C.float(o.cfg.Beta2), one_minus_beta2: C.float(1 - o.cfg.Beta2),
		bias_correction2_sqrt: C.float(math.Sqrt(bc2)), eps: C.float(o.cfg.Eps), neg_step_size: C.float(-stepSize),
		grad_scale: C.float(gradScale),
	}
	weightsChanged() // cached bf16 copies of these weights go stale
	return NoGrad(func() error {
		fused := fusedAdamW{opByOp: o.opByOp}
		defer fused.free()
		for i, p := range o.params {
			if p.rows != nil && o.lazy[i] == nil {
				return fmt.Errorf("adamw %s: the row-sparse table has no record in this optimizer (made row-sparse after it was created, or its state failed to load)", p.Name)
			}
			if lazy := o.lazy[i]; lazy != nil {
				if err := fused.addRows(p, o.m[i], o.v[i], o.decay(p, lr), lazy, o.steps, c); err != nil {
					return fmt.Errorf("adamw %s: %w", p.Name, err)
				}
				continue
			}
			ok, err := fused.add(p, o.m[i], o.v[i], o.decay(p, lr))
			if err != nil {
				return fmt.Errorf("adamw %s: %w", p.Name, err)
			}
			if ok {
				continue
			}
			if err := o.update(p, o.m[i], o.v[i], lr, gradScale, stepSize, math.Sqrt(bc2)); err != nil {
				return fmt.Errorf("adamw %s: %w", p.Name, err)
			}
		}
		fused.run(c, Threads())
		return nil
	})
}

// Sync brings every row of a row-sparse table up to the last step, so that
// the weights and moments read as a dense update's would. Call it before
// the weights are read: evaluation, export (State calls it).
func (o *AdamW) Sync() error {
	for i, lazy := range o.lazy {
		if lazy == nil {
			continue
		}
		if err := o.params[i].rows.current(o.params[i].T, nil); err != nil {
			return fmt.Errorf("adamw %s: %w", o.params[i].Name, err)
		}
	}
	weightsChanged()
	return nil
}

// decay is the factor weight decay multiplies p by this step.
func (o *AdamW) decay(p *Param, lr float64) float64 {
	if p.Decay && o.cfg.WeightDecay != 0 {
		return 1 - lr*o.cfg.WeightDecay
	}
	return 1
}

// update is the op-by-op form of Step for one parameter.
func (o *AdamW) update(p *Param, m, v *ts.Tensor, lr, gradScale, stepSize, bc2Sqrt float64) error {
	g, err := p.T.Grad(false)
	if err != nil {
		return err
	}
	defer drop(g)
	if ok, _ := g.Defined(); !ok {
		return nil // the parameter took no part in the loss
	}
	if gradScale != 1 {
		if err := scalarOp(gradScale, g.MulScalar_); err != nil {
			return err
		}
	}
	if d := o.decay(p, lr); d != 1 {
		if err := scalarOp(d, p.T.MulScalar_); err != nil {
			return err
		}
	}
	if err := lerp(m, g, 1-o.cfg.Beta1); err != nil {
		return err
	}
	if err := scalarOp(o.cfg.Beta2, v.MulScalar_); err != nil {
		return err
	}
	g2, err := g.Square(false)
	if err != nil {
		return err
	}
	err = scalarOp(1-o.cfg.Beta2, g2.MulScalar_)
	if err == nil {
		err = v.Add_(g2)
	}
	drop(g2)
	if err != nil {
		return err
	}
	denom, err := v.Sqrt(false)
	if err != nil {
		return err
	}
	defer drop(denom)
	if err := scalarOp(1/bc2Sqrt, denom.MulScalar_); err != nil {
		return err
	}
	if err := scalarOp(o.cfg.Eps, denom.AddScalar_); err != nil {
		return err
	}
	ratio, err := m.Div(denom, false)
	if err != nil {
		return err
	}
	defer drop(ratio)
	if err := scalarOp(-stepSize, ratio.MulScalar_); err != nil {
		return err
	}
	return p.T.Add_(ratio)
}

// fusedAdamW collects the parameters that adamw.c can update: float32, on
// the CPU, contiguous, with a gradient.
type fusedAdamW struct {
	segs  []C.beamtune_adamw_seg
	grads []*ts.Tensor // held until the update ran

	// opByOp sends every parameter the op-by-op way (tests compare the two).
	opByOp bool
	total  int64
	// updated records, after run, which rows of row-sparse tables it updated.
	updated []func()
}

// add queues p for the fused update; false means it needs the op-by-op form.
// A parameter without a gradient is skipped, as in update.
func (f *fusedAdamW) add(p *Param, m, v *ts.Tensor, decay float64) (bool, error) {
	if f.opByOp || p.T.DType() != gotch.Float {
		return false, nil
	}
	if dev, err := p.T.Device(); err != nil || dev.Name != gotch.CPU.Name {
		return false, err
	}
	g, err := p.T.Grad(false)
	if err != nil {
		return false, err
	}
	if ok, _ := g.Defined(); !ok {
		drop(g)
		return true, nil
	}
	var data [4]*C.float
	var sizes [4]int64
	for i, t := range []*ts.Tensor{p.T, g, m, v} {
		d, n, ok, err := cpuFloats(t)
		if err != nil || !ok {
			drop(g)
			return false, err
		}
		data[i], sizes[i] = d, n
	}
	n := sizes[0]
	if n != sizes[1] || n != sizes[2] || n != sizes[3] {
		drop(g)
		return false, nil
	}
	f.grads = append(f.grads, g)
	f.segs = append(f.segs, C.beamtune_adamw_seg{
		p: data[0], g: data[1], m: data[2], v: data[3],
		n: C.int64_t(n), decay: C.float(decay),
	})
	f.total += n
	return true, nil
}

// run updates every queued parameter, the elements split evenly across up
// to `threads` goroutines (libtorch's pool is idle during the update).
func (f *fusedAdamW) run(c C.beamtune_adamw_step, threads int) {
	defer func() {
		for _, done := range f.updated {
			done()
		}
	}()
	if len(f.segs) == 0 {
		return
	}
	const minPerThread = 1 << 16 // below this a second thread costs more than it saves
	workers := int(max(1, min(int64(threads), f.total/minPerThread)))
	if workers == 1 {
		C.beamtune_adamw(&f.segs[0], C.int(len(f.segs)), &c)
		return
	}
	// Cut the concatenated ranges into `workers` parts of equal length; a cut
	// may fall inside a tensor (the kernel's loads do not assume alignment).
	per := (f.total + int64(workers) - 1) / int64(workers)
	parts := make([][]C.beamtune_adamw_seg, 0, workers)
	var cur []C.beamtune_adamw_seg
	room := per
	for _, s := range f.segs {
		for s.n > 0 {
			k := min(int64(s.n), room)
			part := s
			part.n = C.int64_t(k)
			cur = append(cur, part)
			s.p, s.g, s.m, s.v = advance(s.p, k), advance(s.g, k), advance(s.m, k), advance(s.v, k)
			s.n -= C.int64_t(k)
			if room -= k; room == 0 {
				parts, cur, room = append(parts, cur), nil, per
				if len(parts) == workers-1 {
					room = math.MaxInt64 // the last part takes the rest
				}
			}
		}
	}
	if len(cur) > 0 {
		parts = append(parts, cur)
	}
	var wg sync.WaitGroup
	for _, part := range parts[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			C.beamtune_adamw(&part[0], C.int(len(part)), &c)
		}()
	}
	C.beamtune_adamw(&parts[0][0], C.int(len(parts[0])), &c)
	wg.Wait()
}

// addRows queues the rows of a row-sparse table that this step's batches
// used, after replaying the steps each missed, and records this step (the
// given one, with its constants) for the rows it leaves behind.
func (f *fusedAdamW) addRows(p *Param, m, v *ts.Tensor, decay float64, lazy *lazyRows, step int64, c C.beamtune_adamw_step) error {
	if err := lazy.record(step, c, decay); err != nil {
		return err
	}
	g, err := p.rows.merge()
	if err != nil || g == nil {
		return err // no batch used the table: every row catches up later
	}
	f.grads = append(f.grads, g)
	ids := p.rows.mergedIDs // brought to the step before by the forwards that gathered them
	data, err := cpuFloatData(p.T, g, m, v)
	if err != nil {
		return err
	}
	width := Shape(p.T)[1]
	for i, r := range ids {
		f.segs = append(f.segs, C.beamtune_adamw_seg{
			p: advance(data[0], r*width), g: advance(data[1], int64(i)*width),
			m: advance(data[2], r*width), v: advance(data[3], r*width),
			n: C.int64_t(width), decay: C.float(decay),
		})
	}
	f.total += int64(len(ids)) * width
	f.updated = append(f.updated, func() { // once run has updated them
		for _, r := range ids {
			lazy.last[r] = step
		}
	})
	return nil
}

func (f *fusedAdamW) free() { drop(f.grads...); f.grads = nil }

// cpuFloats is the data of t when it is a contiguous float32 CPU tensor,
// which the fused passes (AdamW here, the gradient norm in gradnorm.go)
// read directly; ok is false for any other tensor, which then takes
// libtorch's ops.
func cpuFloats(t *ts.Tensor) (data *C.float, n int64, ok bool, err error) {
	if t.DType() != gotch.Float {
		return nil, 0, false, nil
	}
	dev, err := t.Device()
	if err != nil {
		return nil, 0, false, err
	}
	contiguous, err := t.IsContiguous()
	if err != nil {
		return nil, 0, false, err
	}
	if dev.Name != gotch.CPU.Name || !contiguous {
		return nil, 0, false, nil
	}
	ptr, err := t.DataPtr()
	if err != nil {
		return nil, 0, false, err
	}
	return (*C.float)(ptr), numel(Shape(t)), true, nil
}

// cpuFloatData is the data of each tensor, which must all be contiguous
// float32 CPU tensors (a row-sparse table, its gradient and moments).
func cpuFloatData(tensors ...*ts.Tensor) ([]*C.float, error) {
	data := make([]*C.float, len(tensors))
	for i, t := range tensors {
		d, _, ok, err := cpuFloats(t)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("row-sparse AdamW: the table, its gradient and moments must be contiguous float32 CPU tensors")
		}
		data[i] = d
	}
	return data, nil
}

// advance is p + k elements.
func advance(p *C.float, k int64) *C.float {
	return (*C.float)(unsafe.Add(unsafe.Pointer(p), k*4))
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

func lerp(x, end *ts.Tensor, w float64) error {
	sc := ts.FloatScalar(w)
	defer sc.Drop()
	return x.Lerp_(end, sc)
}

// scalarOp runs an in-place op that takes a scalar operand.
func scalarOp(v float64, op func(*ts.Scalar) error) error {
	sc := ts.FloatScalar(v)
	defer sc.Drop()
	return op(sc)
}

// ZeroGrad clears every parameter's gradient before the next backward pass
// by setting it to None, as PyTorch's zero_grad(set_to_none=True): backward
// then stores a fresh gradient instead of adding into a zeroed buffer, which
// saves two passes over every gradient per step.
func ZeroGrad(params []*Param) error {
	for _, p := range params {
		if p.rows != nil {
			p.rows.clear()
		}
		if err := resetGrad(p.T); err != nil {
			return fmt.Errorf("reset grad %s: %w", p.Name, err)
		}
	}
	return nil
}

// ClipScale measures the gradients' global L2 norm and returns it with the
// factor torch.nn.utils.clip_grad_norm_ would scale them all by so that
// their norm is at most maxNorm (1 when it already is). The gradients are
// left as they are: AdamW.Step applies the factor as it reads them.
// (gotch's nn.ClipGradNorm deadlocks on its VarStore lock.)
func ClipScale(params []*Param, maxNorm float64) (norm, scale float64, err error) {
	norm, err = gradNorm(params, nil)
	return norm, clipCoef(maxNorm, norm), err
}

// clipCoef is clip_grad_norm_'s factor for a global norm: maxNorm/norm
// (with its 1e-6 guard) when the norm is above maxNorm, else 1.
func clipCoef(maxNorm, norm float64) float64 {
	return min(1, maxNorm/(norm+1e-6))
}

// clip scales grads in place by clipCoef.
func clip(grads []*ts.Tensor, maxNorm, norm float64) error {
	coef := clipCoef(maxNorm, norm)
	if coef >= 1 {
		return nil
	}
	for _, g := range grads {
		if err := scalarOp(coef, g.MulScalar_); err != nil {
			return err
		}
	}
	return nil
}

// ScaleGrads multiplies every gradient by factor (loss scaling's unscale)
// and returns their global L2 norm after it: Inf or NaN when any gradient
// holds a non-finite value. The norm is taken after the scaling, so that
// large finite gradients of a scaled loss do not overflow its squares. When
// the norm is finite and maxNorm > 0 the gradients are then clipped in
// place by ClipScale's factor.
func ScaleGrads(params []*Param, factor, maxNorm float64) (float64, error) {
	err := NoGrad(func() error {
		grads, err := definedGrads(params)
		defer func() { drop(grads...) }()
		if err != nil {
			return err
		}
		for _, g := range grads {
			if err := scalarOp(factor, g.MulScalar_); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return gradNorm(params, func(total float64, grads []*ts.Tensor) error {
		if maxNorm <= 0 || math.IsNaN(total) || math.IsInf(total, 0) {
			return nil
		}
		return clip(grads, maxNorm, total)
	})
}

// definedGrads returns handles to the parameters' gradients that exist (a
// frozen or unused parameter has none); the caller drops them.
func definedGrads(params []*Param) ([]*ts.Tensor, error) {
	var grads []*ts.Tensor
	for _, p := range params {
		if p.rows != nil {
			g, err := p.rows.merge()
			if err != nil {
				return grads, err
			}
			if g != nil {
				grads = append(grads, g)
			}
			continue
		}
		g, err := p.T.Grad(false)
		if err != nil {
			return grads, err
		}
		if ok, _ := g.Defined(); !ok {
			drop(g)
			continue
		}
		grads = append(grads, g)
	}
	return grads, nil
}

// LinearSchedule is linear warmup from 0 to Peak over Warmup steps, then
// linear decay to 0 at Total steps (HF's get_linear_schedule_with_warmup).
type LinearSchedule struct {
	Peak          float64
	Warmup, Total int64
}

// LR is the learning rate for optimizer step `step` (0-based, as HF counts).
func (s LinearSchedule) LR(step int64) float64 {
	if step < s.Warmup {
		return s.Peak * float64(step) / float64(max(1, s.Warmup))
	}
	return s.Peak * math.Max(0, float64(s.Total-step)/float64(max(1, s.Total-s.Warmup)))
}

// State returns the optimizer's moments under "m.<param>" and "v.<param>",
// with the step count, for checkpoints. It syncs row-sparse tables first.
func (o *AdamW) State() (map[string][]float32, int64, error) {
	if err := o.Sync(); err != nil {
		return nil, 0, err
	}
	out := make(map[string][]float32, 2*len(o.params))
	for i, p := range o.params {
		m, err := Float32s(o.m[i])
		if err != nil {
			return nil, 0, err
		}
		v, err := Float32s(o.v[i])
		if err != nil {
			return nil, 0, err
		}
		out["m."+p.Name], out["v."+p.Name] = m, v
	}
	return out, o.steps, nil
}

// LoadState restores moments and the step count saved by State.
func (o *AdamW) LoadState(state map[string][]float32, steps int64) error {
	// A row-sparse table's record is dropped first: the loaded moments
	// replace the ones it points at, and the table's weights come from the
	// same checkpoint, written synced, so it has nothing left to replay. It
	// is started again once the state has loaded; a failed load leaves the
	// optimizer without it, and Step refuses to run.
	var tables []int
	for i, lazy := range o.lazy {
		if lazy != nil {
			o.params[i].rows.lazy, o.lazy[i] = nil, nil
			tables = append(tables, i)
		}
	}
	for i, p := range o.params {
		for _, k := range []struct {
			key string
			dst **ts.Tensor
		}{{"m." + p.Name, &o.m[i]}, {"v." + p.Name, &o.v[i]}} {
			vals, ok := state[k.key]
			if !ok {
				return fmt.Errorf("optimizer state lacks %s", k.key)
			}
			dev, err := p.T.Device()
			if err != nil {
				return err
			}
			t, err := tensorOfFloat32(vals, Shape(p.T), dev)
			if err != nil {
				return fmt.Errorf("optimizer state %s: %w", k.key, err)
			}
			drop(*k.dst)
			*k.dst = t
		}
	}
	o.steps = steps
	for _, i := range tables {
		var err error
		if o.lazy[i], err = attachLazyRows(o.params[i], o.m[i], o.v[i], steps); err != nil {
			return fmt.Errorf("adamw %s: %w", o.params[i].Name, err)
		}
	}
	return nil
}
