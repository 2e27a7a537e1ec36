package trainer

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
)

// multiTaskJob trains two tiny tasks on one encoder: "seven" (does token 7
// occur?) and "five" (does token 5?), with different training sizes.
func multiTaskJob(dir, out string) Job {
	j := tinyJob("", out)
	j.Tasks = []TaskSpec{{Name: "seven", Data: filepath.Join(dir, "seven")}, {Name: "five", Data: filepath.Join(dir, "five"), Weight: 1.5}}
	return j
}

// TestMultiTaskTrainAndResume trains a two-task model: each task learns its
// rule, the log and result carry every task and their mean, the published
// bundle holds a plain model per task that scores as the trial did, and a
// run killed mid-epoch and resumed ends with the same weights, bit for bit.
func TestMultiTaskTrainAndResume(t *testing.T) {
	dir := t.TempDir()
	writeMarkerDataset(t, filepath.Join(dir, "seven"), 600, 128, 7, 5)
	writeMarkerDataset(t, filepath.Join(dir, "five"), 300, 96, 5, 6)
	ref := multiTaskJob(dir, filepath.Join(dir, "uninterrupted"))
	res, err := Train(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	// (38 + 19 batches of 16) / grad_accum 2 = 29 steps per epoch, 4 epochs.
	if res.Steps != 116 {
		t.Fatalf("steps = %d, want 116", res.Steps)
	}
	if res.Metric != report.MetricMean || len(res.Tasks) != 2 {
		t.Fatalf("result: metric %q, tasks %+v", res.Metric, res.Tasks)
	}
	var mean float64
	for _, tb := range res.Tasks {
		mean += tb.Value / 2
		if tb.Metric != report.MetricAccuracy || tb.Value < 0.6 {
			t.Errorf("task %s did not learn its rule: %+v", tb.Task, tb)
		}
	}
	if math.Abs(mean-res.BestMetric) > 1e-12 {
		t.Errorf("best metric %v is not the tasks' mean %v", res.BestMetric, mean)
	}

	// Each task's folder in the bundle scores its validation split as the
	// trial did at its best step.
	if !model.IsMultiTask(res.BestDir) {
		t.Fatalf("%s is not a multi-task bundle", res.BestDir)
	}
	for _, tb := range res.Tasks {
		m, _, err := model.Load(filepath.Join(res.BestDir, model.TasksDir, tb.Task), model.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		data := filepath.Join(dir, tb.Task)
		man, err := dataset.ReadManifest(context.Background(), data)
		if err != nil {
			t.Fatal(err)
		}
		valid, err := dataset.LoadSplit(context.Background(), data, man, dataset.SplitValidation)
		if err != nil {
			t.Fatal(err)
		}
		out, err := Evaluate(m, valid, 32)
		m.Free()
		if err != nil {
			t.Fatal(err)
		}
		got := ScoreTask(dataset.SingleLabel, "", valid, out.Logits)
		if math.Abs(got.Value-tb.Value) > 1e-9 {
			t.Errorf("task %s: its folder scores %.4f, the trial recorded %.4f", tb.Task, got.Value, tb.Value)
		}
	}
	// The log holds each task's evaluations and their mean at every step evaluated.
	st, err := readLog(res.Output)
	if err != nil {
		t.Fatal(err)
	}
	tasksAt := map[int64][]string{}
	for _, e := range st {
		if e.Kind == report.LogEval {
			tasksAt[e.Step] = append(tasksAt[e.Step], e.Task)
		}
	}
	if len(tasksAt) == 0 {
		t.Fatal("no eval entries")
	}
	for step, tasks := range tasksAt {
		if !slices.Equal(tasks, []string{"seven", "five", ""}) {
			t.Errorf("step %d: eval entries for tasks %q", step, tasks)
		}
	}

	resumed := killAndResume(t, multiTaskJob(dir, filepath.Join(dir, "killed")), res)
	want := finalWeights(t, res.FinalDir)
	sameWeights(t, want, finalWeights(t, resumed.FinalDir))
	t.Logf("two tasks: %+v; killed after step 10, resumed, matched all %d tensors bit for bit", res.Tasks, len(want))
}

// readLog reads a trial's training log.
func readLog(out string) ([]report.LogEntry, error) {
	data, err := os.ReadFile(filepath.Join(out, report.TrainLogFile))
	if err != nil {
		return nil, err
	}
	var log []report.LogEntry
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e report.LogEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, err
		}
		log = append(log, e)
	}
	return log, nil
}

// TestMultiTaskInitFromBundle: a multi-task run started from a bundle with
// the same tasks continues its heads; with other tasks, it keeps the
// encoder and starts fresh heads.
func TestMultiTaskInitFromBundle(t *testing.T) {
	dir := t.TempDir()
	writeMarkerDataset(t, filepath.Join(dir, "seven"), 64, 16, 7, 5)
	writeMarkerDataset(t, filepath.Join(dir, "five"), 64, 16, 5, 6)
	first := multiTaskJob(dir, filepath.Join(dir, "first"))
	first.Config.MaxSteps = 4
	res, err := Train(context.Background(), first, nil)
	if err != nil {
		t.Fatal(err)
	}
	bundle := finalWeights(t, res.FinalDir)
	// lr 0: a step changes no weight, so the result is where the run started.
	again := func(out string, tasks []TaskSpec) map[string][]float32 {
		j := multiTaskJob(dir, filepath.Join(dir, out))
		j.Init, j.Tasks = res.FinalDir, tasks
		j.Config.MaxSteps, j.Config.LR, j.Config.WeightDecay = 1, 0, 0
		r, err := Train(context.Background(), j, nil)
		if err != nil {
			t.Fatal(err)
		}
		return finalWeights(t, r.FinalDir)
	}
	same := again("same", first.Tasks)
	sameWeights(t, bundle, same)
	renamed := slices.Clone(first.Tasks)
	renamed[1].Name = "five-b"
	other := again("other", renamed)
	if _, ok := other["tasks.five-b.classifier.weight"]; !ok {
		t.Fatal("no head for the new task five-b")
	}
	if slices.Equal(other["tasks.seven.classifier.weight"], bundle["tasks.seven.classifier.weight"]) {
		t.Error("with other tasks, the heads should start fresh")
	}
	if !slices.Equal(other["bert.encoder.layer.0.attention.self.query.weight"], bundle["bert.encoder.layer.0.attention.self.query.weight"]) {
		t.Error("the encoder should be the bundle's")
	}
}
