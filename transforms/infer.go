package transforms

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"sync"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/signing"
	"github.com/beamtune/beamtune/trainer"
)

func init() {
	register.DoFn3x1[context.Context, dataset.ShardInfo, func(dataset.ShardInfo), error](&TeacherLogitsFn{})
	register.DoFn3x1[context.Context, dataset.ShardInfo, func(Prediction), error](&PredictShardFn{})
	register.Emitter1[Prediction]()
	beam.RegisterType(reflect.TypeOf((*Prediction)(nil)).Elem())
}

// inferModel is a model loaded once per worker for batched inference. Both
// inference DoFns embed it: teacher logits for distillation, and predictions
// for evaluate and predict are the same computation.
type inferModel struct {
	ModelDir  string // HF folder, local or gs://
	BatchSize int
	Device    string
	Threads   int
	// Threshold picks a multi-label model's decision thresholds: "" or
	// model.ThresholdPerLabel (the model's tuned ones), model.ThresholdGlobal,
	// or a probability (see model.Thresholds.Resolve).
	Threshold string
	// Quantize is the --quantize mode: "" or none (float32), or int8 (falls
	// back to float32 with a log line where int8 cannot run).
	Quantize string
	// DataTokenizerSHA256 is the sha256 of the tokenizer.json the scored
	// shards were prepared with; a vocabulary-pruned model whose vocab map
	// starts from that tokenizer maps the ids to its own.
	DataTokenizerSHA256 string
	// Tasks, for a multi-task bundle, are the heads to run, all on one
	// encoder pass ("": every task of the bundle).
	Tasks []string
	// Trust, when set, is the policy the model folder (and an adapter's
	// base) must be signed under; it is checked on the worker before the
	// weights are read.
	Trust signing.Trust

	mu         sync.Mutex // one forward at a time per loaded model
	m          *model.Bert
	baseKey    string    // the shared base a LoRA adapter runs over ("": none)
	task       string    // the model's problem type
	thresholds []float64 // multi-label: per label; nil otherwise
	// heads, for a bundle, are the tasks run (Tasks, in order) and
	// headThresholds each multi-label head's thresholds.
	heads          []model.TaskHead
	headThresholds [][]float64
}

// Setup loads the model. libtorch handles never leave the worker: they are
// made here, not serialized with the DoFn.
func (im *inferModel) setup(ctx context.Context) error {
	dev, err := model.ParseDevice(im.Device)
	if err != nil {
		return err
	}
	model.SetThreads(im.Threads)
	dir, base, cleanup, err := trainer.FetchModel(ctx, im.ModelDir, "", im.Trust)
	if err != nil {
		return fmt.Errorf("inference model: %w", err)
	}
	defer cleanup()
	opts := model.LoadOptions{Device: dev, BaseDir: base}
	if base != "" && (im.Quantize == "" || im.Quantize == model.QuantizeNone) {
		// A LoRA adapter in float32 runs over the process's one copy of
		// its base; int8 needs the update merged into its own weights.
		ref, err := model.ReadAdapterBase(dir)
		if err != nil {
			return fmt.Errorf("inference model: %w", err)
		}
		key := dev.Name + "|" + ref.Path + "|" + ref.SHA256
		if opts.Base, err = sharedBases.acquire(key, func() (*model.Bert, error) {
			m, _, err := model.Load(base, model.LoadOptions{Device: dev})
			return m, err
		}); err != nil {
			return fmt.Errorf("inference model: base of %s: %w", im.ModelDir, err)
		}
		im.baseKey = key
	}
	m, _, err := model.Load(dir, opts)
	if err != nil {
		im.releaseBase()
		return fmt.Errorf("inference model: %w", err)
	}
	im.m, im.task = m, m.Config.Task()
	if err := prepareInference(m, dir, im.ModelDir, im.Quantize, im.DataTokenizerSHA256); err != nil {
		m.Free()
		im.m = nil
		return fmt.Errorf("inference model: %w", err)
	}
	if m.Heads() != nil {
		if err := im.setupHeads(dir); err != nil {
			return fmt.Errorf("inference model %s: %w", im.ModelDir, err)
		}
	} else if im.task == dataset.MultiLabel {
		if im.thresholds, err = resolveThresholds(dir, im.Threshold, m.Config.NumLabels()); err != nil {
			return fmt.Errorf("inference model %s: %w", im.ModelDir, err)
		}
	}
	if im.BatchSize <= 0 {
		im.BatchSize = 64
	}
	return nil
}

// prepareInference applies what a model needs before it scores shards: the
// vocab map of a vocabulary-pruned model when the shards use its source
// tokenizer, and the quantize mode.
func prepareInference(m *model.Bert, local, name, quantize, dataTokenizer string) error {
	vm, err := model.ReadVocabMap(local)
	if err != nil {
		return err
	}
	if vm != nil && dataTokenizer != "" && vm.SourceTokenizerSHA256 == dataTokenizer {
		if err := m.SetSourceVocab(vm); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		slog.Info("inference: vocabulary-pruned model reads the source tokenizer's ids", "model", name, "vocab", m.Config.VocabSize, "source_vocab", vm.SourceVocabSize)
	}
	applied, fallback, err := model.Quantize(m, quantize, model.HostCPU())
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if fallback != "" {
		slog.Warn("inference: "+fallback, "model", name)
	} else if applied != model.QuantizeNone {
		slog.Info("inference: int8 linear layers", "model", name, "quantize", applied)
	}
	return nil
}

// setupHeads picks a bundle's heads to run and reads the thresholds of its
// multi-label ones (each from its task folder, tasks/<task>/).
func (im *inferModel) setupHeads(dir string) error {
	names := im.Tasks
	if len(names) == 0 {
		names = im.m.TaskNames()
	}
	im.heads, im.headThresholds = nil, nil
	for _, n := range names {
		h, ok := im.m.Head(n)
		if !ok {
			return fmt.Errorf("no task %q (tasks: %s)", n, strings.Join(im.m.TaskNames(), ", "))
		}
		var th []float64
		if h.ProblemType == dataset.MultiLabel {
			var err error
			if th, err = resolveThresholds(filepath.Join(dir, model.TasksDir, n), im.Threshold, len(h.Labels)); err != nil {
				return fmt.Errorf("task %s: %w", n, err)
			}
		}
		im.heads, im.headThresholds = append(im.heads, h), append(im.headThresholds, th)
	}
	return nil
}

// resolveThresholds reads a multi-label model folder's tuned thresholds
// and applies the threshold rule.
func resolveThresholds(dir, rule string, labels int) ([]float64, error) {
	th, err := model.ReadThresholds(dir)
	if err != nil {
		return nil, err
	}
	out, _, err := th.Resolve(rule, labels)
	return out, err
}

// taskNames are the heads a bundle runs (nil for a single-task model).
func (im *inferModel) taskNames() []string {
	var out []string
	for _, h := range im.heads {
		out = append(out, h.Name)
	}
	return out
}

func (im *inferModel) teardown() {
	if im.m != nil {
		im.m.Free()
		im.m = nil
	}
	im.releaseBase()
}

func (im *inferModel) releaseBase() {
	if im.baseKey != "" {
		sharedBases.release(im.baseKey)
		im.baseKey = ""
	}
}

// sharedBases holds the base models of the LoRA adapters this worker
// process serves: each is loaded once, by the first DoFn instance that
// needs it, shared by every adapter over it (all DoFn instances, models and
// bundles; forward passes only read it) and freed when the last one tears
// down. The adapters stay unmerged: merging per batch would write weights
// that other adapters read at the same time, and the unmerged update costs
// little (BENCHMARKS.md, "Parameter-efficient fine-tuning").
var sharedBases = &baseCache{bases: map[string]*cachedBase{}}

type baseCache struct {
	mu    sync.Mutex
	bases map[string]*cachedBase
	loads int // base models loaded so far (tests)
}

type cachedBase struct {
	m    *model.Bert
	refs int
}

// acquire returns the base under key, loading it with load the first time.
func (c *baseCache) acquire(key string, load func() (*model.Bert, error)) (*model.Bert, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b := c.bases[key]; b != nil {
		b.refs++
		return b.m, nil
	}
	m, err := load()
	if err != nil {
		return nil, err
	}
	c.loads++
	c.bases[key] = &cachedBase{m: m, refs: 1}
	return m, nil
}

// release drops one user of the base under key, freeing it after the last.
func (c *baseCache) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.bases[key]
	if b == nil {
		return
	}
	if b.refs--; b.refs == 0 {
		b.m.Free()
		delete(c.bases, key)
	}
}

// scorer scores rows with the loaded model, keeping the [CLS] vectors of
// hidden states layers (none when nil): one caller at a time, on a locked
// thread.
func (im *inferModel) scorer(layers []int) trainer.Scorer {
	return func(rows *dataset.Rows) (trainer.EvalResult, error) {
		im.mu.Lock()
		defer im.mu.Unlock()
		defer model.LockThread()()
		if im.heads != nil {
			if len(layers) > 0 {
				return trainer.EvalResult{}, fmt.Errorf("hidden states of a multi-task bundle")
			}
			return trainer.EvaluateTasks(im.m, rows, im.BatchSize, im.taskNames())
		}
		return trainer.EvaluateHidden(im.m, rows, im.BatchSize, layers)
	}
}

var inferRows = beam.NewCounter("beamtune.infer", "rows")

// TeacherLogitsFn computes the teacher's logits for every row of a shard and
// writes the shard again with a teacher_logits column, under OutRoot/OutDir,
// so the student reads them instead of running the teacher every epoch.
// With HiddenLayers it also fills teacher_hidden with those hidden states'
// [CLS] vectors, for the hidden-state loss.
type TeacherLogitsFn struct {
	inferModel
	InRoot       string // the source dataset folder
	OutRoot      string // the distillation dataset folder
	OutDir       string // its data folder, relative to OutRoot
	HiddenLayers []int  // teacher hidden states to cache (0: embeddings); none when empty
}

func (fn *TeacherLogitsFn) Setup(ctx context.Context) error { return fn.setup(ctx) }
func (fn *TeacherLogitsFn) Teardown()                       { fn.teardown() }

func (fn *TeacherLogitsFn) ProcessElement(ctx context.Context, s dataset.ShardInfo, emit func(dataset.ShardInfo)) error {
	out, err := trainer.TeacherShard(ctx, fn.scorer(fn.HiddenLayers), fn.InRoot, fn.OutRoot, fn.OutDir, s)
	if err != nil {
		return err
	}
	inferRows.Inc(ctx, out.Rows)
	emit(out)
	return nil
}

// Prediction is one scored example.
type Prediction struct {
	Model  string    `json:"model,omitempty"`
	ID     string    `json:"id"`
	Label  int32     `json:"label"` // the true label, -1 when unknown
	Pred   int32     `json:"pred"`  // single-label: the predicted class; -1 for the other tasks
	Probs  []float32 `json:"probs"` // softmax (single-label) or per-label sigmoid (multi-label) probabilities
	Length int32     `json:"length"`
	Text   string    `json:"text,omitempty"`
	// PredLabels are a multi-label prediction's classes: those whose
	// probability passes their decision threshold.
	PredLabels []int32 `json:"pred_labels,omitempty"`
	// TrueLabels are a multi-label row's true classes.
	TrueLabels []int32 `json:"true_labels,omitempty"`
	// Score is a regression prediction, TrueScore its target.
	Score     float32 `json:"score,omitempty"`
	TrueScore float32 `json:"true_score,omitempty"`
	// Tasks, from a multi-task bundle, are each task's prediction, in the
	// order of its heads run (the fields above then hold none).
	Tasks []TaskPrediction `json:"tasks,omitempty"`
}

// TaskPrediction is one task's prediction of a row, from a bundle: as
// Prediction's fields of the same names.
type TaskPrediction struct {
	Pred       int32     `json:"pred"`
	Probs      []float32 `json:"probs"`
	PredLabels []int32   `json:"pred_labels,omitempty"`
	Score      float32   `json:"score,omitempty"`
}

// predictionOfHeads is a bundle's prediction of one row: per head run, its
// prediction from logits[k] (that head's logits of the row).
func (im *inferModel) predictionOfHeads(logits [][]float32) Prediction {
	p := Prediction{Label: -1, Pred: -1}
	for k, h := range im.heads {
		tp := predictionOf(h.ProblemType, im.headThresholds[k], logits[k])
		p.Tasks = append(p.Tasks, TaskPrediction{Pred: tp.Pred, Probs: tp.Probs, PredLabels: tp.PredLabels, Score: tp.Score})
	}
	return p
}

// predictionOf turns one row's logits into a Prediction for the task. A
// multi-label class is predicted when its probability is above its
// threshold (thresholds[j]; model.DefaultThreshold for all when nil).
func predictionOf(task string, thresholds []float64, logits []float32) Prediction {
	switch task {
	case dataset.MultiLabel:
		p := Prediction{Pred: -1, Probs: make([]float32, len(logits)), PredLabels: []int32{}}
		for j, z := range logits {
			p.Probs[j] = float32(1 / (1 + math.Exp(-float64(z))))
			t := model.DefaultThreshold
			if thresholds != nil {
				t = thresholds[j]
			}
			if float64(p.Probs[j]) > t {
				p.PredLabels = append(p.PredLabels, int32(j))
			}
		}
		return p
	case dataset.Regression:
		return Prediction{Pred: -1, Score: logits[0]}
	}
	return Prediction{Pred: int32(trainer.Argmax(logits)), Probs: Softmax(logits)}
}

// PredictShardFn scores every row of a shard.
type PredictShardFn struct {
	inferModel
	Root string // dataset folder
	Name string // model name carried in each prediction
}

func (fn *PredictShardFn) Setup(ctx context.Context) error { return fn.setup(ctx) }
func (fn *PredictShardFn) Teardown()                       { fn.teardown() }

func (fn *PredictShardFn) ProcessElement(ctx context.Context, s dataset.ShardInfo, emit func(Prediction)) error {
	rows, ev, err := trainer.ScoreShard(ctx, fn.scorer(nil), fn.Root, s)
	if err != nil {
		return err
	}
	inferRows.Inc(ctx, int64(len(rows)))
	for i, r := range rows {
		p := predictionOf(fn.task, fn.thresholds, ev.Logits[i])
		p.Model, p.ID, p.Label, p.Length, p.Text = fn.Name, r.ID, r.Label, r.Length, r.Text
		switch fn.task {
		case dataset.MultiLabel:
			p.TrueLabels = r.Labels
		case dataset.Regression:
			p.TrueScore = r.Score
		}
		emit(p)
	}
	return nil
}

// Softmax turns logits into probabilities (stable in float64).
func Softmax(logits []float32) []float32 {
	mx := logits[0]
	for _, v := range logits {
		mx = max(mx, v)
	}
	var sum float64
	e := make([]float64, len(logits))
	for i, v := range logits {
		e[i] = math.Exp(float64(v - mx))
		sum += e[i]
	}
	out := make([]float32, len(logits))
	for i := range e {
		out[i] = float32(e[i] / sum)
	}
	return out
}
