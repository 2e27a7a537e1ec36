package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	beamlog "github.com/apache/beam/sdks/v2/go/pkg/beam/log"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/storage/gcstest"
)

// hfSaved is a folder written by transformers' save_pretrained (model and
// tokenizer; scripts/hf_saved_fixture.py), labels "0" and "1".
var hfSaved = absPath(filepath.Join("..", "..", "testdata", "hf-saved"))

// sampleDir holds the bundled SST-2 sample.
var sampleDir = absPath(filepath.Join("..", "..", "testdata", "sample"))

// absPath makes p absolute: the binary runs in another folder.
func absPath(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return abs
}

// copyDir copies the files of src into a new folder under root.
func copyDir(t *testing.T, src, root, name string) string {
	t.Helper()
	dst := filepath.Join(root, name)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// headTSV writes the header and first n rows of a sample file to dir.
func headTSV(t *testing.T, src, dir string, n int) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	dst := filepath.Join(dir, filepath.Base(src))
	writeFile(t, dst, []byte(strings.Join(lines[:n+1], "")))
	return dst
}

// badModel is a broken model folder and what the refusal must name.
type badModel struct {
	name string
	make func(t *testing.T, root string) string // returns the folder
	file string                                 // the path the last line names ("" : the folder)
	want string                                 // the reason, as the last line gives it
}

// badModels are the folders a new user hands beamtune: each must be refused
// in the driver, before a pipeline starts, naming the file and the reason.
func badModels(bucket string) []badModel {
	return []badModel{
		{name: "pickle calling os.system", file: model.PytorchFile, want: "os.system", make: func(t *testing.T, root string) string {
			dir := copyDir(t, hfSaved, root, "pickle")
			if err := os.Remove(filepath.Join(dir, model.SafetensorsFile)); err != nil {
				t.Fatal(err)
			}
			// A legacy torch.save stream: PROTO 2, GLOBAL os.system, the
			// argument, TUPLE1, REDUCE, STOP. Unpickling it runs the command.
			pkl := append([]byte{0x80, 2}, "cos\nsystem\nX"...)
			pkl = binary.LittleEndian.AppendUint32(pkl, 4)
			pkl = append(pkl, "true\x85R."...)
			writeFile(t, filepath.Join(dir, model.PytorchFile), pkl)
			return dir
		}},
		{name: "safetensors header claiming 1 TiB", file: model.SafetensorsFile, want: "header length 1099511627776 exceeds", make: func(t *testing.T, root string) string {
			dir := copyDir(t, hfSaved, root, "huge-header")
			b := binary.LittleEndian.AppendUint64(nil, 1<<40)
			writeFile(t, filepath.Join(dir, model.SafetensorsFile), append(b, `{"w":{}}`...))
			return dir
		}},
		{name: "tensor offsets past the end", file: model.SafetensorsFile, want: "data_offsets", make: func(t *testing.T, root string) string {
			dir := copyDir(t, hfSaved, root, "offsets")
			header := []byte(`{"w":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}}`)
			b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
			writeFile(t, filepath.Join(dir, model.SafetensorsFile), append(append(b, header...), make([]byte, 16)...))
			return dir
		}},
		{name: "truncated tokenizer.json", file: model.TokenizerFile, want: "tokenizer", make: func(t *testing.T, root string) string {
			dir := copyDir(t, hfSaved, root, "truncated-tokenizer")
			path := filepath.Join(dir, model.TokenizerFile)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, path, data[:len(data)/2])
			return dir
		}},
		{name: "no config.json", file: "", want: "no config.json", make: func(t *testing.T, root string) string {
			dir := copyDir(t, hfSaved, root, "no-config")
			if err := os.Remove(filepath.Join(dir, model.ConfigFile)); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{name: "published without _COMPLETE", file: "", want: "has no _COMPLETE", make: func(t *testing.T, root string) string {
			dir := copyDir(t, hfSaved, root, "unfinished-publish")
			writeFile(t, filepath.Join(dir, report.PublishedTrainLogFile), []byte(`{"kind":"train","step":1,"epoch":0.1,"loss":0.7,"time":"x"}`+"\n"))
			return dir
		}},
		{name: "gs:// folder that does not exist", file: "", want: "does not exist", make: func(t *testing.T, root string) string {
			return "gs://" + bucket + "/models/nosuch"
		}},
	}
}

// commandLine gives the arguments of a command run on model folder m.
type commandLine struct {
	name string
	args func(m string) []string
}

// lastNonLogLine is the last line of text that is not a slog record
// ("time=... level=...").
func lastNonLogLine(text string) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.HasPrefix(lines[i], "time=") {
			return lines[i]
		}
	}
	return ""
}

// lastLine is the last non-empty line of text.
func lastLine(text string) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	return lines[len(lines)-1]
}

// checkRefused asserts a run that must stop in the driver: exit 2, the last
// line names what and why, stderr stays short, and no pipeline started.
func checkRefused(t *testing.T, r ran, cmd string, names []string, why string) {
	t.Helper()
	last := lastLine(r.stderr)
	if r.code != 2 {
		t.Errorf("exit %d, want 2; stderr:\n%s", r.code, r.stderr)
	}
	if !strings.HasPrefix(last, "beamtune "+cmd+": ") {
		t.Errorf("last line %q does not start with the command", last)
	}
	for _, n := range append(names, why) {
		if !strings.Contains(last, n) {
			t.Errorf("last line %q does not name %q", last, n)
		}
	}
	if n := strings.Count(strings.TrimRight(r.stderr, "\n"), "\n") + 1; n >= 5 {
		t.Errorf("stderr has %d lines, want under 5:\n%s", n, r.stderr)
	}
	if strings.Contains(r.stderr, "pipeline starts") {
		t.Errorf("a pipeline started:\n%s", r.stderr)
	}
}

// TestFailFastOnBadModels hands every command that reads a model folder the
// broken folders of badModels and checks each is refused before a pipeline
// starts: exit 2, one line naming the file and the reason.
func TestFailFastOnBadModels(t *testing.T) {
	bin := buildBeamtune(t)
	srv := gcstest.Start(t, "bt-fail-fast")
	env := []string{"STORAGE_EMULATOR_HOST=" + strings.TrimPrefix(srv.Fake.URL(), "http://")}
	root := t.TempDir()
	data := prepareSample(t, bin, root)
	input := headTSV(t, filepath.Join(sampleDir, "sst2_dev.tsv"), root, 20)
	commands := []commandLine{
		{"predict", func(m string) []string {
			return []string{"predict", "--model=" + m, "--input=" + input, "--text_field=sentence", "--output=" + filepath.Join(root, "preds")}
		}},
		{"evaluate", func(m string) []string {
			return []string{"evaluate", "--data=" + data, "--model=m=" + m, "--output=" + filepath.Join(root, "report")}
		}},
		{"train", func(m string) []string {
			return []string{"train", "--data=" + data, "--init=" + m, "--max_steps=1", "--output=" + filepath.Join(root, "run")}
		}},
		{"distill", func(m string) []string {
			return []string{"distill", "--data=" + data, "--teacher=" + m, "--student_layers=0", "--output=" + filepath.Join(root, "distill")}
		}},
		{"prepare", func(m string) []string {
			return []string{"prepare", "--input=" + input, "--text_field=sentence", "--label_field=label", "--model=" + m, "--output=" + filepath.Join(root, "data2")}
		}},
	}
	for _, bm := range badModels("bt-fail-fast") {
		dir := bm.make(t, root)
		named := []string{dir}
		if bm.file != "" {
			named = []string{filepath.Join(dir, bm.file)}
		}
		for _, c := range commands {
			t.Run(bm.name+"/"+c.name, func(t *testing.T) {
				checkRefused(t, runEnv(t, bin, env, time.Minute, c.args(dir)...), c.name, named, bm.want)
			})
		}
	}

	// A model that predicts other labels than the data has.
	three := copyDir(t, hfSaved, root, "three-labels")
	cfgPath := filepath.Join(three, model.ConfigFile)
	var cfg map[string]any
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg["id2label"] = map[string]string{"0": "neg", "1": "neu", "2": "pos"}
	cfg["label2id"] = map[string]int{"neg": 0, "neu": 1, "pos": 2}
	raw, err = json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, cfgPath, raw)
	for _, c := range commands[1:2] { // evaluate
		checkRefused(t, runEnv(t, bin, env, time.Minute, c.args(three)...), c.name, []string{three}, "predicts 3 labels [neg,neu,pos], the data has 2 [0,1]")
	}
	checkRefused(t, runEnv(t, bin, env, time.Minute, commands[3].args(three)...), "distill", []string{three}, "predicts 3 labels")
}

// TestFailFastOnBadInputs covers what is wrong besides the model: no file
// matches the input, the output cannot be written, a flag is unknown, the
// dataset folder has no manifest.
func TestFailFastOnBadInputs(t *testing.T) {
	bin := buildBeamtune(t)
	root := t.TempDir()
	afile := filepath.Join(root, "a-file")
	writeFile(t, afile, []byte("x"))
	unwritable := filepath.Join(afile, "out") // under a regular file
	input := headTSV(t, filepath.Join(sampleDir, "sst2_dev.tsv"), root, 20)
	nomatch := filepath.Join(root, "nothing-*.tsv")
	cases := []struct {
		name, cmd string
		args      []string
		names     []string
		why       string
	}{
		{"prepare: no matching input", "prepare", []string{"--input=" + nomatch, "--text_field=sentence", "--label_field=label", "--output=" + filepath.Join(root, "d")}, []string{nomatch}, "no such file"},
		{"predict: no matching input", "predict", []string{"--model=" + hfSaved, "--input=" + nomatch, "--text_field=sentence", "--output=" + filepath.Join(root, "p")}, []string{nomatch}, "no such file"},
		{"prepare: unwritable output", "prepare", []string{"--input=" + input, "--text_field=sentence", "--label_field=label", "--output=" + unwritable}, []string{unwritable}, "cannot be written"},
		{"predict: unwritable output", "predict", []string{"--model=" + hfSaved, "--input=" + input, "--text_field=sentence", "--output=" + unwritable}, []string{unwritable}, "cannot be written"},
		{"train: not a dataset", "train", []string{"--data=" + root, "--init=" + hfSaved, "--output=" + filepath.Join(root, "r")}, []string{root}, "no manifest.json"},
		{"train: unknown flag", "train", []string{"--no_such_flag=1"}, []string{"-no_such_flag"}, "flag provided but not defined"},
		{"distill: conflicting flags", "distill", []string{"--data=" + root, "--teacher=" + hfSaved, "--output=" + filepath.Join(root, "r")}, nil, "give either --student_layers or --student_init"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checkRefused(t, run(t, bin, append([]string{c.cmd}, c.args...)...), c.cmd, c.names, c.why)
		})
	}
}

// prepareSample prepares 200 training and 100 validation rows of the sample
// with the hf-saved tokenizer, for the commands that read a dataset.
func prepareSample(t *testing.T, bin, root string) string {
	t.Helper()
	train := headTSV(t, filepath.Join(sampleDir, "sst2_train.tsv"), root, 200)
	valid := headTSV(t, filepath.Join(sampleDir, "sst2_dev.tsv"), root, 100)
	data := filepath.Join(root, "data")
	r := runEnv(t, bin, nil, 5*time.Minute, "prepare", "--train="+train, "--validation="+valid, "--text_field=sentence",
		"--label_field=label", "--model="+hfSaved, "--output="+data)
	if r.code != 0 {
		t.Fatalf("prepare: exit %d\n%s", r.code, r.stderr)
	}
	return data
}

// TestModelFolderRule runs the commands that read a model on the folders
// they must take as they are: one saved by transformers' save_pretrained and
// the pretrained model setup installs (train --init; predict and evaluate
// need a classification head, which that one has not, and say so), and on a
// beamtune-published folder, which they take when it is complete.
func TestModelFolderRule(t *testing.T) {
	bin := buildBeamtune(t)
	root := t.TempDir()
	data := prepareSample(t, bin, root)
	input := headTSV(t, filepath.Join(sampleDir, "sst2_dev.tsv"), root, 20)
	ok := func(args ...string) ran { t.Helper(); return mustRun(t, bin, args...) }
	// save_pretrained's folder: train from it, predict and evaluate with it.
	ok("train", "--data="+data, "--init="+hfSaved, "--max_steps=2", "--batch_size=8", "--output="+filepath.Join(root, "run"))
	ok("predict", "--model="+hfSaved, "--input="+input, "--text_field=sentence", "--output="+filepath.Join(root, "preds"))
	ok("evaluate", "--data="+data, "--model=hf="+hfSaved, "--output="+filepath.Join(root, "report"))

	// The folder train published is complete; without its marker it is
	// refused, and the reason is the marker.
	published := filepath.Join(root, "run", "teacher")
	ok("predict", "--model="+published, "--input="+input, "--text_field=sentence", "--output="+filepath.Join(root, "preds2"))
	if err := os.Remove(filepath.Join(published, storage.CompleteMarker)); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"predict", "--model=" + published, "--input=" + input, "--text_field=sentence", "--output=" + filepath.Join(root, "preds3")},
		{"evaluate", "--data=" + data, "--model=t=" + published, "--output=" + filepath.Join(root, "report2")},
		{"train", "--data=" + data, "--init=" + published, "--output=" + filepath.Join(root, "run2")},
	} {
		checkRefused(t, run(t, bin, args...), args[0], []string{published}, "has no _COMPLETE")
	}

	// The installed pretrained model (no classification head): train
	// takes it; predict and evaluate say what it lacks.
	pretrained := model.DefaultModelDir()
	if _, err := os.Stat(filepath.Join(pretrained, model.ConfigFile)); err != nil {
		t.Fatalf("the pretrained model setup installs is missing (run scripts/setup.sh): %v", err)
	}
	mini := filepath.Join(root, "data-minilm")
	ok("prepare", "--train="+headTSV(t, filepath.Join(sampleDir, "sst2_train.tsv"), t.TempDir(), 64), "--validation="+input,
		"--text_field=sentence", "--label_field=label", "--output="+mini)
	ok("train", "--data="+mini, "--init="+pretrained, "--max_steps=1", "--batch_size=8", "--output="+filepath.Join(root, "run-minilm"))
	checkRefused(t, run(t, bin, "predict", "--model="+pretrained, "--input="+input, "--text_field=sentence", "--output="+filepath.Join(root, "p4")),
		"predict", []string{pretrained}, "has no classification head")
	checkRefused(t, run(t, bin, "evaluate", "--data="+mini, "--model=p="+pretrained, "--output="+filepath.Join(root, "r4")),
		"evaluate", []string{pretrained}, "has no classification head")
}

// mustRun runs beamtune with args and fails the test unless it exits 0.
func mustRun(t *testing.T, bin string, args ...string) ran {
	t.Helper()
	r := runEnv(t, bin, nil, 5*time.Minute, args...)
	if r.code != 0 {
		t.Fatalf("beamtune %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

// TestLoRAAdapterFolders: a train --peft=lora run publishes an adapter
// folder that predict, evaluate and merge take; the driver refuses it once
// its base's weights changed (naming the record and both digests' reason),
// refuses a new adapter on top of it, and refuses LoRA settings without
// --peft=lora and targets that name no layer, all before a pipeline starts.
func TestLoRAAdapterFolders(t *testing.T) {
	bin := buildBeamtune(t)
	root := t.TempDir()
	data := prepareSample(t, bin, root)
	input := headTSV(t, filepath.Join(sampleDir, "sst2_dev.tsv"), root, 20)
	base := copyDir(t, hfSaved, root, "base")
	ok := func(args ...string) ran { t.Helper(); return mustRun(t, bin, args...) }
	ok("train", "--data="+data, "--init="+base, "--max_steps=2", "--batch_size=8", "--peft=lora", "--lora_targets=query,value,dense", "--output="+filepath.Join(root, "run"))
	adapter := filepath.Join(root, "run", "teacher")
	if !model.IsAdapter(adapter) {
		t.Fatalf("%s is not an adapter folder", adapter)
	}
	ok("predict", "--model="+adapter, "--input="+input, "--text_field=sentence", "--output="+filepath.Join(root, "preds"))
	ok("evaluate", "--data="+data, "--model=lora="+adapter, "--output="+filepath.Join(root, "report"))
	ok("merge", "--adapter="+adapter, "--output="+filepath.Join(root, "merged"))
	ok("predict", "--model="+filepath.Join(root, "merged"), "--input="+input, "--text_field=sentence", "--output="+filepath.Join(root, "preds-merged"))
	a, err := os.ReadFile(filepath.Join(root, "preds", "predictions-00000-of-00001.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "preds-merged", "predictions-00000-of-00001.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Errorf("the adapter and its merged folder predict differently:\n%s\n%s", a, b)
	}

	// Full fine-tuning may start from an adapter (merged at load, its head kept for the same labels).
	ok("train", "--data="+data, "--init="+adapter, "--max_steps=1", "--batch_size=8", "--output="+filepath.Join(root, "run-from-adapter"))
	checkRefused(t, run(t, bin, "train", "--data="+data, "--init="+adapter, "--peft=lora", "--output="+filepath.Join(root, "run2")),
		"train", []string{adapter}, "is a LoRA adapter: merge it first")
	checkRefused(t, run(t, bin, "train", "--data="+data, "--init="+base, "--lora_r=4", "--output="+filepath.Join(root, "run3")),
		"train", nil, "need peft=lora")
	checkRefused(t, run(t, bin, "train", "--data="+data, "--init="+base, "--peft=lora", "--lora_targets=qkv", "--output="+filepath.Join(root, "run4")),
		"train", nil, `lora target "qkv" names no linear layer`)

	// Another model where the base was: the adapter no longer applies.
	other := copyDir(t, hfSaved, root, "other")
	raw, err := os.ReadFile(filepath.Join(other, model.SafetensorsFile))
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 0x40 // one weight's last byte
	writeFile(t, filepath.Join(base, model.SafetensorsFile), raw)
	checkRefused(t, run(t, bin, "predict", "--model="+adapter, "--input="+input, "--text_field=sentence", "--output="+filepath.Join(root, "preds2")),
		"predict", []string{filepath.Join(adapter, model.AdapterBaseFile)}, "not the same base model")
}

// TestWorkerFailureIsOneLine makes a trial fail on a worker (a learning
// rate that sends the loss to NaN) and checks the last line is the DoFn's
// own error, with the plan Beam prints kept for --verbose.
func TestWorkerFailureIsOneLine(t *testing.T) {
	bin := buildBeamtune(t)
	root := t.TempDir()
	data := prepareSample(t, bin, root)
	args := []string{"train", "--data=" + data, "--init=" + hfSaved, "--lr=1e30", "--max_steps=20", "--batch_size=8"}
	r := runEnv(t, bin, nil, 5*time.Minute, append(args, "--output="+filepath.Join(root, "run"))...)
	last := lastLine(r.stderr)
	if r.code != 1 || !strings.HasPrefix(last, "beamtune train: ") || !strings.Contains(last, "lower the learning rate") {
		t.Fatalf("exit %d, last line %q; stderr:\n%s", r.code, last, r.stderr)
	}
	for _, noise := range []string{"caused by", "DoFn[", "Plan[", "goroutine ", "ParDo["} {
		if strings.Contains(r.stderr, noise) {
			t.Errorf("stderr shows Beam's %q without --verbose:\n%s", noise, r.stderr)
		}
	}
	if !strings.Contains(r.stderr, "pipeline starts") {
		t.Errorf("no pipeline started:\n%s", r.stderr)
	}
	v := runEnv(t, bin, nil, 5*time.Minute, append(args, "--verbose", "--output="+filepath.Join(root, "run-v"))...)
	// With --verbose every log record is shown, and the SDK's goroutine that
	// stops the in-process worker may log "stopping worker" after the error
	// line: the last line that is not a log record must be the same one.
	if v.code != 1 || lastNonLogLine(v.stderr) != last || !strings.Contains(v.stderr, "caused by") {
		t.Errorf("--verbose: exit %d, want the same last line and the whole error above it:\n%s", v.code, v.stderr)
	}
}

// TestRootCause takes the one line out of errors as Beam reports them.
func TestRootCause(t *testing.T) {
	beam := "job job-001 failed:\nbundle inst004 stage-005 failed:process bundle failed for instruction inst004 using plan stage-005 : while executing FinishBundle for Plan[stage-005]:\n" +
		"1: DataSource[S[stage-005_source@localhost:34383], i0] Out:10\n6: ParDo[transforms.PredictExamplesFn] Out:[5]\n\tcaused by:\n" +
		"DoFn[UID:6, PID:e9, Name: github.com/beamtune/beamtune/transforms.PredictExamplesFn] failed:\n" +
		"embeddings: embedding: Libtorch API Error: index out of range in self\nException raised from operator() at ../aten/src/ATen/native/TensorAdvancedIndexing.cpp:1320\nframe #0: c10::Error"
	for _, c := range []struct{ err, want string }{
		{"pipeline failed: " + beam, "embeddings: embedding: Libtorch API Error: index out of range in self"},
		{"--model: /m/config.json: invalid config.json: unexpected end of JSON input", "--model: /m/config.json: invalid config.json: unexpected end of JSON input"},
		{"first line\nsecond line", "first line"},
		{"outer\n\tcaused by:\nmiddle\n\tcaused by:\ninner reason\nmore", "inner reason"},
	} {
		if got := rootCause(fmt.Errorf("%s", c.err)); got != c.want {
			t.Errorf("rootCause(%q) = %q, want %q", c.err, got, c.want)
		}
	}
}

// TestQuietHandler keeps beamtune's records and Beam's job links, and drops
// Beam's chatter and plan dumps.
func TestQuietHandler(t *testing.T) {
	var out strings.Builder
	h := quietHandler{slog.NewTextHandler(&out, nil)}
	beamPC := func() uintptr { // a PC inside the Beam SDK: one of its functions
		return reflect.ValueOf(beam.NewPipeline).Pointer() + 1
	}()
	for _, c := range []struct {
		pc    uintptr
		level slog.Level
		msg   string
		keep  bool
	}{
		{0, slog.LevelInfo, "train: eval", true},
		{beamPC, slog.LevelInfo, "Serving JobManagement", false},
		{beamPC, slog.LevelInfo, "Submitted job: job-001", true},
		{beamPC, slog.LevelInfo, "Console: https://console.cloud.google.com/dataflow/jobs/r/j?project=p", true},
		{beamPC, slog.LevelError, "process bundle failed for instruction inst004 using plan stage-005 :\n1: DataSource", false},
		{beamPC, slog.LevelWarn, "worker is slow", true},
	} {
		out.Reset()
		if err := h.Handle(context.Background(), slog.NewRecord(time.Now(), c.level, c.msg, c.pc)); err != nil {
			t.Fatal(err)
		}
		if kept := out.Len() > 0; kept != c.keep {
			t.Errorf("%q (from Beam: %v): kept %v, want %v", c.msg, c.pc != 0, kept, c.keep)
		}
	}
}

// TestQuietLoggingStandardLog: Beam's harness falls back to the standard
// log package (log.Standard) when its log stream has closed; quietLogging
// must keep those lines out as well, and still pass beamtune's own.
func TestQuietLoggingStandardLog(t *testing.T) {
	var out strings.Builder
	prev, prevFlags, prevOut := slog.Default(), log.Flags(), log.Writer()
	defer func() {
		slog.SetDefault(prev)
		log.SetFlags(prevFlags)
		log.SetOutput(prevOut)
	}()
	slog.SetDefault(slog.New(slog.NewTextHandler(&out, nil)))
	quietLogging()
	(&beamlog.Standard{}).Log(context.Background(), beamlog.SevInfo, 0, "stopping worker job-001[go-job-1]_go")
	if out.Len() != 0 {
		t.Errorf("a Beam line through the standard logger came through: %q", out.String())
	}
	slog.Info("train: eval")
	log.Print("a line of beamtune's own through the standard logger")
	if got := out.String(); !strings.Contains(got, "train: eval") || !strings.Contains(got, "a line of beamtune's own") {
		t.Errorf("beamtune's own lines were dropped: %q", got)
	}
}
