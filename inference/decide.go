package inference

import (
	"math"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/trainer"
)

// Decision is what a model's logits for one example say, by task kind:
// single-label: Pred and the softmax Probs; multi-label: the per-label
// sigmoid Probs and PredLabels, those above their threshold; regression:
// Score. Pred is -1 when not single-label.
type Decision struct {
	Pred       int32     `json:"pred"`
	Probs      []float32 `json:"probs"`
	PredLabels []int32   `json:"pred_labels,omitempty"`
	Score      float32   `json:"score,omitempty"`
}

// Decide turns one example's logits into the model's decision.
func (im *Model) Decide(logits []float32) Decision { return Decide(im.Task, im.thresholds, logits) }

// DecideHeads is a bundle's decision per head run, from logits[k] (head
// k's logits of the example).
func (im *Model) DecideHeads(logits [][]float32) []Decision {
	out := make([]Decision, len(im.Heads))
	for k, h := range im.Heads {
		out[k] = Decide(h.ProblemType, im.headThresholds[k], logits[k])
	}
	return out
}

// Decide turns logits into a decision for a task kind. A multi-label class
// is predicted when its probability is above its threshold (thresholds[j];
// model.DefaultThreshold for all when nil).
func Decide(task string, thresholds []float64, logits []float32) Decision {
	switch task {
	case dataset.MultiLabel:
		d := Decision{Pred: -1, Probs: make([]float32, len(logits)), PredLabels: []int32{}}
		for j, z := range logits {
			d.Probs[j] = float32(1 / (1 + math.Exp(-float64(z))))
			t := model.DefaultThreshold
			if thresholds != nil {
				t = thresholds[j]
			}
			if float64(d.Probs[j]) > t {
				d.PredLabels = append(d.PredLabels, int32(j))
			}
		}
		return d
	case dataset.Regression:
		return Decision{Pred: -1, Score: logits[0]}
	}
	return Decision{Pred: int32(trainer.Argmax(logits)), Probs: Softmax(logits)}
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
