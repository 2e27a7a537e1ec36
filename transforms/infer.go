package transforms

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"reflect"
	"sync"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/storage"
)

func init() {
	register.DoFn3x1[context.Context, ShardInfo, func(ShardInfo), error](&TeacherLogitsFn{})
	register.DoFn3x1[context.Context, ShardInfo, func(Prediction), error](&PredictShardFn{})
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

	mu sync.Mutex // one forward at a time per loaded model
	m  *model.Bert
}

// Setup loads the model. libtorch handles never leave the worker: they are
// made here, not serialized with the DoFn.
func (im *inferModel) setup(ctx context.Context) error {
	dev, err := model.ParseDevice(im.Device)
	if err != nil {
		return err
	}
	model.SetThreads(im.Threads)
	dir, cleanup, err := storage.LocalDir(ctx, im.ModelDir)
	if err != nil {
		return err
	}
	defer cleanup()
	m, _, err := model.Load(dir, model.LoadOptions{Device: dev})
	if err != nil {
		return fmt.Errorf("inference model: %w", err)
	}
	im.m = m
	if im.BatchSize <= 0 {
		im.BatchSize = 64
	}
	return nil
}

func (im *inferModel) teardown() {
	if im.m != nil {
		im.m.Free()
		im.m = nil
	}
}

// logits runs the model over a shard's rows, keeping the [CLS] vectors of
// the hidden states in layers (none when nil).
func (im *inferModel) logits(ctx context.Context, root string, s ShardInfo, layers []int) ([]ShardRow, EvalResult, error) {
	data, err := storage.ReadFile(ctx, storage.Join(root, s.Path))
	if err != nil {
		return nil, EvalResult{}, err
	}
	rows, err := ReadShardRows(data)
	if err != nil {
		return nil, EvalResult{}, fmt.Errorf("%s: %w", s.Path, err)
	}
	var r Rows
	r.Append(rows)
	ev, err := im.run(&r, layers)
	if err != nil {
		return nil, EvalResult{}, fmt.Errorf("%s: %w", s.Path, err)
	}
	inferRows.Inc(ctx, int64(len(rows)))
	return rows, ev, nil
}

// run scores rows with the loaded model, one caller at a time, on a locked thread.
func (im *inferModel) run(rows *Rows, layers []int) (EvalResult, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	defer model.LockThread()()
	return EvaluateHidden(im.m, rows, im.BatchSize, layers)
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

func (fn *TeacherLogitsFn) ProcessElement(ctx context.Context, s ShardInfo, emit func(ShardInfo)) error {
	rows, ev, err := fn.logits(ctx, fn.InRoot, s, fn.HiddenLayers)
	if err != nil {
		return err
	}
	for i := range rows {
		rows[i].TeacherLogits = ev.Logits[i]
		if ev.Hidden != nil {
			rows[i].TeacherHidden = ev.Hidden[i]
		}
	}
	var buf bytes.Buffer
	if err := WriteShardRows(&buf, rows); err != nil {
		return err
	}
	out := s
	out.Path = fmt.Sprintf("%s/%s/%s", fn.OutDir, s.Split, baseName(s.Path))
	if err := storage.WriteFile(ctx, storage.Join(fn.OutRoot, out.Path), buf.Bytes()); err != nil {
		return err
	}
	sum := sha256.Sum256(buf.Bytes())
	out.Bytes, out.SHA256 = int64(buf.Len()), hex.EncodeToString(sum[:])
	emit(out)
	return nil
}

func baseName(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[i+1:]
		}
	}
	return p
}

// Prediction is one scored example.
type Prediction struct {
	Model  string    `json:"model,omitempty"`
	ID     string    `json:"id"`
	Label  int32     `json:"label"` // the true label, -1 when unknown
	Pred   int32     `json:"pred"`
	Probs  []float32 `json:"probs"`
	Length int32     `json:"length"`
	Text   string    `json:"text,omitempty"`
}

// PredictShardFn scores every row of a shard.
type PredictShardFn struct {
	inferModel
	Root string // dataset folder
	Name string // model name carried in each prediction
}

func (fn *PredictShardFn) Setup(ctx context.Context) error { return fn.setup(ctx) }
func (fn *PredictShardFn) Teardown()                       { fn.teardown() }

func (fn *PredictShardFn) ProcessElement(ctx context.Context, s ShardInfo, emit func(Prediction)) error {
	rows, ev, err := fn.logits(ctx, fn.Root, s, nil)
	if err != nil {
		return err
	}
	for i, r := range rows {
		p := Softmax(ev.Logits[i])
		emit(Prediction{Model: fn.Name, ID: r.ID, Label: r.Label, Pred: int32(argmax(ev.Logits[i])), Probs: p, Length: r.Length, Text: r.Text})
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
