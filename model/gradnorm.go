package model

// #include "gradnorm.h"
import "C"

import (
	"math"
	"sync"

	"github.com/sugarme/gotch/ts"
)

// gradNorm computes the global L2 norm of the defined gradients and hands
// it, with the gradients, to then (nil: nothing more). Contiguous float32
// CPU gradients (every gradient of a CPU training run) are summed by
// gradnorm.c; others take libtorch's norms.
func gradNorm(params []*Param, then func(total float64, grads []*ts.Tensor) error) (float64, error) {
	var total float64
	err := NoGrad(func() error {
		grads, err := definedGrads(params)
		defer drop(grads...)
		if err != nil {
			return err
		}
		sum, ok, err := sumSquares(grads, Threads())
		switch {
		case err != nil:
			return err
		case ok:
			total = math.Sqrt(sum)
		default:
			if total, err = torchNorm(grads); err != nil {
				return err
			}
		}
		if then == nil {
			return nil
		}
		return then(total, grads)
	})
	return total, err
}

// sumsqChunk is how many elements one partial sum covers. The partials are
// added in chunk order whatever the thread count, so the norm, and with it
// clipping, has the same bits on 1 thread or 8: a run resumed on a machine
// of another size clips as the uninterrupted run did.
const sumsqChunk = 1 << 16

// sumSquares is Σg² over grads, the chunks split across up to threads
// goroutines; ok is false (and nothing summed) when a gradient is not a
// contiguous float32 CPU tensor.
func sumSquares(grads []*ts.Tensor, threads int) (sum float64, ok bool, err error) {
	var chunks []C.beamtune_sumsq_chunk
	for _, g := range grads {
		data, n, ok, err := cpuFloats(g)
		if err != nil || !ok {
			return 0, false, err
		}
		for off := int64(0); off < n; off += sumsqChunk {
			chunks = append(chunks, C.beamtune_sumsq_chunk{x: advance(data, off), n: C.int64_t(min(sumsqChunk, n-off))})
		}
	}
	if len(chunks) == 0 {
		return 0, true, nil
	}
	partial := make([]float64, len(chunks))
	workers := max(1, min(threads, len(chunks)))
	per := (len(chunks) + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := per; lo < len(chunks); lo += per {
		hi := min(lo+per, len(chunks))
		wg.Add(1)
		go func() {
			defer wg.Done()
			C.beamtune_sumsq(&chunks[lo], C.int(hi-lo), (*C.double)(&partial[lo]))
		}()
	}
	C.beamtune_sumsq(&chunks[0], C.int(min(per, len(chunks))), (*C.double)(&partial[0]))
	wg.Wait()
	for _, p := range partial {
		sum += p
	}
	return sum, true, nil
}

// torchNorm is the global norm by libtorch: each gradient's norm, then the
// norm of those (torch.nn.utils.clip_grad_norm_'s form).
func torchNorm(grads []*ts.Tensor) (float64, error) {
	if len(grads) == 0 {
		return 0, nil
	}
	var norms []*ts.Tensor
	defer func() { drop(norms...) }()
	for _, g := range grads {
		n, err := g.Norm(false)
		if err != nil {
			return 0, err
		}
		norms = append(norms, n)
	}
	stacked, err := ts.Stack(norms, 0)
	if err != nil {
		return 0, err
	}
	tn, err := stacked.Norm(true)
	if err != nil {
		return 0, err
	}
	v, err := Float32Scalar(tn)
	drop(tn)
	return float64(v), err
}
