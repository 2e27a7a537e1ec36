package trainer

import "math"

// Dynamic loss scaling, for fp16 training: fp16's smallest normal value is
// 6e-5, and small gradients flush to zero unless the loss is scaled up before
// the backward pass. The rule is torch.cuda.amp.GradScaler's: multiply the
// loss by the scale, divide the gradients by it before clipping and the
// optimizer step; a step whose gradients hold an Inf or NaN is skipped (the
// weights and the optimizer's moments stay, the schedule moves on) and the
// scale halves; after ScaleGrowthInterval good steps in a row it doubles.
// Scaling by a power of two is exact in floating point, so without an
// overflow a scaled run is the unscaled run bit for bit
// (TestLossScalingIsExact).

// Loss scaling's constants (GradScaler's defaults).
const (
	DefaultLossScale    = 65536.0 // 2^16: the initial scale of an fp16 run
	ScaleGrowthInterval = 2000
)

// lossScaler is the scaling state a checkpoint keeps, so a resumed run
// scales (and skips) as the uninterrupted one would.
type lossScaler struct {
	Scale     float64 `json:"scale"`
	GoodSteps int64   `json:"good_steps"` // finite steps since the last change of scale
	Skipped   int64   `json:"skipped"`    // steps skipped for non-finite gradients, all told
}

// newLossScaler is the scaler of a run with Config.LossScale and precision
// (nil: no scaling). fp16 scales from DefaultLossScale unless told otherwise;
// another precision scales only when LossScale is set.
func newLossScaler(cfg Config, fp16 bool) *lossScaler {
	s := cfg.LossScale
	if s == 0 && fp16 {
		s = DefaultLossScale
	}
	if s <= 0 {
		return nil
	}
	return &lossScaler{Scale: s}
}

// update records a step's outcome: finite gradients (the step was taken)
// or not (skipped).
func (s *lossScaler) update(finite bool) {
	if !finite {
		s.Scale /= 2
		s.GoodSteps = 0
		s.Skipped++
		return
	}
	s.GoodSteps++
	if s.GoodSteps >= ScaleGrowthInterval && s.Scale*2 <= math.MaxFloat32 {
		s.Scale *= 2
		s.GoodSteps = 0
	}
}
