package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
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
	stsb := filepath.Join(sharedData, "stsb")
	sts := DefaultPrepareOptions()
	sts.Train = []string{sharedHead(t, filepath.Join(stsb, "train.tsv"), dir, 0, 400, nil)}
	sts.Validation = []string{sharedHead(t, filepath.Join(stsb, "dev.tsv"), dir, 0, 150, nil)}
	sts.Format, sts.Header = "tsv", false
	sts.Fields = dataset.Fields{Text: []string{"6"}, Pair: "7", Label: "5"}
	sts.Task, sts.LabelRange = dataset.Regression, "0:5"
	sts.ModelDir, sts.MaxLength, sts.Output = modelDir, 64, filepath.Join(dir, "stsb")
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
