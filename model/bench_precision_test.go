package model

import (
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// precisionBenchModel is the model the precision benchmarks run:
// BEAMTUNE_BENCH_MODEL, else the fine-tuned SST-2 teacher bench/compress.sh
// leaves in the cache, else the pretrained all-MiniLM-L6-v2.
func precisionBenchModel() string {
	if dir := os.Getenv("BEAMTUNE_BENCH_MODEL"); dir != "" {
		return dir
	}
	home, _ := os.UserHomeDir()
	teacher := filepath.Join(home, ".cache", "beamtune", "bench", "compress", "sst2", "teacher")
	if _, err := os.Stat(filepath.Join(teacher, SafetensorsFile)); err == nil {
		return teacher
	}
	return DefaultModelDir()
}

// precisionBenchSeqs are the sequence lengths (BEAMTUNE_BENCH_SEQS,
// comma-separated; default 32,128).
func precisionBenchSeqs() []int {
	var out []int
	for _, f := range strings.Split(os.Getenv("BEAMTUNE_BENCH_SEQS"), ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		out = []int{32, 128}
	}
	return out
}

// benchRounds is BEAMTUNE_BENCH_ROUNDS (default 5): fp32 and bf16 alternate
// this many times, so both see the same machine state.
func benchRounds() int {
	if n, err := strconv.Atoi(os.Getenv("BEAMTUNE_BENCH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 5
}

// reportPrecision reports each side's mean examples/s and the median of the
// per-round bf16/fp32 ratios.
func reportPrecision(b *testing.B, fp32, bf16 []float64) {
	mean := func(v []float64) float64 {
		var s float64
		for _, x := range v {
			s += x
		}
		return s / float64(len(v))
	}
	ratios := make([]float64, len(fp32))
	for i := range fp32 {
		ratios[i] = bf16[i] / fp32[i]
	}
	slices.Sort(ratios)
	b.ReportMetric(mean(fp32), "fp32_ex/s")
	b.ReportMetric(mean(bf16), "bf16_ex/s")
	b.ReportMetric(ratios[len(ratios)/2], "bf16/fp32")
	b.ReportMetric(float64(benchThreads()), "threads")
}

// BenchmarkPrecisionInfer: eval-mode examples/s of one fine-tuned MiniLM-L6
// (precisionBenchModel) at batch 32, fp32 against bf16 (SetPrecision), at
// each of precisionBenchSeqs tokens, on BEAMTUNE_THREADS threads (default
// 2). Each round runs BEAMTUNE_BENCH_PASSES passes (default 10) of each.
// bench/bf16.sh runs it.
func BenchmarkPrecisionInfer(b *testing.B) {
	passes := 10
	if n, err := strconv.Atoi(os.Getenv("BEAMTUNE_BENCH_PASSES")); err == nil && n > 0 {
		passes = n
	}
	for _, seq := range precisionBenchSeqs() {
		b.Run("seq"+strconv.Itoa(seq), func(b *testing.B) {
			torchBench(b, func() {
				SetThreads(benchThreads())
				m, _, err := Load(precisionBenchModel(), LoadOptions{})
				if err != nil {
					b.Skipf("model: %v", err)
				}
				defer m.Free()
				rng := rand.New(rand.NewSource(1))
				batch, labels := randomBatch(b, rng, 32, seq, m.Config.VocabSize, 2)
				defer drop(batch.InputIDs, batch.AttentionMask, labels)
				run := func(p Precision, n int) float64 {
					if err := m.SetPrecision(p); err != nil {
						b.Fatal(err)
					}
					var el time.Duration
					if err := NoGrad(func() error {
						for i := -1; i < n; i++ { // one warm-up pass (and the bf16 weight cast)
							start := time.Now()
							out, err := m.Forward(batch, false, false)
							if err != nil {
								return err
							}
							if _, err := Float32s(out.Logits); err != nil {
								return err
							}
							out.Free()
							if i >= 0 {
								el += time.Since(start)
							}
						}
						return nil
					}); err != nil {
						b.Fatal(err)
					}
					return float64(32*n) / el.Seconds()
				}
				var f32, b16 []float64
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for r := 0; r < benchRounds(); r++ {
						f32 = append(f32, run(PrecisionFP32, passes))
						b16 = append(b16, run(PrecisionBF16, passes))
					}
				}
				reportPrecision(b, f32, b16)
			})
		})
	}
}

// BenchmarkPrecisionTrainStep: training steps (forward with dropout,
// cross-entropy, backward, clipping, AdamW, clearing gradients; the
// word-embedding table row-sparse, as in beamtune train) of the same
// model with a 2-class head at batch 32, fp32 against bf16, at each of
// precisionBenchSeqs tokens. Each round runs BEAMTUNE_BENCH_STEPS steps
// (default 3) of each, after one warm-up step.
func BenchmarkPrecisionTrainStep(b *testing.B) {
	steps := 3
	if n, err := strconv.Atoi(os.Getenv("BEAMTUNE_BENCH_STEPS")); err == nil && n > 0 {
		steps = n
	}
	for _, seq := range precisionBenchSeqs() {
		b.Run("seq"+strconv.Itoa(seq), func(b *testing.B) {
			torchBench(b, func() {
				SetThreads(benchThreads())
				Seed(1)
				m, _, err := Load(precisionBenchModel(), LoadOptions{Labels: []string{"neg", "pos"}})
				if err != nil {
					b.Skipf("model: %v", err)
				}
				defer m.Free()
				m.UseRowSparseEmbeddings() // as beamtune train does
				opt, err := NewAdamW(m.Params(), DefaultAdamW())
				if err != nil {
					b.Fatal(err)
				}
				defer opt.Free()
				rng := rand.New(rand.NewSource(1))
				batch, labels := randomBatch(b, rng, 32, seq, m.Config.VocabSize, 2)
				defer drop(batch.InputIDs, batch.AttentionMask, labels)
				run := func(p Precision) float64 {
					if err := m.SetPrecision(p); err != nil {
						b.Fatal(err)
					}
					var el float64
					if err := WithGrad(true, func() error {
						trainStep(b, m, opt, batch, labels, 1e-5, nil) // warm-up
						start := time.Now()
						for i := 0; i < steps; i++ {
							trainStep(b, m, opt, batch, labels, 1e-5, nil)
						}
						el = time.Since(start).Seconds()
						return nil
					}); err != nil {
						b.Fatal(err)
					}
					return float64(32*steps) / el
				}
				var f32, b16 []float64
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					for r := 0; r < benchRounds(); r++ {
						f32 = append(f32, run(PrecisionFP32))
						b16 = append(b16, run(PrecisionBF16))
					}
				}
				reportPrecision(b, f32, b16)
			})
		})
	}
}
