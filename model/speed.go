package model

import (
	"fmt"
	"math/rand"
	"sort"
	"time"
)

// SpeedResult is measured inference cost on this machine.
type SpeedResult struct {
	LatencyP50, LatencyP95 time.Duration // one example per forward pass
	ExamplesPerSec         float64       // batches of BatchSize
	BatchSize, SeqLen      int
	Threads                int
}

// MeasureSpeed times eval-mode forward passes on random token ids of seqLen
// tokens: latency at batch 1 (runs passes, after warm-up) and throughput at
// batchSize (runs/5 passes, at least 3, after 3 warm-up passes: as the Python
// peers under bench/ time theirs). It runs on the caller's thread; lock it
// (LockThread) first.
func MeasureSpeed(m *Bert, seqLen, batchSize, runs int) (SpeedResult, error) {
	res := SpeedResult{BatchSize: batchSize, SeqLen: seqLen, Threads: Threads()}
	rng := rand.New(rand.NewSource(1))
	batch := func(n int) (Batch, error) {
		ids := make([]int64, n*seqLen)
		mask := make([]int64, n*seqLen)
		for i := range ids {
			ids[i] = int64(1 + rng.Intn(m.Config.VocabSize-1))
			mask[i] = 1
		}
		x, err := Int64Tensor(ids, n, seqLen, m.Device)
		if err != nil {
			return Batch{}, err
		}
		mk, err := Int64Tensor(mask, n, seqLen, m.Device)
		if err != nil {
			drop(x)
			return Batch{}, err
		}
		return Batch{InputIDs: x, AttentionMask: mk}, nil
	}
	forward := func(b Batch) error {
		out, err := m.Forward(b, false, false)
		if err != nil {
			return err
		}
		// Reading the logits waits for the device, so CUDA timings are real.
		_, err = Float32s(out.Logits)
		out.Free()
		return err
	}
	err := NoGrad(func() error {
		one, err := batch(1)
		if err != nil {
			return err
		}
		defer drop(one.InputIDs, one.AttentionMask)
		for i := 0; i < 3; i++ { // warm-up: allocator and lazy initialisation
			if err := forward(one); err != nil {
				return err
			}
		}
		lat := make([]time.Duration, runs)
		for i := range lat {
			t := time.Now()
			if err := forward(one); err != nil {
				return err
			}
			lat[i] = time.Since(t)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		res.LatencyP50 = lat[len(lat)/2]
		res.LatencyP95 = lat[min(len(lat)-1, int(float64(len(lat))*0.95))]

		big, err := batch(batchSize)
		if err != nil {
			return err
		}
		defer drop(big.InputIDs, big.AttentionMask)
		for i := 0; i < 3; i++ { // warm-up, as the Python peers in bench/
			if err := forward(big); err != nil {
				return err
			}
		}
		n := max(3, runs/5)
		t := time.Now()
		for i := 0; i < n; i++ {
			if err := forward(big); err != nil {
				return err
			}
		}
		res.ExamplesPerSec = float64(n*batchSize) / time.Since(t).Seconds()
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("speed: %w", err)
	}
	return res, nil
}
