package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// ThresholdsFile holds a multi-label model's decision thresholds in its
// folder. transformers ignores it; beamtune's evaluate and predict read it.
const ThresholdsFile = "thresholds.json"

// DefaultThreshold is the probability above which a multi-label class is
// predicted when the model has no tuned thresholds.
const DefaultThreshold = 0.5

// Threshold rules: which of a model's thresholds decide its labels.
const (
	ThresholdPerLabel = "per_label" // each label's own tuned threshold
	ThresholdGlobal   = "global"    // one tuned threshold for every label
	ThresholdFixed    = "fixed"     // a probability given by the user (or DefaultThreshold)
)

// Thresholds are a multi-label model's decision thresholds, tuned on the
// validation split when it was trained: each label's maximizes that label's
// F1 (which maximizes macro-F1 too, as macro-F1 is a sum over labels), and
// the global one maximizes macro-F1 with one value for every label. A label
// without positive examples in the validation split takes the global value.
type Thresholds struct {
	Labels   []string  `json:"labels"`
	PerLabel []float64 `json:"per_label"`
	Global   float64   `json:"global"`
	// TunedOn names the split and the number of its rows.
	TunedOn string `json:"tuned_on"`
}

// ReadThresholds reads the thresholds of the model folder dir (local); nil
// without error when the folder has none.
func ReadThresholds(dir string) (*Thresholds, error) {
	path := filepath.Join(dir, ThresholdsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseThresholds(data, path)
}

// ParseThresholds parses and checks a thresholds file's content; path names
// it in errors.
func ParseThresholds(data []byte, path string) (*Thresholds, error) {
	var t Thresholds
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(t.PerLabel) != len(t.Labels) {
		return nil, fmt.Errorf("%s: %d thresholds for %d labels", path, len(t.PerLabel), len(t.Labels))
	}
	for i, v := range append([]float64{t.Global}, t.PerLabel...) {
		if !(v >= 0 && v <= 1) {
			return nil, fmt.Errorf("%s: threshold %d is %v, want a probability in [0, 1]", path, i, v)
		}
	}
	return &t, nil
}

// Encode is the file's content.
func (t *Thresholds) Encode() ([]byte, error) { return json.MarshalIndent(t, "", "  ") }

// Resolve returns one threshold per label under rule: ThresholdPerLabel,
// ThresholdGlobal, or a probability such as "0.4"; "" means per_label when
// t is not nil, else DefaultThreshold. It also returns the rule's name.
func (t *Thresholds) Resolve(rule string, labels int) ([]float64, string, error) {
	same := func(v float64) []float64 {
		out := make([]float64, labels)
		for i := range out {
			out[i] = v
		}
		return out
	}
	if rule == "" {
		if t == nil {
			return same(DefaultThreshold), ThresholdFixed, nil
		}
		rule = ThresholdPerLabel
	}
	switch rule {
	case ThresholdPerLabel, ThresholdGlobal:
		if t == nil {
			return nil, "", fmt.Errorf("threshold %q: the model has no %s (it was trained before thresholds were tuned, or is not multi-label); give a probability such as 0.5", rule, ThresholdsFile)
		}
		if len(t.PerLabel) != labels {
			return nil, "", fmt.Errorf("%s has %d labels, the model %d", ThresholdsFile, len(t.PerLabel), labels)
		}
		if rule == ThresholdGlobal {
			return same(t.Global), rule, nil
		}
		return append([]float64(nil), t.PerLabel...), rule, nil
	}
	v, err := strconv.ParseFloat(rule, 64)
	if err != nil || !(v >= 0 && v <= 1) {
		return nil, "", fmt.Errorf("threshold %q: want %s, %s or a probability in [0, 1]", rule, ThresholdPerLabel, ThresholdGlobal)
	}
	return same(v), ThresholdFixed, nil
}
