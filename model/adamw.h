// The fused AdamW update of optim.go (see AdamW.Step for why it exists).
#include <stdint.h>

// One contiguous float32 range of a parameter, its gradient and its moments.
typedef struct {
	float *p;
	const float *g;
	float *m, *v;
	int64_t n;
	float decay; // 1 - lr*weight_decay, or 1 for no-decay parameters
} beamtune_adamw_seg;

// Constants of one step, as torch.optim.AdamW computes them. grad_scale
// multiplies every gradient before use (gradient clipping's coefficient, 1
// when no clipping applies: x*1 is x exactly).
typedef struct {
	float one_minus_beta1, beta2, one_minus_beta2;
	float bias_correction2_sqrt, eps, neg_step_size;
	float grad_scale;
} beamtune_adamw_step;

void beamtune_adamw(const beamtune_adamw_seg *segs, int nsegs, const beamtune_adamw_step *c);
