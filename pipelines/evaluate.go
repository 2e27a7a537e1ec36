package pipelines

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/inference"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/trainer"
	"github.com/beamtune/beamtune/transforms"
)

func init() {
	register.DoFn4x1[context.Context, []byte, func(*transforms.ModelMetrics) bool, func(*transforms.ModelSliceMetrics) bool, error](&writeEvalPartsFn{})
	register.Iter1[transforms.ModelMetrics]()
	register.Iter1[transforms.ModelSliceMetrics]()
	beam.RegisterType(reflect.TypeOf((*writeEvalPartsFn)(nil)).Elem())
}

// NamedModel is a model folder under the name the report gives it.
type NamedModel struct {
	Name string
	Dir  string
	// Quantize overrides EvaluateOptions.Quantize for this model, so one
	// report can hold a folder in float32 and in int8 side by side.
	Quantize string
}

// ParseNamedModel reads "name=dir" or "name=dir,quantize=int8".
func ParseNamedModel(s string) (NamedModel, error) {
	name, dir, ok := strings.Cut(s, "=")
	if !ok || name == "" || dir == "" {
		return NamedModel{}, fmt.Errorf("--model %q: want name=folder, e.g. teacher=out/run/teacher", s)
	}
	nm := NamedModel{Name: name, Dir: dir}
	if d, opt, ok := strings.Cut(dir, ","); ok {
		mode, ok := strings.CutPrefix(opt, "quantize=")
		if !ok || model.CheckQuantize(mode) != nil {
			return NamedModel{}, fmt.Errorf("--model %q: after the folder only quantize=none, quantize=int8 or quantize=int8_per_channel may follow", s)
		}
		nm.Dir, nm.Quantize = d, mode
	}
	return nm, nil
}

// EvaluateOptions configures the evaluate pipeline.
type EvaluateOptions struct {
	Data   string       // prepared dataset folder
	Split  string       // split to score (default: test if present, else validation)
	Models []NamedModel // the first is the reference of the comparisons (the teacher)
	// Champion is the current production model; Challenger names the model
	// (one of Models) gated against it.
	Champion   string
	Challenger string
	Gate       report.GateConfig
	Output     string // report folder (local or gs://)
	// Threshold decides multi-label models' labels: "" or "per_label" (each
	// model's thresholds tuned on validation), "global", or a probability.
	Threshold string
	// Quantize is every model's --quantize mode unless its NamedModel sets one.
	Quantize string
	// Precision is every model's --precision (fp32, bf16, fp16, auto; see
	// inference.ModelHandler.Precision), for scoring and the speed runs.
	Precision string

	LengthEdges []int32 // token-length slice bounds
	Seed        int64   // bootstrap seed
	InferBatch  int
	Device      string
	Threads     int
	// SpeedSeqLen is the sequence length of the speed runs (0: the split's median length).
	SpeedSeqLen int
	SpeedRuns   int
	Runner      string
	Security
}

// EvaluateResult is the written report.
type EvaluateResult struct {
	Report *report.Report
	Dir    string
	Metric string // the metric the gate and the comparisons used
}

// RunEvaluate scores every model (and the champion) on the split in parallel
// across workers, combines metrics and slices with mergeable accumulators,
// measures each model's speed on this machine, compares, gates, and writes
// report.json, report.md and report.html to Output.
func RunEvaluate(ctx context.Context, o EvaluateOptions) (*EvaluateResult, error) {
	if o.Data == "" || len(o.Models) == 0 || o.Output == "" {
		return nil, badInputf("evaluate needs --data, at least one --model and --output")
	}
	if err := model.CheckQuantize(o.Quantize); err != nil {
		return nil, badInput(fmt.Errorf("--quantize: %w", err))
	}
	if err := checkPrecision(o.Precision, o.Device, o.Quantize); err != nil {
		return nil, err
	}
	for _, m := range o.Models {
		if err := model.CheckQuantize(m.Quantize); err != nil {
			return nil, badInput(fmt.Errorf("model %s: %w", m.Name, err))
		}
	}
	man, err := CheckDataset(ctx, o.Data)
	if err != nil {
		return nil, err
	}
	task := man.TaskKind()
	if o.Gate.Metric, err = report.CheckGateMetric(task, o.Gate.Metric); err != nil {
		return nil, badInputf("--%v", err)
	}
	if o.Gate.Metric == report.MetricF1 && len(man.Labels) != 2 {
		return nil, badInputf("--gate_metric=f1 is the F1 of class 1 of a two-class task; %s has %d classes (use macro_f1)", o.Data, len(man.Labels))
	}
	split := o.Split
	if split == "" {
		split = dataset.SplitTest
		if len(man.ShardsOf(split)) == 0 {
			split = dataset.SplitValidation
		}
	}
	shards := man.ShardsOf(split)
	if len(shards) == 0 {
		return nil, badInputf("%s has no %s split", o.Data, split)
	}
	models := append([]NamedModel(nil), o.Models...)
	if o.Champion != "" {
		models = append(models, NamedModel{Name: ChampionModel, Dir: o.Champion})
	}
	seen := map[string]bool{}
	type decision struct {
		thresholds []float64
		rule       string
	}
	decisions := map[string]decision{} // multi-label: each model's thresholds
	for _, m := range models {
		if seen[m.Name] {
			return nil, badInputf("model name %q used twice", m.Name)
		}
		seen[m.Name] = true
		cfg, err := CheckModelDir(ctx, m.Dir, ModelUse{Role: "model " + m.Name, Labels: man.Labels, Trust: o.Trust})
		if err != nil {
			return nil, err
		}
		if cfg.Task() != task {
			return nil, badInputf("model %s (%s) is a %s model; %s is a %s dataset", m.Name, m.Dir, cfg.Task(), o.Data, task)
		}
		th, rule, err := CheckThreshold(ctx, m.Dir, task, o.Threshold, len(man.Labels))
		if err != nil {
			return nil, err
		}
		decisions[m.Name] = decision{th, rule}
	}
	if o.Challenger != "" && !seen[o.Challenger] {
		return nil, badInputf("--challenger %q is not one of the models", o.Challenger)
	}
	if err := CheckOutput(ctx, o.Output); err != nil {
		return nil, err
	}
	if len(o.LengthEdges) == 0 {
		o.LengthEdges = []int32{16, 32, 64, 128}
	}

	p, s := beam.NewPipelineWithRoot()
	shardCol := beam.Reshuffle(s, beam.CreateList(s.Scope("Shards"), shards))
	var preds []beam.PCollection
	for _, m := range models {
		fn := &transforms.PredictShardFn{Root: o.Data, Name: m.Name}
		fn.ModelDir, fn.MaxBatchSize, fn.Device, fn.Threads, fn.Threshold = m.Dir, o.InferBatch, o.Device, o.Threads, o.Threshold
		fn.Trust = o.Trust
		fn.Quantize, fn.DataTokenizerSHA256 = m.quantize(o), man.Tokenizer.SHA256
		fn.Precision = o.Precision
		preds = append(preds, beam.ParDo(s.Scope("Predict-"+m.Name), fn, shardCol))
	}
	all := beam.Flatten(s, preds...)
	metrics := transforms.EvaluateMetrics(s, all, task, man.Labels, o.Seed)
	slices := transforms.SliceMetricsOf(s, all, task, man.Labels, o.Seed, o.LengthEdges)
	partsPath := storage.Join(o.Output, ".metrics-"+fmt.Sprint(time.Now().UnixNano())+".json")
	// The driver's hand-off file, removed however the run ends (prism can run
	// CollectMetrics and still fail the job on another bundle).
	defer func() { _ = storage.Remove(context.WithoutCancel(ctx), partsPath) }()
	beam.ParDo0(s.Scope("CollectMetrics"), &writeEvalPartsFn{Path: partsPath}, beam.Impulse(s),
		beam.SideInput{Input: metrics}, beam.SideInput{Input: slices})
	if _, err := run(ctx, o.Runner, p); err != nil {
		return nil, err
	}
	data, err := storage.ReadFile(ctx, partsPath)
	if err != nil {
		return nil, err
	}
	var parts evalParts
	if err := json.Unmarshal(data, &parts); err != nil {
		return nil, err
	}

	rep := &report.Report{Schema: report.Schema, CreatedAt: time.Now().UTC().Format(time.RFC3339), Dataset: o.Data, Split: split}
	seqLen := o.SpeedSeqLen
	if seqLen <= 0 {
		seqLen = medianLength(man, split)
	}
	byName := map[string]*report.ModelReport{}
	for _, m := range models {
		mr, err := describeModel(ctx, m, o, seqLen)
		if err != nil {
			return nil, err
		}
		d := decisions[m.Name]
		for _, mm := range parts.Models {
			if mm.Model == m.Name {
				mr.Metrics = mm.Metrics
				withThresholds(&mr.Metrics, d.thresholds, d.rule)
			}
		}
		for _, sm := range parts.Slices {
			if sm.Model == m.Name {
				withThresholds(&sm.Slice.Metrics, d.thresholds, d.rule)
				mr.Slices = append(mr.Slices, sm.Slice)
			}
		}
		sort.Slice(mr.Slices, func(i, j int) bool {
			a, b := mr.Slices[i], mr.Slices[j]
			if a.Column != b.Column {
				return a.Column < b.Column
			}
			return sliceOrder(a.Value) < sliceOrder(b.Value)
		})
		rep.Models = append(rep.Models, *mr)
	}
	for i := range rep.Models {
		byName[rep.Models[i].Name] = &rep.Models[i]
	}
	rep.Examples = rep.Models[0].Metrics.Examples
	for _, m := range rep.Models[1:] {
		rep.Comparisons = append(rep.Comparisons, report.Compare(rep.Models[0], m, o.Gate.Metric))
	}
	if o.Challenger != "" {
		ch := byName[o.Challenger] // checked before the run
		g := report.Gate(o.Gate, *ch, byName[ChampionModel])
		rep.Gate = &g
		if champ := byName[ChampionModel]; champ != nil {
			rep.Comparisons = append(rep.Comparisons, report.Compare(*champ, *ch, o.Gate.Metric))
		}
	}
	if err := report.Write(ctx, o.Output, rep); err != nil {
		return nil, err
	}
	return &EvaluateResult{Report: rep, Dir: o.Output, Metric: o.Gate.Metric}, nil
}

// withThresholds records in multi-label metrics the thresholds their
// labels were decided by.
func withThresholds(m *report.Metrics, thresholds []float64, rule string) {
	if m.MultiLabel == nil {
		return
	}
	m.MultiLabel.Thresholds = rule
	for j := range m.PerClass {
		if j < len(thresholds) {
			m.PerClass[j].Threshold = thresholds[j]
		}
	}
}

// sliceOrder sorts length buckets numerically ("1-16" before "17-32").
func sliceOrder(v string) string {
	var n int
	if _, err := fmt.Sscanf(v, "%d", &n); err == nil {
		return fmt.Sprintf("%09d", n)
	}
	return v
}

type evalParts struct {
	Models []transforms.ModelMetrics      `json:"models"`
	Slices []transforms.ModelSliceMetrics `json:"slices"`
}

// writeEvalPartsFn hands the combined metrics to the driver.
type writeEvalPartsFn struct{ Path string }

func (fn *writeEvalPartsFn) ProcessElement(ctx context.Context, _ []byte, metrics func(*transforms.ModelMetrics) bool, slices func(*transforms.ModelSliceMetrics) bool) error {
	var parts evalParts
	var m transforms.ModelMetrics
	for metrics(&m) {
		parts.Models = append(parts.Models, m)
	}
	var sm transforms.ModelSliceMetrics
	for slices(&sm) {
		parts.Slices = append(parts.Slices, sm)
	}
	data, err := json.Marshal(parts)
	if err != nil {
		return err
	}
	return storage.WriteFile(ctx, fn.Path, data)
}

// medianLength is the median token length of a split, from the manifest's histogram.
func medianLength(m *dataset.Manifest, split string) int {
	sp := m.Splits[split]
	var seen int64
	for i, c := range sp.LengthHistogram {
		seen += c
		if 2*seen >= sp.Rows {
			return (i + 1) * sp.LengthBucket
		}
	}
	return 64
}

// quantize is the model's --quantize mode.
func (nm NamedModel) quantize(o EvaluateOptions) string {
	if nm.Quantize != "" {
		return nm.Quantize
	}
	return o.Quantize
}

// describeModel loads a model to count its parameters and time it, and reads
// its size and training log.
func describeModel(ctx context.Context, nm NamedModel, o EvaluateOptions, seqLen int) (*report.ModelReport, error) {
	mr := &report.ModelReport{Name: nm.Name, Dir: nm.Dir}
	if st, err := storage.Stat(ctx, storage.Join(nm.Dir, model.SafetensorsFile)); err == nil {
		mr.SizeBytes = st.Size
	}
	mr.TrainingLog = readTrainingLog(ctx, nm.Dir)
	dir, base, cleanup, err := trainer.FetchModel(ctx, nm.Dir, "", o.Trust)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	dev, err := model.ParseDevice(o.Device)
	if err != nil {
		return nil, err
	}
	// On the torch thread, where this process's scoring runs too: the
	// speed figures then see the OpenMP workers scoring sees.
	err = model.OnTorchThread(func() error { return measureModel(ctx, nm, o, seqLen, dir, base, dev, mr) })
	if err != nil {
		return nil, err
	}
	return mr, nil
}

// measureModel loads the model for describeModel and fills in what it
// counts and times.
func measureModel(ctx context.Context, nm NamedModel, o EvaluateOptions, seqLen int, dir, base string, dev model.Device, mr *report.ModelReport) error {
	model.SetThreads(o.Threads)
	m, _, err := model.Load(dir, model.LoadOptions{Device: dev, BaseDir: base, Unmerged: true})
	if err != nil {
		return fmt.Errorf("model %s: %w", nm.Name, err)
	}
	defer m.Free()
	if err := describeTraining(ctx, nm.Dir, dir, m, mr); err != nil {
		return fmt.Errorf("model %s: %w", nm.Name, err)
	}
	if err := m.MergeLoRA(); err != nil {
		return fmt.Errorf("model %s: %w", nm.Name, err)
	}
	mr.Params = m.NumParams()
	mr.Layers = m.Config.NumHiddenLayers
	applied, fallback, err := model.Quantize(m, nm.quantize(o), model.HostCPU())
	if err != nil {
		return fmt.Errorf("model %s: %w", nm.Name, err)
	}
	if fallback != "" {
		slog.Warn("evaluate: "+fallback, "model", nm.Name)
	}
	mr.Quantize = applied
	if err := inference.ApplyPrecision(m, o.Precision, applied); err != nil {
		return fmt.Errorf("model %s: %w", nm.Name, err)
	}
	runs := o.SpeedRuns
	if runs <= 0 {
		runs = 50
	}
	sp, err := model.MeasureSpeed(m, seqLen, 32, runs)
	if err != nil {
		return fmt.Errorf("model %s: %w", nm.Name, err)
	}
	mr.Speed = report.Speed{Threads: sp.Threads, LatencyP50Ms: ms(sp.LatencyP50), LatencyP95Ms: ms(sp.LatencyP95), ExamplesPerSec: sp.ExamplesPerSec, SeqLen: seqLen}
	slog.Info("evaluate: speed", "model", nm.Name, "p50_ms", mr.Speed.LatencyP50Ms, "examples_per_s", mr.Speed.ExamplesPerSec, "threads", sp.Threads, "seq_len", seqLen)
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// describeTraining records what the model's training updated: a LoRA
// adapter's rank, its file's size (the artifact) and its trained weights
// (the adapter and head), or the subset the published training job's
// method left trainable (BitFit, frozen layers). m is loaded unmerged.
func describeTraining(ctx context.Context, path, local string, m *model.Bert, mr *report.ModelReport) error {
	if c := m.LoRA(); c != nil {
		mr.Adapter = fmt.Sprintf("LoRA r=%d", c.R)
		if st, err := os.Stat(filepath.Join(local, model.AdapterWeightsFile)); err == nil {
			mr.SizeBytes = st.Size()
		}
		mr.TrainableParams = model.CountParams(m.AdapterParams())
		for _, name := range []string{"classifier.weight", "classifier.bias"} {
			if p := m.Param(name); p != nil {
				mr.TrainableParams += model.CountParams([]*model.Param{p})
			}
		}
		return nil
	}
	data, err := storage.ReadFile(ctx, storage.Join(path, trainer.PublishedJobFile))
	if err != nil {
		return nil // not trained by beamtune, or not published: nothing to say
	}
	var job trainer.Job
	if json.Unmarshal(data, &job) != nil || (job.Config.PEFT == "" && job.Config.FreezeLayers == "") {
		return nil
	}
	t, err := job.Config.Tuning(m.Config.NumHiddenLayers)
	if err != nil || t.Method == model.TuneLoRA {
		return nil
	}
	if err := m.Tune(t); err != nil {
		return err
	}
	mr.TrainableParams = model.CountParams(m.Trainable())
	return nil
}

// readTrainingLog is the training log published with the model folder dir
// (none: nil). A task folder of a multi-task bundle (BUNDLE/tasks/<task>)
// has none of its own: it gets the bundle's training entries and its own
// task's evaluations.
func readTrainingLog(ctx context.Context, dir string) []report.LogEntry {
	read := func(d string) []report.LogEntry {
		data, err := storage.ReadFile(ctx, storage.Join(d, report.PublishedTrainLogFile))
		if err != nil {
			return nil
		}
		var out []report.LogEntry
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			var e report.LogEntry
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				out = append(out, e)
			}
		}
		return out
	}
	if log := read(dir); log != nil {
		return log
	}
	clean := strings.TrimSuffix(dir, "/")
	task, tasksDir := path.Base(clean), path.Dir(clean)
	if path.Base(tasksDir) != model.TasksDir {
		return nil
	}
	bundle := path.Dir(tasksDir)
	if ok, err := storage.Exists(ctx, storage.Join(bundle, model.TasksFile)); err != nil || !ok {
		return nil
	}
	var out []report.LogEntry
	for _, e := range read(bundle) {
		switch {
		case e.Kind == report.LogTrain:
			out = append(out, e)
		case e.Kind == report.LogEval && e.Task == task:
			e.Task = "" // this folder's own evaluation
			out = append(out, e)
		}
	}
	return out
}
