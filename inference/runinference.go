package inference

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/typex"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
)

func init() {
	register.DoFn5x1[context.Context, Example, string, func(PredictionResult), func(DeadLetter), error](&runFn{})
	register.DoFn4x1[context.Context, Example, func(PredictionResult), func(DeadLetter), error](&fixedRunFn{})
	beam.RegisterType(reflect.TypeOf((*fixedKeyedRunFn)(nil)).Elem())
	register.Emitter1[PredictionResult]()
	register.Emitter1[DeadLetter]()
	beam.RegisterType(reflect.TypeOf((*keyedRunFn)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*Example)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*PredictionResult)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*DeadLetter)(nil)).Elem())
	register.Function1x1(textExample)
	beam.RegisterFunction(keyedTextExample)
}

// Metrics, under the names Python RunInference reports.
const metricsNamespace = "RunInference"

var (
	numInferences = beam.NewCounter(metricsNamespace, "num_inferences")
	failedBatches = beam.NewCounter(metricsNamespace, "failed_batches_counter")
	numDeadLetter = beam.NewCounter(metricsNamespace, "num_dead_letters")
	batchLatency  = beam.NewDistribution(metricsNamespace, "inference_batch_latency_micro_secs")
	batchSizes    = beam.NewDistribution(metricsNamespace, "inference_request_batch_size")
	modelBytes    = beam.NewDistribution(metricsNamespace, "model_byte_size")
	loadLatency   = beam.NewDistribution(metricsNamespace, "load_model_latency_milli_secs")
)

// bundles counts the bundles this process's RunInference DoFns finished
// (tests compare it with the models loaded).
var bundles atomic.Int64

// Option changes what RunInference does.
type Option func(*options)

type options struct {
	modelDirs *beam.PCollection
}

// WithModelDir makes RunInference score with the model folder a singleton
// side input names (a PCollection<string> of one element: for instance
// the champion's folder, read from the registry with ChampionModelDir), in
// place of the handler's ModelDir. A nightly batch pipeline then always
// scores with the model current when it runs; each worker loads it once.
func WithModelDir(dirs beam.PCollection) Option {
	return func(o *options) { o.modelDirs = &dirs }
}

// RunInference scores every element of col with the model h names and
// returns the results and the dead letters. col may be
//
//	PCollection<string>             → PCollection<PredictionResult>, PCollection<DeadLetter>
//	PCollection<Example>            → the same (Example carries a text pair and an id)
//	PCollection<KV<K, string>>      → PCollection<KV<K, PredictionResult>>, PCollection<KV<K, DeadLetter>>
//	PCollection<KV<K, Example>>     → the same, keys kept
//
// Like beam.ParDo it panics when col has another type; TryRunInference
// returns the error instead.
func RunInference(s beam.Scope, h ModelHandler, col beam.PCollection, opts ...Option) (results, deadLetters beam.PCollection) {
	results, deadLetters, err := TryRunInference(s, h, col, opts...)
	if err != nil {
		panic(err)
	}
	return results, deadLetters
}

// TryRunInference is RunInference returning construction errors.
func TryRunInference(s beam.Scope, h ModelHandler, col beam.PCollection, opts ...Option) (results, deadLetters beam.PCollection, err error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.modelDirs == nil {
		if err := h.check(); err != nil {
			return beam.PCollection{}, beam.PCollection{}, err
		}
	}
	// Results are emitted when a batch is scored, which may be in
	// FinishBundle, where Beam Go has no element window: only the global
	// window keeps every result in its element's window.
	if ws := col.WindowingStrategy(); ws != nil && ws.Fn != nil && ws.Fn.Kind != window.GlobalWindows {
		return beam.PCollection{}, beam.PCollection{}, fmt.Errorf("inference: RunInference takes globally windowed input (batch pipelines); this PCollection is windowed by %v", ws.Fn)
	}
	s = s.Scope("RunInference")
	t := col.Type()
	exampleType, stringType := reflect.TypeOf(Example{}), reflect.TypeOf("")
	if typex.IsKV(t) {
		switch v := t.Components()[1].Type(); v {
		case stringType:
			col = beam.ParDo(s.Scope("ToExample"), keyedTextExample, col)
		case exampleType:
		default:
			return beam.PCollection{}, beam.PCollection{}, fmt.Errorf("inference: RunInference over KV<K, %v>: values must be string or inference.Example", v)
		}
		if o.modelDirs == nil {
			results, deadLetters = beam.ParDo2(s.Scope("Infer"), &fixedKeyedRunFn{Handler: h}, col)
		} else {
			results, deadLetters = beam.ParDo2(s.Scope("Infer"), &keyedRunFn{Handler: h}, col, beam.SideInput{Input: *o.modelDirs})
		}
		return results, deadLetters, nil
	}
	switch v := t.Type(); v {
	case stringType:
		col = beam.ParDo(s.Scope("ToExample"), textExample, col)
	case exampleType:
	default:
		return beam.PCollection{}, beam.PCollection{}, fmt.Errorf("inference: RunInference over PCollection<%v>: elements must be string, inference.Example or a KV of either", v)
	}
	if o.modelDirs == nil {
		results, deadLetters = beam.ParDo2(s.Scope("Infer"), &fixedRunFn{Handler: h}, col)
	} else {
		results, deadLetters = beam.ParDo2(s.Scope("Infer"), &runFn{Handler: h}, col, beam.SideInput{Input: *o.modelDirs})
	}
	return results, deadLetters, nil
}

func textExample(text string) Example { return Example{Text: text} }

func keyedTextExample(k beam.X, text string) (beam.X, Example) { return k, Example{Text: text} }

// runFn scores unkeyed examples.
type runFn struct {
	Handler ModelHandler
	c       core
}

func (fn *runFn) Setup() { fn.c.handler = fn.Handler }

func (fn *runFn) ProcessElement(ctx context.Context, ex Example, dir string, emit func(PredictionResult), dead func(DeadLetter)) error {
	return fn.c.add(ctx, nil, ex, dir, func(_ any, r PredictionResult) { emit(r) }, func(_ any, d DeadLetter) { dead(d) })
}

func (fn *runFn) FinishBundle(ctx context.Context, _ string, emit func(PredictionResult), dead func(DeadLetter)) error {
	bundles.Add(1)
	return fn.c.flush(ctx, func(_ any, r PredictionResult) { emit(r) })
}

func (fn *runFn) Teardown() { fn.c.release() }

// keyedRunFn scores keyed examples, keeping their keys.
type keyedRunFn struct {
	Handler ModelHandler
	c       core
}

func (fn *keyedRunFn) Setup() { fn.c.handler = fn.Handler }

func (fn *keyedRunFn) ProcessElement(ctx context.Context, k beam.X, ex Example, dir string, emit func(beam.X, PredictionResult), dead func(beam.X, DeadLetter)) error {
	return fn.c.add(ctx, k, ex, dir, func(k any, r PredictionResult) { emit(k, r) }, func(k any, d DeadLetter) { dead(k, d) })
}

func (fn *keyedRunFn) FinishBundle(ctx context.Context, _ string, emit func(beam.X, PredictionResult), dead func(beam.X, DeadLetter)) error {
	bundles.Add(1)
	return fn.c.flush(ctx, func(k any, r PredictionResult) { emit(k, r) })
}

func (fn *keyedRunFn) Teardown() { fn.c.release() }

// fixedRunFn and fixedKeyedRunFn are runFn and keyedRunFn for the handler's
// own model folder (no WithModelDir): they take no side input. Besides being
// simpler, that keeps prism from spinning: while a bundle of a stage with a
// side input runs, prism's watermark loop finds the stage ready again, starts
// an empty bundle and re-queues the stage, over and over
// (ElementManager.refreshWatermarks took a quarter of the process's CPU in
// BENCHMARKS.md's profile of RunInference on prism).
type fixedRunFn struct {
	Handler ModelHandler
	c       core
}

func (fn *fixedRunFn) Setup() { fn.c.handler = fn.Handler }

func (fn *fixedRunFn) ProcessElement(ctx context.Context, ex Example, emit func(PredictionResult), dead func(DeadLetter)) error {
	return fn.c.add(ctx, nil, ex, fn.Handler.ModelDir, func(_ any, r PredictionResult) { emit(r) }, func(_ any, d DeadLetter) { dead(d) })
}

func (fn *fixedRunFn) FinishBundle(ctx context.Context, emit func(PredictionResult), dead func(DeadLetter)) error {
	bundles.Add(1)
	return fn.c.flush(ctx, func(_ any, r PredictionResult) { emit(r) })
}

func (fn *fixedRunFn) Teardown() { fn.c.release() }

type fixedKeyedRunFn struct {
	Handler ModelHandler
	c       core
}

func (fn *fixedKeyedRunFn) Setup() { fn.c.handler = fn.Handler }

func (fn *fixedKeyedRunFn) ProcessElement(ctx context.Context, k beam.X, ex Example, emit func(beam.X, PredictionResult), dead func(beam.X, DeadLetter)) error {
	return fn.c.add(ctx, k, ex, fn.Handler.ModelDir, func(k any, r PredictionResult) { emit(k, r) }, func(k any, d DeadLetter) { dead(k, d) })
}

func (fn *fixedKeyedRunFn) FinishBundle(ctx context.Context, emit func(beam.X, PredictionResult), dead func(beam.X, DeadLetter)) error {
	bundles.Add(1)
	return fn.c.flush(ctx, func(k any, r PredictionResult) { emit(k, r) })
}

func (fn *fixedKeyedRunFn) Teardown() { fn.c.release() }

// core is what the DoFns share: the handler, the model in use, and the
// examples of the bundle waiting for their batch.
type core struct {
	handler ModelHandler
	m       *Model
	dir     string // the model folder (the handler's, or the side input's value) the model was loaded for
	buf     []pending
}

// bufferBatches is how many full batches a bundle holds before it scores
// them, sorted by length so that a batch pads little. Sorting windows of 32
// batches padded AG News test batches to 7% more tokens (33% more attention
// work) than sorting its 7,600 texts at once, and RunInference ran 15%
// slower than with 256 (BENCHMARKS.md, RunInference). 256 batches of 32 are
// 8,192 examples: their texts and token ids, a few MB.
const bufferBatches = 256

// add encodes ex with the model dir names (switching models first when
// the side input names another) and buffers it, scoring the buffer when it
// is full; an example that cannot be scored goes to dead.
func (c *core) add(ctx context.Context, key any, ex Example, dir string, emit func(any, PredictionResult), dead func(any, DeadLetter)) error {
	if c.m == nil || c.dir != dir {
		if err := c.flush(ctx, emit); err != nil {
			return err
		}
		if err := c.use(ctx, dir); err != nil {
			return err
		}
	}
	p, reason := c.m.encode(ex)
	if reason != "" {
		numDeadLetter.Inc(ctx, 1)
		dead(key, DeadLetter{Example: ex, Reason: reason, ModelID: c.m.ID})
		return nil
	}
	p.key = key
	c.buf = append(c.buf, p)
	if len(c.buf) >= bufferBatches*c.handler.batchSize() {
		return c.flush(ctx, emit)
	}
	return nil
}

// use switches to the model folder dir, loading it unless this process
// holds it already.
func (c *core) use(ctx context.Context, dir string) error {
	c.release()
	h := c.handler
	var digest string
	h.ModelDir, digest = splitDigest(dir)
	m, loaded, err := acquire(ctx, h)
	if err != nil {
		return err
	}
	if digest != "" && !strings.HasSuffix(m.ID, digestMark+digest) {
		m.Release()
		return fmt.Errorf("inference: %s is not the model the side input names: its files hash to %s, want sha256:%s (changed after it was promoted?)", h.ModelDir, strings.TrimPrefix(m.ID, h.ModelDir+"@"), digest)
	}
	if loaded {
		loadLatency.Update(ctx, m.LoadTime.Milliseconds())
		modelBytes.Update(ctx, m.Bytes)
	}
	c.m, c.dir = m, dir
	return nil
}

func (c *core) release() {
	if c.m != nil {
		c.m.Release()
		c.m = nil
	}
}

// flush scores the buffered examples, batch by batch, and emits results.
func (c *core) flush(ctx context.Context, emit func(any, PredictionResult)) error {
	if len(c.buf) == 0 {
		return nil
	}
	for _, batch := range batches(c.buf, c.handler.batchSize(), c.handler.batchTokens()) {
		start := time.Now()
		ev, err := c.m.Score(rowsOf(batch), len(batch), nil)
		if err != nil {
			failedBatches.Inc(ctx, 1)
			return fmt.Errorf("inference: a batch of %d examples on %s: %w", len(batch), c.m.ID, err)
		}
		batchLatency.Update(ctx, time.Since(start).Microseconds())
		batchSizes.Update(ctx, int64(len(batch)))
		numInferences.Inc(ctx, int64(len(batch)))
		for i, p := range batch {
			emit(p.key, PredictionResult{Example: p.ex, Inference: c.inference(ev.TaskLogits, i), ModelID: c.m.ID})
		}
	}
	c.buf = c.buf[:0]
	return nil
}

// inference is example i's Inference from the batch's logits (per head).
func (c *core) inference(taskLogits [][][]float32, i int) Inference {
	m := c.m
	if m.Heads == nil {
		t := inferenceOf(m.Task, m.Labels, m.Decide(taskLogits[0][i]))
		return Inference{Label: t.Label, Probability: t.Probability, Labels: t.Labels, Score: t.Score,
			Probabilities: t.Probabilities, Classes: t.Classes, Tasks: []TaskInference{}}
	}
	logits := make([][]float32, len(m.Heads))
	for k := range logits {
		logits[k] = taskLogits[k][i]
	}
	out := Inference{Labels: []string{}, Probabilities: []float32{}, Classes: []string{}}
	for k, d := range m.DecideHeads(logits) {
		h := m.Heads[k]
		t := inferenceOf(h.ProblemType, h.Labels, d)
		t.Task = h.Name
		out.Tasks = append(out.Tasks, t)
	}
	return out
}
