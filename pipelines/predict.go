package pipelines

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/transforms"
)

// PredictOptions configures the predict pipeline.
type PredictOptions struct {
	Model  string // published model folder
	Inputs []string
	Format string
	Header bool
	Fields dataset.Fields // Label optional: when set, each row also carries its true label

	MaxLength      int
	MaxRecordBytes int
	Output         string // folder for predictions-*.jsonl and rejects.jsonl
	Shards         int
	BatchSize      int
	Device         string
	Threads        int
	// Threshold decides a multi-label model's labels: "" or "per_label"
	// (the thresholds tuned on validation), "global", or a probability.
	Threshold string
	// Quantize runs the model's linear layers in int8 ("int8") or float32 ("" or "none").
	Quantize string
	// Precision is fp32 (""), bf16, fp16 or auto (see
	// inference.ModelHandler.Precision).
	Precision string
	// Tasks, for a multi-task bundle, are the tasks to predict, all on one
	// encoder pass per batch (none: every task of the bundle).
	Tasks  []string
	Runner string
	Security
}

// PredictResult lists what predict wrote.
type PredictResult struct {
	Files      []string
	DeadLetter string // "" when nothing was rejected
}

// RunPredict scores a corpus with a published model: records are read and
// validated as prepare does (bad ones to Output/rejects.jsonl), tokenized
// with the model's tokenizer, scored in batches on the workers, and written as
// JSONL shards of {id, label, probability, probabilities, true_label}.
func RunPredict(ctx context.Context, o PredictOptions) (*PredictResult, error) {
	if err := model.CheckQuantize(o.Quantize); err != nil {
		return nil, badInput(fmt.Errorf("--quantize: %w", err))
	}
	if err := checkPrecision(o.Precision, o.Device, o.Quantize); err != nil {
		return nil, err
	}
	cfg, err := CheckModelDir(ctx, o.Model, ModelUse{Role: "--model", Tokenizer: true, Head: true, Bundle: true, Trust: o.Trust})
	if err != nil {
		return nil, err
	}
	heads, err := predictHeads(ctx, o)
	if err != nil {
		return nil, err
	}
	task := cfg.Task()
	labels := cfg.Labels()
	if heads != nil {
		task, labels = "", nil
	} else {
		if task != dataset.SingleLabel && o.Fields.Label != "" {
			return nil, badInputf("--label_field: true labels are read for %s models only for now; %s is a %s model", dataset.SingleLabel, o.Model, task)
		}
		if _, _, err := CheckThreshold(ctx, o.Model, task, o.Threshold, len(labels)); err != nil {
			return nil, err
		}
	}
	files, err := resolveInputs(ctx, PrepareOptions{Inputs: o.Inputs, Format: o.Format, Header: o.Header, Fields: o.Fields,
		MaxRecordBytes: o.MaxRecordBytes, Labels: labels, Output: o.Output, Fractions: transforms.Fractions{Train: 1}})
	if err != nil {
		return nil, err
	}
	if err := CheckOutput(ctx, o.Output); err != nil {
		return nil, err
	}
	if o.Shards <= 0 {
		o.Shards = 1
	}
	if o.MaxLength <= 0 {
		o.MaxLength = 128
	}
	p, s := beam.NewPipelineWithRoot()
	inputs := beam.Reshuffle(s, beam.CreateList(s.Scope("Inputs"), files))
	records, bad, _ := beam.ParDo3(s.Scope("Read"), &transforms.ReadRecordsFn{}, inputs)
	records = beam.Reshuffle(s.Scope("Spread"), records)
	labelCol := beam.Create(s.Scope("ModelLabels"), append([]string{}, labels...)) // one element: the label list (empty for a bundle)
	examples, badLabels := beam.ParDo2(s.Scope("Tokenize"), &transforms.TokenizeFn{TokenizerPath: storage.Join(o.Model, model.TokenizerFile), MaxLength: o.MaxLength},
		records, beam.SideInput{Input: labelCol})
	fn := &transforms.PredictExamplesFn{Labels: labels, Name: "model"}
	fn.ModelDir, fn.MaxBatchSize, fn.Device, fn.Threads, fn.Threshold = o.Model, o.BatchSize, o.Device, o.Threads, o.Threshold
	fn.Trust = o.Trust
	fn.Quantize, fn.Precision = o.Quantize, o.Precision
	for _, h := range heads {
		fn.Tasks = append(fn.Tasks, h.Name)
	}
	preds := beam.ParDo(s.Scope("Predict"), fn, examples)
	keyed := beam.ParDo(s.Scope("KeyByShard"), &transforms.KeyPredictionsFn{Shards: o.Shards}, preds)
	beam.ParDo(s.Scope("Write"), &transforms.WritePredictionsFn{Dir: o.Output, Shards: o.Shards, Labels: labels, Task: task, Heads: heads}, beam.GroupByKey(s, keyed))
	deadLetter := storage.Join(o.Output, dataset.DeadLetterFile)
	beam.ParDo(s.Scope("WriteDeadLetter"), &writeDeadLetterFn{Path: deadLetter},
		beam.GroupByKey(s, beam.ParDo(s, keyDeadLetter, beam.Flatten(s, bad, badLabels))))
	if _, err := run(ctx, o.Runner, p); err != nil {
		return nil, err
	}
	res := &PredictResult{}
	res.Files, err = storage.Glob(ctx, storage.Join(o.Output, transforms.PredictionsGlob))
	if err != nil {
		return nil, err
	}
	sort.Strings(res.Files)
	ok, err := storage.Exists(ctx, deadLetter)
	if err != nil {
		return nil, err
	}
	if ok {
		res.DeadLetter = deadLetter
	}
	return res, nil
}

// predictHeads is the heads predict runs: for a multi-task bundle, the
// tasks --tasks names (all by default), each checked (a multi-label head's
// threshold rule against its task folder); nil for a single-task model.
func predictHeads(ctx context.Context, o PredictOptions) ([]model.TaskHead, error) {
	all, err := BundleTasks(ctx, o.Model)
	if err != nil {
		return nil, err
	}
	if all == nil {
		if len(o.Tasks) > 0 {
			return nil, badInputf("--tasks: %s is a single-task model (a multi-task bundle has %s)", o.Model, model.TasksFile)
		}
		return nil, nil
	}
	if o.Fields.Label != "" {
		return nil, badInputf("--label_field: true labels are not read for multi-task bundles; predict with one task's folder, %s", storage.Join(o.Model, model.TasksDir, all[0].Name))
	}
	names := make([]string, len(all))
	for i, h := range all {
		names[i] = h.Name
	}
	want := o.Tasks
	if len(want) == 0 {
		want = names
	}
	var heads []model.TaskHead
	for _, n := range want {
		i := slices.Index(names, n)
		if i < 0 {
			return nil, badInputf("--tasks: %s has no task %q (tasks: %s)", o.Model, n, strings.Join(names, ", "))
		}
		if slices.ContainsFunc(heads, func(h model.TaskHead) bool { return h.Name == n }) {
			return nil, badInputf("--tasks: %s given twice", n)
		}
		h := all[i]
		if _, _, err := CheckThreshold(ctx, storage.Join(o.Model, model.TasksDir, n), h.ProblemType, o.Threshold, len(h.Labels)); err != nil {
			return nil, err
		}
		heads = append(heads, h)
	}
	return heads, nil
}
