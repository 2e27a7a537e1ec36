package inference

// Example is one input: a text, or a pair of texts for a model trained on
// pairs (Pair set). ID is optional and carried through.
type Example struct {
	ID   string `json:"id,omitempty"`
	Text string `json:"text"`
	Pair string `json:"pair,omitempty"`
}

// Inference is the model's answer for one example, by the kind of its
// task: single-label: Label and its Probability, and every class's
// Probabilities (in the order of Classes); multi-label: Labels, those whose
// probability passes their decision threshold, and every label's
// Probabilities; regression: Score. A multi-task bundle answers per task in
// Tasks instead.
type Inference struct {
	Label         string          `json:"label,omitempty"`
	Probability   float32         `json:"probability,omitempty"`
	Labels        []string        `json:"labels,omitempty"`
	Score         float32         `json:"score,omitempty"`
	Probabilities []float32       `json:"probabilities,omitempty"`
	Classes       []string        `json:"classes,omitempty"`
	Tasks         []TaskInference `json:"tasks,omitempty"`
}

// TaskInference is one task's answer from a multi-task bundle.
type TaskInference struct {
	Task          string    `json:"task"`
	Label         string    `json:"label,omitempty"`
	Probability   float32   `json:"probability,omitempty"`
	Labels        []string  `json:"labels,omitempty"`
	Score         float32   `json:"score,omitempty"`
	Probabilities []float32 `json:"probabilities,omitempty"`
	Classes       []string  `json:"classes,omitempty"`
}

// PredictionResult pairs an example with the model's inference and the id
// of the model that made it (folder and digest), as Python RunInference's
// PredictionResult(example, inference, model_id).
type PredictionResult struct {
	Example   Example   `json:"example"`
	Inference Inference `json:"inference"`
	ModelID   string    `json:"model_id"`
}

// DeadLetter is an example that was not scored, and why.
type DeadLetter struct {
	Example Example `json:"example"`
	Reason  string  `json:"reason"`
	ModelID string  `json:"model_id,omitempty"`
}

// inferenceOf is the Inference for a decision d of a task of that kind
// over classes. Slices are never nil: a nil slice in a Beam schema row is
// a null, which Java runners refuse for a NOT NULL field.
func inferenceOf(kind string, classes []string, d Decision) TaskInference {
	t := TaskInference{Labels: []string{}, Probabilities: []float32{}, Classes: []string{}}
	switch {
	case len(d.Probs) == 0: // regression
		t.Score = d.Score
		return t
	case d.Pred >= 0: // single-label
		t.Label, t.Probability = classes[d.Pred], d.Probs[d.Pred]
	default: // multi-label
		for _, l := range d.PredLabels {
			t.Labels = append(t.Labels, classes[l])
		}
	}
	t.Probabilities, t.Classes = d.Probs, classes
	return t
}
