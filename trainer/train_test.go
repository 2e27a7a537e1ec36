package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/model/safetensors"
)

// writeTinyDataset writes a prepared dataset a tiny model can learn: label 1
// rows contain token 7 somewhere, label 0 rows do not.
func writeTinyDataset(t *testing.T, dir string, nTrain, nVal int) {
	t.Helper()
	writeMarkerDataset(t, dir, nTrain, nVal, 7, 5)
}

// writeMarkerDataset is writeTinyDataset with another marker token (not
// 8..997, which fill the rows) and seed.
func writeMarkerDataset(t *testing.T, dir string, nTrain, nVal int, marker int32, seed int64) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	man := dataset.Manifest{Schema: dataset.ManifestSchema, DataDir: "data", Labels: []string{"0", "1"}}
	for _, sp := range []struct {
		name string
		n    int
	}{{dataset.SplitTrain, nTrain}, {dataset.SplitValidation, nVal}} {
		var rows []dataset.ShardRow
		for i := 0; i < sp.n; i++ {
			l := 4 + rng.Intn(20)
			ids := make([]int32, l)
			for j := range ids {
				ids[j] = int32(8 + rng.Intn(990))
			}
			label := int32(rng.Intn(2))
			if label == 1 {
				ids[rng.Intn(l)] = marker
			}
			rows = append(rows, dataset.ShardRow{ID: sp.name + string(rune('a'+i%26)) + strings.Repeat("x", i/26), Label: label, InputIDs: ids, Length: int32(l)})
		}
		sortRows(rows)
		var buf bytes.Buffer
		if err := dataset.WriteShardRows(&buf, rows); err != nil {
			t.Fatal(err)
		}
		rel := "data/" + sp.name + "/part-00000-of-00001.parquet"
		if err := os.MkdirAll(filepath.Join(dir, "data", sp.name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		man.Shards = append(man.Shards, dataset.ShardInfo{Split: sp.name, Path: rel, Rows: int64(len(rows))})
	}
	data, _ := json.Marshal(man)
	if err := os.WriteFile(filepath.Join(dir, dataset.ManifestFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func sortRows(rows []dataset.ShardRow) {
	for i := 1; i < len(rows); i++ {
		for j := i; j > 0 && rows[j].Length < rows[j-1].Length; j-- {
			rows[j], rows[j-1] = rows[j-1], rows[j]
		}
	}
}

func tinyJob(data, out string) Job {
	cfg := DefaultConfig()
	cfg.LR = 3e-3
	cfg.BatchSize = 16
	cfg.GradAccum = 2
	cfg.Epochs = 4
	cfg.CheckpointEvery = 2
	cfg.EvalEvery = 5
	cfg.LogEvery = 5
	cfg.ShuffleBuffer = 4
	return Job{Trial: "tiny", Config: cfg, Data: data, Init: filepath.Join("..", "testdata", "parity", "tiny-bert"),
		Output: out, Device: "cpu", Threads: 1, Resume: true}
}

func finalWeights(t *testing.T, dir string) map[string][]float32 {
	t.Helper()
	file := model.SafetensorsFile
	if model.IsAdapter(dir) {
		file = model.AdapterWeightsFile
	}
	f, err := safetensors.Open(filepath.Join(dir, file), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]float32{}
	for _, n := range f.Names() {
		if out[n], err = f.Float32(n); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// sameWeights fails unless got holds want's tensors, bit for bit.
func sameWeights(t *testing.T, want, got map[string][]float32) {
	t.Helper()
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("%d tensors resumed, %d uninterrupted", len(got), len(want))
	}
	for name, w := range want {
		g := got[name]
		if len(g) != len(w) {
			t.Fatalf("%s: %d values resumed, %d uninterrupted", name, len(g), len(w))
		}
		for i := range w {
			if g[i] != w[i] {
				t.Fatalf("%s[%d]: resumed %v, uninterrupted %v", name, i, g[i], w[i])
			}
		}
	}
}

// TestTrainChild is the process the resume test kills; it only runs when asked.
func TestTrainChild(t *testing.T) {
	spec := os.Getenv("BEAMTUNE_TRAIN_CHILD")
	if spec == "" {
		t.Skip("helper process for TestTrainResumeAfterSIGKILL")
	}
	var job Job
	if err := json.Unmarshal([]byte(spec), &job); err != nil {
		t.Fatal(err)
	}
	if _, err := Train(context.Background(), job, nil); err != nil {
		t.Fatal(err)
	}
}

// killAfterCheckpoint runs job in a child process (TestTrainChild) and
// kills it with SIGKILL as soon as its checkpoint of step exists, so the
// caller can resume it mid-epoch.
func killAfterCheckpoint(t *testing.T, job Job, step int64) {
	t.Helper()
	spec, _ := json.Marshal(job)
	cmd := exec.Command(os.Args[0], "-test.run=^TestTrainChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BEAMTUNE_TRAIN_CHILD="+string(spec))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(job.Output, "checkpoints", fmt.Sprintf("step-%09d", step), checkpointState)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("the child never wrote %s", marker)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if _, err := os.Stat(filepath.Join(job.Output, "final")); err == nil {
		t.Fatal("the child finished before it was killed; the test proves nothing")
	}
}

// killAndResume kills job's run after its step-10 checkpoint, resumes it
// to the end and checks it resumed and ran as many steps as the
// uninterrupted run ref.
func killAndResume(t *testing.T, job Job, ref TrialResult) TrialResult {
	t.Helper()
	killAfterCheckpoint(t, job, 10)
	return resume(t, job, ref)
}

// resume runs job from its latest checkpoint to the end and checks it
// resumed and ran as many steps as the uninterrupted run ref.
func resume(t *testing.T, job Job, ref TrialResult) TrialResult {
	t.Helper()
	resumed, err := Train(context.Background(), job, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !resumed.Resumed || resumed.Steps != ref.Steps {
		t.Fatalf("resumed run: resumed=%v steps=%d", resumed.Resumed, resumed.Steps)
	}
	return resumed
}

// TestTrainResumeAfterSIGKILL: a run killed with SIGKILL mid-epoch and
// resumed ends with the same weights, bit for bit, as an uninterrupted run.
func TestTrainResumeAfterSIGKILL(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTinyDataset(t, data, 600, 128)

	ref := tinyJob(data, filepath.Join(dir, "uninterrupted"))
	res, err := Train(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 76 { // 600 rows / 16 = 38 batches / 2 = 19 steps per epoch, 4 epochs
		t.Fatalf("steps = %d, want 76", res.Steps)
	}
	if res.BestAccuracy < 0.6 {
		t.Errorf("tiny model did not learn the rule: best validation accuracy %.3f", res.BestAccuracy)
	}

	job := tinyJob(data, filepath.Join(dir, "killed"))
	// The checkpoint is made to look like one from before eval_rows existed
	// (no such key): it still resumes, under today's default.
	killAfterCheckpoint(t, job, 10)
	states, _ := filepath.Glob(filepath.Join(job.Output, "checkpoints", "step-*", checkpointState))
	if len(states) == 0 {
		t.Fatal("no checkpoint left by the killed run")
	}
	for _, p := range states {
		stripEvalRows(t, p)
	}
	resume(t, job, res)
	want := finalWeights(t, filepath.Join(ref.Output, "final"))
	sameWeights(t, want, finalWeights(t, filepath.Join(job.Output, "final")))
	t.Logf("killed after the step-10 checkpoint, resumed, and matched all %d tensors bit for bit; best accuracy %.3f", len(want), res.BestAccuracy)
}

// TestTrainLoRAResumeAfterSIGKILL: a LoRA run publishes adapter folders
// (PEFT's layout, over the digest of the base it started from), checkpoints
// only the adapter, head and optimizer state for them, and a run killed
// with SIGKILL mid-epoch and resumed ends with the same adapter, bit for
// bit, as an uninterrupted one.
func TestTrainLoRAResumeAfterSIGKILL(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTinyDataset(t, data, 600, 128)
	lora := func(out string) Job {
		j := tinyJob(data, out)
		j.Config.PEFT, j.Config.LoRAR, j.Config.LoRAAlpha, j.Config.LoRATargets = model.TuneLoRA, 4, 8, "query,value,intermediate.dense"
		j.Config.LR = 1e-2
		return j
	}
	ref := lora(filepath.Join(dir, "uninterrupted"))
	res, err := Train(context.Background(), ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.TrainableParams <= 0 || res.TrainableParams*10 > res.TotalParams {
		t.Errorf("trainable %d of %d parameters: want the adapter and head only", res.TrainableParams, res.TotalParams)
	}
	for _, d := range []string{res.BestDir, res.FinalDir} {
		if !model.IsAdapter(d) {
			t.Fatalf("%s is not an adapter folder", d)
		}
		if _, err := os.Stat(filepath.Join(d, model.SafetensorsFile)); err == nil {
			t.Errorf("%s carries full model weights", d)
		}
	}
	base, err := model.ReadAdapterBase(res.FinalDir)
	if err != nil {
		t.Fatal(err)
	}
	initAbs, _ := filepath.Abs(ref.Init)
	_, digest, err := model.WeightsDigest(ref.Init)
	if err != nil {
		t.Fatal(err)
	}
	if base.Path != initAbs || base.SHA256 != digest {
		t.Errorf("adapter_base.json: %+v, want %s with sha256 %s", base, initAbs, digest)
	}
	// The checkpoint holds the trained tensors only: adapter and head.
	kept, _ := filepath.Glob(filepath.Join(ref.Output, "checkpoints", "step-*"))
	if len(kept) == 0 {
		t.Fatal("no checkpoint kept")
	}
	ck := finalWeights(t, kept[0])
	for name := range ck {
		if !strings.Contains(name, ".lora_") && !strings.HasPrefix(name, "classifier.") {
			t.Errorf("checkpoint holds frozen weight %s", name)
		}
	}
	// The published adapter scores as the trial did.
	m, _, err := model.Load(res.BestDir, model.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.Free()
	if res.BestAccuracy < 0.6 {
		t.Errorf("the LoRA model did not learn the rule: best validation accuracy %.3f", res.BestAccuracy)
	}

	resumed := killAndResume(t, lora(filepath.Join(dir, "killed")), res)
	want := finalWeights(t, res.FinalDir)
	sameWeights(t, want, finalWeights(t, resumed.FinalDir))
	t.Logf("LoRA: %d of %d parameters trained; killed after step 10, resumed, matched all %d adapter tensors bit for bit; best accuracy %.3f",
		res.TrainableParams, res.TotalParams, len(want), res.BestAccuracy)
}

// TestTrainOnThreadWithGradOff: libtorch's autograd mode belongs to the OS
// thread, so a trial must train even on a thread whose last user (an
// inference pass, on a Beam worker thread) left it off. Before microStep
// switched autograd on itself, this failed in backward.
func TestTrainOnThreadWithGradOff(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeTinyDataset(t, data, 64, 16)
	job := tinyJob(data, filepath.Join(dir, "out"))
	job.Config.MaxSteps = 3
	err := model.NoGrad(func() error { // pins this goroutine's thread with autograd off
		_, err := Train(context.Background(), job, nil)
		return err
	})
	if err != nil {
		t.Fatalf("training on a thread with autograd off: %v", err)
	}
}

// writeShardedTinyDataset writes writeTinyDataset's rule with the training
// split in nShards shards (each sorted by length, as prepare writes them).
func writeShardedTinyDataset(t *testing.T, dir string, nTrain, nVal, nShards int) {
	t.Helper()
	writeTinyDataset(t, dir, nTrain, nVal)
	m, err := dataset.ReadManifest(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	train, err := dataset.LoadSplit(context.Background(), dir, m, dataset.SplitTrain)
	if err != nil {
		t.Fatal(err)
	}
	var shards []dataset.ShardInfo
	for _, s := range m.Shards {
		if s.Split != dataset.SplitTrain {
			shards = append(shards, s)
		}
	}
	for s := range nShards {
		var rows []dataset.ShardRow
		for i := s; i < train.Len(); i += nShards {
			rows = append(rows, dataset.ShardRow{ID: train.RowIDs[i], Label: train.Labels[i], InputIDs: train.IDs[i], Length: train.Length[i]})
		}
		sortRows(rows)
		var buf bytes.Buffer
		if err := dataset.WriteShardRows(&buf, rows); err != nil {
			t.Fatal(err)
		}
		rel := fmt.Sprintf("data/train/part-%05d-of-%05d.parquet", s, nShards)
		if err := os.WriteFile(filepath.Join(dir, rel), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		shards = append(shards, dataset.ShardInfo{Split: dataset.SplitTrain, Path: rel, Rows: int64(len(rows))})
	}
	if nShards != 1 {
		_ = os.Remove(filepath.Join(dir, "data/train/part-00000-of-00001.parquet"))
	}
	m.Shards = shards
	data, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, dataset.ManifestFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStreamedTrainResumeAfterSIGKILL: a run streaming its training rows
// learns the rule while this process may hold fewer rows than the training
// split has (the test-only cap), and a streamed run killed with SIGKILL in
// epoch 1 and resumed ends with the same weights, bit for bit. A resume
// over shards that changed since the checkpoint is refused.
func TestStreamedTrainResumeAfterSIGKILL(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	writeShardedTinyDataset(t, data, 600, 128, 5)
	stream := func(out string) Job {
		j := tinyJob(data, out)
		j.Config.Input = InputStream
		j.Config.EvalRows, j.Config.EvalFull = 100, true
		return j
	}

	memory := tinyJob(data, filepath.Join(dir, "memory"))
	func() {
		defer func(v int64) { dataset.MaxResidentRows = v }(dataset.MaxResidentRows)
		dataset.MaxResidentRows = 300
		if _, err := Train(context.Background(), memory, nil); err == nil || !strings.Contains(err.Error(), "over the 300 rows") {
			t.Fatalf("an in-memory run of 600 training rows under a 300-row cap: %v", err)
		}
	}()

	ref := stream(filepath.Join(dir, "uninterrupted"))
	var res TrialResult
	func() {
		defer func(v int64) { dataset.MaxResidentRows = v }(dataset.MaxResidentRows)
		dataset.MaxResidentRows = 300
		var err error
		if res, err = Train(context.Background(), ref, nil); err != nil {
			t.Fatal(err)
		}
	}()
	if res.Steps < 70 || res.Steps > 80 {
		t.Fatalf("steps = %d, want about 76 (4 epochs of about 38 batches, 2 per step)", res.Steps)
	}
	if res.BestAccuracy < 0.6 {
		t.Errorf("streamed run did not learn the rule: best validation accuracy %.3f", res.BestAccuracy)
	}
	if res.FullValidationRows != 128 {
		t.Errorf("full validation scored %d rows, want 128", res.FullValidationRows)
	}

	job := stream(filepath.Join(dir, "killed"))
	killAfterCheckpoint(t, job, 30) // epoch 1: about 19 steps per epoch
	st := readCheckpointState(t, job.Output, 30)
	if st.Data == nil || st.Data.Epoch != 1 || len(st.Data.ShardOrder) != 5 {
		t.Fatalf("step-30 checkpoint's data position: %+v", st.Data)
	}
	copyDir(t, job.Output, filepath.Join(dir, "killed-copy"))
	resume(t, job, res)
	want := finalWeights(t, filepath.Join(ref.Output, "final"))
	sameWeights(t, want, finalWeights(t, filepath.Join(job.Output, "final")))

	// The same rows in 4 shards: the checkpoint's position no longer holds.
	resharded := filepath.Join(dir, "resharded")
	writeShardedTinyDataset(t, resharded, 600, 128, 4)
	again := stream(filepath.Join(dir, "killed-copy"))
	again.Data = resharded
	if _, err := Train(context.Background(), again, nil); err == nil || !strings.Contains(err.Error(), "shards changed") {
		t.Fatalf("resume over other shards: %v", err)
	}
	t.Logf("streamed: %d steps, best accuracy %.3f, full validation %.3f; killed in epoch 1, resumed bit for bit", res.Steps, res.BestAccuracy, res.FullValidationMetric)
}

func readCheckpointState(t *testing.T, out string, step int64) trainState {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(out, "checkpoints", fmt.Sprintf("step-%09d", step), checkpointState))
	if err != nil {
		t.Fatal(err)
	}
	var st trainState
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// stripEvalRows removes config.eval_rows from a checkpoint's state.json.
func stripEvalRows(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	cfg := st["config"].(map[string]any)
	if _, ok := cfg["eval_rows"]; !ok {
		t.Fatal("the checkpoint has no eval_rows to strip")
	}
	delete(cfg, "eval_rows")
	if data, err = json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
