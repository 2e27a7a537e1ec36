package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/trainer"
)

// TestMultiTaskEndToEnd is the two-task run of make test: SST-2 sentiment
// (single-label, from testdata) and STS-B similarity (regression on pairs)
// share one all-MiniLM-L6-v2 encoder. The teacher bundle must learn both
// tasks; a 3-layer student is distilled from the bundle's two task folders
// as two single-task teachers; predict runs both heads on one encoder pass
// and agrees with each task's own folder; commands that take one model
// refuse the bundle and name its task folders.
func TestMultiTaskEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips the multi-task train and distill run")
	}
	modelDir := needModel(t)
	ctx := context.Background()
	dir := t.TempDir()

	sst := DefaultPrepareOptions()
	sample := filepath.Join("..", "testdata", "sample")
	sst.Train = []string{sharedHead(t, filepath.Join(sample, "sst2_train.tsv"), dir, 0, 801, nil)}
	sst.Validation = []string{sharedHead(t, filepath.Join(sample, "sst2_dev.tsv"), dir, 0, 201, nil)}
	sst.Format, sst.Header = "tsv", true
	sst.Fields = dataset.Fields{Text: []string{"sentence"}, Label: "label"}
	sst.ModelDir, sst.MaxLength, sst.Output = modelDir, 64, filepath.Join(dir, "sst2")
	sts := stsbPrepare(t, dir, modelDir, filepath.Join(dir, "stsb"))
	for _, o := range []PrepareOptions{sst, sts} {
		if _, err := RunPrepare(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	tasks := []TaskOption{
		{TaskSpec: trainer.TaskSpec{Name: "sentiment", Data: sst.Output}, Kind: dataset.SingleLabel},
		{TaskSpec: trainer.TaskSpec{Name: "similarity", Data: sts.Output}},
	}
	cfg := trainer.DefaultConfig()
	cfg.Epochs, cfg.BatchSize, cfg.LR, cfg.LogEvery = 3, 16, 1e-4, 25
	run := filepath.Join(dir, "run")
	teacher, err := RunTrain(ctx, TrainOptions{Tasks: tasks, Init: modelDir, Output: run, Config: cfg, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	best := teacher.Best
	if best.Metric != report.MetricMean || len(best.Tasks) != 2 {
		t.Fatalf("teacher: metric %q, tasks %+v", best.Metric, best.Tasks)
	}
	t.Logf("multi-task teacher: %+v (mean %.4f, %.0f s)", best.Tasks, best.BestMetric, best.WallSeconds)
	if s := best.Tasks[0]; s.Metric != report.MetricAccuracy || s.Value < 0.70 {
		t.Errorf("sentiment: validation %s %.3f, want accuracy of 0.70 or more", s.Metric, s.Value)
	}
	if s := best.Tasks[1]; s.Metric != report.MetricPearson || s.Value < 0.5 {
		t.Errorf("similarity: validation %s %.3f, want pearson of 0.5 or more", s.Metric, s.Value)
	}
	bundle := filepath.Join(run, TeacherModel)
	if !model.IsMultiTask(bundle) {
		t.Fatalf("%s is not a multi-task bundle", bundle)
	}

	// A command that takes one model refuses the bundle and names a task folder.
	_, err = RunEvaluate(ctx, EvaluateOptions{Data: sst.Output, Models: []NamedModel{{Name: "teacher", Dir: bundle}},
		Output: filepath.Join(dir, "refused"), Seed: 1, SpeedRuns: 1, Threads: 2})
	if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "multi-task bundle (tasks sentiment, similarity)") ||
		!strings.Contains(err.Error(), filepath.Join(bundle, model.TasksDir, "sentiment")) {
		t.Errorf("evaluate of a bundle: %v", err)
	}

	// Each task folder is a plain model that evaluate scores as the trainer did.
	sentimentDir := filepath.Join(bundle, model.TasksDir, "sentiment")
	ev, err := RunEvaluate(ctx, EvaluateOptions{Data: sst.Output, Models: []NamedModel{{Name: "sentiment", Dir: sentimentDir}},
		Output: filepath.Join(dir, "report"), Seed: 1, SpeedRuns: 1, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ev.Report.Models[0].Metrics.Accuracy, best.Tasks[0].Value; math.Abs(got-want) > 1e-9 {
		t.Errorf("evaluate of tasks/sentiment: accuracy %.4f, the trainer's best %.4f", got, want)
	}
	// Its report charts the bundle's training and this task's evaluations.
	evals, bestAcc := 0, 0.0
	for _, e := range ev.Report.Models[0].TrainingLog {
		if e.Kind == report.LogEval {
			evals++
			bestAcc = max(bestAcc, e.Accuracy)
		}
	}
	if evals != 3 || math.Abs(bestAcc-best.Tasks[0].Value) > 1e-9 {
		t.Errorf("tasks/sentiment's report: %d evaluations (want one per epoch, 3), best accuracy %.4f (the trainer's %.4f)", evals, bestAcc, best.Tasks[0].Value)
	}

	// predict runs both heads on one pass; the sentiment head agrees with
	// its task folder, row for row.
	both := predictJSONL(t, PredictOptions{Model: bundle, Tasks: []string{"sentiment", "similarity"}, Inputs: sst.Validation,
		Format: "tsv", Header: true, Fields: dataset.Fields{Text: []string{"sentence"}}, Output: filepath.Join(dir, "preds-bundle"), Threads: 2})
	single := predictJSONL(t, PredictOptions{Model: sentimentDir, Inputs: sst.Validation,
		Format: "tsv", Header: true, Fields: dataset.Fields{Text: []string{"sentence"}}, Output: filepath.Join(dir, "preds-single"), Threads: 2})
	if len(both) != 200 || len(single) != 200 {
		t.Fatalf("%d and %d predictions, want 200", len(both), len(single))
	}
	for i, row := range both {
		tasks, _ := row["tasks"].(map[string]any)
		sent, _ := tasks["sentiment"].(map[string]any)
		sim, _ := tasks["similarity"].(map[string]any)
		if sent == nil || sim == nil || row["label"] != nil {
			t.Fatalf("bundle prediction %v: want tasks.sentiment and tasks.similarity only", row)
		}
		if _, ok := sim["score"].(float64); !ok {
			t.Fatalf("similarity prediction %v has no score", sim)
		}
		p1, _ := sent["probability"].(float64)
		p2, _ := single[i]["probability"].(float64)
		if row["id"] != single[i]["id"] || sent["label"] != single[i]["label"] || math.Abs(p1-p2) > 1e-5 {
			t.Fatalf("row %v: bundle says %v, the task folder %v", row["id"], sent, single[i])
		}
	}
	if _, err := RunPredict(ctx, PredictOptions{Model: bundle, Tasks: []string{"topic"}, Inputs: sst.Validation, Format: "tsv", Header: true,
		Fields: dataset.Fields{Text: []string{"sentence"}}, Output: filepath.Join(dir, "preds-bad")}); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), `no task "topic"`) {
		t.Errorf("predict of an unknown task: %v", err)
	}

	// A 3-layer student distilled from the two task folders as teachers.
	dcfg := cfg
	dcfg.LR = 2e-4
	dcfg.HiddenMSE = 1 // against each task's own teacher's [CLS] states
	student, err := RunDistill(ctx, DistillOptions{Tasks: []TaskOption{
		{TaskSpec: trainer.TaskSpec{Name: "sentiment", Data: sst.Output}, Teacher: sentimentDir},
		{TaskSpec: trainer.TaskSpec{Name: "similarity", Data: sts.Output}, Teacher: filepath.Join(bundle, model.TasksDir, "similarity")},
	}, StudentLayers: []int{0, 2, 4}, Output: run, Config: dcfg, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	sb := student.Student.Best
	t.Logf("multi-teacher student: %+v (%.0f s)", sb.Tasks, sb.WallSeconds)
	if len(sb.Tasks) != 2 {
		t.Fatalf("student tasks: %+v", sb.Tasks)
	}
	for i, s := range sb.Tasks {
		// A 3-layer student of a few hundred rows: well above chance on both.
		if floor := []float64{0.62, 0.3}[i]; s.Value < floor {
			t.Errorf("student %s: %s %.3f, want %.2f or more (teacher %.3f)", s.Task, s.Metric, s.Value, floor, best.Tasks[i].Value)
		}
	}
	for _, task := range []string{"sentiment", "similarity"} {
		man, err := dataset.ReadManifest(ctx, filepath.Join(run, distillDataDir, task))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(man.Fingerprint, "/teacher-") {
			t.Errorf("distill-data/%s was not scored by its teacher: fingerprint %s", task, man.Fingerprint)
		}
	}
	if !model.IsMultiTask(filepath.Join(run, StudentModel)) {
		t.Errorf("the student is not a bundle")
	}
}

// predictJSONL runs predict and returns its rows in id order.
func predictJSONL(t *testing.T, o PredictOptions) []map[string]any {
	t.Helper()
	res, err := RunPredict(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	for _, f := range res.Files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var r map[string]any
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatal(err)
			}
			rows = append(rows, r)
		}
	}
	return rows
}

// TestRetrainTasksConfig reads a multi-task retrain.yaml: each task's
// prepare keys over the top-level ones, its gate and weight; and refuses
// what a multi-task retrain cannot do, naming the file.
func TestRetrainTasksConfig(t *testing.T) {
	good := `
name: m
registry: /tmp/reg
prepare: {format: tsv, max_length: 64, text_fields: [sentence], label_field: label}
tasks:
  - name: sentiment
    prepare: {train: [s.tsv], validation: [s-dev.tsv]}
  - name: similarity
    prepare: {train: [p.tsv], text_fields: ["6"], pair_field: "7", label_field: "5", task: regression, header: false}
    weight: 2
    optional: true
    gate: {metric: pearson, max_metric_drop: 1}
`
	c, err := ParseRetrainConfig("retrain.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	s, p := c.Tasks[0].Prepare, c.Tasks[1].Prepare
	if s.Format != "tsv" || s.MaxLength != 64 || strings.Join(s.Train, ",") != "s.tsv" || !s.Header || s.LabelField != "label" {
		t.Errorf("sentiment prepare: %+v", s)
	}
	if p.Format != "tsv" || p.MaxLength != 64 || p.Task != dataset.Regression || p.Header || p.PairField != "7" || strings.Join(p.TextFields, ",") != "6" || len(p.Validation) != 0 {
		t.Errorf("similarity prepare: %+v", p)
	}
	if c.Tasks[1].Weight != 2 || !c.Tasks[1].Optional || c.taskGate(c.Tasks[1]).Metric != report.MetricPearson || c.taskGate(c.Tasks[0]) != c.Gate {
		t.Errorf("similarity task: %+v", c.Tasks[1])
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"one task", "name: m\nregistry: r\ntasks:\n  - name: a\n    prepare: {train: [a], text_fields: [t], label_field: l}\n", "two tasks or more"},
		{"unknown task prepare key", strings.Replace(good, "validation: [s-dev.tsv]", "valid: [s-dev.tsv]", 1), "field valid not found"},
		{"bad task name", strings.Replace(good, "name: sentiment", "name: Sentiment", 1), `"Sentiment"`},
		{"task without inputs", strings.Replace(good, "{train: [s.tsv], validation: [s-dev.tsv]}", "{}", 1), "tasks[0] (sentiment): give inputs"},
		{"compress", good + "compress: {head_keep: 0.5}\n", "cannot be compressed yet"},
		{"metric_for_best", good + "train: {metric_for_best: f1}\n", "give each task's metric"},
	} {
		if _, err := ParseRetrainConfig("retrain.yaml", []byte(tc.yaml)); err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
	// A bundle is blessed when every task that is not optional passes.
	v, reasons := bundleVerdict([]TaskVerdict{{Task: "a", Verdict: report.VerdictBlessed}, {Task: "b", Optional: true, Verdict: report.VerdictRejected, Reasons: []string{"pearson dropped"}}})
	if v != report.VerdictBlessed || len(reasons) != 1 || !strings.Contains(reasons[0], "b (optional, not blocking): pearson dropped") {
		t.Errorf("optional task failing: %s %v", v, reasons)
	}
	v, reasons = bundleVerdict([]TaskVerdict{{Task: "a", Verdict: report.VerdictRejected, Reasons: []string{"accuracy dropped"}}, {Task: "b", Verdict: report.VerdictBlessed}})
	if v != report.VerdictRejected || len(reasons) != 1 || reasons[0] != "a: accuracy dropped" {
		t.Errorf("required task failing: %s %v", v, reasons)
	}
}

// TestRetrainMultiTask runs retrain twice on two tasks (SST-2 sentences
// from the retrain fixture, STS-B pairs): the first run promotes its
// bundle with each task's score; the second (another seed, so another run)
// is gated per task against the champion bundle's task folders, and one
// required task's floor it cannot reach rejects the bundle, naming that
// task, while the champion stays.
func TestRetrainMultiTask(t *testing.T) {
	if testing.Short() {
		t.Skip("trains models: skipped with -short")
	}
	ctx := context.Background()
	dir := t.TempDir()
	c := tinyRetrain(t, filepath.Join(dir, "registry"), 1, false)
	c.Name = "support"
	sentiment := c.Prepare
	c.Prepare.Train, c.Prepare.Validation = nil, nil
	stsb := filepath.Join(sharedData, "stsb")
	similarity := c.Prepare
	similarity.Train = []string{sharedHead(t, filepath.Join(stsb, "train.tsv"), dir, 0, 200, nil)}
	similarity.Validation = []string{sharedHead(t, filepath.Join(stsb, "dev.tsv"), dir, 0, 80, nil)}
	similarity.Format, similarity.Header = "tsv", false
	similarity.TextFields, similarity.PairField, similarity.LabelField = []string{"6"}, "7", "5"
	similarity.Task, similarity.LabelRange = dataset.Regression, "0:5"
	c.Tasks = []RetrainTask{{Name: "sentiment", Prepare: sentiment}, {Name: "similarity", Prepare: similarity}}
	c.Train.MaxSteps, c.Train.EvalEvery = 12, 12
	c.Gate = report.GateConfig{MaxAccuracyDrop: 100, MaxMacroF1Drop: 100, MaxClassRecallDrop: 100, MaxMetricDrop: 100}
	first, err := RunRetrain(ctx, RetrainOptions{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	if !first.Promoted || len(first.Champion.Tasks) != 2 || first.Champion.Metric != report.MetricMean || !model.IsMultiTask(first.Champion.Model) {
		t.Fatalf("first run: promoted %v, champion %+v", first.Promoted, first.Champion)
	}
	for _, s := range []string{"prepare-sentiment", "prepare-similarity", "train", "evaluate-sentiment", "evaluate-similarity", "promote"} {
		if !slices.ContainsFunc(first.Stages, func(r StageResult) bool { return r.Stage == s }) {
			t.Errorf("first run has no %s stage: %+v", s, first.Stages)
		}
	}
	if first.Champion.Tasks[1].Metric != report.MetricPearson || first.Tasks[0].Verdict != report.VerdictBlessed {
		t.Errorf("first run's tasks: %+v, champion %+v", first.Tasks, first.Champion.Tasks)
	}

	c.Train.Seed = 2
	c.Tasks[1].Gate = &report.GateConfig{MaxMetricDrop: 100, MinMetric: 99.9}
	second, err := RunRetrain(ctx, RetrainOptions{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	if second.Promoted || second.Verdict != report.VerdictRejected || second.Champion.RunID != first.RunID {
		t.Fatalf("second run: promoted %v verdict %s, champion %+v", second.Promoted, second.Verdict, second.Champion)
	}
	if len(second.Reasons) == 0 || !strings.HasPrefix(second.Reasons[0], "similarity: ") {
		t.Errorf("second run's reasons should name the similarity task: %v", second.Reasons)
	}
	rep, err := report.Read(ctx, filepath.Join(second.RunDir, "report-sentiment"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Gate == nil || rep.Gate.Champion == "" || rep.Gate.Verdict != report.VerdictBlessed {
		t.Errorf("sentiment was gated against the champion's sentiment folder and should pass: %+v", rep.Gate)
	}
	t.Logf("second run rejected: %v", second.Reasons)
}

// TestCheckTuningRefusesStreamedMultiTask: the driver refuses
// --train_input=stream for a run of two tasks (a multi-task run holds its
// tasks in memory) and accepts it for one.
func TestCheckTuningRefusesStreamedMultiTask(t *testing.T) {
	init := filepath.Join("..", "testdata", "parity", "tiny-bert")
	cfg, err := model.LoadConfig(init)
	if err != nil {
		t.Fatal(err)
	}
	c := trainer.DefaultConfig()
	c.Input = trainer.InputStream
	two := []TaskOption{{TaskSpec: trainer.TaskSpec{Name: "a"}}, {TaskSpec: trainer.TaskSpec{Name: "b"}}}
	err = checkTuning(context.Background(), TrainOptions{Init: init, Config: c, Tasks: two}, cfg)
	if err == nil || !strings.Contains(err.Error(), "multi-task") {
		t.Errorf("two tasks, train_input=stream: %v, want a refusal naming the multi-task run", err)
	}
	if err := checkTuning(context.Background(), TrainOptions{Init: init, Config: c}, cfg); err != nil {
		t.Errorf("one task, train_input=stream: %v", err)
	}
}
