package trainer

import (
	"fmt"
	"math"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
)

// EvalResult is a model's logits on a set of rows (ScoreTask turns them
// into the task's loss and metrics).
type EvalResult struct {
	Logits [][]float32 // per row, in row order
	// Hidden holds per row the [CLS] vectors of the hidden states asked of
	// EvaluateHidden, concatenated in the order asked; nil otherwise.
	Hidden [][]float32
}

// Evaluate runs the model without dropout or autograd over rows, in batches
// of consecutive rows (they are length-sorted, so padding stays small).
func Evaluate(m *model.Bert, rows *dataset.Rows, batchSize int) (EvalResult, error) {
	return EvaluateHidden(m, rows, batchSize, nil)
}

// EvaluateHidden is Evaluate that also keeps the [CLS] vectors of the given
// hidden states (0: embeddings, k: layer k's output), for distillation.
func EvaluateHidden(m *model.Bert, rows *dataset.Rows, batchSize int, layers []int) (EvalResult, error) {
	for _, l := range layers {
		if l < 0 || l > m.Config.NumHiddenLayers {
			return EvalResult{}, fmt.Errorf("hidden state %d: the model has 0..%d", l, m.Config.NumHiddenLayers)
		}
	}
	res := EvalResult{Logits: make([][]float32, rows.Len())}
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
			out, err := m.Forward(b, false, len(layers) > 0)
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
			vals, err := model.Float32s(out.Logits)
			out.Free()
			if err != nil {
				return err
			}
			k := len(vals) / len(idx)
			for j, i := range idx {
				res.Logits[i] = vals[j*k : (j+1)*k]
			}
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
