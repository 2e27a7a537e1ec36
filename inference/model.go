package inference

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/model/tokenizer"
	"github.com/beamtune/beamtune/signing"
	"github.com/beamtune/beamtune/trainer"
)

// Model is a model loaded for inference in a worker process, shared by
// every DoFn instance and bundle whose handler has the same key (Acquire).
// Forward passes run one at a time per model, on a locked OS thread:
// libtorch's thread pools are per process, so concurrent passes would only
// contend.
type Model struct {
	Handler ModelHandler
	// ID names the model in results: its folder and the sha256 root digest
	// of its files (as a model_signing statement's subject).
	ID string
	// Bytes is the size of the folder's files (model_byte_size).
	Bytes int64
	// LoadTime is how long the load took (load_model_latency_milli_secs).
	LoadTime time.Duration
	// Task is the model's problem type; Labels its classes (none for
	// regression); Heads, for a multi-task bundle, the heads run.
	Task   string
	Labels []string
	Heads  []model.TaskHead

	mu             sync.Mutex
	bert           *model.Bert
	tok            *tokenizer.Tokenizer // nil when the folder has no tokenizer.json
	maxLength      int
	thresholds     []float64   // multi-label: per label
	headThresholds [][]float64 // a bundle's multi-label heads'
	baseKey        string      // the shared base a LoRA adapter runs over ("": none)
	key            string
	refs           int
}

// models are the models this worker process has loaded, by handler key.
var models = struct {
	sync.Mutex
	byKey map[string]*Model
	loads int
}{byKey: map[string]*Model{}}

// Acquire returns the model h names, loading it the first time any DoFn
// instance of this process asks for it (the others wait); Release gives it
// back, and the last Release frees it.
func Acquire(ctx context.Context, h ModelHandler) (*Model, error) {
	m, _, err := acquire(ctx, h)
	return m, err
}

// acquire is Acquire, also saying whether this call loaded the model.
func acquire(ctx context.Context, h ModelHandler) (*Model, bool, error) {
	if err := h.check(); err != nil {
		return nil, false, err
	}
	key := h.key()
	models.Lock()
	defer models.Unlock()
	if m := models.byKey[key]; m != nil {
		m.refs++
		return m, false, nil
	}
	var m *Model
	if err := model.OnTorchThread(func() (err error) {
		m, err = load(ctx, h)
		return err
	}); err != nil {
		return nil, false, err
	}
	m.key, m.refs = key, 1
	models.byKey[key] = m
	models.loads++
	return m, true, nil
}

// Release gives back a model from Acquire.
func (m *Model) Release() {
	models.Lock()
	defer models.Unlock()
	if m.refs--; m.refs > 0 {
		return
	}
	delete(models.byKey, m.key)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bert.Free()
	m.bert = nil
	if m.baseKey != "" {
		sharedBases.release(m.baseKey)
	}
}

// ProcessStats counts the models this worker process has loaded and holds:
// what "one model per worker process" is tested with.
type ProcessStats struct {
	ModelLoads, ModelsHeld int // models (by handler key)
	BaseLoads, BasesHeld   int // the shared bases of LoRA adapters
}

// Stats reports this process's ProcessStats.
func Stats() ProcessStats {
	models.Lock()
	st := ProcessStats{ModelLoads: models.loads, ModelsHeld: len(models.byKey)}
	models.Unlock()
	sharedBases.mu.Lock()
	st.BaseLoads, st.BasesHeld = sharedBases.loads, len(sharedBases.bases)
	sharedBases.mu.Unlock()
	return st
}

// load fetches, verifies and loads the model folder h names.
func load(ctx context.Context, h ModelHandler) (*Model, error) {
	start := time.Now()
	dev, err := model.ParseDevice(h.Device)
	if err != nil {
		return nil, err
	}
	model.SetThreads(h.Threads)
	dir, base, cleanup, err := trainer.FetchModel(ctx, h.ModelDir, "", h.Trust)
	if err != nil {
		return nil, fmt.Errorf("inference model: %w", err)
	}
	defer cleanup()
	im := &Model{Handler: h}
	opts := model.LoadOptions{Device: dev, BaseDir: base}
	if base != "" && (h.Quantize == "" || h.Quantize == model.QuantizeNone) {
		// A LoRA adapter in float32 runs over the process's one copy of
		// its base; int8 needs the update merged into its own weights.
		ref, err := model.ReadAdapterBase(dir)
		if err != nil {
			return nil, fmt.Errorf("inference model: %w", err)
		}
		key := dev.Name + "|" + ref.Path + "|" + ref.SHA256
		if opts.Base, err = sharedBases.acquire(key, func() (*model.Bert, error) {
			m, _, err := model.Load(base, model.LoadOptions{Device: dev})
			return m, err
		}); err != nil {
			return nil, fmt.Errorf("inference model: base of %s: %w", h.ModelDir, err)
		}
		im.baseKey = key
	}
	fail := func(err error) (*Model, error) {
		if im.bert != nil {
			im.bert.Free()
		}
		if im.baseKey != "" {
			sharedBases.release(im.baseKey)
		}
		return nil, fmt.Errorf("inference model %s: %w", h.ModelDir, err)
	}
	if im.bert, _, err = model.Load(dir, opts); err != nil {
		return fail(err)
	}
	if err := prepare(im.bert, dir, h); err != nil {
		return fail(err)
	}
	im.Task, im.Labels = im.bert.Config.Task(), im.bert.Config.Labels()
	if im.bert.Heads() != nil {
		if err := im.setupHeads(dir); err != nil {
			return fail(err)
		}
	} else if im.Task == dataset.MultiLabel {
		if im.thresholds, err = resolveThresholds(dir, h.Threshold, im.bert.Config.NumLabels()); err != nil {
			return fail(err)
		}
	}
	if im.tok, im.maxLength, err = loadTokenizer(dir, base, h.MaxLength, im.bert.Config.MaxPositionEmbeddings); err != nil {
		return fail(err)
	}
	files, err := signing.HashDir(dir)
	if err != nil {
		return fail(err)
	}
	im.ID = h.ModelDir + "@sha256:" + files.RootDigest()
	im.Bytes = folderBytes(dir)
	im.LoadTime = time.Since(start)
	slog.Info("inference: model loaded", "model", im.ID, "bytes", im.Bytes, "ms", im.LoadTime.Milliseconds())
	return im, nil
}

// prepare applies what a model needs before it scores: the vocab map of a
// vocabulary-pruned model when the shards use its source tokenizer, and the
// quantize mode.
func prepare(m *model.Bert, local string, h ModelHandler) error {
	vm, err := model.ReadVocabMap(local)
	if err != nil {
		return err
	}
	if vm != nil && h.DataTokenizerSHA256 != "" && vm.SourceTokenizerSHA256 == h.DataTokenizerSHA256 {
		if err := m.SetSourceVocab(vm); err != nil {
			return err
		}
		slog.Info("inference: vocabulary-pruned model reads the source tokenizer's ids", "model", h.ModelDir, "vocab", m.Config.VocabSize, "source_vocab", vm.SourceVocabSize)
	}
	applied, fallback, err := model.Quantize(m, h.Quantize, model.HostCPU())
	if err != nil {
		return err
	}
	if fallback != "" {
		slog.Warn("inference: "+fallback, "model", h.ModelDir)
	} else if applied != model.QuantizeNone {
		slog.Info("inference: int8 linear layers", "model", h.ModelDir, "quantize", applied)
	}
	return applyPrecision(m, h.Precision, applied)
}

// applyPrecision resolves a --precision value for m's device and the int8
// mode in force, and sets it.
func applyPrecision(m *model.Bert, spec, quantize string) error {
	p, err := model.ResolvePrecision(spec, m.Device, model.HostCPU(), quantize)
	if err != nil {
		return err
	}
	if err := m.SetPrecision(p); err != nil {
		return err
	}
	if p != model.PrecisionFP32 {
		_, why := model.FastBF16(m.Device, model.HostCPU())
		slog.Info("inference: precision", "precision", p, "asked", spec, "hardware", why)
	}
	return nil
}

// ApplyPrecision is applyPrecision for the pipelines that load a model
// themselves (evaluate's speed runs).
func ApplyPrecision(m *model.Bert, spec, quantize string) error {
	return applyPrecision(m, spec, quantize)
}

// setupHeads picks a bundle's heads to run and reads the thresholds of its
// multi-label ones (each from its task folder, tasks/<task>/).
func (im *Model) setupHeads(dir string) error {
	names := im.Handler.Tasks
	if len(names) == 0 {
		names = im.bert.TaskNames()
	}
	for _, n := range names {
		h, ok := im.bert.Head(n)
		if !ok {
			return fmt.Errorf("no task %q (tasks: %s)", n, strings.Join(im.bert.TaskNames(), ", "))
		}
		var th []float64
		if h.ProblemType == dataset.MultiLabel {
			var err error
			if th, err = resolveThresholds(filepath.Join(dir, model.TasksDir, n), im.Handler.Threshold, len(h.Labels)); err != nil {
				return fmt.Errorf("task %s: %w", n, err)
			}
		}
		im.Heads, im.headThresholds = append(im.Heads, h), append(im.headThresholds, th)
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

// loadTokenizer reads the folder's tokenizer.json (an adapter's may be its
// base's), truncating at maxLength (0: DefaultMaxLength, at most the
// model's positions), unpadded. A folder without one scores shards only.
func loadTokenizer(dir, base string, maxLength, positions int) (*tokenizer.Tokenizer, int, error) {
	if maxLength <= 0 {
		maxLength = DefaultMaxLength
	}
	if positions > 0 && maxLength > positions {
		maxLength = positions
	}
	path := filepath.Join(dir, model.TokenizerFile)
	if _, err := os.Stat(path); err != nil && base != "" {
		path = filepath.Join(base, model.TokenizerFile)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, maxLength, nil
	}
	tok, err := tokenizer.Load(path)
	if err != nil {
		return nil, 0, err
	}
	if tok, err = tok.WithPadding(nil); err != nil {
		return nil, 0, err
	}
	if tok, err = tok.WithTruncation(&tokenizer.Truncation{MaxLength: maxLength}); err != nil {
		return nil, 0, err
	}
	return tok, maxLength, nil
}

func folderBytes(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// Score runs the model over rows (already tokenized: a shard's, or a batch
// of texts), batchSize at a time, keeping the [CLS] vectors of hidden
// layers (none when nil). A bundle's heads give TaskLogits.
func (im *Model) Score(rows *dataset.Rows, batchSize int, layers []int) (trainer.EvalResult, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.Heads != nil && len(layers) > 0 {
		return trainer.EvalResult{}, fmt.Errorf("hidden states of a multi-task bundle")
	}
	var res trainer.EvalResult
	err := model.OnTorchThread(func() (err error) {
		if im.Heads != nil {
			res, err = trainer.EvaluateTasks(im.bert, rows, batchSize, im.taskNames())
		} else {
			res, err = trainer.EvaluateHidden(im.bert, rows, batchSize, layers)
		}
		return err
	})
	return res, err
}

// WithBert runs f on the loaded model, alone (for work other than scoring:
// the importance of heads and neurons).
func (im *Model) WithBert(f func(*model.Bert) error) error {
	im.mu.Lock()
	defer im.mu.Unlock()
	return model.OnTorchThread(func() error { return f(im.bert) })
}

func (im *Model) taskNames() []string {
	var out []string
	for _, h := range im.Heads {
		out = append(out, h.Name)
	}
	return out
}

// TaskNames are the heads a bundle runs (nil for a single-task model).
func (im *Model) TaskNames() []string { return im.taskNames() }
