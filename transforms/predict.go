package transforms

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/storage"
)

func init() {
	register.DoFn3x1[context.Context, Example, func(Prediction), error](&PredictExamplesFn{})
	register.DoFn2x0[Prediction, func(int, Prediction)](&KeyPredictionsFn{})
	register.DoFn4x1[context.Context, int, func(*Prediction) bool, func(string), error](&WritePredictionsFn{})
	register.Emitter2[int, Prediction]()
	register.Emitter1[string]()
	register.Iter1[Prediction]()
}

// PredictExamplesFn scores tokenized examples in batches: it buffers a
// bundle's examples and runs a forward pass per MaxBatchSize of them (the model
// is loaded once per worker in Setup, as for the shard-level inference).
type PredictExamplesFn struct {
	inferModel
	Labels []string // class names, for the output
	Name   string

	buf []Example
}

func (fn *PredictExamplesFn) Setup(ctx context.Context) error { return fn.setup(ctx) }
func (fn *PredictExamplesFn) Teardown()                       { fn.teardown() }

// ProcessElement buffers the example and scores a full batch.
func (fn *PredictExamplesFn) ProcessElement(ctx context.Context, e Example, emit func(Prediction)) error {
	fn.buf = append(fn.buf, e)
	if len(fn.buf) >= fn.MaxBatchSize {
		return fn.flush(ctx, emit)
	}
	return nil
}

// FinishBundle scores what is left of the bundle.
func (fn *PredictExamplesFn) FinishBundle(ctx context.Context, emit func(Prediction)) error {
	return fn.flush(ctx, emit)
}

func (fn *PredictExamplesFn) flush(ctx context.Context, emit func(Prediction)) error {
	if len(fn.buf) == 0 {
		return nil
	}
	// Sort by length so a batch pads little; the order of outputs is free.
	sort.Slice(fn.buf, func(i, j int) bool { return fn.buf[i].Length < fn.buf[j].Length })
	var rows dataset.Rows
	for _, e := range fn.buf {
		rows.Append([]dataset.ShardRow{{ID: e.ID, Label: e.Label, InputIDs: e.InputIDs, TokenTypeIDs: e.TokenTypeIDs, Length: e.Length, Text: e.Text}})
	}
	ev, err := fn.scorer(nil)(&rows)
	if err != nil {
		return err
	}
	for i, e := range fn.buf {
		var p Prediction
		if fn.m.Heads != nil {
			row := make([][]float32, len(ev.TaskLogits))
			for k := range row {
				row[k] = ev.TaskLogits[k][i]
			}
			p = fn.predictionOfHeads(row)
		} else {
			p = fn.predictionOf(ev.Logits[i])
		}
		p.Model, p.ID, p.Label, p.Length, p.Text = fn.Name, e.ID, e.Label, e.Length, e.Text
		emit(p)
	}
	inferRows.Inc(ctx, int64(len(fn.buf)))
	fn.buf = fn.buf[:0]
	return nil
}

// KeyPredictionsFn spreads predictions over Shards output files by id hash.
type KeyPredictionsFn struct{ Shards int }

func (fn *KeyPredictionsFn) ProcessElement(p Prediction, emit func(int, Prediction)) {
	h := fnv.New32a()
	h.Write([]byte(p.ID))
	emit(int(h.Sum32()%uint32(max(1, fn.Shards))), p)
}

// Prediction files: predictions-00000-of-00004.jsonl, one PredictionRow a line.
const (
	predictionsFile = "predictions-%05d-of-%05d.jsonl"
	PredictionsGlob = "predictions-*.jsonl"
)

// PredictionRow is one line of predict's JSONL output: for a single-label
// model the label, its probability and every class's; for a multi-label
// model the labels whose probability passes the threshold and every label's
// probability; for a regression model the score. A multi-task bundle's
// line has the same per task, under tasks.<task>.
type PredictionRow struct {
	ID string `json:"id"`
	TaskColumns
	TrueLabel string                 `json:"true_label,omitempty"`
	Tasks     map[string]TaskColumns `json:"tasks,omitempty"`
}

// TaskColumns are one task's prediction in predict's output.
type TaskColumns struct {
	Label         string             `json:"label,omitempty"`
	Probability   float32            `json:"probability,omitempty"`
	Labels        *[]string          `json:"labels,omitempty"`
	Score         *float32           `json:"score,omitempty"`
	Probabilities map[string]float32 `json:"probabilities,omitempty"`
}

// WritePredictionsFn writes one output shard, sorted by id, atomically.
type WritePredictionsFn struct {
	Dir    string
	Shards int
	Labels []string
	Task   string // the model's problem_type ("": single-label)
	// Heads, for a multi-task bundle, are the tasks the predictions hold,
	// in order (Labels and Task are then unused).
	Heads []model.TaskHead
}

// columnsOf is a prediction's output columns for a task of that kind and labels.
func columnsOf(task string, labels []string, pred int32, probs []float32, predLabels []int32, score float32) TaskColumns {
	var c TaskColumns
	if len(probs) > 0 {
		c.Probabilities = map[string]float32{}
		for i, v := range probs {
			c.Probabilities[labels[i]] = v
		}
	}
	switch task {
	case dataset.MultiLabel:
		names := make([]string, 0, len(predLabels))
		for _, l := range predLabels {
			names = append(names, labels[l])
		}
		c.Labels = &names
	case dataset.Regression:
		c.Score = &score
	default:
		c.Label, c.Probability = labels[pred], probs[pred]
	}
	return c
}

func (fn *WritePredictionsFn) ProcessElement(ctx context.Context, shard int, preds func(*Prediction) bool, emit func(string)) error {
	var rows []PredictionRow
	var p Prediction
	for preds(&p) {
		r := PredictionRow{ID: p.ID}
		if fn.Heads != nil {
			if len(p.Tasks) != len(fn.Heads) {
				return fmt.Errorf("prediction %s has %d tasks, want %d", p.ID, len(p.Tasks), len(fn.Heads))
			}
			r.Tasks = map[string]TaskColumns{}
			for k, h := range fn.Heads {
				tp := p.Tasks[k]
				r.Tasks[h.Name] = columnsOf(h.ProblemType, h.Labels, tp.Pred, tp.Probs, tp.PredLabels, tp.Score)
			}
		} else {
			r.TaskColumns = columnsOf(fn.Task, fn.Labels, p.Pred, p.Probs, p.PredLabels, p.Score)
			if fn.Task != dataset.MultiLabel && fn.Task != dataset.Regression && p.Label >= 0 {
				r.TrueLabel = fn.Labels[p.Label]
			}
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ID < rows[j].ID })
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, r := range rows {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	path := storage.Join(fn.Dir, fmt.Sprintf(predictionsFile, shard, fn.Shards))
	if err := storage.WriteFile(ctx, path, buf.Bytes()); err != nil {
		return err
	}
	emit(path)
	return nil
}
