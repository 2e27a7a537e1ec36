package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// CardFile is the model card every published model folder carries: HF's
// format, a YAML header (model-index results, datasets, base model,
// license) and a Markdown body.
const CardFile = "README.md"

// Card is what a model card says.
type Card struct {
	Name      string   // the model's name (its folder: teacher, student, ...)
	BaseModel string   // the model it was fine-tuned or distilled from
	Datasets  []string // the prepared datasets it learned from
	License   string   // an SPDX id; empty: "other" (the team sets it)
	Kind      string   // the task kind: single_label, multi_label, regression
	Labels    []string
	// Results are the model's scores, all from one Source.
	Results []CardResult
	Source  string   // where Results come from, e.g. "the validation split during training"
	Recipe  []string // how it was made, one line each (fine-tuning, distillation, compression)
	Limits  []string // what it is not good for, beyond the general caveats
}

// CardResult is one score.
type CardResult struct {
	Task    string // the task, for a multi-task bundle
	Dataset string
	Split   string
	Metric  string // a metric name (MetricAccuracy, ...)
	Value   float64
	CI      *Interval // 95%, when measured
}

// RenderCard writes c as a README.md. Every string in the YAML header is
// JSON-quoted (a valid YAML double-quoted scalar) and every number written
// in Go's shortest round-trip form, so the header parses back to exactly
// the values of the report.
func RenderCard(c Card) []byte {
	var b bytes.Buffer
	q := func(s string) string { data, _ := json.Marshal(s); return string(data) }
	num := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	license := c.License
	if license == "" {
		license = "other"
	}
	b.WriteString("---\n")
	fmt.Fprintf(&b, "license: %s\n", q(license))
	if c.BaseModel != "" {
		fmt.Fprintf(&b, "base_model: %s\n", q(c.BaseModel))
	}
	if len(c.Datasets) > 0 {
		b.WriteString("datasets:\n")
		for _, d := range c.Datasets {
			fmt.Fprintf(&b, "- %s\n", q(d))
		}
	}
	b.WriteString("library_name: \"transformers\"\npipeline_tag: \"text-classification\"\ntags:\n- \"beamtune\"\n- \"text-classification\"\n")
	if len(c.Results) > 0 {
		fmt.Fprintf(&b, "model-index:\n- name: %s\n  results:\n", q(c.Name))
		for _, r := range c.Results {
			name := cardDatasetName(r)
			fmt.Fprintf(&b, "  - task:\n      type: \"text-classification\"\n      name: \"Text Classification\"\n")
			fmt.Fprintf(&b, "    dataset:\n      name: %s\n      type: %s\n      split: %s\n", q(name), q(name), q(r.Split))
			fmt.Fprintf(&b, "    metrics:\n    - type: %s\n      value: %s\n      name: %s\n", q(r.Metric), num(r.Value), q(metricTitle(r.Metric)))
		}
	}
	b.WriteString("---\n\n")
	fmt.Fprintf(&b, "# %s\n\n", cardText(c.Name))
	fmt.Fprintf(&b, "A BERT-family text classifier (%s) made by beamtune", kindText(c.Kind))
	if c.BaseModel != "" {
		fmt.Fprintf(&b, " from `%s`", cardText(c.BaseModel))
	}
	b.WriteString(". It loads in HF transformers as `AutoModelForSequenceClassification`.\n\n")
	b.WriteString("## Intended use\n\n")
	fmt.Fprintf(&b, "Classifying texts like those of its training data into %s. ", cardText(labelText(c.Kind, c.Labels)))
	b.WriteString("Check it on your own held-out data before relying on it elsewhere.\n\n")
	b.WriteString("## Training data\n\n")
	if len(c.Datasets) == 0 {
		b.WriteString("Not recorded.\n\n")
	}
	for _, d := range c.Datasets {
		fmt.Fprintf(&b, "- `%s`\n", cardText(d))
	}
	if len(c.Datasets) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("## Metrics\n\n")
	if len(c.Results) == 0 {
		b.WriteString("None recorded.\n\n")
	} else {
		fmt.Fprintf(&b, "From %s.\n\n| task | dataset | split | metric | value | 95%% interval |\n|---|---|---|---|---|---|\n", c.Source)
		for _, r := range c.Results {
			ci := "not measured"
			if r.CI != nil {
				ci = fmt.Sprintf("%.4f – %.4f", r.CI.Low, r.CI.High)
			}
			task := r.Task
			if task == "" {
				task = "-"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %.4f | %s |\n", cardText(task), cardText(r.Dataset), cardText(r.Split), metricTitle(r.Metric), r.Value, ci)
		}
		b.WriteString("\n")
	}
	b.WriteString("## How it was made\n\n")
	for _, line := range c.Recipe {
		fmt.Fprintf(&b, "- %s\n", line)
	}
	if len(c.Recipe) == 0 {
		b.WriteString("Not recorded.\n")
	}
	b.WriteString("\n## Limits\n\n")
	for _, line := range append(c.Limits,
		"It inherits the biases of its base model and of its training data.",
		"Texts longer than its maximum sequence length are truncated.",
		"Scores are measured on the split named above; other data may score lower.") {
		fmt.Fprintf(&b, "- %s\n", line)
	}
	return b.Bytes()
}

func cardDatasetName(r CardResult) string {
	if r.Task != "" {
		return r.Task
	}
	name := strings.TrimSuffix(r.Dataset, "/")
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// metricTitles are the metrics' display names in a card.
var metricTitles = map[string]string{
	MetricAccuracy: "Accuracy", MetricF1: "F1", MetricMCC: "Matthews correlation", MetricMacroF1: "Macro F1",
	MetricMicroF1: "Micro F1", MetricSamplesF1: "Samples F1", MetricPearson: "Pearson", MetricSpearman: "Spearman",
	MetricMean: "Mean over tasks",
}

func metricTitle(m string) string {
	if t, ok := metricTitles[m]; ok {
		return t
	}
	return m
}

// CardResults are the card entries for an evaluation's metrics m of a
// task kind: every metric the gate can compare that m holds, with its
// interval.
func CardResults(m Metrics, task, dataset, split string) []CardResult {
	var out []CardResult
	for _, name := range GateMetrics(m.Task) {
		v, ci, ok := m.Value(name)
		if !ok {
			continue
		}
		r := CardResult{Task: task, Dataset: dataset, Split: split, Metric: name, Value: v}
		if ci != (Interval{}) {
			ci := ci
			r.CI = &ci
		}
		out = append(out, r)
	}
	return out
}

func kindText(kind string) string {
	switch kind {
	case "multi_label":
		return "multi-label"
	case "regression":
		return "regression"
	case "multi_task":
		return "multi-task"
	}
	return "single-label"
}

func labelText(kind string, labels []string) string {
	switch {
	case kind == "regression":
		return "a score"
	case len(labels) == 0:
		return "its labels"
	case len(labels) > 12:
		return fmt.Sprintf("%d labels (%s, …)", len(labels), strings.Join(labels[:12], ", "))
	}
	return strings.Join(labels, ", ")
}

// cardText keeps a value from a path or a label on one Markdown line and
// inside its table cell.
func cardText(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ", "|", "\\|", "`", "'").Replace(s)
}
