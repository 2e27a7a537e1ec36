package trainer

import (
	"fmt"
	"math"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/sugarme/gotch/ts"
)

// EvalResult is a model's logits on a set of rows (ScoreTask turns them
// into the task's loss and metrics).
type EvalResult struct {
	Logits [][]float32 // per row, in row order (EvaluateTasks: the first task's)
	// TaskLogits, from EvaluateTasks, holds per task asked its logits per row.
	TaskLogits [][][]float32
	// Hidden holds per row the [CLS] vectors of the hidden states asked of
	// EvaluateHidden, concatenated in the order asked; nil otherwise.
	Hidden [][]float32
}

// Evaluate runs the model without dropout or autograd over rows, in batches
// of consecutive rows (they are length-sorted, so padding stays small).
func Evaluate(m *model.Bert, rows *dataset.Rows, batchSize int) (EvalResult, error) {
	return evaluate(m, rows, batchSize, nil, nil)
}

// EvaluateHidden is Evaluate that also keeps the [CLS] vectors of the given
// hidden states (0: embeddings, k: layer k's output), for distillation.
func EvaluateHidden(m *model.Bert, rows *dataset.Rows, batchSize int, layers []int) (EvalResult, error) {
	return evaluate(m, rows, batchSize, layers, nil)
}

// EvaluateTasks is Evaluate for the named heads of a multi-task model (none:
// a single-task model's classifier), every head on one encoder pass per batch.
func EvaluateTasks(m *model.Bert, rows *dataset.Rows, batchSize int, tasks []string) (EvalResult, error) {
	return evaluate(m, rows, batchSize, nil, tasks)
}

func evaluate(m *model.Bert, rows *dataset.Rows, batchSize int, layers []int, tasks []string) (EvalResult, error) {
	for _, l := range layers {
		if l < 0 || l > m.Config.NumHiddenLayers {
			return EvalResult{}, fmt.Errorf("hidden state %d: the model has 0..%d", l, m.Config.NumHiddenLayers)
		}
	}
	heads := max(len(tasks), 1)
	res := EvalResult{TaskLogits: make([][][]float32, heads)}
	for k := range res.TaskLogits {
		res.TaskLogits[k] = make([][]float32, rows.Len())
	}
	res.Logits = res.TaskLogits[0]
	if len(layers) > 0 {
		res.Hidden = make([][]float32, rows.Len())
	}
	err := model.NoGrad(func() error {
		for lo := 0; lo < rows.Len(); lo += batchSize {
			idx := make([]int, 0, batchSize)
			for i := lo; i < min(lo+batchSize, rows.Len()); i++ {
				idx = append(idx, i)
			}
			b, teacher, err := batchTensors(rows, idx, int64(m.Config.PadTokenID), m.Device)
			if err != nil {
				return err
			}
			out, err := m.ForwardTasks(b, tasks, false, len(layers) > 0)
			freeBatch(b, teacher)
			if err != nil {
				return err
			}
			for _, l := range layers {
				cls, err := model.CLSVectors(out.Hidden[l])
				if err != nil {
					out.Free()
					return err
				}
				w := len(cls) / len(idx)
				for j, i := range idx {
					res.Hidden[i] = append(res.Hidden[i], cls[j*w:(j+1)*w]...)
				}
			}
			logits := out.TaskLogits
			if len(tasks) == 0 {
				logits = []*ts.Tensor{out.Logits}
			}
			for k, l := range logits {
				vals, err := model.Float32s(l)
				if err != nil {
					out.Free()
					return err
				}
				n := len(vals) / len(idx)
				for j, i := range idx {
					res.TaskLogits[k][i] = vals[j*n : (j+1)*n]
				}
			}
			out.Free()
		}
		return nil
	})
	return res, err
}

// Argmax is the index of the largest value (the first of equals).
func Argmax(v []float32) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}

// crossEntropy is -log softmax(logits)[y], computed stably in float64.
func crossEntropy(logits []float32, y int) float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	return mx + math.Log(sum) - float64(logits[y])
}
