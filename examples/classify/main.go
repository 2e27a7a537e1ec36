// Command classify is the wordcount of text classification on Beam Go:
// read lines of text, classify each with a BERT-family model folder
// (inference.RunInference), count the labels, and write the results, the
// counts and the lines that could not be scored.
//
// On prism, in this process (a model beamtune published: make demo writes
// out/demo/run/student):
//
//	go run ./examples/classify --input=testdata/sample/*.tsv --model=out/demo/run/student --output=out/classify
//
// Outputs: OUTPUT/predictions.jsonl (one PredictionResult a line),
// OUTPUT/label_counts.txt ("label: count") and OUTPUT/dead_letters.jsonl.
// examples/classify/README.md has the Flink and Dataflow flags.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/textio"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/transforms/stats"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"
	"github.com/beamtune/beamtune/inference"
	"github.com/beamtune/beamtune/storage"
)

var (
	input     = flag.String("input", "", "text files to classify, one text a line (glob; local or gs://)")
	column    = flag.Int("column", 0, "with tab-separated lines, the column holding the text (0: the whole line)")
	modelDir  = flag.String("model", "out/demo/run/student", "model folder (local or gs://): a beamtune-published model or any HF BERT-family classifier with tokenizer.json")
	champion  = flag.String("champion", "", "REGISTRY/NAME: score with the model the registry's CHAMPION names instead of --model")
	output    = flag.String("output", "out/classify", "output folder (local or gs://)")
	batchSize = flag.Int("batch_size", 32, "examples per forward pass")
	threads   = flag.Int("threads", 0, "libtorch threads per worker (0: libtorch's default)")
)

func init() {
	register.Emitter1[string]()
	register.Function1x1(labelOf)
	register.Function2x1(formatCount)
	register.Function1x2(resultJSON)
	register.Function1x2(deadJSON)
	beam.RegisterType(reflect.TypeOf((*textColumn)(nil)).Elem())
}

// textColumn picks a tab-separated column (Column > 0) of each line.
type textColumn struct{ Column int }

func (fn *textColumn) ProcessElement(line string, emit func(string)) {
	if fn.Column > 0 {
		fields := strings.Split(line, "\t")
		if fn.Column > len(fields) {
			return
		}
		line = fields[fn.Column-1]
	}
	emit(line)
}

// labelOf is what the counts count: the label, or the labels of a
// multi-label model joined, or "score" for regression.
func labelOf(r inference.PredictionResult) string {
	switch inf := r.Inference; {
	case inf.Label != "":
		return inf.Label
	case len(inf.Labels) > 0:
		return strings.Join(inf.Labels, "+")
	case len(inf.Probabilities) > 0:
		return "(no label)"
	}
	return "score"
}

func formatCount(label string, n int) string { return fmt.Sprintf("%s: %d", label, n) }

func resultJSON(r inference.PredictionResult) (string, error) {
	data, err := json.Marshal(r)
	return string(data), err
}

func deadJSON(d inference.DeadLetter) (string, error) {
	data, err := json.Marshal(d)
	return string(data), err
}

func main() {
	flag.Parse()
	beam.Init()
	if err := run(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "classify: %v\n", err)
		// A command's failure is its exit status: the one place this
		// program ends itself.
		os.Exit(1)
	}
}

// run builds the pipeline from the flags and runs it.
func run(ctx context.Context) error {
	if *input == "" {
		return errors.New("--input is required")
	}
	p, s := beam.NewPipelineWithRoot()
	lines := textio.Read(s, *input)
	texts := beam.ParDo(s, &textColumn{Column: *column}, lines)

	h := inference.ModelHandler{ModelDir: *modelDir, Threads: *threads, MaxBatchSize: *batchSize}
	var opts []inference.Option
	if *champion != "" {
		c := strings.TrimSuffix(*champion, "/")
		i := strings.LastIndex(c, "/")
		if i <= 0 {
			return fmt.Errorf("--champion=%s: want REGISTRY/NAME", *champion)
		}
		opts = append(opts, inference.WithModelDir(inference.ChampionModelDir(s, c[:i], c[i+1:])))
	}
	results, dead, err := inference.TryRunInference(s, h, texts, opts...)
	if err != nil {
		return err
	}
	counts := stats.Count(s, beam.ParDo(s, labelOf, results))
	textio.Write(s, storage.Join(*output, "label_counts.txt"), beam.ParDo(s, formatCount, counts))
	textio.Write(s, storage.Join(*output, "predictions.jsonl"), beam.ParDo(s, resultJSON, results))
	textio.Write(s, storage.Join(*output, "dead_letters.jsonl"), beam.ParDo(s, deadJSON, dead))
	return beamx.Run(ctx, p)
}
