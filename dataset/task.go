package dataset

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Task kinds, named as HF transformers' problem_type, so that an exported
// model folder tells transformers which loss and outputs it has.
const (
	// SingleLabel: one class per text (softmax, cross-entropy).
	SingleLabel = "single_label_classification"
	// MultiLabel: any number of classes per text (sigmoid per class,
	// binary cross-entropy).
	MultiLabel = "multi_label_classification"
	// Regression: one score per text (one output, mean squared error).
	Regression = "regression"
)

// ParseTask checks a task kind; "" is SingleLabel, as before tasks existed.
func ParseTask(s string) (string, error) {
	switch s {
	case "", SingleLabel:
		return SingleLabel, nil
	case MultiLabel, Regression:
		return s, nil
	}
	return "", fmt.Errorf("task %q: want %s, %s or %s", s, SingleLabel, MultiLabel, Regression)
}

// RegressionLabels is the label vocabulary of a regression dataset: its one
// output, the score.
var RegressionLabels = []string{"score"}

// labelSetSeparator joins a multi-label record's labels in Record.Label,
// sorted and each once, so that two records with the same labels in another
// order or spelling of the list compare equal (dedupe votes on it). It is
// never in a label: the parser refuses labels that hold it.
const labelSetSeparator = "\x1f"

// JoinLabelSet is the canonical Record.Label of a multi-label record.
func JoinLabelSet(labels []string) string {
	s := slices.Clone(labels)
	slices.Sort(s)
	return strings.Join(slices.Compact(s), labelSetSeparator)
}

// SplitLabelSet is the labels of a canonical multi-label Record.Label.
func SplitLabelSet(label string) []string {
	if label == "" {
		return nil
	}
	return strings.Split(label, labelSetSeparator)
}

// LabelRange bounds regression labels; a label outside it is rejected.
type LabelRange struct {
	Min, Max float64
}

// ParseLabelRange reads "min:max" (e.g. "0:5"); "" is no range (nil).
func ParseLabelRange(s string) (*LabelRange, error) {
	if s == "" {
		return nil, nil
	}
	lo, hi, ok := strings.Cut(s, ":")
	if !ok {
		return nil, fmt.Errorf("label range %q: want min:max, e.g. 0:5", s)
	}
	var r LabelRange
	var err error
	if r.Min, err = strconv.ParseFloat(strings.TrimSpace(lo), 64); err != nil {
		return nil, fmt.Errorf("label range %q: min: %w", s, err)
	}
	if r.Max, err = strconv.ParseFloat(strings.TrimSpace(hi), 64); err != nil {
		return nil, fmt.Errorf("label range %q: max: %w", s, err)
	}
	if !(r.Min < r.Max) {
		return nil, fmt.Errorf("label range %q: min must be below max", s)
	}
	return &r, nil
}

// parseScore reads a regression label; the reason is "" when it is good.
func parseScore(s string, r *LabelRange) (canonical, reason string) {
	v, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil:
		return "", fmt.Sprintf("label %q is not a number", s)
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "", fmt.Sprintf("label %q is not a finite number", s)
	case r != nil && (v < r.Min || v > r.Max):
		return "", fmt.Sprintf("label %g is outside the label range %g:%g", v, r.Min, r.Max)
	}
	return strconv.FormatFloat(v, 'g', -1, 64), ""
}

// ParseScore reads a canonical regression Record.Label.
func ParseScore(label string) (float32, error) {
	v, err := strconv.ParseFloat(label, 64)
	if err != nil {
		return 0, fmt.Errorf("score %q: %w", label, err)
	}
	return float32(v), nil
}
