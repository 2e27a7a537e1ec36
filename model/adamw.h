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

// One past step of a row-sparse table (see rowsparse.go): its constants and
// the table's weight-decay factor that step.
typedef struct {
	beamtune_adamw_step c;
	float decay;
} beamtune_adamw_past;

// beamtune_adamw_catch_up brings rows of a [rows x width] table up to step
// upto: row r, last updated at step last[r], gets steps last[r]+1 .. upto
// with a zero gradient, by the same arithmetic as beamtune_adamw (bit for
// bit what a dense update with a zero gradient row does). past[k] is step
// base+k. last[r] is set to upto.
void beamtune_adamw_catch_up(float *p, float *m, float *v, int64_t width, const int64_t *rows, int64_t nrows,
                             int64_t *last, const beamtune_adamw_past *past, int64_t base, int64_t upto);
