
// ---- beamtune: inference kernels (appended to libtch/torch_api.cpp by scripts/setup.sh)
//
// Eval-mode float32 work that libtorch 2.1 does in several passes or with
// per-call overhead that dominates at BERT's short lengths; model/kernels.go
// calls the first two on CPUs with AVX-512 when no gradient will flow
// (elsewhere libtorch's ops run), int8_linear.cpp the third.
//
// bt_attention: softmax(q·kᵀ·scale)·v for every (row, head) of a batch, each
// row over its own number of tokens, in one pass per query (scores, softmax
// and the weighted sum of values stay in the L1 cache). libtorch 2.1's fused
// CPU kernel (cpu_flash_attention) takes no mask, so padded batches ran
// attention op by op, and even unpadded it spends most of its time in
// per-block MKL calls (at 24 tokens it ran at 31 GFLOP/s).
// q, k, v: float32 [batch, seq, heads·head_dim] with unit stride in the last
// dimension (views of one packed projection are fine), and their biases
// (null: none), added as the kernel reads the projections, so that the
// projections need no pass of their own to add them. lengths: the tokens of
// each row (right padding); query positions past a row's length get zeros.
// Returns a new contiguous [batch, seq, heads·head_dim] tensor.
//
// bt_add_layer_norm: LayerNorm(x + x_bias + residual)·weight + bias over the
// last dimension, the linear layer's bias, the residual connection and the
// norm in one pass over each row instead of an add over the whole tensor and
// then the norm's own passes.
//
// Why the biases: libtorch's linear (addmm) first copies the bias into every
// row of its output, then adds the product to it; at SST-2's lengths that
// copy was 4.6% of a forward. The attention's projections and the output
// projections come without bias (mm) and these kernels add it where they
// read them. (The intermediate layer keeps libtorch's linear and GELU: a
// bias + GELU kernel measured the same: BenchmarkIntermediateLayer at
// commit 3e09f1f, BENCHMARKS.md.)
//
// quantize_u8: the u8 activations of an int8 linear layer on oneDNN, as
// libtorch's dynamic quantization makes them, on the thread team
// (int8_linear.cpp calls it).
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <immintrin.h>
#include <algorithm>
#include <cmath>
#include <vector>

namespace bt_kernels {

// The kernels are compiled for AVX-512 (the entry points check the CPU
// first) at -O3,
// whose complete unrolling keeps the register tiles below in registers; the
// rest of libtch keeps its default target and -O2.
#pragma GCC push_options
#pragma GCC target("avx512f")
#pragma GCC optimize("O3")

// exp for AVX-512: x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-6
// polynomial (Taylor coefficients; relative error below 2e-7 on that range),
// scaled by 2^n with scalef. Inputs here are ≤ 0 (scores minus their max);
// below -87 the result is flushed to zero.
static inline __m512 exp512(__m512 x) {
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 ln2_hi = _mm512_set1_ps(0.693359375f);
  const __m512 ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
  const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
  r = _mm512_fnmadd_ps(n, ln2_lo, r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_maskz_scalef_ps(~tiny, p, n);
}

static inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
}

// Queries are taken QT at a time so that every loaded key or value vector
// feeds QT independent multiply-adds (one chain per query and register
// would wait on the adder's latency instead).
constexpr int QT = 8;

// scores: s[r][j] = q_r · k_j for KB blocks of 16 keys from key jb, from kᵀ
// (kt, dh rows of npad).
template <int KB>
static inline void scores(const float *const *q, const float *kt, int64_t npad, int64_t dh, int64_t jb, float *const *s) {
  __m512 acc[QT][KB];
  for (int r = 0; r < QT; r++)
    for (int b = 0; b < KB; b++) acc[r][b] = _mm512_setzero_ps();
  for (int64_t d = 0; d < dh; d++) {
    __m512 kv[KB];
    for (int b = 0; b < KB; b++) kv[b] = _mm512_loadu_ps(kt + d * npad + jb + 16 * b);
#pragma GCC unroll 8
    for (int r = 0; r < QT; r++) {
      const __m512 qd = _mm512_set1_ps(q[r][d]);
      for (int b = 0; b < KB; b++) acc[r][b] = _mm512_fmadd_ps(qd, kv[b], acc[r][b]);
    }
  }
  for (int r = 0; r < QT; r++)
    for (int b = 0; b < KB; b++) _mm512_storeu_ps(s[r] + jb + 16 * b, acc[r][b]);
}

// values: o[r][c0·16 ...] = inv[r] · Σ_j p[r][j] · v_j over C 16-float
// chunks of the head from chunk c0; the last chunk may be partial (last).
template <int C>
static inline void values(const float *const *p, const float *v, int64_t vs, int64_t n, int64_t c0, __mmask16 last,
                          const float *inv, float *const *o) {
  __m512 acc[QT][C];
  for (int r = 0; r < QT; r++)
    for (int c = 0; c < C; c++) acc[r][c] = _mm512_setzero_ps();
  __mmask16 m[C];
  for (int c = 0; c < C; c++) m[c] = c == C - 1 ? last : (__mmask16)0xFFFF;
  for (int64_t j = 0; j < n; j++) {
    __m512 vv[C];
    for (int c = 0; c < C; c++) vv[c] = _mm512_maskz_loadu_ps(m[c], v + j * vs + (c0 + c) * 16);
#pragma GCC unroll 8
    for (int r = 0; r < QT; r++) {
      const __m512 pj = _mm512_set1_ps(p[r][j]);
      for (int c = 0; c < C; c++) acc[r][c] = _mm512_fmadd_ps(pj, vv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < QT; r++)
    for (int c = 0; c < C; c++)
      _mm512_mask_storeu_ps(o[r] + (c0 + c) * 16, m[c], _mm512_mul_ps(acc[r][c], _mm512_set1_ps(inv[r])));
}

// softmax of n scaled scores in place (positions n..npad become 0); returns
// 1 / the sum of the exponentials.
static inline float softmax(float *s, int64_t n, float scale) {
  const __m512 sc = _mm512_set1_ps(scale);
  __m512 mx = _mm512_set1_ps(-INFINITY);
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    mx = _mm512_mask_max_ps(mx, m, mx, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, s + j), sc));
  }
  const __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    const __m512 e = _mm512_maskz_mov_ps(m, exp512(_mm512_fmsub_ps(_mm512_loadu_ps(s + j), sc, vmax)));
    _mm512_storeu_ps(s + j, e);
    sum = _mm512_add_ps(sum, e);
  }
  return 1.0f / _mm512_reduce_add_ps(sum);
}

// One (row, head): n tokens, head_dim dh. q, k, v, o point at the head's
// first column of position 0; qs, ks, vs, os are the position strides; bq,
// bk, bv are the projections' biases for the head's columns (added here:
// the projections come without them, see bt_attention). qt (QT × dh: a
// tile's queries with their bias), kt
// (dh × npad), vh (n × dh), s (QT × npad) and discard (QT × dh rounded up to 16: the
// output of the rows a partial tile repeats) are scratch.
static void head(const float *q, int64_t qs, const float *k, int64_t ks, const float *v, int64_t vs, const float *bq,
                 const float *bk, const float *bv, float *o, int64_t os, int64_t n, int64_t dh, float scale, float *qt,
                 float *kt, float *vh, float *s, float *discard) {
  const int64_t npad = (n + 15) / 16 * 16;
  // kᵀ, so that one query's scores are 16 keys per multiply-add, and the
  // head's values packed by rows. Both are read many times below; in place
  // each of their rows lies on its own page (the positions of the packed
  // projection are kilobytes apart), which costs a TLB miss per row.
  for (int64_t j = 0; j < n; j++) {
    const float *kj = k + j * ks, *vj = v + j * vs;
    for (int64_t d = 0; d < dh; d++) kt[d * npad + j] = kj[d] + bk[d];
    for (int64_t d = 0; d < dh; d++) vh[j * dh + d] = vj[d] + bv[d];
  }
  for (int64_t d = 0; d < dh; d++) std::fill(kt + d * npad + n, kt + (d + 1) * npad, 0.0f);
  const int64_t chunks = (dh + 15) / 16;
  const __mmask16 last = tail_mask(dh - (chunks - 1) * 16);
  for (int64_t i0 = 0; i0 < n; i0 += QT) {
    // A partial tile repeats its last query; only real rows are stored.
    const float *qr[QT];
    float *sr[QT], *orow[QT];
    for (int r = 0; r < QT; r++) {
      const int64_t i = std::min<int64_t>(i0 + r, n - 1);
      const float *qi = q + i * qs;
      float *qti = qt + r * dh;
      for (int64_t d = 0; d < dh; d++) qti[d] = qi[d] + bq[d];
      qr[r] = qti;
      sr[r] = s + r * npad;
      orow[r] = i0 + r < n ? o + i * os : discard + r * chunks * 16;
    }
    int64_t jb = 0;
    for (; jb + 48 <= npad; jb += 48) scores<3>(qr, kt, npad, dh, jb, sr);
    switch ((npad - jb) / 16) {
      case 2: scores<2>(qr, kt, npad, dh, jb, sr); break;
      case 1: scores<1>(qr, kt, npad, dh, jb, sr); break;
    }
    float inv[QT];
    for (int r = 0; r < QT; r++) inv[r] = softmax(sr[r], n, scale);
    // Two chunks (32 floats) of the head at a time: QT × 2 sums in registers.
    for (int64_t c0 = 0; c0 < chunks; c0 += 2) {
      const int64_t cn = std::min<int64_t>(2, chunks - c0);
      const __mmask16 m = c0 + cn == chunks ? last : (__mmask16)0xFFFF;
      switch (cn) {
        case 2: values<2>(sr, vh, dh, n, c0, m, inv, orow); break;
        case 1: values<1>(sr, vh, dh, n, c0, m, inv, orow); break;
      }
    }
  }
}

// One row of LayerNorm((x + xb) + r), xb the bias of the linear layer that
// made x: the sum goes to o first, then the mean, the variance around it
// (not E[y²] − mean², which cancels), and the affine map.
static void add_layer_norm_row(const float *x, const float *xb, const float *r, const float *w, const float *b, float *o,
                               int64_t n, float eps) {
  __m512 sum = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    const __m512 xj = _mm512_add_ps(_mm512_maskz_loadu_ps(m, x + j), _mm512_maskz_loadu_ps(m, xb + j));
    const __m512 y = _mm512_add_ps(xj, _mm512_maskz_loadu_ps(m, r + j));
    _mm512_mask_storeu_ps(o + j, m, y);
    sum = _mm512_add_ps(sum, y);
  }
  const float mean = _mm512_reduce_add_ps(sum) / (float)n;
  const __m512 vmean = _mm512_set1_ps(mean);
  __m512 sq = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, o + j), vmean);
    sq = _mm512_fmadd_ps(d, d, sq);
  }
  const __m512 rstd = _mm512_set1_ps(1.0f / std::sqrt(_mm512_reduce_add_ps(sq) / (float)n + eps));
  for (int64_t j = 0; j < n; j += 16) {
    const __mmask16 m = tail_mask(n - j);
    const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, o + j), vmean), rstd);
    _mm512_mask_storeu_ps(o + j, m, _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(m, w + j), _mm512_maskz_loadu_ps(m, b + j)));
  }
}

// min and max of x[0..n), n ≥ 1.
static void min_max_avx512(const float *x, int64_t n, float *mn, float *mx) {
  __m512 lo = _mm512_set1_ps(x[0]), hi = lo;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
  }
  if (i < n) {  // lanes past n load x[0], a value already seen
    const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(x[0]), tail_mask(n - i), x + i);
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
  }
  *mn = _mm512_reduce_min_ps(lo);
  *mx = _mm512_reduce_max_ps(hi);
}

// q = clamp(round_half_even(x · inv_scale + zp), 0, 255), the product rounded
// to float before the sum as oneDNN's reorder does: the explicit-rounding
// forms keep the compiler from contracting them into one fused multiply-add,
// which rounds once and would change some bytes.
static void quantize_avx512(const float *x, int64_t n, float inv_scale, float zp, uint8_t *q) {
  const int r = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
  const __m512 inv = _mm512_set1_ps(inv_scale), z = _mm512_set1_ps(zp);
  const __m512i zero = _mm512_setzero_si512();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    __m512 v = _mm512_add_round_ps(_mm512_mul_round_ps(_mm512_maskz_loadu_ps(m, x + i), inv, r), z, r);
    _mm512_mask_cvtusepi32_storeu_epi8(q + i, m, _mm512_max_epi32(_mm512_cvt_roundps_epi32(v, r), zero));
  }
}

#pragma GCC pop_options

// libtorch's OpenMP runtime (the libgomp its wheel ships, loaded with it).
// at::parallel_for is a header template whose OpenMP pragmas only work in
// code compiled with -fopenmp, and compiling libtch so would link the
// system's libgomp beside libtorch's: two thread pools fighting over the
// cores. So the kernel calls the loaded runtime's entry points directly,
// found at run time: GOMP_parallel is what `#pragma omp parallel` compiles
// to, and it runs on the calling thread's team, the one libtorch's own ops
// use. Without them the kernel runs on the calling thread alone.
struct Gomp {
  void (*parallel)(void (*fn)(void *), void *data, unsigned threads, unsigned flags);
  int (*thread_num)();
  int (*num_threads)();
};

static const Gomp &gomp() {
  static const Gomp g = [] {
    Gomp r{reinterpret_cast<decltype(r.parallel)>(dlsym(RTLD_DEFAULT, "GOMP_parallel")),
           reinterpret_cast<decltype(r.thread_num)>(dlsym(RTLD_DEFAULT, "omp_get_thread_num")),
           reinterpret_cast<decltype(r.num_threads)>(dlsym(RTLD_DEFAULT, "omp_get_num_threads"))};
    if (r.parallel == nullptr || r.thread_num == nullptr || r.num_threads == nullptr) r = Gomp{nullptr, nullptr, nullptr};
    return r;
  }();
  return g;
}

// parallel runs work(t) for every t in [0, threads), spread over a team of
// up to that many threads (threads == 1: on the caller). OpenMP may start
// fewer than asked (OMP_THREAD_LIMIT, OMP_DYNAMIC, a call from inside
// another parallel region), so each member takes every team-size-th t.
template <typename F>
static void parallel(int64_t threads, F &work) {
  if (threads <= 1) {
    work(0);
    return;
  }
  struct Call {
    F *work;
    int64_t threads;
  } call{&work, threads};
  gomp().parallel(
      [](void *p) {
        const Call &c = *static_cast<Call *>(p);
        const int64_t team = std::max(1, gomp().num_threads());
        for (int64_t t = gomp().thread_num(); t < c.threads; t += team) (*c.work)(t);
      },
      &call, (unsigned)threads, 0);
}

// biasData is the data of an optional bias of n floats (nullptr: zeros,
// held in zero).
static const float *biasData(const at::Tensor *b, int64_t n, const char *what, std::vector<float> &zero) {
  if (b == nullptr) {
    zero.assign(n, 0.0f);
    return zero.data();
  }
  TORCH_CHECK(b->dim() == 1 && b->size(0) == n && b->scalar_type() == at::kFloat && b->is_cpu() && b->is_contiguous(),
              what, ": a bias must be a contiguous float32 CPU vector of the output's width");
  return b->data_ptr<float>();
}

// attention and add_layer_norm are the bodies of bt_attention and
// bt_add_layer_norm (PROTECT, a macro, cannot take their commas).
static at::Tensor attention(const at::Tensor &q, const at::Tensor &k, const at::Tensor &v, const at::Tensor *bq,
                            const at::Tensor *bk, const at::Tensor *bv, const int64_t *lengths, int64_t heads,
                            double scale) {
  TORCH_CHECK(q.dim() == 3 && k.sizes() == q.sizes() && v.sizes() == q.sizes(),
              "bt_attention: q, k, v must be [batch, seq, hidden] of one shape");
  TORCH_CHECK(q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat && v.scalar_type() == at::kFloat,
              "bt_attention: float32 only");
  TORCH_CHECK(q.is_cpu() && k.is_cpu() && v.is_cpu(), "bt_attention: CPU tensors only");
  TORCH_CHECK(q.stride(2) == 1 && k.stride(2) == 1 && v.stride(2) == 1, "bt_attention: the last dimension must be dense");
  TORCH_CHECK(__builtin_cpu_supports("avx512f"), "bt_attention: this CPU lacks AVX-512");
  const int64_t bs = q.size(0), seq = q.size(1), hidden = q.size(2);
  TORCH_CHECK(heads > 0 && hidden % heads == 0, "bt_attention: hidden size not a multiple of heads");
  const int64_t dh = hidden / heads;
  for (int64_t b = 0; b < bs; b++) {
    TORCH_CHECK(lengths[b] >= 1 && lengths[b] <= seq, "bt_attention: row length out of range");
  }
  std::vector<float> zq, zk, zv;
  const float *bqp = biasData(bq, hidden, "bt_attention", zq), *bkp = biasData(bk, hidden, "bt_attention", zk),
              *bvp = biasData(bv, hidden, "bt_attention", zv);
  at::Tensor out = at::empty({bs, seq, hidden}, q.options());
  const float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  float *op = out.data_ptr<float>();
  const int64_t qb = q.stride(0), qs = q.stride(1), kb = k.stride(0), ks = k.stride(1), vb = v.stride(0), vs = v.stride(1);
  const int64_t npad = (seq + 15) / 16 * 16;
  const int64_t tasks = bs * heads, nth = gomp().parallel ? std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), tasks)) : 1;
  // Thread t takes every nth (row, head) from t: rows of a sorted batch
  // grow in length, and contiguous chunks would give the last thread the
  // longest.
  auto work = [&](int64_t t) {
    std::vector<float> qt(QT * dh), kt(dh * npad), vh(seq * dh), scratch(QT * npad), discard(QT * ((dh + 15) / 16 * 16));
    for (int64_t task = t; task < tasks; task += nth) {
      const int64_t b = task / heads, h = task % heads;
      head(qp + b * qb + h * dh, qs, kp + b * kb + h * dh, ks, vp + b * vb + h * dh, vs, bqp + h * dh, bkp + h * dh,
           bvp + h * dh, op + b * seq * hidden + h * dh, hidden, lengths[b], dh, (float)scale, qt.data(), kt.data(),
           vh.data(), scratch.data(), discard.data());
      for (int64_t i = lengths[b]; i < seq; i++) {
        std::fill_n(op + (b * seq + i) * hidden + h * dh, dh, 0.0f);
      }
    }
  };
  parallel(nth, work);
  return out;
}

static at::Tensor add_layer_norm(const at::Tensor &x, const at::Tensor *xb, const at::Tensor &r, const at::Tensor &w,
                                 const at::Tensor &b, double eps) {
  TORCH_CHECK(__builtin_cpu_supports("avx512f"), "bt_add_layer_norm: this CPU lacks AVX-512");
  TORCH_CHECK(x.scalar_type() == at::kFloat && r.scalar_type() == at::kFloat && w.scalar_type() == at::kFloat &&
                  b.scalar_type() == at::kFloat,
              "bt_add_layer_norm: float32 only");
  TORCH_CHECK(x.is_cpu() && r.is_cpu() && w.is_cpu() && b.is_cpu(), "bt_add_layer_norm: CPU tensors only");
  TORCH_CHECK(x.sizes() == r.sizes() && x.is_contiguous() && r.is_contiguous(),
              "bt_add_layer_norm: x and residual must be contiguous and of one shape");
  const int64_t n = x.size(-1);
  TORCH_CHECK(w.dim() == 1 && b.dim() == 1 && w.size(0) == n && b.size(0) == n && w.is_contiguous() && b.is_contiguous(),
              "bt_add_layer_norm: weight and bias must be [hidden]");
  std::vector<float> zero;
  const float *xbp = biasData(xb, n, "bt_add_layer_norm", zero);
  at::Tensor out = at::empty_like(x);
  const int64_t rows = n == 0 ? 0 : x.numel() / n;
  const float *xp = x.data_ptr<float>(), *rp = r.data_ptr<float>(), *wp = w.data_ptr<float>(), *bp = b.data_ptr<float>();
  float *op = out.data_ptr<float>();
  // Rows cost the same: contiguous ranges, one per thread; below 64 rows a
  // second thread costs more than it saves.
  const int64_t nth = gomp().parallel && rows >= 64 ? std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows / 32)) : 1;
  const int64_t per = (rows + nth - 1) / std::max<int64_t>(nth, 1);
  auto work = [&](int64_t t) {
    for (int64_t i = t * per; i < std::min(rows, (t + 1) * per); i++) {
      add_layer_norm_row(xp + i * n, xbp, rp + i * n, wp, bp, op + i * n, n, (float)eps);
    }
  };
  parallel(nth, work);
  return out;
}

// quantize_u8 quantizes float32 activations to u8 as libtorch 2.1's dynamic
// int8 linear does (quantized::linear_dynamic on the oneDNN engine): one
// scale and zero point for the whole tensor from its min and max
// (ChooseQuantizationParams with qmin 0, qmax 255), then each value
// rounded as oneDNN's reorder rounds it. Both passes run on the thread
// team in contiguous chunks; linear_dynamic does the first on one thread.
// AVX-512 only: on CPUs with VNNI but without AVX-512 (AVX-VNNI),
// int8_linear.cpp keeps linear_dynamic.
static void choose_qparams(float min, float max, double *scale_out, int64_t *zero_point_out) {
  TORCH_CHECK(min <= max, "bt_int8: activations hold NaN (min ", min, ", max ", max, ")");
  const int32_t qmin = 0, qmax = 255;
  const float small_scale = 6.1e-5f;  // libtorch's SMALL_SCALE_THRESHOLD
  min = std::min(min, 0.f);
  max = std::max(max, 0.f);
  double scale = (static_cast<double>(max) - min) / (qmax - qmin);
  if (float(scale) == 0.0f || std::isinf(1.0f / float(scale))) scale = 0.1;
  if (scale < small_scale) {
    const float org_scale = scale;
    scale = small_scale;
    if (min == 0.0f) {
      max = small_scale * (qmax - qmin);
    } else if (max == 0.0f) {
      min = -small_scale * (qmax - qmin);
    } else {
      min *= small_scale / org_scale;
      max *= small_scale / org_scale;
    }
  }
  // The zero point from whichever end adds the smaller terms, nudged to an integer in range.
  const double from_min = qmin - min / scale, from_max = qmax - max / scale;
  const double err_min = std::abs(qmin) - std::abs(min / scale), err_max = std::abs(qmax) - std::abs(max / scale);
  const double initial = err_min < err_max ? from_min : from_max;
  *scale_out = scale;
  *zero_point_out = initial < qmin ? qmin : initial > qmax ? qmax : static_cast<int64_t>(std::nearbyint(initial));
}

at::Tensor quantize_u8(const at::Tensor &x, double *scale, int64_t *zero_point) {
  TORCH_CHECK(__builtin_cpu_supports("avx512f"), "bt_int8: this CPU lacks AVX-512");
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.is_cpu() && x.is_contiguous() && x.numel() > 0,
              "bt_int8: activations must be a non-empty contiguous float32 CPU tensor");
  const float *xp = x.data_ptr<float>();
  const int64_t n = x.numel();
  // Chunks of at least 16K values (64 KB): below that a second thread costs more than it saves.
  const int64_t nth = gomp().parallel ? std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), n / 16384)) : 1;
  const int64_t per = (n + nth - 1) / nth;
  std::vector<float> lo(nth), hi(nth);
  auto find = [&](int64_t t) {
    const int64_t begin = t * per, end = std::min(n, begin + per);
    if (begin < end) {
      min_max_avx512(xp + begin, end - begin, &lo[t], &hi[t]);
    } else {
      lo[t] = hi[t] = xp[0];
    }
  };
  parallel(nth, find);
  choose_qparams(*std::min_element(lo.begin(), lo.end()), *std::max_element(hi.begin(), hi.end()), scale, zero_point);
  at::Tensor q = at::empty(x.sizes(), x.options().dtype(at::kByte));
  uint8_t *qp = q.data_ptr<uint8_t>();
  const float inv = static_cast<float>(1.0 / *scale), zp = static_cast<float>(*zero_point);
  auto store = [&](int64_t t) {
    const int64_t begin = t * per, end = std::min(n, begin + per);
    if (begin < end) quantize_avx512(xp + begin, end - begin, inv, zp, qp + begin);
  };
  parallel(nth, store);
  return q;
}

}  // namespace bt_kernels

tensor bt_add_layer_norm(tensor x, tensor x_bias, tensor residual, tensor weight, tensor bias, double eps) {
  PROTECT(return new torch::Tensor(bt_kernels::add_layer_norm(*x, x_bias, *residual, *weight, *bias, eps));)
  return nullptr;
}

tensor bt_attention(tensor query, tensor key, tensor value, tensor query_bias, tensor key_bias, tensor value_bias,
                    int64_t *lengths, int64_t heads, double scale) {
  PROTECT(return new torch::Tensor(bt_kernels::attention(*query, *key, *value, query_bias, key_bias, value_bias, lengths,
                                                         heads, scale));)
  return nullptr;
}
