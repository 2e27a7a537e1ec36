package pipelines

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/trainer"
)

// TestTrainDistillSmallSST2 is the CI-sized end-to-end run: 1,000 SST-2
// training rows, one epoch of all-MiniLM-L6-v2 (the teacher must reach 80% on
// the 872-row dev set), then a 3-layer student distilled from it for one
// epoch (it must keep 95% of the teacher's accuracy).
//
// The rows are 1,000 evenly spaced full sentences (15+ words) of the SST-2
// training split: most training rows are short parse-tree phrases, while dev
// holds whole sentences, and with one epoch of 1,000 rows the phrases teach
// too little (measured: 77-80% from phrases, 81-82% from sentences; HF
// Trainer with the same recipe: 79.9% from the phrases).
func TestTrainDistillSmallSST2(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skips the end-to-end train and distill run")
	}
	modelDir := needModel(t)
	src, err := os.ReadFile(filepath.Join("..", "..", "shared", "data", "sst2", "train.tsv"))
	if err != nil {
		t.Skipf("../shared/data SST-2 not present: %v", err)
	}
	dir := t.TempDir()
	lines := strings.Split(strings.TrimSpace(string(src)), "\n")
	var long []string
	for _, l := range lines[1:] {
		if text, _, _ := strings.Cut(l, "\t"); len(strings.Fields(text)) >= 15 {
			long = append(long, l)
		}
	}
	small := []string{lines[0]}
	for i := 0; i < len(long) && len(small) <= 1000; i += len(long) / 1000 {
		small = append(small, long[i])
	}
	train := filepath.Join(dir, "train.tsv")
	if err := os.WriteFile(train, []byte(strings.Join(small, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	po := DefaultPrepareOptions()
	po.Train = []string{train}
	po.Validation = []string{filepath.Join("..", "testdata", "sample", "sst2_dev.tsv")}
	po.Fields = dataset.Fields{Text: []string{"sentence"}, Label: "label"}
	po.ModelDir = modelDir
	po.MaxLength = 64
	po.Output = filepath.Join(dir, "data")
	prep, err := RunPrepare(context.Background(), po)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prepared %d training rows", prep.Manifest.Splits["train"].Rows)

	cfg := trainer.DefaultConfig()
	cfg.Epochs = 1
	cfg.LR = 1.5e-4
	cfg.BatchSize = 8
	cfg.LogEvery = 25
	teacher, err := RunTrain(context.Background(), TrainOptions{
		Data: po.Output, Init: modelDir, Output: filepath.Join(dir, "run"), Name: "teacher",
		Config: cfg, Device: "cpu", Threads: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("teacher: dev accuracy %.4f after %d steps (%.0f s, %.1f examples/s)", teacher.Best.BestAccuracy, teacher.Best.Steps, teacher.Best.WallSeconds, teacher.Best.ExamplesPerSec)
	if teacher.Best.BestAccuracy < 0.80 {
		t.Errorf("teacher dev accuracy %.4f < 0.80", teacher.Best.BestAccuracy)
	}
	if !storage.Published(context.Background(), teacher.ModelDir) {
		t.Errorf("teacher folder %s is not published", teacher.ModelDir)
	}
	for _, f := range []string{"config.json", "model.safetensors", "tokenizer.json", "training_log.jsonl", "train_config.json"} {
		if _, err := os.Stat(filepath.Join(teacher.ModelDir, f)); err != nil {
			t.Errorf("published teacher lacks %s", f)
		}
	}

	dcfg := cfg
	dcfg.LR = 3e-4
	dcfg.Alpha = 0.5
	dcfg.Temperature = 2
	dres, err := RunDistill(context.Background(), DistillOptions{
		Data: po.Output, Teacher: teacher.ModelDir, StudentLayers: []int{0, 2, 4}, Output: filepath.Join(dir, "run"),
		Config: dcfg, Device: "cpu", Threads: 2, InferBatch: 64,
	})
	if err != nil {
		t.Fatal(err)
	}
	st := dres.Student.Best
	kept := st.BestAccuracy / teacher.Best.BestAccuracy
	t.Logf("student (layers 0,2,4): dev accuracy %.4f after %d steps (%.0f s), %.1f%% of the teacher's", st.BestAccuracy, st.Steps, st.WallSeconds, 100*kept)
	if kept < 0.95 {
		t.Errorf("student keeps %.1f%% of the teacher's accuracy, want >= 95%%", 100*kept)
	}

	// The same student with the hidden-state loss on top: the default layer
	// map pairs each kept layer with the teacher layer it was copied from,
	// and the teacher's [CLS] vectors of those layers are cached once.
	hcfg := dcfg
	hcfg.HiddenMSE = 1
	hres, err := RunDistill(context.Background(), DistillOptions{
		Data: po.Output, Teacher: teacher.ModelDir, StudentLayers: []int{0, 2, 4}, Output: filepath.Join(dir, "run-hidden"),
		Config: hcfg, Device: "cpu", Threads: 2, InferBatch: 64,
	})
	if err != nil {
		t.Fatal(err)
	}
	hman, err := dataset.ReadManifest(context.Background(), hres.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(hman.TeacherHiddenLayers); got != "[1 3 5]" {
		t.Errorf("distillation data caches teacher hidden states %s, want [1 3 5]", got)
	}
	hs := hres.Student.Best
	if hs.Config.HiddenLayerMap != "1:1,2:3,3:5" {
		t.Errorf("resolved hidden_layer_map %q, want 1:1,2:3,3:5", hs.Config.HiddenLayerMap)
	}
	t.Logf("student with hidden-state MSE: dev accuracy %.4f (%.1f%% of the teacher's), %.0f s", hs.BestAccuracy, 100*hs.BestAccuracy/teacher.Best.BestAccuracy, hs.WallSeconds)
	if hs.BestAccuracy/teacher.Best.BestAccuracy < 0.95 {
		t.Errorf("student with the hidden-state loss keeps %.1f%% of the teacher's accuracy, want >= 95%%", 100*hs.BestAccuracy/teacher.Best.BestAccuracy)
	}

	// Evaluate both on dev, with the teacher also standing in as the champion
	// the student is gated against.
	ev, err := RunEvaluate(context.Background(), EvaluateOptions{
		Data: po.Output, Split: "validation", Output: filepath.Join(dir, "report"),
		Models:   []NamedModel{{Name: "teacher", Dir: teacher.ModelDir}, {Name: "student", Dir: dres.Student.ModelDir}},
		Champion: teacher.ModelDir, Challenger: "student", Gate: report.DefaultGate(),
		Seed: 1, InferBatch: 64, Device: "cpu", Threads: 2, SpeedRuns: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	// A challenger that is not among the models is refused before any inference runs.
	_, err = RunEvaluate(context.Background(), EvaluateOptions{
		Data: po.Output, Split: "validation", Output: filepath.Join(dir, "report-bad"),
		Models: []NamedModel{{Name: "teacher", Dir: teacher.ModelDir}}, Challenger: "nobody", Device: "cpu",
	})
	if err == nil || !strings.Contains(err.Error(), `--challenger "nobody"`) {
		t.Errorf("evaluate with an unknown challenger: err = %v", err)
	}
	if _, serr := os.Stat(filepath.Join(dir, "report-bad")); serr == nil {
		t.Errorf("evaluate with an unknown challenger wrote %s", filepath.Join(dir, "report-bad"))
	}
	r := ev.Report
	if left, _ := filepath.Glob(filepath.Join(dir, "report", ".metrics-*")); len(left) > 0 {
		t.Errorf("evaluate left its hand-off file behind: %v", left)
	}
	for _, f := range []string{"report.json", "report.md", "report.html"} {
		if _, err := os.Stat(filepath.Join(dir, "report", f)); err != nil {
			t.Errorf("report lacks %s", f)
		}
	}
	if len(r.Models) != 3 || r.Examples != 872 {
		t.Fatalf("report: %d models, %d examples", len(r.Models), r.Examples)
	}
	// The pipeline's metrics must agree with the trainer's own evaluation.
	if got, want := r.Models[0].Metrics.Accuracy, teacher.Best.BestAccuracy; math.Abs(got-want) > 1e-9 {
		t.Errorf("evaluate says teacher accuracy %.6f, training said %.6f", got, want)
	}
	if r.Models[0].Metrics.Accuracy != r.Models[2].Metrics.Accuracy {
		t.Errorf("champion (the teacher's folder) scored differently from the teacher")
	}
	if r.Gate == nil || r.Gate.Verdict != "rejected" {
		t.Errorf("a student %.2f points below the champion should be rejected: %+v", 100*(st.BestAccuracy-teacher.Best.BestAccuracy), r.Gate)
	}
	sp := r.Comparisons[0]
	t.Logf("student vs teacher: accuracy kept %.1f%%, speedup %.2fx, size %.2fx; gate %s", 100*sp.AccuracyKept, sp.Speedup, sp.SizeRatio, r.Gate.Verdict)
	// How much faster the student is, is a benchmark's question
	// (BENCHMARKS.md: 1.99× at batch 32); a timed assertion here would fail
	// whenever the machine is busy. The test wants the speed measured and
	// the student to be the smaller model.
	if sp.Speedup <= 0 || r.Models[1].Layers != 3 || r.Models[1].Params >= r.Models[0].Params {
		t.Errorf("student: speedup %.2f, %d layers, %d params against the teacher's %d", sp.Speedup, r.Models[1].Layers, r.Models[1].Params, r.Models[0].Params)
	}

	// Predict with the published student, on a corpus with one bad row.
	in := filepath.Join(dir, "to_score.tsv")
	if err := os.WriteFile(in, []byte("sentence\nan utterly charming film\n\na dull , lifeless mess\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pr, err := RunPredict(context.Background(), PredictOptions{Model: dres.Student.ModelDir, Inputs: []string{in},
		Fields: dataset.Fields{Text: []string{"sentence"}}, Header: true, Format: "tsv", Output: filepath.Join(dir, "pred"), Device: "cpu", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(pr.Files[0])
	if err != nil {
		t.Fatal(err)
	}
	predLines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(predLines) != 2 || pr.DeadLetter == "" {
		t.Fatalf("predictions:\n%s\ndead letter %q", out, pr.DeadLetter)
	}
	if both := predLines[0] + predLines[1]; !strings.Contains(both, `"label":"1"`) || !strings.Contains(both, `"label":"0"`) {
		t.Errorf("the student should call one review positive and one negative:\n%s", out)
	}

	checkCompress(t, dir, po.Output, teacher)
	checkLoRAStudent(t, dir, po.Output, teacher)
}

// checkLoRAStudent distils a 3-layer student whose trainable set is a LoRA
// adapter (and head): the run publishes an adapter folder over the student
// as cut from the teacher (exported once as the trial's base/), which
// evaluate scores (beside its merged form, which must score the same) and
// predict serves.
func checkLoRAStudent(t *testing.T, dir, data string, teacher *TrainResult) {
	t.Helper()
	cfg := trainer.DefaultConfig()
	cfg.Epochs, cfg.LR, cfg.BatchSize, cfg.Alpha, cfg.Temperature, cfg.LogEvery = 1, 1e-3, 8, 0.5, 2, 50
	cfg.PEFT, cfg.LoRAR, cfg.LoRAAlpha, cfg.LoRATargets = model.TuneLoRA, 8, 16, "query,value,intermediate.dense"
	res, err := RunDistill(context.Background(), DistillOptions{
		Data: data, Teacher: teacher.ModelDir, StudentLayers: []int{0, 2, 4}, Output: filepath.Join(dir, "run-lora"),
		Config: cfg, Device: "cpu", Threads: 2, InferBatch: 64,
	})
	if err != nil {
		t.Fatal(err)
	}
	st := res.Student.Best
	published := res.Student.ModelDir
	if !model.IsAdapter(published) {
		t.Fatalf("%s is not an adapter folder", published)
	}
	base, err := model.ReadAdapterBase(published)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(st.Output, trainer.BaseDir); base.Path != want {
		t.Errorf("the adapter's base is %s, want the trial's %s", base.Path, want)
	}
	share := float64(st.TrainableParams) / float64(st.TotalParams)
	t.Logf("LoRA student: dev accuracy %.4f (%.1f%% of the teacher's), %d of %d parameters trained (%.2f%%), %.0f s",
		st.BestAccuracy, 100*st.BestAccuracy/teacher.Best.BestAccuracy, st.TrainableParams, st.TotalParams, 100*share, st.WallSeconds)
	if share <= 0 || share > 0.05 {
		t.Errorf("LoRA student trained %.2f%% of its parameters", 100*share)
	}
	if st.BestAccuracy/teacher.Best.BestAccuracy < 0.90 {
		t.Errorf("LoRA student keeps %.1f%% of the teacher's accuracy, want >= 90%%", 100*st.BestAccuracy/teacher.Best.BestAccuracy)
	}
	merged := filepath.Join(dir, "lora-merged")
	if err := RunMerge(context.Background(), MergeOptions{Adapter: published, Output: merged}); err != nil {
		t.Fatal(err)
	}
	ev, err := RunEvaluate(context.Background(), EvaluateOptions{
		Data: data, Split: "validation", Output: filepath.Join(dir, "report-lora"),
		Models: []NamedModel{{Name: "lora", Dir: published}, {Name: "merged", Dir: merged}},
		Seed:   1, InferBatch: 64, Device: "cpu", Threads: 2, SpeedRuns: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	lr, mr := ev.Report.Models[0], ev.Report.Models[1]
	if lr.Adapter != "LoRA r=8" || lr.TrainableParams != st.TrainableParams || lr.SizeBytes <= 0 || lr.SizeBytes > 1<<20 {
		t.Errorf("report of the adapter: %q, %d trained, %d bytes", lr.Adapter, lr.TrainableParams, lr.SizeBytes)
	}
	if mr.Adapter != "" || mr.Layers != 3 {
		t.Errorf("report of the merged folder: adapter %q, %d layers", mr.Adapter, mr.Layers)
	}
	if math.Abs(lr.Metrics.Accuracy-st.BestAccuracy) > 1e-9 || math.Abs(mr.Metrics.Accuracy-lr.Metrics.Accuracy) > 1e-9 {
		t.Errorf("accuracy: training %.6f, adapter %.6f, merged %.6f", st.BestAccuracy, lr.Metrics.Accuracy, mr.Metrics.Accuracy)
	}
	in := filepath.Join(dir, "to_score_lora.tsv")
	if err := os.WriteFile(in, []byte("sentence\nan utterly charming film\na dull , lifeless mess\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pr, err := RunPredict(context.Background(), PredictOptions{Model: published, Inputs: []string{in},
		Fields: dataset.Fields{Text: []string{"sentence"}}, Header: true, Format: "tsv", Output: filepath.Join(dir, "pred-lora"), Device: "cpu", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(pr.Files[0])
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 2 || !strings.Contains(string(out), `"label":"1"`) || !strings.Contains(string(out), `"label":"0"`) {
		t.Errorf("the LoRA student should call one review positive and one negative:\n%s", out)
	}
}

// checkCompress prunes the teacher to half its heads and FFN width in two
// rounds, recovers by distillation and prunes the vocabulary, then scores
// the result in float32 and int8 beside the teacher, and predicts raw text
// with the pruned tokenizer.
func checkCompress(t *testing.T, dir, data string, teacher *TrainResult) {
	t.Helper()
	rcfg := trainer.DefaultConfig()
	rcfg.Epochs, rcfg.LR, rcfg.BatchSize, rcfg.Alpha, rcfg.Temperature, rcfg.LogEvery = 1, 1e-4, 8, 0.5, 2, 50
	o := CompressOptions{
		Model: teacher.ModelDir, Data: data, Output: filepath.Join(dir, "compress"),
		HeadKeep: 0.5, FFNKeep: 0.5, PruneSteps: 2, ImportanceBatches: 8, Recovery: rcfg,
		PruneVocab: true, InferBatch: 32, Device: "cpu", Threads: 2, Resume: true,
	}
	res, err := RunCompress(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	st := res.Stats
	t.Logf("compress: %d -> %d params, heads %v, FFN %d, vocabulary %d -> %d", st.SourceParams, st.Params, st.Heads, st.FFNWidth, st.SourceVocab, st.VocabSize)
	heads := 0
	for _, h := range st.Heads {
		heads += h
	}
	if heads != 36 || st.FFNWidth != 768 || !st.Recovered || st.VocabSize >= st.SourceVocab/2 || st.Params >= st.SourceParams/2 {
		t.Errorf("compressed model: %d heads (want 36 of 72), FFN %d (want 768), recovered %v, vocabulary %d of %d, %d of %d params",
			heads, st.FFNWidth, st.Recovered, st.VocabSize, st.SourceVocab, st.Params, st.SourceParams)
	}
	if !storage.Published(context.Background(), res.Dir) {
		t.Errorf("%s is not published", res.Dir)
	}
	for _, f := range []string{model.VocabMapFile, model.TokenizerFile, "vocab.txt", CompressSummary} {
		p := filepath.Join(res.Dir, f)
		if f == CompressSummary {
			p = filepath.Join(o.Output, f)
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("compress wrote no %s", p)
		}
	}
	// A second run with --resume reuses the pruning steps and the recovery.
	if _, err := RunCompress(context.Background(), o); err != nil {
		t.Fatalf("resumed compress: %v", err)
	}
	ev, err := RunEvaluate(context.Background(), EvaluateOptions{
		Data: data, Split: "validation", Output: filepath.Join(dir, "report-compress"),
		Models: []NamedModel{{Name: "teacher", Dir: teacher.ModelDir}, {Name: "compressed", Dir: res.Dir},
			{Name: "compressed-int8", Dir: res.Dir, Quantize: model.QuantizeInt8}},
		Seed: 1, InferBatch: 64, Device: "cpu", Threads: 2, SpeedRuns: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := ev.Report
	for i, m := range r.Models {
		t.Logf("%s: accuracy %.4f, %d params, %.0f examples/s, quantize %q", m.Name, m.Metrics.Accuracy, m.Params, m.Speed.ExamplesPerSec, m.Quantize)
		if i > 0 && m.Metrics.Accuracy < 0.9*r.Models[0].Metrics.Accuracy {
			t.Errorf("%s keeps %.1f%% of the teacher's accuracy, want >= 90%% (1,000 training rows, one recovery epoch)", m.Name, 100*m.Metrics.Accuracy/r.Models[0].Metrics.Accuracy)
		}
	}
	wantInt8 := model.QuantizeInt8
	if model.Int8Unsupported(model.Device{Name: "CPU"}, model.HostCPU()) != "" {
		wantInt8 = model.QuantizeNone // the fallback, with its log line
	}
	if r.Models[1].Quantize != model.QuantizeNone || r.Models[2].Quantize != wantInt8 {
		t.Errorf("quantize recorded as %q and %q, want none and %s", r.Models[1].Quantize, r.Models[2].Quantize, wantInt8)
	}
	// predict reads raw text with the folder's (pruned) tokenizer.
	in := filepath.Join(dir, "to_score_compressed.tsv")
	if err := os.WriteFile(in, []byte("sentence\nan utterly charming and moving film\na dull , lifeless and tedious mess\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pr, err := RunPredict(context.Background(), PredictOptions{Model: res.Dir, Inputs: []string{in}, Quantize: model.QuantizeInt8,
		Fields: dataset.Fields{Text: []string{"sentence"}}, Header: true, Format: "tsv", Output: filepath.Join(dir, "pred-compressed"), Device: "cpu", Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.ReadFile(pr.Files[0])
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 2 || !strings.Contains(lines[0], `"label":"1"`) || !strings.Contains(lines[1], `"label":"0"`) {
		t.Errorf("the compressed model should call the first review positive and the second negative:\n%s", out)
	}
}
