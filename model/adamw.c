// One pass over each parameter for the whole AdamW update: torch 2.1's CPU
// AdamW (single-tensor form) runs eight elementwise ops, each a pass over
// memory, and with 22.7 M parameters a step is bound by memory traffic: about
// 22 float streams there against 7 here (read p, g, m, v; write p, m, v).
// The arithmetic is torch's, op for op and in the same order, in float32:
//
//   g = g*grad_scale                            (clipping's mul_; exact for 1)
//   p = p*decay; m = m + (1-b1)*(g-m)           (lerp, weight < 0.5)
//   v = v*b2 + (1-b2)*g*g                       (mul_, addcmul_)
//   p = p + (-step_size)*(m / (sqrt(v)*(1/sqrt(bc2)) + eps))   (addcdiv_;
//       torch divides by a scalar as a multiplication by its reciprocal)
//
// Folding clipping's scale into this pass saves a read and a write of every
// gradient on each step that clips (most steps of a fine-tuning run).
//
// The loop is written with SSE2 intrinsics (every x86-64 CPU has them) because
// GCC will not vectorize sqrtf while it may set errno, and cgo refuses
// -fno-math-errno; other CPUs run the scalar loop, which is also the tail.
// (An AVX-512 form was tried: the pass is bound by memory, not arithmetic,
// and it ran no faster.)
#include <math.h>
#include <string.h>
#include "adamw.h"

// The replay of row-sparse steps below must give the bits of the dense
// update, so no product may be fused into an add (GCC does so by default
// where the target has FMA, e.g. under CGO_CFLAGS=-march=native).
#pragma GCC optimize("fp-contract=off")
#pragma STDC FP_CONTRACT OFF
#ifdef __SSE2__
#include <emmintrin.h>
#endif

static void adamw_range(float *restrict p, const float *restrict g, float *restrict m,
                        float *restrict v, int64_t n, float decay, const beamtune_adamw_step *c) {
	const float w1 = c->one_minus_beta1, b2 = c->beta2, w2 = c->one_minus_beta2;
	const float inv_bc2 = 1.0f / c->bias_correction2_sqrt, eps = c->eps, step = c->neg_step_size;
	const float scale = c->grad_scale;
	int64_t i = 0;
#ifdef __SSE2__
	const __m128 W1 = _mm_set1_ps(w1), B2 = _mm_set1_ps(b2), W2 = _mm_set1_ps(w2);
	const __m128 INV = _mm_set1_ps(inv_bc2), EPS = _mm_set1_ps(eps), STEP = _mm_set1_ps(step), DECAY = _mm_set1_ps(decay);
	const __m128 SCALE = _mm_set1_ps(scale);
	for (; i + 4 <= n; i += 4) {
		const __m128 gi = _mm_mul_ps(_mm_loadu_ps(g + i), SCALE), mo = _mm_loadu_ps(m + i), vo = _mm_loadu_ps(v + i);
		const __m128 mi = _mm_add_ps(mo, _mm_mul_ps(W1, _mm_sub_ps(gi, mo)));
		const __m128 vi = _mm_add_ps(_mm_mul_ps(vo, B2), _mm_mul_ps(_mm_mul_ps(W2, gi), gi));
		const __m128 denom = _mm_add_ps(_mm_mul_ps(_mm_sqrt_ps(vi), INV), EPS);
		const __m128 pi = _mm_mul_ps(_mm_loadu_ps(p + i), DECAY);
		_mm_storeu_ps(m + i, mi);
		_mm_storeu_ps(v + i, vi);
		_mm_storeu_ps(p + i, _mm_add_ps(pi, _mm_mul_ps(STEP, _mm_div_ps(mi, denom))));
	}
#endif
	for (; i < n; i++) {
		const float gi = g[i] * scale;
		const float mi = m[i] + w1 * (gi - m[i]);
		const float vi = v[i] * b2 + w2 * gi * gi;
		m[i] = mi;
		v[i] = vi;
		p[i] = p[i] * decay + step * (mi / (sqrtf(vi) * inv_bc2 + eps));
	}
}

void beamtune_adamw(const beamtune_adamw_seg *segs, int nsegs, const beamtune_adamw_step *c) {
	for (int i = 0; i < nsegs; i++) {
		adamw_range(segs[i].p, segs[i].g, segs[i].m, segs[i].v, segs[i].n, segs[i].decay, c);
	}
}

// True when all n floats are +0.0 bit for bit (a -0.0 would not stay -0.0
// through a real step, so it takes the full replay).
static int all_plus_zero(const float *x, int64_t n) {
	uint32_t acc = 0;
	for (int64_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, x + i, sizeof u);
		acc |= u;
	}
	return acc == 0;
}

// A row whose moments are both +0.0 (a token no batch has used yet) stays
// so through a zero-gradient step: m = 0 + w1*(0-0) = +0, v = 0*b2 + w2*0*0
// = +0, and the update is p*decay + step*(0/(sqrt(0)*inv + eps)) =
// p*decay + step*(+0). That last form is computed as written (step*0.0f is
// -0.0 or +0.0 and decides the sign of a zero p*decay exactly as the full
// step does), one multiply-add per element instead of the full arithmetic.
// It needs eps > 0 and a finite gradient scale (else the full step makes a
// NaN of 0/0 or 0*inf); steps without them take the full arithmetic.
static void decay_range(float *restrict p, int64_t n, float decay, float step) {
	const float zero_update = step * 0.0f;
	for (int64_t i = 0; i < n; i++) {
		p[i] = p[i] * decay + zero_update;
	}
}

void beamtune_adamw_catch_up(float *p, float *m, float *v, int64_t width, const int64_t *rows, int64_t nrows,
                             int64_t *last, const beamtune_adamw_past *past, int64_t base, int64_t upto) {
	float zeros[256] = {0}; // a zero gradient, width at a time in pieces of 256
	for (int64_t i = 0; i < nrows; i++) {
		const int64_t r = rows[i];
		if (last[r] >= upto) {
			continue;
		}
		float *pr = p + r * width, *mr = m + r * width, *vr = v + r * width;
		int fresh = all_plus_zero(mr, width) && all_plus_zero(vr, width);
		for (int64_t s = last[r] + 1; s <= upto; s++) {
			const beamtune_adamw_past *h = &past[s - base];
			if (fresh && h->c.eps > 0 && isfinite(h->c.grad_scale)) {
				decay_range(pr, width, h->decay, h->c.neg_step_size);
				continue;
			}
			for (int64_t off = 0; off < width; off += 256) {
				const int64_t n = width - off < 256 ? width - off : 256;
				adamw_range(pr + off, zeros, mr + off, vr + off, n, h->decay, &h->c);
			}
			fresh = 0; // the full step may have left non-zero moments (a NaN)
		}
		last[r] = upto;
	}
}
