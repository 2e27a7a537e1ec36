package report

import (
	"strings"
	"testing"
)

// TestRenderCard: the header holds one model-index result per metric with
// the exact value, hostile strings stay inside their quoted scalars, and
// the body shows intervals where they were measured.
func TestRenderCard(t *testing.T) {
	m := Metrics{Task: "single_label", Accuracy: 0.8123456789, AccuracyCI: Interval{0.79, 0.83}, MacroF1: 0.8, MacroF1CI: Interval{0.78, 0.82},
		MCC: 0.61, PositiveF1: 0.7, PositiveF1CI: Interval{0.6, 0.75}, Labels: []string{"neg", "pos"}}
	results := CardResults(m, "", "gs://b/data\"\n- evil: 1", "test")
	if len(results) != 4 {
		t.Fatalf("%d results, want accuracy, macro_f1, f1, mcc", len(results))
	}
	card := string(RenderCard(Card{Name: "student", BaseModel: "sentence-transformers/all-MiniLM-L6-v2", Datasets: []string{"out/data"},
		Kind: "single_label", Labels: m.Labels, Results: results, Source: "beamtune evaluate", Recipe: []string{"distilled"}}))
	header, body, ok := strings.Cut(strings.TrimPrefix(card, "---\n"), "\n---\n")
	if !strings.HasPrefix(card, "---\n") || !ok {
		t.Fatalf("no YAML header:\n%s", card)
	}
	for _, want := range []string{
		`license: "other"`, `base_model: "sentence-transformers/all-MiniLM-L6-v2"`, "model-index:\n- name: \"student\"",
		"value: 0.8123456789\n", `type: "accuracy"`, `type: "mcc"`, `name: "data\"\n- evil: 1"`, `split: "test"`,
	} {
		if !strings.Contains(header, want) {
			t.Errorf("header lacks %q:\n%s", want, header)
		}
	}
	if strings.Contains(header, "\n- evil") {
		t.Errorf("a dataset name broke out of its scalar:\n%s", header)
	}
	for _, want := range []string{"| - | gs://b/data\" - evil: 1 | test | Accuracy | 0.8123 | 0.7900 – 0.8300 |", "| Matthews correlation | 0.6100 | not measured |", "neg, pos", "- distilled"} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
}
