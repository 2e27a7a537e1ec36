// The sum of squares behind the global gradient norm (gradnorm.go).
#include <stdint.h>

// One contiguous float32 range of a gradient.
typedef struct {
	const float *x;
	int64_t n;
} beamtune_sumsq_chunk;

// beamtune_sumsq writes each chunk's sum of squares, in double precision,
// to out[i].
void beamtune_sumsq(const beamtune_sumsq_chunk *chunks, int nchunks, double *out);
