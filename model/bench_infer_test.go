package model

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkInfer times eval-mode forward passes of one model folder
// (BEAMTUNE_BENCH_MODEL, default the pretrained all-MiniLM-L6-v2) in float32
// and with int8 linear layers, on the random token ids MeasureSpeed draws:
// examples/s at batch 32 and p50 latency at batch 1, BEAMTUNE_BENCH_SEQ
// tokens (default 32), BEAMTUNE_THREADS threads (default 2).
// bench/int8.sh runs it between the Python peers (bench/int8_peers.py).
// Both modes run on the torch thread, as beamtune's own inference does.
func BenchmarkInfer(b *testing.B) {
	dir, seq := benchModel()
	for _, mode := range []string{QuantizeNone, QuantizeInt8} {
		b.Run(mode, func(b *testing.B) {
			var res SpeedResult
			var skip string
			// No b.Fatal or b.Skip on the torch thread: they end the goroutine.
			err := OnTorchThread(func() error {
				SetThreads(benchThreads())
				m, _, err := Load(dir, LoadOptions{})
				if err != nil {
					skip = fmt.Sprintf("model %s: %v", dir, err)
					return nil
				}
				defer m.Free()
				applied, fallback, err := Quantize(m, mode, HostCPU())
				if err != nil {
					return err
				}
				if applied != mode {
					skip = "int8 unavailable: " + fallback
					return nil
				}
				for i := 0; i < b.N; i++ {
					if res, err = MeasureSpeed(m, seq, 32, 100); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			if skip != "" {
				b.Skip(skip)
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
			torchBench(b, func() {
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

// BenchmarkServeTasks times serving three tasks on the same inputs: a
// multi-task bundle of all-MiniLM-L6-v2 (or BEAMTUNE_BENCH_MODEL) with three
// heads (2, 4 and 2 classes), one encoder pass per batch for all three,
// against three single-task models of the same shape run one after
// another. Rounds alternate between the two so both see the same machine
// state; examples/s counts examples served with all three tasks' outputs,
// at batch 32 of BEAMTUNE_BENCH_SEQ tokens (default 32), BEAMTUNE_THREADS
// threads (default 2).
func BenchmarkServeTasks(b *testing.B) {
	dir, seq := benchModel()
	torchBench(b, func() {
		SetThreads(benchThreads())
		m, _, err := Load(dir, LoadOptions{})
		if err != nil {
			b.Skipf("model %s: %v", dir, err)
		}
		defer m.Free()
		heads := []TaskHead{
			{Name: "sst2", Labels: []string{"0", "1"}, ProblemType: "single_label_classification"},
			{Name: "agnews", Labels: []string{"1", "2", "3", "4"}, ProblemType: "single_label_classification"},
			{Name: "mrpc", Labels: []string{"0", "1"}, ProblemType: "single_label_classification"},
		}
		if err := WithSeed(1, func() error { return m.SetHeads(heads) }); err != nil {
			b.Fatal(err)
		}
		// The single-task models: each its own copy of the encoder and a head.
		var singles []*Bert
		defer func() {
			for _, s := range singles {
				s.Free()
			}
		}()
		tmp := b.TempDir()
		if err := m.Export(tmp, "", nil); err != nil {
			b.Fatal(err)
		}
		for _, h := range heads {
			s, _, err := Load(filepath.Join(tmp, TasksDir, h.Name), LoadOptions{})
			if err != nil {
				b.Fatal(err)
			}
			singles = append(singles, s)
		}
		const batch, batches = 32, 20
		rng := rand.New(rand.NewSource(1))
		ids := make([]int64, batch*seq)
		mask := make([]int64, batch*seq)
		for i := range ids {
			ids[i], mask[i] = int64(1000+rng.Intn(20000)), 1
		}
		x, err := Int64Tensor(ids, batch, seq, m.Device)
		if err != nil {
			b.Fatal(err)
		}
		mk, err := Int64Tensor(mask, batch, seq, m.Device)
		if err != nil {
			b.Fatal(err)
		}
		defer drop(x, mk)
		in := Batch{InputIDs: x, AttentionMask: mk}
		names := m.TaskNames()
		bundle := func() error {
			out, err := m.ForwardTasks(in, names, false, false)
			out.Free()
			return err
		}
		separate := func() error {
			for _, s := range singles {
				out, err := s.Forward(in, false, false)
				out.Free()
				if err != nil {
					return err
				}
			}
			return nil
		}
		var bundleTime, separateTime time.Duration
		err = NoGrad(func() error {
			for _, f := range []func() error{bundle, separate} { // warm-up
				if err := f(); err != nil {
					return err
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, r := range []struct {
					f func() error
					d *time.Duration
				}{{bundle, &bundleTime}, {separate, &separateTime}} {
					start := time.Now()
					for k := 0; k < batches; k++ {
						if err := r.f(); err != nil {
							return err
						}
					}
					*r.d += time.Since(start)
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		n := float64(b.N * batches * batch)
		b.ReportMetric(n/bundleTime.Seconds(), "bundle_examples/s")
		b.ReportMetric(n/separateTime.Seconds(), "separate_examples/s")
		b.ReportMetric(separateTime.Seconds()/bundleTime.Seconds(), "speedup")
	})
}
