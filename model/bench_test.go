package model

import (
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// benchThreads is the libtorch thread count for benchmarks (BEAMTUNE_THREADS, default 2).
func benchThreads() int {
	if n, err := strconv.Atoi(os.Getenv("BEAMTUNE_THREADS")); err == nil && n > 0 {
		return n
	}
	return 2
}

// torchBench runs a benchmark's body on the process's torch thread, where
// beamtune's commands run their torch work. A Go benchmark calls its
// function more than once (b.N = 1 first), each time on a new goroutine, and
// a body pinned with LockThread gets whichever OS thread that goroutine had.
// libgomp keeps an OpenMP pool for every thread that starts a parallel
// region: once two threads have, the process holds more OpenMP workers than
// CPUs, idle workers sleep instead of spinning between regions, and the
// timed run went at one of two speeds depending on the threads it drew
// (BENCHMARKS.md, bf16: "bimodal between processes"). body may call b.Fatal
// and b.Skip; it must not call b.Run (the sub-benchmark's goroutine would
// wait for the torch thread, which waits for it).
func torchBench(b *testing.B, body func()) {
	b.Helper()
	err := OnTorchThread(func() error { body(); return nil })
	switch {
	case b.Skipped():
		b.SkipNow()
	case b.Failed():
		b.FailNow()
	case err != nil:
		b.Fatal(err)
	}
}

// randomBatch draws a [bs, seq] batch of token ids (no padding) and labels.
func randomBatch(b testing.TB, rng *rand.Rand, bs, seq, vocab, classes int) (Batch, *ts.Tensor) {
	ids := make([]int64, bs*seq)
	for i := range ids {
		ids[i] = int64(1 + rng.Intn(vocab-1))
	}
	mask := make([]int64, bs*seq)
	for i := range mask {
		mask[i] = 1
	}
	labels := make([]int64, bs)
	for i := range labels {
		labels[i] = int64(rng.Intn(classes))
	}
	x, err := Int64Tensor(ids, bs, seq, gotch.CPU)
	if err != nil {
		b.Fatal(err)
	}
	m, err := Int64Tensor(mask, bs, seq, gotch.CPU)
	if err != nil {
		b.Fatal(err)
	}
	l, err := ts.OfSlice(labels)
	if err != nil {
		b.Fatal(err)
	}
	return Batch{InputIDs: x, AttentionMask: m}, l
}

// trainStep is one forward, backward, clip and AdamW step, freeing everything
// it made. With phases non-nil it adds each phase's time there: forward (with
// the loss), backward, clipping, AdamW, clearing gradients.
func trainStep(b testing.TB, m *Bert, opt *AdamW, batch Batch, labels *ts.Tensor, lr float64, phases *[5]time.Duration) float32 {
	last := time.Now()
	mark := func(i int) {
		if phases != nil {
			now := time.Now()
			phases[i] += now.Sub(last)
			last = now
		}
	}
	out, err := m.Forward(batch, true, false)
	if err != nil {
		b.Fatal(err)
	}
	loss, err := CrossEntropy(out.Logits, labels)
	if err != nil {
		b.Fatal(err)
	}
	mark(0)
	if err := loss.Backward(); err != nil {
		b.Fatal(err)
	}
	mark(1)
	_, scale, err := ClipScale(opt.params, 1.0)
	if err != nil {
		b.Fatal(err)
	}
	mark(2)
	if err := opt.Step(lr, scale); err != nil {
		b.Fatal(err)
	}
	mark(3)
	if err := ZeroGrad(opt.params); err != nil {
		b.Fatal(err)
	}
	mark(4)
	v, err := Float32Scalar(loss)
	if err != nil {
		b.Fatal(err)
	}
	drop(loss)
	out.Free()
	return v
}

// miniLMStep loads all-MiniLM-L6-v2 with a 2-class head and AdamW on
// benchThreads threads, draws a [32, seq] batch and runs one warm-up step
// (allocator, lazy init). The caller runs on the torch thread and frees m and opt.
func miniLMStep(b *testing.B, seq int) (*Bert, *AdamW, Batch, *ts.Tensor) {
	dir := DefaultModelDir()
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err != nil {
		b.Skipf("pretrained model not installed: %v", err)
	}
	SetThreads(benchThreads())
	Seed(1)
	m, _, err := Load(dir, LoadOptions{Labels: []string{"neg", "pos"}, Device: gotch.CPU})
	if err != nil {
		b.Fatal(err)
	}
	opt, err := NewAdamW(m.Params(), DefaultAdamW())
	if err != nil {
		m.Free()
		b.Fatal(err)
	}
	rng := rand.New(rand.NewSource(1))
	batch, labels := randomBatch(b, rng, 32, seq, m.Config.VocabSize, 2)
	trainStep(b, m, opt, batch, labels, 2e-5, nil)
	return m, opt, batch, labels
}

// BenchmarkTrainStepMiniLM: forward+backward+AdamW examples/s for
// all-MiniLM-L6-v2 with a 2-class head, batch 32, sequence 128 (the peer is
// bench/train_step_peer.py, PyTorch eager on the same libtorch 2.1.0).
func BenchmarkTrainStepMiniLM(b *testing.B) {
	torchBench(b, func() {
		m, opt, batch, labels := miniLMStep(b, 128)
		defer m.Free()
		defer opt.Free()
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			trainStep(b, m, opt, batch, labels, 2e-5, nil)
		}
		el := time.Since(start).Seconds()
		b.ReportMetric(float64(32*b.N)/el, "examples/s")
		b.ReportMetric(float64(benchThreads()), "threads")
	})
}

// BenchmarkMatmulCeiling is libtorch's float32 GEMM throughput on this
// machine (2048³), the ceiling the train-step figure is compared with.
func BenchmarkMatmulCeiling(b *testing.B) {
	torchBench(b, func() {
		SetThreads(benchThreads())
		x, err := ts.Randn([]int64{2048, 2048}, gotch.Float, gotch.CPU)
		if err != nil {
			b.Fatal(err)
		}
		defer drop(x)
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			y, err := x.Matmul(x, false)
			if err != nil {
				b.Fatal(err)
			}
			drop(y)
		}
		b.ReportMetric(2*2048*2048*2048*float64(b.N)/time.Since(start).Seconds()/1e9, "GFLOP/s")
	})
}

// rssMB reads this process's resident set size.
func rssMB(b testing.TB) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkMemoryTinySteps runs 20,000 forward/backward/AdamW steps of the
// 2-layer parity model and reports RSS at step 1,000 and 20,000: the growth
// must stay under 50 MB (gotch leaks per op without the setup-time patches).
// Steps: BEAMTUNE_MEMORY_STEPS (default 20000). Run with -benchtime=1x.
func BenchmarkMemoryTinySteps(b *testing.B) {
	steps := 20000
	if n, err := strconv.Atoi(os.Getenv("BEAMTUNE_MEMORY_STEPS")); err == nil && n > 0 {
		steps = n
	}
	torchBench(b, func() {
		SetThreads(1)
		Seed(1)
		m, _, err := Load(filepath.Join("..", "testdata", "parity", "tiny-bert"), LoadOptions{Device: gotch.CPU})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Free()
		opt, err := NewAdamW(m.Params(), DefaultAdamW())
		if err != nil {
			b.Fatal(err)
		}
		defer opt.Free()
		rng := rand.New(rand.NewSource(1))
		var at1k float64
		start := time.Now()
		for i := 1; i <= steps; i++ {
			batch, labels := randomBatch(b, rng, 16, 32, m.Config.VocabSize, 3)
			trainStep(b, m, opt, batch, labels, 1e-3, nil)
			drop(batch.InputIDs, batch.AttentionMask, labels)
			if i == 1000 {
				runtime.GC()
				at1k = rssMB(b)
			}
		}
		runtime.GC()
		end := rssMB(b)
		b.ReportMetric(at1k, "MB-rss@1k")
		b.ReportMetric(end, "MB-rss@end")
		b.ReportMetric(end-at1k, "MB-growth")
		b.ReportMetric(float64(steps)/time.Since(start).Seconds(), "steps/s")
		b.Logf("%d steps: RSS %.1f MB at step 1,000, %.1f MB at step %d, growth %.1f MB", steps, at1k, end, steps, end-at1k)
	})
}

// BenchmarkTrainStepPhases times each phase of a train step (forward,
// backward, clipping, AdamW, clearing gradients) in ms, at batch 32 and
// BEAMTUNE_BENCH_SEQ tokens (default 16, about SST-2's mean training row), where
// per-step costs weigh most, in BEAMTUNE_BENCH_PRECISION (default fp32).
// Peer: bench/train_step_peer.py --phases.
func BenchmarkTrainStepPhases(b *testing.B) {
	seq := 16
	if n, err := strconv.Atoi(os.Getenv("BEAMTUNE_BENCH_SEQ")); err == nil && n > 0 {
		seq = n
	}
	p, err := ParsePrecision(os.Getenv("BEAMTUNE_BENCH_PRECISION"))
	if err != nil {
		b.Fatal(err)
	}
	torchBench(b, func() {
		m, opt, batch, labels := miniLMStep(b, seq)
		defer m.Free()
		defer opt.Free()
		if err := m.SetPrecision(p); err != nil {
			b.Fatal(err)
		}
		if p != PrecisionFP32 { // miniLMStep warmed up in fp32
			trainStep(b, m, opt, batch, labels, 2e-5, nil)
		}
		var phase [5]time.Duration
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			trainStep(b, m, opt, batch, labels, 2e-5, &phase)
		}
		var total time.Duration
		for j, name := range []string{"forward", "backward", "clip", "adamw", "zero_grad"} {
			b.ReportMetric(float64(phase[j].Microseconds())/1e3/float64(b.N), name+"_ms")
			total += phase[j]
		}
		b.ReportMetric(float64(32*b.N)/total.Seconds(), "examples/s")
	})
}

// BenchmarkTrainStepTuning: one training step of all-MiniLM-L6-v2 (batch
// 32, BEAMTUNE_BENCH_SEQ tokens, default 32) per fine-tuning method: full,
// LoRA r=8 on query and value, BitFit, and the lower half frozen; the
// optimizer holds the trainable set only, as the trainer's does.
func BenchmarkTrainStepTuning(b *testing.B) {
	_, seq := benchModel()
	for _, tc := range []struct {
		name string
		t    Tuning
	}{
		{"full", Tuning{}},
		{"lora", Tuning{Method: TuneLoRA, LoRA: LoRAConfig{R: 8, Alpha: 16, Dropout: 0.1, Targets: DefaultLoRATargets}}},
		{"bitfit", Tuning{Method: TuneBitFit}},
		{"frozen", Tuning{FreezeEmbeddings: true, FreezeLayers: []int{0, 1, 2}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			torchBench(b, func() {
				SetThreads(benchThreads())
				Seed(1)
				m, _, err := Load(DefaultModelDir(), LoadOptions{Labels: []string{"neg", "pos"}})
				if err != nil {
					b.Skipf("pretrained model: %v", err)
				}
				defer m.Free()
				if err := m.Tune(tc.t); err != nil {
					b.Fatal(err)
				}
				opt, err := NewAdamW(m.Trainable(), DefaultAdamW())
				if err != nil {
					b.Fatal(err)
				}
				defer opt.Free()
				rng := rand.New(rand.NewSource(1))
				batch, labels := randomBatch(b, rng, 32, seq, m.Config.VocabSize, 2)
				var phases [5]time.Duration
				if err := WithGrad(true, func() error {
					trainStep(b, m, opt, batch, labels, 1e-4, nil) // warm-up
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						trainStep(b, m, opt, batch, labels, 1e-4, &phases)
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(32*b.N)/b.Elapsed().Seconds(), "examples/s")
				for i, name := range []string{"forward_ms", "backward_ms", "clip_ms", "adamw_ms", "zero_ms"} {
					b.ReportMetric(float64(phases[i].Microseconds())/1000/float64(b.N), name)
				}
			})
		})
	}
}
