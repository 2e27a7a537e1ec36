package inference

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"
)

// benchInputs reads the model folder and texts a benchmark runs on.
func benchInputs(b *testing.B) (ModelHandler, []string) {
	dir, textsPath := os.Getenv("BEAMTUNE_BENCH_MODEL"), os.Getenv("BEAMTUNE_BENCH_TEXTS")
	if dir == "" || textsPath == "" {
		b.Skip("set BEAMTUNE_BENCH_MODEL and BEAMTUNE_BENCH_TEXTS (bench/runinference.sh does)")
	}
	data, err := os.ReadFile(textsPath)
	if err != nil {
		b.Fatal(err)
	}
	threads := 2
	if v := os.Getenv("BEAMTUNE_THREADS"); v != "" {
		if threads, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	// BEAMTUNE_BENCH_QUANTIZE: a --quantize value (int8, int8_per_channel).
	h := ModelHandler{ModelDir: dir, Device: "cpu", Threads: threads, MaxBatchSize: 32, Quantize: os.Getenv("BEAMTUNE_BENCH_QUANTIZE")}
	return h, strings.Split(strings.TrimRight(string(data), "\n"), "\n")
}

// BenchmarkScoreTexts is RunInference's work without Beam: the same texts
// tokenized, batched (all of them sorted by length, batch 32) and scored
// with the shared Model, decisions included; the peers do the same.
func BenchmarkScoreTexts(b *testing.B) {
	h, texts := benchInputs(b)
	m, err := Acquire(context.Background(), h)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Release()
	c := core{handler: h, m: m}
	run := func() {
		var ps []pending
		for _, t := range texts {
			p, reason := m.encode(Example{Text: t})
			if reason != "" {
				b.Fatal(reason)
			}
			ps = append(ps, p)
		}
		for _, batch := range batches(ps, h.batchSize(), h.batchTokens()) {
			ev, err := m.Score(rowsOf(batch), len(batch), nil)
			if err != nil {
				b.Fatal(err)
			}
			for i := range batch {
				_ = c.inference(ev.TaskLogits, i)
			}
		}
	}
	run()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		run()
	}
	b.ReportMetric(float64(len(texts)*b.N)/time.Since(start).Seconds(), "examples/s")
}

// BenchmarkRunInference times a whole prism pipeline (texts in, RunInference,
// a count of the results) over the lines of BEAMTUNE_BENCH_TEXTS with the
// model folder BEAMTUNE_BENCH_MODEL, batch 32, BEAMTUNE_THREADS threads
// (default 2), after an untimed run over 32 texts that loads the model
// (the process keeps it, as a worker does). The runner is the test binary's --runner (prism
// by default; bench/runinference.sh also runs direct). bench/runinference.sh
// runs it beside the Python peers. Reports examples/s.
func BenchmarkRunInference(b *testing.B) {
	h, texts := benchInputs(b)
	run := func(texts []string) {
		p, s := beam.NewPipelineWithRoot()
		res, _ := RunInference(s, h, beam.CreateList(s, texts))
		stats.Count(s, beam.ParDo(s, resultLine, res))
		if err := ptest.Run(p); err != nil {
			b.Fatal(err)
		}
	}
	run(texts[:min(len(texts), 32)])
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		run(texts)
	}
	b.ReportMetric(float64(len(texts)*b.N)/time.Since(start).Seconds(), "examples/s")
}
