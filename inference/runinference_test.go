package inference

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/core/graph/window"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/passert"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/testing/ptest"
	"github.com/beamtune/beamtune/inference/inferencetest"
)

func init() {
	beam.RegisterFunction(resultLine)
	beam.RegisterFunction(keyedResultLine)
	beam.RegisterFunction(deadLine)
	beam.RegisterFunction(keyedDeadLine)
	beam.RegisterFunction(modelOf)
}

func classifier(t *testing.T, labels ...string) string { return inferencetest.Classifier(t, labels...) }

// direct scores examples outside Beam with the same model: what every
// RunInference result must equal.
func direct(t *testing.T, dir string, exs []Example) []string {
	t.Helper()
	m, err := Acquire(context.Background(), ModelHandler{ModelDir: dir, Device: "cpu"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release()
	var c core
	c.m = m
	var out []string
	for _, ex := range exs {
		p, reason := m.encode(ex)
		if reason != "" {
			continue
		}
		ev, err := m.Score(rowsOf([]pending{p}), 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := PredictionResult{Example: ex, Inference: c.inference(ev.TaskLogits, 0), ModelID: m.ID}
		out = append(out, resultLine(r))
	}
	return out
}

// resultLine is a result as a comparable line: the example, the label and
// the probability to 4 decimals (batching and padding may move the last
// bits of a float32), and the model id's folder.
func resultLine(r PredictionResult) string {
	return fmt.Sprintf("%s|%s|%s|%.4f", r.Example.Text, r.Example.Pair, r.Inference.Label, r.Inference.Probability)
}

func keyedResultLine(k int, r PredictionResult) string { return fmt.Sprintf("%d:%s", k, resultLine(r)) }

func deadLine(d DeadLetter) string { return fmt.Sprintf("%q: %s", d.Example.Text, d.Reason) }

func keyedDeadLine(k int, d DeadLetter) string { return fmt.Sprintf("%d:%s", k, deadLine(d)) }

func modelOf(r PredictionResult) string {
	return fmt.Sprintf("%s %s", r.ModelID[:strings.LastIndex(r.ModelID, "@")], strings.Join(r.Inference.Classes, ","))
}

func texts(n int) []string {
	words := []string{"a gripping, funny film", "dull and far too long", "the cast is wonderful", "i want my money back", "not bad at all"}
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %s", words[i%len(words)], strings.Repeat("really ", i%7))
	}
	return out
}

func values(lines []string) []any {
	out := make([]any, len(lines))
	for i, v := range lines {
		out[i] = v
	}
	return out
}

// TestRunInferenceTexts: unkeyed texts over many bundles give the direct
// scores; bad texts go to the dead letter with their reason; the model is
// loaded once in the process for all bundles.
func TestRunInferenceTexts(t *testing.T) {
	dir := classifier(t, "neg", "pos")
	in := texts(300)
	exs := make([]Example, len(in))
	for i, s := range in {
		exs[i] = Example{Text: s}
	}
	want := direct(t, dir, exs)
	before, bundlesBefore := Stats().ModelLoads, bundles.Load()

	p, s := beam.NewPipelineWithRoot()
	col := beam.Reshuffle(s, beam.CreateList(s, append(in, "", "bad \xff byte", "   ")))
	res, dead := RunInference(s, ModelHandler{ModelDir: dir, Device: "cpu", MaxBatchSize: 16}, col)
	passert.Equals(s, beam.ParDo(s, resultLine, res), values(want)...)
	passert.Equals(s, beam.ParDo(s, deadLine, dead), `"": empty text`, `"bad \xff byte": text is not valid UTF-8 (at byte 4)`, `"   ": empty text`)
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
	if n := Stats().ModelLoads - before; n != 1 {
		t.Errorf("the model was loaded %d times in this process, want once", n)
	}
	if n := bundles.Load() - bundlesBefore; n < 2 {
		t.Errorf("%d bundles: the test wants the model shared by several", n)
	}
}

// TestRunInferenceKeyedAndPairs: keyed input keeps its keys (results and
// dead letters); text pairs are scored as pairs; the token budget cuts
// batches without changing results.
func TestRunInferenceKeyedAndPairs(t *testing.T) {
	dir := classifier(t, "neg", "pos")
	in := texts(40)
	var exs []Example
	for i, s := range in {
		exs = append(exs, Example{Text: s, Pair: in[(i+1)%len(in)]})
	}
	want := direct(t, dir, exs)
	var keyedWant []any
	for i, s := range in {
		keyedWant = append(keyedWant, fmt.Sprintf("%d:%s", i, direct(t, dir, []Example{{Text: s}})[0]))
	}
	p, s := beam.NewPipelineWithRoot()
	pairsRes, _ := RunInference(s, ModelHandler{ModelDir: dir, Device: "cpu", MaxBatchTokens: 200}, beam.CreateList(s, exs))
	passert.Equals(s, beam.ParDo(s, resultLine, pairsRes), values(want)...)
	idx := make([]int, len(in)+1)
	for i := range idx {
		idx[i] = i
	}
	withKeys := beam.ParDo(s, &indexTextFn{Texts: append(in, "")}, beam.CreateList(s, idx))
	res, dead := RunInference(s, ModelHandler{ModelDir: dir, Device: "cpu"}, withKeys)
	passert.Equals(s, beam.ParDo(s, keyedResultLine, res), keyedWant...)
	passert.Equals(s, beam.ParDo(s, keyedDeadLine, dead), fmt.Sprintf(`%d:"": empty text`, len(in)))
	if err := ptest.Run(p); err != nil {
		t.Fatal(err)
	}
}

// indexTextFn keys each text by its index.
type indexTextFn struct{ Texts []string }

func (fn *indexTextFn) ProcessElement(i int) (int, string) { return i, fn.Texts[i] }

func init() { beam.RegisterType(reflect.TypeOf((*indexTextFn)(nil)).Elem()) }

// TestWindowedInputRefused: RunInference emits from bundle-level batches,
// in the global window; windowed input is refused when the pipeline is
// built, not scored into the wrong windows.
func TestWindowedInputRefused(t *testing.T) {
	_, s := beam.NewPipelineWithRoot()
	col := beam.WindowInto(s, window.NewFixedWindows(time.Minute), beam.Create(s, "a text"))
	_, _, err := TryRunInference(s, ModelHandler{ModelDir: "unused"}, col)
	if err == nil || !strings.Contains(err.Error(), "globally windowed input") {
		t.Errorf("fixed windows: %v", err)
	}
}
