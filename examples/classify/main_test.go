package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/inference"
	"github.com/beamtune/beamtune/inference/inferencetest"
)

// TestClassifyExample builds the example and runs it on prism over the
// bundled SST-2 sample: every line is classified or dead-lettered, the
// label counts add up, and each result names the model.
func TestClassifyExample(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "classify")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	modelDir := inferencetest.Classifier(t, "neg", "pos")
	input := filepath.Join(dir, "in.txt")
	lines := "a gripping, funny film\n\nit drags\n\xff\xfe not text\nthe cast is wonderful\n"
	if err := os.WriteFile(input, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	cmd := exec.Command(bin, "--input="+input, "--model="+modelDir, "--output="+out, "--threads=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("classify: %v\n%s", err, b)
	}
	preds := readLines(t, filepath.Join(out, "predictions.jsonl"))
	if len(preds) != 3 {
		t.Fatalf("%d predictions, want 3:\n%s", len(preds), strings.Join(preds, "\n"))
	}
	counts := 0
	for _, l := range readLines(t, filepath.Join(out, "label_counts.txt")) {
		_, num, _ := strings.Cut(l, ": ")
		n, err := strconv.Atoi(num)
		if err != nil {
			t.Fatalf("count line %q: %v", l, err)
		}
		counts += n
	}
	if counts != 3 {
		t.Errorf("label counts add up to %d, want 3", counts)
	}
	for _, l := range preds {
		var r inference.PredictionResult
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(r.ModelID, modelDir+"@sha256:") || (r.Inference.Label != "neg" && r.Inference.Label != "pos") {
			t.Errorf("result %s", l)
		}
	}
	dead := readLines(t, filepath.Join(out, "dead_letters.jsonl"))
	if len(dead) != 2 || !strings.Contains(strings.Join(dead, "\n"), "empty text") || !strings.Contains(strings.Join(dead, "\n"), "not valid UTF-8") {
		t.Errorf("dead letters:\n%s", strings.Join(dead, "\n"))
	}
}

func readLines(t *testing.T, p string) []string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// TestClassifyExampleOnFlink runs the example on Beam's Flink job server
// (a local mini cluster, scripts/flink-jobserver.sh, as docs/flink.md) and
// on prism over the bundled SST-2 sample: the same lines get the same
// labels, probabilities within 1e-5 (batches differ between runners, and
// padding moves the last bits of a float32), and the same label counts.
func TestClassifyExampleOnFlink(t *testing.T) {
	if _, err := exec.LookPath("java"); err != nil {
		t.Skipf("java not found (%v): the Flink job server needs Java 17", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "classify")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	modelDir := inferencetest.Classifier(t, "neg", "pos")
	script, err := filepath.Abs("../../scripts/flink-jobserver.sh")
	if err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "JOBSERVER_STATE="+t.TempDir(), fmt.Sprintf("JOBSERVER_WATCH_PID=%d", os.Getpid()))
	start := exec.Command(script, "start")
	start.Env = env
	ep, err := start.Output()
	if err != nil {
		t.Fatalf("flink job server: %v", err)
	}
	t.Cleanup(func() {
		stop := exec.Command(script, "stop")
		stop.Env = env
		if out, err := stop.CombinedOutput(); err != nil {
			t.Errorf("stop: %v\n%s", err, out)
		}
	})
	run := func(name string, runner ...string) map[string]inference.PredictionResult {
		out := filepath.Join(dir, name)
		args := append([]string{"--input=../../testdata/sample/sst2_dev.tsv", "--column=1", "--model=" + modelDir, "--output=" + out, "--threads=1"}, runner...)
		if b, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("classify on %s: %v\n%s", name, err, b)
		}
		got := map[string]inference.PredictionResult{}
		for _, l := range readLines(t, filepath.Join(out, "predictions.jsonl")) {
			var r inference.PredictionResult
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatal(err)
			}
			got[r.Example.Text] = r
		}
		return got
	}
	prism := run("prism")
	flink := run("flink", "--runner=flink", "--endpoint="+strings.TrimSpace(string(ep)), "--environment_type=LOOPBACK")
	if len(prism) < 800 || len(flink) != len(prism) {
		t.Fatalf("%d distinct texts on prism, %d on Flink", len(prism), len(flink))
	}
	for text, p := range prism {
		f, ok := flink[text]
		if !ok || f.Inference.Label != p.Inference.Label || f.ModelID != p.ModelID ||
			math.Abs(float64(f.Inference.Probability-p.Inference.Probability)) > 1e-5 {
			t.Fatalf("%q: prism %+v, Flink %+v", text, p, f)
		}
	}
	if a, b := strings.Join(readLines(t, filepath.Join(dir, "prism", "label_counts.txt")), ","), strings.Join(readLines(t, filepath.Join(dir, "flink", "label_counts.txt")), ","); !sameSet(a, b) {
		t.Errorf("label counts: prism %s, Flink %s", a, b)
	}
}

func sameSet(a, b string) bool {
	x, y := strings.Split(a, ","), strings.Split(b, ",")
	sort.Strings(x)
	sort.Strings(y)
	return strings.Join(x, ",") == strings.Join(y, ",")
}
