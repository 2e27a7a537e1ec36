package dataset

import (
	"strings"
	"testing"
)

// labelsAndReasons parses text (with records_test.go's parseAll) and
// returns the records' labels and the dead letters' reasons, in order.
func labelsAndReasons(t *testing.T, text string, cfg ParseConfig) (labels, reasons []string) {
	t.Helper()
	good, bad := parseAll(t, text, cfg)
	for _, r := range good {
		labels = append(labels, r.Label)
	}
	for _, b := range bad {
		reasons = append(reasons, b.Reason)
	}
	return labels, reasons
}

func TestMultiLabelRecords(t *testing.T) {
	cfg := ParseConfig{Format: TSV, Header: true, Fields: Fields{Text: []string{"text"}, Label: "labels"}, Task: MultiLabel}
	labels, reasons := labelsAndReasons(t, "text\tlabels\na\tjoy,anger\nb\tanger , joy,joy\nc\t,\nd\tfear\n", cfg)
	want := []string{JoinLabelSet([]string{"anger", "joy"}), JoinLabelSet([]string{"anger", "joy"}), "fear"}
	if strings.Join(labels, "|") != strings.Join(want, "|") {
		t.Errorf("labels %q, want %q (sorted, each once, trimmed)", labels, want)
	}
	if len(reasons) != 1 || reasons[0] != "missing label" || BadKind(reasons[0]) != "missing_label" {
		t.Errorf("reasons %q, want one missing label", reasons)
	}
	if got := SplitLabelSet(labels[0]); strings.Join(got, ",") != "anger,joy" {
		t.Errorf("SplitLabelSet = %q", got)
	}

	// A vocabulary refuses the labels outside it, naming the label.
	cfg.Labels, cfg.LabelSeparator = []string{"joy", "anger"}, ";"
	_, reasons = labelsAndReasons(t, "text\tlabels\na\tjoy;sadness\n", cfg)
	if len(reasons) != 1 || reasons[0] != `unknown label "sadness"` {
		t.Errorf("reasons %q", reasons)
	}

	// JSONL takes an array, or a delimited string.
	jcfg := ParseConfig{Format: JSONL, Fields: Fields{Text: []string{"t"}, Label: "l"}, Task: MultiLabel}
	labels, reasons = labelsAndReasons(t, `{"t":"a","l":["x",2,"x"]}`+"\n"+`{"t":"b","l":"y,x"}`+"\n"+`{"t":"c","l":[{"k":1}]}`+"\n"+`{"t":"d","l":[]}`+"\n", jcfg)
	if strings.Join(labels, "|") != JoinLabelSet([]string{"2", "x"})+"|"+JoinLabelSet([]string{"x", "y"}) {
		t.Errorf("JSONL labels %q", labels)
	}
	if len(reasons) != 2 || !strings.Contains(reasons[0], "not a string or number") || reasons[1] != "missing label" {
		t.Errorf("JSONL reasons %q", reasons)
	}
	for _, r := range reasons[:1] {
		if BadKind(r) != "invalid_label" {
			t.Errorf("BadKind(%q) = %q", r, BadKind(r))
		}
	}
}

func TestRegressionRecords(t *testing.T) {
	rng, err := ParseLabelRange("0:5")
	if err != nil {
		t.Fatal(err)
	}
	cfg := ParseConfig{Format: TSV, Header: true, Fields: Fields{Text: []string{"a"}, Pair: "b", Label: "score"}, Task: Regression, LabelRange: rng}
	labels, reasons := labelsAndReasons(t, "a\tb\tscore\nx\ty\t3.800\nx\tz\t5.000\nx\tw\tfive\nx\tv\t5.2\nx\tu\tNaN\nx\tt\t-0.1\n", cfg)
	if strings.Join(labels, "|") != "3.8|5" {
		t.Errorf("labels %q, want canonical numbers", labels)
	}
	want := []string{`label "five" is not a number`, "label 5.2 is outside the label range 0:5", `label "NaN" is not a finite number`, "label -0.1 is outside the label range 0:5"}
	if strings.Join(reasons, "|") != strings.Join(want, "|") {
		t.Errorf("reasons %q, want %q", reasons, want)
	}
	for _, r := range reasons {
		if BadKind(r) != "invalid_label" {
			t.Errorf("BadKind(%q) = %q", r, BadKind(r))
		}
	}
	if v, err := ParseScore(labels[0]); err != nil || v != 3.8 {
		t.Errorf("ParseScore = %v, %v", v, err)
	}
	for _, bad := range []string{"5", "5:0", "a:1", "1:b", "3:3"} {
		if _, err := ParseLabelRange(bad); err == nil {
			t.Errorf("ParseLabelRange(%q) accepted", bad)
		}
	}
	if _, err := ParseTask("ranking"); err == nil {
		t.Error("ParseTask accepted an unknown task")
	}
}

func TestLabelNames(t *testing.T) {
	names := map[string]string{"0": "admiration", "3": "annoyance", "27": "neutral"}
	cfg := ParseConfig{Format: TSV, Fields: Fields{Text: []string{"1"}, Label: "2"}, Task: MultiLabel, LabelNames: names}
	labels, reasons := labelsAndReasons(t, "a\t3,0\nb\t27\nc\t5\n", cfg)
	if strings.Join(labels, "|") != JoinLabelSet([]string{"admiration", "annoyance"})+"|neutral" {
		t.Errorf("labels %q", labels)
	}
	if len(reasons) != 1 || reasons[0] != `unknown label "5" (not in the label names)` {
		t.Errorf("reasons %q", reasons)
	}
	single := ParseConfig{Format: TSV, Fields: Fields{Text: []string{"1"}, Label: "2"}, LabelNames: names, Labels: []string{"admiration", "annoyance", "neutral"}}
	labels, reasons = labelsAndReasons(t, "a\t27\nb\t0\nc\tneutral\n", single)
	if strings.Join(labels, "|") != "neutral|admiration" || len(reasons) != 1 {
		t.Errorf("single-label: labels %q reasons %q", labels, reasons)
	}
}

// TestHeaderBOM reads a header that starts with a UTF-8 byte-order mark, as
// MRPC's does: the first column keeps its name.
func TestHeaderBOM(t *testing.T) {
	for _, f := range []Format{TSV, CSV} {
		sep := "\t"
		if f == CSV {
			sep = ","
		}
		cfg := ParseConfig{Format: f, Header: true, Fields: Fields{Text: []string{"text"}, Label: "Quality"}}
		labels, reasons := labelsAndReasons(t, "\xef\xbb\xbfQuality"+sep+"text\n1"+sep+"a\n", cfg)
		if len(labels) != 1 || labels[0] != "1" || len(reasons) != 0 {
			t.Errorf("%s: labels %q reasons %q", f, labels, reasons)
		}
	}
}
