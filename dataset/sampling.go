package dataset

import (
	"fmt"
	"math"
	"math/rand"
	"strconv"
	"strings"
)

// Multi-task batch plans. Every batch holds the rows of one task: the task
// is drawn per batch (or taken in turn), and its rows come from that task's
// own batch plan (PlanBatches), pass after pass if the draws ask for more
// batches of it than it has. An epoch is as many batches as all tasks have
// together. As for one task, the plan is a function of (seed, epoch).

// Task sampling modes (--task_sampling).
const (
	// SampleProportional draws task i with probability ∝ |D_i|: every
	// training row is seen about once an epoch.
	SampleProportional = "proportional"
	// SampleUniform draws every task equally often.
	SampleUniform = "uniform"
	// SampleTemperature draws task i with probability ∝ |D_i|^τ, as
	// TextBrewer's MultiTaskDistiller: τ = 1 is proportional, τ = 0 uniform,
	// values between favour small tasks less than uniform does.
	SampleTemperature = "temperature"
	// SampleRoundRobin takes the tasks in turn, one batch each.
	SampleRoundRobin = "round_robin"
)

// TaskSampling is how multi-task training picks each batch's task.
type TaskSampling struct {
	Mode string  // one of the Sample* modes
	Tau  float64 // SampleTemperature's exponent
}

// ParseTaskSampling reads proportional, uniform, temperature:τ or
// round_robin; "" is proportional.
func ParseTaskSampling(s string) (TaskSampling, error) {
	switch s {
	case "", SampleProportional:
		return TaskSampling{Mode: SampleProportional, Tau: 1}, nil
	case SampleUniform:
		return TaskSampling{Mode: SampleUniform, Tau: 0}, nil
	case SampleRoundRobin:
		return TaskSampling{Mode: SampleRoundRobin}, nil
	}
	if v, ok := strings.CutPrefix(s, SampleTemperature+":"); ok {
		tau, err := strconv.ParseFloat(v, 64)
		if err != nil || tau < 0 || tau > 10 || math.IsNaN(tau) {
			return TaskSampling{}, fmt.Errorf("task_sampling %q: τ must be a number in [0, 10]", s)
		}
		return TaskSampling{Mode: SampleTemperature, Tau: tau}, nil
	}
	return TaskSampling{}, fmt.Errorf("task_sampling %q: want proportional, uniform, temperature:τ or round_robin", s)
}

// Probabilities is the chance of each task per batch, given each task's
// number of batches (round robin: each task's share of the turns).
func (s TaskSampling) Probabilities(batches []int) []float64 {
	p := make([]float64, len(batches))
	var sum float64
	for i, n := range batches {
		if s.Mode == SampleRoundRobin {
			p[i] = 1
		} else { // uniform is τ = 0
			p[i] = math.Pow(float64(max(n, 1)), s.Tau)
		}
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// TaskBatch is one batch of a multi-task plan: rows of one task.
type TaskBatch struct {
	Task int   // index of the task
	Rows []int // row indices in that task's training rows
}

// PlanTaskBatches is one epoch of multi-task training: lengths holds each
// task's row lengths. With one task it is that task's PlanBatches, batch
// for batch.
func PlanTaskBatches(lengths [][]int32, batchSize, bufferBatches int, seed int64, epoch int, s TaskSampling) []TaskBatch {
	if len(lengths) == 1 {
		plan := PlanBatches(lengths[0], batchSize, bufferBatches, seed, epoch)
		out := make([]TaskBatch, len(plan))
		for i, rows := range plan {
			out[i] = TaskBatch{Task: 0, Rows: rows}
		}
		return out
	}
	streams := make([]*taskStream, len(lengths))
	counts := make([]int, len(lengths))
	total := 0
	for t, l := range lengths {
		// Each task's plans have their own seed: tasks of equal size do not
		// get the same batch order.
		streams[t] = &taskStream{lengths: l, batchSize: batchSize, buffer: bufferBatches, seed: seed*7919 + int64(t) + 1, epoch: epoch}
		if batchSize > 0 {
			counts[t] = (len(l) + batchSize - 1) / batchSize
		}
		total += counts[t]
	}
	cum := make([]float64, len(lengths))
	var acc float64
	for t, p := range s.Probabilities(counts) {
		if counts[t] == 0 {
			p = 0 // a task without training rows is never drawn
		}
		acc += p
		cum[t] = acc
	}
	rng := rand.New(rand.NewSource(seed*1_000_003 + int64(epoch) + 17))
	out := make([]TaskBatch, 0, total)
	turn := 0
	for len(out) < total {
		var t int
		if s.Mode == SampleRoundRobin {
			t = turn % len(lengths)
			turn++
			if counts[t] == 0 {
				continue
			}
		} else {
			x := rng.Float64() * acc
			for t < len(cum)-1 && x >= cum[t] {
				t++
			}
		}
		out = append(out, TaskBatch{Task: t, Rows: streams[t].next()})
	}
	return out
}

// taskStream hands out one task's batches: its plan of the epoch, then
// further passes with other shuffles when a task is drawn more often than
// it has batches.
type taskStream struct {
	lengths          []int32
	batchSize        int
	buffer           int
	seed             int64
	epoch, pass, pos int
	plan             [][]int
}

func (s *taskStream) next() []int {
	if s.pos >= len(s.plan) {
		// Passes of an epoch are numbered apart from other epochs' passes.
		s.plan = PlanBatches(s.lengths, s.batchSize, s.buffer, s.seed, s.epoch*1_000+s.pass)
		s.pass++
		s.pos = 0
	}
	s.pos++
	return s.plan[s.pos-1]
}
