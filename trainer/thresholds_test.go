package trainer

import (
	"math"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
)

func logit(p float64) float32 { return float32(math.Log(p / (1 - p))) }

// TestTuneThresholds: label a is separated anywhere in [0.30, 0.80) and
// keeps the threshold nearest 0.5; label b's positives score 0.2 against
// negatives at 0.1, so its threshold must sit in [0.10, 0.20), nearest 0.5:
// 0.19; label c never occurs and takes the global threshold.
func TestTuneThresholds(t *testing.T) {
	var rows dataset.Rows
	var logits [][]float32
	add := func(labels []int32, pa, pb, pc float64) {
		rows.Append([]dataset.ShardRow{{ID: "x", Label: -1, Labels: labels, InputIDs: []int32{1}, Length: 1}})
		logits = append(logits, []float32{logit(pa), logit(pb), logit(pc)})
	}
	for range 5 {
		add([]int32{0, 1}, 0.8, 0.2, 0.05)
		add(nil, 0.3, 0.1, 0.05)
	}
	th := TuneThresholds(&rows, logits, []string{"a", "b", "c"}, "validation")
	if th.PerLabel[0] != 0.5 || th.PerLabel[1] != 0.19 {
		t.Errorf("per label %v, want 0.5 and 0.19 for a and b", th.PerLabel)
	}
	// Global: in [0.10, 0.20) b is right and a is predicted on every row
	// (F1 2/3): macro-F1 (2/3 + 1 + 0)/3; in [0.30, 0.80) a is right and b
	// never predicted: 1/3. So 0.19, the top of the better range.
	if th.Global != 0.19 || th.PerLabel[2] != th.Global {
		t.Errorf("global %v, c %v", th.Global, th.PerLabel[2])
	}
	if th.TunedOn != "validation (10 rows)" || strings.Join(th.Labels, ",") != "a,b,c" {
		t.Errorf("tuned on %q for %v", th.TunedOn, th.Labels)
	}
	data, err := th.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := model.ParseThresholds(data, "thresholds.json")
	if err != nil || back.PerLabel[1] != 0.19 {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
}

func TestResolveThresholds(t *testing.T) {
	th := &model.Thresholds{Labels: []string{"a", "b"}, PerLabel: []float64{0.3, 0.7}, Global: 0.4}
	cases := []struct {
		th   *model.Thresholds
		rule string
		want []float64
		name string
		err  string
	}{
		{th, "", []float64{0.3, 0.7}, model.ThresholdPerLabel, ""},
		{th, "global", []float64{0.4, 0.4}, model.ThresholdGlobal, ""},
		{th, "0.25", []float64{0.25, 0.25}, model.ThresholdFixed, ""},
		{nil, "", []float64{0.5, 0.5}, model.ThresholdFixed, ""},
		{nil, "per_label", nil, "", "has no thresholds.json"},
		{th, "1.5", nil, "", "want per_label, global or a probability"},
	}
	for _, c := range cases {
		got, name, err := c.th.Resolve(c.rule, 2)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Resolve(%q): %v, want an error with %q", c.rule, err, c.err)
			}
			continue
		}
		if err != nil || name != c.name || len(got) != 2 || got[0] != c.want[0] || got[1] != c.want[1] {
			t.Errorf("Resolve(%q) = %v %q %v, want %v %q", c.rule, got, name, err, c.want, c.name)
		}
	}
	if _, err := model.ParseThresholds([]byte(`{"labels":["a"],"per_label":[2],"global":0.5}`), "x/thresholds.json"); err == nil || !strings.Contains(err.Error(), "x/thresholds.json") {
		t.Errorf("a threshold of 2: %v", err)
	}
}
