package dataset

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func lengthsOf(n int) []int32 {
	l := make([]int32, n)
	for i := range l {
		l[i] = int32(1 + i%17)
	}
	return l
}

// TestTaskSamplingProportions draws many epochs of batches and checks each
// task's share against the probability its mode gives, within five
// standard deviations of a binomial draw (a false alarm about once in
// three million runs).
func TestTaskSamplingProportions(t *testing.T) {
	sizes := []int{1000, 300, 60} // 100, 30 and 6 batches of 10
	lengths := make([][]int32, len(sizes))
	for i, n := range sizes {
		lengths[i] = lengthsOf(n)
	}
	for _, tc := range []struct {
		spec string
		want []float64
	}{
		{"proportional", []float64{100.0 / 136, 30.0 / 136, 6.0 / 136}},
		{"uniform", []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}},
		{"temperature:0.5", func() []float64 {
			a, b, c := math.Sqrt(100), math.Sqrt(30), math.Sqrt(6)
			return []float64{a / (a + b + c), b / (a + b + c), c / (a + b + c)}
		}()},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			s, err := ParseTaskSampling(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			count := make([]int, len(sizes))
			draws := 0
			for epoch := 0; epoch < 200; epoch++ {
				for _, b := range PlanTaskBatches(lengths, 10, 4, 7, epoch, s) {
					count[b.Task]++
					draws++
				}
			}
			if draws != 200*136 {
				t.Fatalf("%d batches in 200 epochs, want %d (the tasks' batches together)", draws, 200*136)
			}
			for i, p := range tc.want {
				got := float64(count[i]) / float64(draws)
				sd := math.Sqrt(p * (1 - p) / float64(draws))
				if math.Abs(got-p) > 5*sd {
					t.Errorf("task %d drawn %.4f of the time, want %.4f ± %.4f", i, got, p, 5*sd)
				}
			}
		})
	}
}

// TestTaskBatchesNeverMixTasks: every batch holds rows of its own task
// only, a task's rows come round evenly (a task drawn more often than it
// has batches repeats whole passes), and the plan is a function of (seed,
// epoch).
func TestTaskBatchesNeverMixTasks(t *testing.T) {
	sizes := []int{95, 23, 7}
	lengths := make([][]int32, len(sizes))
	for i, n := range sizes {
		lengths[i] = lengthsOf(n)
	}
	for _, spec := range []string{"proportional", "uniform", "temperature:0.3", "round_robin"} {
		s, _ := ParseTaskSampling(spec)
		plan := PlanTaskBatches(lengths, 8, 2, 3, 1, s)
		seen := make([]map[int]int, len(sizes))
		for i := range seen {
			seen[i] = map[int]int{}
		}
		for _, b := range plan {
			if len(b.Rows) == 0 || len(b.Rows) > 8 {
				t.Fatalf("%s: a batch of %d rows", spec, len(b.Rows))
			}
			for _, r := range b.Rows {
				if r < 0 || r >= sizes[b.Task] {
					t.Fatalf("%s: task %d's batch holds row %d; the task has %d rows", spec, b.Task, r, sizes[b.Task])
				}
				seen[b.Task][r]++
			}
		}
		for task, rows := range seen {
			lo, hi := math.MaxInt, 0
			for r := 0; r < sizes[task]; r++ {
				lo, hi = min(lo, rows[r]), max(hi, rows[r])
			}
			// Whole passes, plus part of one: no row is seen two passes more than another.
			if len(rows) > 0 && hi-lo > 1 {
				t.Errorf("%s: task %d's rows seen between %d and %d times", spec, task, lo, hi)
			}
		}
		again := PlanTaskBatches(lengths, 8, 2, 3, 1, s)
		if !slices.EqualFunc(plan, again, func(a, b TaskBatch) bool { return a.Task == b.Task && slices.Equal(a.Rows, b.Rows) }) {
			t.Errorf("%s: the same (seed, epoch) gave another plan", spec)
		}
	}
	rr, _ := ParseTaskSampling("round_robin")
	for i, b := range PlanTaskBatches(lengths, 8, 2, 3, 0, rr)[:9] {
		if b.Task != i%3 {
			t.Fatalf("round robin: batch %d is task %d", i, b.Task)
		}
	}
}

// TestOneTaskPlanIsPlanBatches keeps single-task training (and resuming
// its old checkpoints) exactly as before multi-task plans.
func TestOneTaskPlanIsPlanBatches(t *testing.T) {
	l := lengthsOf(101)
	want := PlanBatches(l, 8, 4, 11, 2)
	got := PlanTaskBatches([][]int32{l}, 8, 4, 11, 2, TaskSampling{Mode: SampleUniform})
	if len(got) != len(want) {
		t.Fatalf("%d batches, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Task != 0 || !slices.Equal(got[i].Rows, want[i]) {
			t.Fatalf("batch %d differs", i)
		}
	}
}

func TestParseTaskSampling(t *testing.T) {
	for _, bad := range []string{"temperature", "temperature:x", "temperature:-1", "random"} {
		if _, err := ParseTaskSampling(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseTaskSampling(%q) = %v", bad, err)
		}
	}
	s, err := ParseTaskSampling("temperature:0.5")
	if err != nil || s.Mode != SampleTemperature || s.Tau != 0.5 {
		t.Errorf("temperature:0.5 = %+v, %v", s, err)
	}
}
