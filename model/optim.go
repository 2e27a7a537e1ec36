package model

import (
	"fmt"
	"math"

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
	steps  int64
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
	}
	return o, nil
}

// Steps is the number of updates applied so far.
func (o *AdamW) Steps() int64 { return o.steps }

// Free releases the moment tensors.
func (o *AdamW) Free() {
	drop(o.m...)
	drop(o.v...)
	o.m, o.v = nil, nil
}

// Step applies one update with learning rate lr, using the gradients left by
// Backward. It is the single-tensor form of torch.optim.AdamW:
//
//	p ← p·(1 − lr·wd);  m ← lerp(m, g, 1−β1);  v ← lerp(v, g², 1−β2)
//	p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)
func (o *AdamW) Step(lr float64) error {
	o.steps++
	bc1 := 1 - math.Pow(o.cfg.Beta1, float64(o.steps))
	bc2 := 1 - math.Pow(o.cfg.Beta2, float64(o.steps))
	stepSize := lr / bc1
	return NoGrad(func() error {
		for i, p := range o.params {
			if err := o.update(p, o.m[i], o.v[i], lr, stepSize, math.Sqrt(bc2)); err != nil {
				return fmt.Errorf("adamw %s: %w", p.Name, err)
			}
		}
		return nil
	})
}

func (o *AdamW) update(p *Param, m, v *ts.Tensor, lr, stepSize, bc2Sqrt float64) error {
	g, err := p.T.Grad(false)
	if err != nil {
		return err
	}
	defer drop(g)
	if ok, _ := g.Defined(); !ok {
		return nil // the parameter took no part in the loss
	}
	if p.Decay && o.cfg.WeightDecay != 0 {
		if err := scalarOp(1-lr*o.cfg.WeightDecay, p.T.MulScalar_); err != nil {
			return err
		}
	}
	if err := lerp(m, g, 1-o.cfg.Beta1); err != nil {
		return err
	}
	g2, err := g.Square(false)
	if err != nil {
		return err
	}
	err = lerp(v, g2, 1-o.cfg.Beta2)
	drop(g2)
	if err != nil {
		return err
	}
	// denom = (√v/√bc2 + ε)·(−1/stepSize), so that p += m/denom is the update.
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
	if err := scalarOp(-1/stepSize, denom.MulScalar_); err != nil {
		return err
	}
	return p.T.Addcdiv_(m, denom)
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
		if err := resetGrad(p.T); err != nil {
			return fmt.Errorf("reset grad %s: %w", p.Name, err)
		}
	}
	return nil
}

// ClipGradNorm scales all gradients together so their global L2 norm is at
// most maxNorm, as torch.nn.utils.clip_grad_norm_; it returns the norm before
// clipping. (gotch's nn.ClipGradNorm deadlocks on its VarStore lock.)
func ClipGradNorm(params []*Param, maxNorm float64) (float64, error) {
	var total float64
	err := NoGrad(func() error {
		var grads, norms []*ts.Tensor
		defer func() { drop(grads...); drop(norms...) }()
		for _, p := range params {
			g, err := p.T.Grad(false)
			if err != nil {
				return err
			}
			if ok, _ := g.Defined(); !ok {
				drop(g)
				continue
			}
			grads = append(grads, g)
			n, err := g.Norm(false)
			if err != nil {
				return err
			}
			norms = append(norms, n)
		}
		if len(norms) == 0 {
			return nil
		}
		stacked, err := ts.Stack(norms, 0)
		if err != nil {
			return err
		}
		tn, err := stacked.Norm(true)
		if err != nil {
			return err
		}
		v, err := Float32Scalar(tn)
		drop(tn)
		if err != nil {
			return err
		}
		total = float64(v)
		coef := maxNorm / (total + 1e-6)
		if coef >= 1 {
			return nil
		}
		for _, g := range grads {
			if err := scalarOp(coef, g.MulScalar_); err != nil {
				return err
			}
		}
		return nil
	})
	return total, err
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
// with the step count, for checkpoints.
func (o *AdamW) State() (map[string][]float32, int64, error) {
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
	return nil
}
