package model

import (
	"os"
	"strconv"
	"testing"
)

// BenchmarkInfer times eval-mode forward passes of one model folder
// (BEAMTUNE_BENCH_MODEL, default the pretrained all-MiniLM-L6-v2) in float32
// and with int8 linear layers, on the random token ids MeasureSpeed draws:
// examples/s at batch 32 and p50 latency at batch 1, BEAMTUNE_BENCH_SEQ
// tokens (default 32), BEAMTUNE_THREADS threads (default 2).
// bench/int8.sh runs it between the Python peers (bench/int8_peers.py).
func BenchmarkInfer(b *testing.B) {
	dir, seq := benchModel()
	for _, mode := range []string{QuantizeNone, QuantizeInt8} {
		b.Run(mode, func(b *testing.B) {
			defer LockThread()()
			SetThreads(benchThreads())
			m, _, err := Load(dir, LoadOptions{})
			if err != nil {
				b.Skipf("model %s: %v", dir, err)
			}
			defer m.Free()
			applied, fallback, err := Quantize(m, mode, HostCPU())
			if err != nil {
				b.Fatal(err)
			}
			if applied != mode {
				b.Skipf("int8 unavailable: %s", fallback)
			}
			var res SpeedResult
			for i := 0; i < b.N; i++ {
				if res, err = MeasureSpeed(m, seq, 32, 100); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(res.ExamplesPerSec, "examples/s")
			b.ReportMetric(float64(res.LatencyP50.Microseconds())/1000, "p50_ms")
		})
	}
}

// BenchmarkInferLoRA times serving a LoRA adapter (r=8 on query and value,
// lora_B drawn at random so the update is real) over all-MiniLM-L6-v2 (or
// BEAMTUNE_BENCH_MODEL): unmerged, as adapters over a shared base run
// (two extra small matmuls per adapted layer), and merged into the weights.
func BenchmarkInferLoRA(b *testing.B) {
	dir, seq := benchModel()
	for _, merged := range []bool{false, true} {
		name := "unmerged"
		if merged {
			name = "merged"
		}
		b.Run(name, func(b *testing.B) {
			defer LockThread()()
			SetThreads(benchThreads())
			m, _, err := Load(dir, LoadOptions{})
			if err != nil {
				b.Skipf("model %s: %v", dir, err)
			}
			defer m.Free()
			err = WithSeed(1, func() error {
				if err := m.AddLoRA(LoRAConfig{R: 8, Alpha: 16, Targets: DefaultLoRATargets}); err != nil {
					return err
				}
				return NoGrad(func() error {
					for _, p := range m.AdapterParams() {
						if err := p.T.Normal_(0, 0.02); err != nil {
							return err
						}
					}
					return nil
				})
			})
			if err != nil {
				b.Fatal(err)
			}
			if merged {
				if err := m.MergeLoRA(); err != nil {
					b.Fatal(err)
				}
			}
			var res SpeedResult
			for i := 0; i < b.N; i++ {
				if res, err = MeasureSpeed(m, seq, 32, 100); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(res.ExamplesPerSec, "examples/s")
			b.ReportMetric(float64(res.LatencyP50.Microseconds())/1000, "p50_ms")
		})
	}
}

// benchModel is the inference benchmarks' model folder
// (BEAMTUNE_BENCH_MODEL, default the pretrained all-MiniLM-L6-v2) and
// sequence length (BEAMTUNE_BENCH_SEQ, default 32).
func benchModel() (dir string, seq int) {
	dir, seq = os.Getenv("BEAMTUNE_BENCH_MODEL"), 32
	if dir == "" {
		dir = DefaultModelDir()
	}
	if n, err := strconv.Atoi(os.Getenv("BEAMTUNE_BENCH_SEQ")); err == nil && n > 0 {
		seq = n
	}
	return dir, seq
}
