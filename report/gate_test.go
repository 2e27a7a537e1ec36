package report

import (
	"strings"
	"testing"
)

func gateModel(name string, acc, f1 float64, recalls ...float64) ModelReport {
	m := ModelReport{Name: name, Metrics: Metrics{Accuracy: acc, MacroF1: f1}}
	for i, r := range recalls {
		m.Metrics.PerClass = append(m.Metrics.PerClass, ClassMetrics{Label: string(rune('a' + i)), Recall: r})
	}
	return m
}

func TestGate(t *testing.T) {
	cfg := DefaultGate()
	champ := gateModel("champion", 0.900, 0.900, 0.90, 0.90)
	cases := []struct {
		name       string
		challenger ModelReport
		champion   *ModelReport
		verdict    string
		failed     string // name of a check that must fail
	}{
		{"better", gateModel("c", 0.905, 0.904, 0.91, 0.90), &champ, "blessed", ""},
		{"within noise", gateModel("c", 0.8985, 0.897, 0.89, 0.905), &champ, "blessed", ""},
		{"accuracy drop", gateModel("c", 0.897, 0.899, 0.90, 0.90), &champ, "rejected", "accuracy_drop"},
		{"macro-F1 drop", gateModel("c", 0.900, 0.894, 0.90, 0.90), &champ, "rejected", "macro_f1_drop"},
		{"one class collapses", gateModel("c", 0.901, 0.897, 0.97, 0.875), &champ, "rejected", "recall_drop:b"},
		{"first model", gateModel("c", 0.70, 0.70), nil, "blessed", ""},
	}
	for _, c := range cases {
		g := Gate(cfg, c.challenger, c.champion)
		if g.Verdict != c.verdict {
			t.Errorf("%s: verdict %s, want %s (%v)", c.name, g.Verdict, c.verdict, g.Reasons)
		}
		if c.failed != "" {
			found := false
			for _, ch := range g.Checks {
				if ch.Name == c.failed && !ch.Passed {
					found = true
				}
			}
			if !found || !strings.Contains(strings.Join(g.Reasons, ";"), "champion") {
				t.Errorf("%s: check %s did not fail with a reason: %+v", c.name, c.failed, g)
			}
		}
	}
	floor := cfg
	floor.MinAccuracy = 80
	if g := Gate(floor, gateModel("c", 0.70, 0.70), nil); g.Verdict != "rejected" {
		t.Errorf("a first model under the floor was %s", g.Verdict)
	}
}
