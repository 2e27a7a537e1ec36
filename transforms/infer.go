package transforms

import (
	"context"
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/inference"
	"github.com/beamtune/beamtune/trainer"
)

func init() {
	register.DoFn3x1[context.Context, dataset.ShardInfo, func(dataset.ShardInfo), error](&TeacherLogitsFn{})
	register.DoFn3x1[context.Context, dataset.ShardInfo, func(Prediction), error](&PredictShardFn{})
	register.Emitter1[Prediction]()
	beam.RegisterType(reflect.TypeOf((*Prediction)(nil)).Elem())
}

// inferModel is the model the shard-level inference DoFns run (teacher
// logits, predict and evaluate over shards, importance): an
// inference.ModelHandler, and the model it names, shared by every DoFn of
// the worker process (inference.Acquire), as in RunInference.
type inferModel struct {
	// ModelHandler's MaxBatchSize is the rows per forward pass here
	// (0: 64, as beamtune's --infer_batch).
	inference.ModelHandler

	m *inference.Model
}

// setup acquires the model. libtorch handles never leave the worker: they
// are made here, not serialized with the DoFn.
func (im *inferModel) setup(ctx context.Context) error {
	m, err := inference.Acquire(ctx, im.ModelHandler)
	if err != nil {
		return err
	}
	im.m = m
	if im.MaxBatchSize <= 0 {
		im.MaxBatchSize = 64
	}
	return nil
}

func (im *inferModel) teardown() {
	if im.m != nil {
		im.m.Release()
		im.m = nil
	}
}

// scorer scores rows with the model, keeping the [CLS] vectors of hidden
// states layers (none when nil).
func (im *inferModel) scorer(layers []int) trainer.Scorer {
	return func(rows *dataset.Rows) (trainer.EvalResult, error) {
		return im.m.Score(rows, im.MaxBatchSize, layers)
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

// TaskPrediction is one task's prediction of a row, from a bundle.
type TaskPrediction = inference.Decision

// predictionOf is a Prediction holding the model's decision on logits.
func (im *inferModel) predictionOf(logits []float32) Prediction {
	d := im.m.Decide(logits)
	return Prediction{Pred: d.Pred, Probs: d.Probs, PredLabels: d.PredLabels, Score: d.Score}
}

// predictionOfHeads is a bundle's prediction of one row: per head run, its
// decision on logits[k] (that head's logits of the row).
func (im *inferModel) predictionOfHeads(logits [][]float32) Prediction {
	return Prediction{Label: -1, Pred: -1, Tasks: im.m.DecideHeads(logits)}
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
		p := fn.predictionOf(ev.Logits[i])
		p.Model, p.ID, p.Label, p.Length, p.Text = fn.Name, r.ID, r.Label, r.Length, r.Text
		switch fn.m.Task {
		case dataset.MultiLabel:
			p.TrueLabels = r.Labels
		case dataset.Regression:
			p.TrueScore = r.Score
		}
		emit(p)
	}
	return nil
}
