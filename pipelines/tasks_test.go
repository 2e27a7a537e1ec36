package pipelines

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/trainer"
)

// sharedData is ../shared/data beside the repository: the real corpora of
// the task kinds (MRPC, STS-B, GoEmotions), read by tests, never shipped.
var sharedData = filepath.Join("..", "..", "shared", "data")

// sharedHead writes the first n lines of src (after skipping skip lines) to
// dir, keeping only the lines keep accepts (nil: all).
func sharedHead(t *testing.T, src, dir string, skip, n int, keep func(string) bool) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Skipf("shared data %s (../shared/data beside the repository) is absent: %v", src, err)
	}
	var out []string
	for i, l := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if i < skip || keep != nil && !keep(l) {
			continue
		}
		if out = append(out, l); len(out) == n {
			break
		}
	}
	dst := filepath.Join(dir, strings.ReplaceAll(strings.TrimPrefix(src, sharedData+"/"), "/", "-"))
	if err := os.WriteFile(dst, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// stsbPrepare is the prepare run of 400 STS-B training pairs and 150 dev
// pairs (regression, scores 0-5) into output.
func stsbPrepare(t *testing.T, dir, modelDir, output string) PrepareOptions {
	t.Helper()
	stsb := filepath.Join(sharedData, "stsb")
	o := DefaultPrepareOptions()
	o.Train = []string{sharedHead(t, filepath.Join(stsb, "train.tsv"), dir, 0, 400, nil)}
	o.Validation = []string{sharedHead(t, filepath.Join(stsb, "dev.tsv"), dir, 0, 150, nil)}
	o.Format, o.Header = "tsv", false
	o.Fields = dataset.Fields{Text: []string{"6"}, Pair: "7", Label: "5"}
	o.Task, o.LabelRange = dataset.Regression, "0:5"
	o.ModelDir, o.MaxLength, o.Output = modelDir, 64, output
	return o
}

// trainTask prepares o and trains all-MiniLM-L6-v2 on it for a few hundred
// steps, and returns the manifest and the winning trial.
func trainTask(t *testing.T, o PrepareOptions, epochs int, lr float64, tweak ...func(*trainer.Config)) (*dataset.Manifest, trainer.TrialResult) {
	t.Helper()
	ctx := context.Background()
	prep, err := RunPrepare(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	cfg := trainer.DefaultConfig()
	cfg.Epochs, cfg.BatchSize, cfg.LR = epochs, 16, lr
	for _, f := range tweak {
		f(&cfg)
	}
	res, err := RunTrain(ctx, TrainOptions{Data: o.Output, Init: o.ModelDir, Output: filepath.Join(filepath.Dir(o.Output), "run"),
		Config: cfg, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	return prep.Manifest, res.Best
}

// predictRows runs predict with the model train published on the first
// rows of a validation file and returns its JSONL rows.
func predictRows(t *testing.T, o PrepareOptions, input string) []map[string]any {
	t.Helper()
	out := filepath.Join(filepath.Dir(o.Output), "preds")
	return predictJSONL(t, PredictOptions{Model: filepath.Join(filepath.Dir(o.Output), "run", TeacherModel),
		Inputs: []string{input}, Format: o.Format, Header: o.Header, Fields: dataset.Fields{Text: o.Fields.Text, Pair: o.Fields.Pair},
		Output: out, Threads: 2})
}

// distillTask distils a 3-layer student (teacher layers 0, 2, 4) from the
// teacher trainTask published, and returns the winning trial.
func distillTask(t *testing.T, o PrepareOptions, epochs int, lr float64) trainer.TrialResult {
	t.Helper()
	run := filepath.Join(filepath.Dir(o.Output), "run")
	cfg := trainer.DefaultConfig()
	cfg.Epochs, cfg.BatchSize, cfg.LR = epochs, 16, lr
	res, err := RunDistill(context.Background(), DistillOptions{Data: o.Output, Teacher: filepath.Join(run, TeacherModel),
		StudentLayers: []int{0, 2, 4}, Output: run, Config: cfg, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	return res.Student.Best
}

// TestRegressionTask trains on 400 STS-B pairs (scores 0–5) and checks the
// task reaches every stage it should: the manifest's kind and scores, a
// one-output head exported with problem_type regression, a validation
// Pearson well above chance, a distilled student that learns from the
// teacher's scores; and an evaluation whose Pearson and MSE are the
// trainer's own on the same split, with regression slices, a scatter plot
// and a gate on Pearson.
func TestRegressionTask(t *testing.T) {
	modelDir := needModel(t)
	dir := t.TempDir()
	o := stsbPrepare(t, dir, modelDir, filepath.Join(dir, "data"))
	man, best := trainTask(t, o, 3, 1e-4)
	if man.Task != dataset.Regression || strings.Join(man.Labels, ",") != "score" {
		t.Errorf("manifest task %q labels %v", man.Task, man.Labels)
	}
	rows := shardRows(t, o.Output, man, dataset.SplitValidation)
	var sum float64
	for _, r := range rows {
		if r.Label != -1 || len(r.Labels) != 0 || r.Score < 0 || r.Score > 5 {
			t.Fatalf("row %s: label %d labels %v score %g", r.ID, r.Label, r.Labels, r.Score)
		}
		sum += float64(r.Score)
	}
	if mean := sum / float64(len(rows)); mean < 1 || mean > 4 {
		t.Errorf("mean validation score %.2f: scores were not carried", mean)
	}
	if best.Metric != report.MetricPearson || best.BestMetric < 0.5 {
		t.Errorf("best %s %.3f, want pearson above 0.5", best.Metric, best.BestMetric)
	}
	t.Logf("STS-B 400 pairs: validation %s %.3f (loss %.3f)", best.Metric, best.BestMetric, best.BestLoss)
	cfg, err := model.LoadConfig(filepath.Join(filepath.Dir(o.Output), "run", TeacherModel))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ProblemType != dataset.Regression || cfg.NumLabels() != 1 {
		t.Errorf("exported problem_type %q with %d labels", cfg.ProblemType, cfg.NumLabels())
	}
	preds := predictRows(t, o, o.Validation[0])
	if len(preds) != 150 {
		t.Fatalf("%d predictions, want 150", len(preds))
	}
	for _, p := range preds {
		score, ok := p["score"].(float64)
		if !ok || score < -1 || score > 6 || p["label"] != nil || p["probabilities"] != nil {
			t.Fatalf("prediction %v: want a score near 0-5 and no class fields", p)
		}
	}
	student := distillTask(t, o, 3, 2e-4)
	if student.Metric != report.MetricPearson || student.BestMetric < 0.3 {
		t.Errorf("student %s %.3f, want pearson above 0.3 (chance is 0)", student.Metric, student.BestMetric)
	}
	t.Logf("STS-B: 3-layer student %s %.3f (%.0f%% of the teacher's)", student.Metric, student.BestMetric, 100*student.BestMetric/best.BestMetric)
	teacherDir, studentDir := filepath.Join(dir, "run", TeacherModel), filepath.Join(dir, "run", StudentModel)
	res, err := RunEvaluate(context.Background(), EvaluateOptions{Data: o.Output,
		Models:   []NamedModel{{Name: "teacher", Dir: teacherDir}, {Name: "student", Dir: studentDir}},
		Champion: teacherDir, Challenger: "student", Gate: report.DefaultGate(),
		Output: filepath.Join(dir, "report"), Seed: 1, SpeedRuns: 2, Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	tm := res.Report.Models[0].Metrics
	r := tm.Regression
	if tm.Task != dataset.Regression || r == nil || tm.Examples != int64(len(rows)) {
		t.Fatalf("teacher metrics: task %q, %d examples, regression %v", tm.Task, tm.Examples, r)
	}
	// The split is the validation split the trainer picked the best
	// checkpoint on: the same Pearson and MSE, from other code.
	if math.Abs(r.Pearson-best.BestMetric) > 1e-4 || math.Abs(r.MSE-best.BestLoss) > 1e-4 {
		t.Errorf("evaluate: Pearson %.5f MSE %.5f; the trainer's best: %.5f, %.5f", r.Pearson, r.MSE, best.BestMetric, best.BestLoss)
	}
	if !(r.PearsonCI.Low < r.Pearson && r.Pearson < r.PearsonCI.High) || !(r.SpearmanCI.Low < r.Spearman && r.Spearman < r.SpearmanCI.High) {
		t.Errorf("intervals %v around %.4f, %v around %.4f", r.PearsonCI, r.Pearson, r.SpearmanCI, r.Spearman)
	}
	if r.MAE <= 0 || r.MAE*r.MAE > r.MSE+1e-9 || len(r.Points) != len(rows) {
		t.Errorf("MAE %.4f MSE %.4f (MAE² ≤ MSE must hold), %d scatter points", r.MAE, r.MSE, len(r.Points))
	}
	scoreSlices := 0
	for _, sl := range res.Report.Models[0].Slices {
		if sl.Column == "score" {
			scoreSlices++
		}
	}
	if scoreSlices < 4 {
		t.Errorf("%d score slices, want one per unit of 0-5 that has rows", scoreSlices)
	}
	g := res.Report.Gate
	if g == nil || len(g.Checks) != 1 || g.Checks[0].Name != "pearson_drop" {
		t.Fatalf("gate: %+v", g)
	}
	sm := res.Report.Models[1].Metrics.Regression
	if want := 100*(sm.Pearson-r.Pearson) >= -0.5; g.Checks[0].Passed != want {
		t.Errorf("gate on Pearson %.4f vs %.4f passed=%v", sm.Pearson, r.Pearson, g.Checks[0].Passed)
	}
	html, err := os.ReadFile(filepath.Join(dir, "report", report.HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="scatter-teacher"`, "Mean residual", "Pearson"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report.html lacks %s", want)
		}
	}
}

// TestMultiLabelTask trains on GoEmotions comments carrying only its four
// most frequent labels (one or several each), with per-label positive
// weights and checkpoints picked by micro-F1, and checks the multi-hot rows,
// the exported problem_type, and a validation F1 above what guessing each
// label at its frequency would score.
func TestMultiLabelTask(t *testing.T) {
	modelDir := needModel(t)
	dir := t.TempDir()
	ge := filepath.Join(sharedData, "goemotions")
	frequent := map[string]bool{"27": true, "0": true, "4": true, "3": true} // neutral, admiration, approval, annoyance
	keep := func(l string) bool {
		f := strings.Split(l, "\t")
		if len(f) != 3 || strings.Contains(f[0], `"`) {
			return false
		}
		for _, x := range strings.Split(f[1], ",") {
			if !frequent[x] {
				return false
			}
		}
		return true
	}
	o := DefaultPrepareOptions()
	o.Train = []string{sharedHead(t, filepath.Join(ge, "train.tsv"), dir, 0, 600, keep)}
	o.Validation = []string{sharedHead(t, filepath.Join(ge, "dev.tsv"), dir, 0, 200, keep)}
	o.Format, o.Header = "tsv", false
	o.Fields = dataset.Fields{Text: []string{"1"}, Label: "2", ID: "3"}
	o.Task = dataset.MultiLabel
	o.ModelDir, o.MaxLength, o.Output = modelDir, 64, filepath.Join(dir, "data")
	man, best := trainTask(t, o, 6, 2e-4, func(c *trainer.Config) { c.PosWeight, c.MetricForBest = true, report.MetricMicroF1 })
	if man.Task != dataset.MultiLabel || strings.Join(man.Labels, ",") != "0,3,4,27" {
		t.Errorf("manifest task %q labels %v", man.Task, man.Labels)
	}
	rows := shardRows(t, o.Output, man, dataset.SplitValidation)
	multi, freq := 0, make([]float64, len(man.Labels))
	for _, r := range rows {
		if r.Label != -1 || len(r.Labels) == 0 {
			t.Fatalf("row %s: label %d labels %v", r.ID, r.Label, r.Labels)
		}
		if len(r.Labels) > 1 {
			multi++
		}
		for _, l := range r.Labels {
			freq[l]++
		}
	}
	if multi == 0 {
		t.Error("no validation row has several labels")
	}
	// Guessing label j with probability p_j (its frequency) makes, per row
	// and label, a true positive with probability p_j², and p_j positives
	// and p_j predictions: the micro-F1 of chance is Σp_j² / Σp_j.
	var sq, sum float64
	for _, f := range freq {
		p := f / float64(len(rows))
		sq, sum = sq+p*p, sum+p
	}
	chance := sq / sum
	if best.Metric != report.MetricMicroF1 || best.BestMetric < chance+0.1 {
		t.Errorf("best %s %.3f, want 0.1 above chance (%.3f)", best.Metric, best.BestMetric, chance)
	}
	t.Logf("GoEmotions, 4 labels: validation %s %.3f (chance %.3f), subset accuracy %.3f", best.Metric, best.BestMetric, chance, best.BestAccuracy)
	teacherDir := filepath.Join(dir, "run", TeacherModel)
	th, err := model.ReadThresholds(teacherDir)
	if err != nil || th == nil {
		t.Fatalf("the teacher's %s: %v, %v", model.ThresholdsFile, th, err)
	}
	if strings.Join(th.Labels, ",") != strings.Join(man.Labels, ",") || th.TunedOn != fmt.Sprintf("validation (%d rows)", len(rows)) {
		t.Errorf("thresholds for %v tuned on %q", th.Labels, th.TunedOn)
	}
	threshold := map[string]float64{}
	for j, l := range th.Labels {
		threshold[l] = th.PerLabel[j]
	}
	preds := predictRows(t, o, o.Validation[0])
	sets := 0
	for _, p := range preds {
		labels, ok := p["labels"].([]any)
		probs, _ := p["probabilities"].(map[string]any)
		if !ok || len(probs) != 4 || p["label"] != nil || p["score"] != nil {
			t.Fatalf("prediction %v: want labels and 4 probabilities", p)
		}
		chosen := map[string]bool{}
		for _, l := range labels {
			chosen[l.(string)] = true
		}
		for l, pr := range probs { // a label is predicted exactly when its probability passes its own threshold
			if above := pr.(float64) > threshold[l]; above != chosen[l] {
				t.Errorf("prediction %v: label %s at %.3f against threshold %.2f", p, l, pr, threshold[l])
			}
		}
		if len(labels) > 0 {
			sets++
		}
	}
	if sets == 0 {
		t.Error("no prediction has a label above its threshold")
	}
	// Evaluate on the validation split: at a fixed 0.5 the micro-F1 is the
	// trainer's; at the thresholds tuned on this very split each label's F1
	// can only be higher (0.5 is on the grid), so macro-F1 too.
	evaluate := func(rule string) report.Metrics {
		t.Helper()
		res, err := RunEvaluate(context.Background(), EvaluateOptions{Data: o.Output, Models: []NamedModel{{Name: "teacher", Dir: teacherDir}},
			Threshold: rule, Output: filepath.Join(dir, "report-"+rule), Seed: 1, SpeedRuns: 2, Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		return res.Report.Models[0].Metrics
	}
	fixed, tuned := evaluate("0.5"), evaluate("")
	if math.Abs(fixed.MicroF1-best.BestMetric) > 0.01 || fixed.MultiLabel.Thresholds != model.ThresholdFixed {
		t.Errorf("micro-F1 at 0.5: evaluate %.4f, trainer %.4f (%s)", fixed.MicroF1, best.BestMetric, fixed.MultiLabel.Thresholds)
	}
	if tuned.MacroF1 < fixed.MacroF1 || tuned.MultiLabel.Thresholds != model.ThresholdPerLabel || tuned.PerClass[0].Threshold != th.PerLabel[0] {
		t.Errorf("macro-F1 at tuned thresholds %.4f (%s, first %.2f), at 0.5 %.4f", tuned.MacroF1, tuned.MultiLabel.Thresholds, tuned.PerClass[0].Threshold, fixed.MacroF1)
	}
	for _, c := range tuned.PerClass {
		if c.AveragePrecision <= 0 || c.AveragePrecision > 1 || c.Support == 0 {
			t.Errorf("label %s: PR-AUC %.3f support %d", c.Label, c.AveragePrecision, c.Support)
		}
	}
	ml := tuned.MultiLabel
	if ml.LabelCardinality < 1 || ml.HammingLoss <= 0 || ml.HammingLoss >= 0.5 || tuned.Accuracy <= 0 {
		t.Errorf("cardinality %.3f, Hamming %.3f, subset accuracy %.3f", ml.LabelCardinality, ml.HammingLoss, tuned.Accuracy)
	}
	t.Logf("GoEmotions, 4 labels, validation: macro-F1 %.4f at tuned thresholds %v, %.4f at 0.5", tuned.MacroF1, th.PerLabel, fixed.MacroF1)
	cfg, err := model.LoadConfig(filepath.Join(dir, "run", TeacherModel))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ProblemType != dataset.MultiLabel || strings.Join(cfg.Labels(), ",") != strings.Join(man.Labels, ",") {
		t.Errorf("exported problem_type %q labels %v", cfg.ProblemType, cfg.Labels())
	}
}

// TestLabelNames prepares GoEmotions rows with --label_names=emotions.txt:
// the manifest's vocabulary is the 28 names in the file's order and each
// row's label indices point at the names its ids stand for.
func TestLabelNames(t *testing.T) {
	modelDir := needModel(t)
	dir := t.TempDir()
	ge := filepath.Join(sharedData, "goemotions")
	o := DefaultPrepareOptions()
	o.Train = []string{sharedHead(t, filepath.Join(ge, "train.tsv"), dir, 0, 100, nil)}
	o.Validation = []string{sharedHead(t, filepath.Join(ge, "dev.tsv"), dir, 0, 50, nil)}
	o.Format, o.Header = "tsv", false
	o.Fields = dataset.Fields{Text: []string{"1"}, Label: "2", ID: "3"}
	o.Task, o.LabelNames = dataset.MultiLabel, filepath.Join(ge, "emotions.txt")
	o.ModelDir, o.MaxLength, o.Output = modelDir, 64, filepath.Join(dir, "data")
	prep, err := RunPrepare(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	man := prep.Manifest
	names, err := os.ReadFile(o.LabelNames)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(man.Labels, "\n") != string(names) {
		t.Fatalf("manifest labels %v, want emotions.txt in order", man.Labels)
	}
	// The raw ids of each row, by id, from the input file.
	raw := map[string][]string{}
	data, err := os.ReadFile(o.Train[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Split(l, "\t")
		raw[f[2]] = strings.Split(f[1], ",")
	}
	rows := shardRows(t, o.Output, man, dataset.SplitTrain)
	if len(rows) < 90 {
		t.Fatalf("%d training rows, want about 100", len(rows))
	}
	for _, r := range rows {
		ids := raw[r.ID]
		if len(ids) != len(r.Labels) {
			t.Fatalf("row %s: labels %v, raw %v", r.ID, r.Labels, ids)
		}
		for k, id := range ids { // ids ascend, and so do names' indices: the file's order is the ids'
			if want, _ := strconv.Atoi(id); int(r.Labels[k]) != want {
				t.Errorf("row %s: label %d (%s), raw id %s", r.ID, r.Labels[k], man.Labels[r.Labels[k]], id)
			}
		}
	}
	o.Labels = []string{"x"}
	if _, err := RunPrepare(context.Background(), o); !errors.Is(err, ErrBadInput) {
		t.Errorf("--label_names with --label_vocab: %v", err)
	}
}

// TestRetrainRegression runs the whole chain on a regression task: the
// first run is promoted with Pearson recorded in the champion, the second is
// gated against it on Pearson.
func TestRetrainRegression(t *testing.T) {
	if testing.Short() {
		t.Skip("trains models: skipped with -short")
	}
	ctx := context.Background()
	dir := t.TempDir()
	stsb := filepath.Join(sharedData, "stsb")
	cfg := tinyRetrain(t, filepath.Join(dir, "registry"), 1, false)
	cfg.Name = "stsb"
	cfg.Prepare.Train = []string{sharedHead(t, filepath.Join(stsb, "train.tsv"), dir, 0, 300, nil)}
	cfg.Prepare.Validation = []string{sharedHead(t, filepath.Join(stsb, "dev.tsv"), dir, 0, 100, nil)}
	cfg.Prepare.Format, cfg.Prepare.Header = "tsv", false
	cfg.Prepare.TextFields, cfg.Prepare.PairField, cfg.Prepare.LabelField = []string{"6"}, "7", "5"
	cfg.Prepare.Task, cfg.Prepare.LabelRange = dataset.Regression, "0:5"
	cfg.Gate = report.GateConfig{MaxMetricDrop: 100}
	// The second run adds a compress stage: the teacher pruned to half its
	// heads and FFN width, recovered for an epoch, scored in int8, and gated
	// against the first run's champion as the challenger.
	first, err := RunRetrain(ctx, RetrainOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if !first.Promoted || first.Champion.Metric != report.MetricPearson || first.Champion.Value == 0 {
		t.Fatalf("first run: promoted %v, champion %+v", first.Promoted, first.Champion)
	}
	cfg.Compress.HeadKeep, cfg.Compress.FFNKeep, cfg.Compress.PruneSteps, cfg.Compress.ImportanceBatches = 0.5, 0.5, 1, 4
	cfg.Compress.BatchSize, cfg.Compress.Quantize = 16, model.QuantizeInt8
	cfg.Train.Seed = 2
	second, err := RunRetrain(ctx, RetrainOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := report.Read(ctx, filepath.Join(second.RunDir, "report"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Gate == nil || rep.Gate.Champion == "" || len(rep.Gate.Checks) != 1 || rep.Gate.Checks[0].Name != "pearson_drop" {
		t.Fatalf("second run's gate: %+v", rep.Gate)
	}
	if rep.Gate.Challenger != CompressedModel || len(rep.Models) != 3 || rep.Models[1].Name != CompressedModel || rep.Models[1].Params >= rep.Models[0].Params {
		t.Fatalf("second run: challenger %q, models %d (want teacher, compressed, champion; the compressed one smaller)", rep.Gate.Challenger, len(rep.Models))
	}
	t.Logf("compressed challenger: Pearson %.4f, %d params (teacher %d), quantize %q", rep.Models[1].Metrics.Regression.Pearson, rep.Models[1].Params, rep.Models[0].Params, rep.Models[1].Quantize)
	if second.Promoted && second.Champion.Model != filepath.Join(second.RunDir, CompressedModel) {
		t.Errorf("promoted champion points at %s, want the compressed folder", second.Champion.Model)
	}
	if !second.Promoted || second.Champion.RunID != second.RunID {
		t.Errorf("second run (gate allows 100 points): promoted %v, champion %+v", second.Promoted, second.Champion)
	}
}
