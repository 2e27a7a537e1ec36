package pipelines

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/options/jobopts"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/trainer"
)

// portableStageTimeout bounds each pipeline on a Java runner. A job that
// cannot decode its own shuffle data does not fail there, it spins, so
// without a deadline a broken coder would only show as a test-binary timeout.
const portableStageTimeout = 3 * time.Minute

// jobServer is a Java job server that scripts/flink-jobserver.sh started for a test.
type jobServer struct {
	name     string // "flink" or "spark": also the --runner value
	endpoint string
	log      string
}

// startJobServer starts Beam's Flink or Spark job server through
// scripts/flink-jobserver.sh (which resolves the jars into the cache first
// when it lacks them) and stops it when t ends. Only a missing Java skips: a
// failed fetch or start is a failure.
func startJobServer(t *testing.T, name string) *jobServer {
	t.Helper()
	if _, err := exec.LookPath("java"); err != nil {
		t.Skipf("java not found (%v): the %s job server needs Java 17 (Debian: apt-get install openjdk-17-jre-headless)", err, name)
	}
	script, err := filepath.Abs(filepath.Join("..", "scripts", "flink-jobserver.sh"))
	if err != nil {
		t.Fatal(err)
	}
	var mode []string
	if name == "spark" {
		mode = []string{"--spark"}
	}
	state := t.TempDir()
	env := append(os.Environ(), "JOBSERVER_STATE="+state,
		// The script's watchdog stops the JVM if this binary dies before
		// its cleanup runs (a panic, a -timeout kill).
		fmt.Sprintf("JOBSERVER_WATCH_PID=%d", os.Getpid()))
	cmd := exec.Command(script, append(mode, "start")...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	began := time.Now()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s start: %v\n%s", script, strings.Join(mode, " "), err, stderr.String())
	}
	js := &jobServer{name: name, endpoint: strings.TrimSpace(string(out)), log: filepath.Join(state, "jobserver.log")}
	t.Logf("%s job server at %s (fetch and start %.1f s)", name, js.endpoint, time.Since(began).Seconds())
	t.Cleanup(func() {
		stop := exec.Command(script, append(mode, "stop")...)
		stop.Env = env
		if out, err := stop.CombinedOutput(); err != nil {
			t.Errorf("%s stop: %v\n%s", script, err, out)
		}
	})
	return js
}

// use points the portable runners at the job server with workers in this
// process (LOOPBACK), as --endpoint and --environment_type do on the command line.
func (js *jobServer) use(t *testing.T) {
	t.Helper()
	oldEndpoint, oldEnv := *jobopts.Endpoint, *jobopts.EnvironmentType
	*jobopts.Endpoint = js.endpoint
	*jobopts.EnvironmentType = "LOOPBACK"
	t.Cleanup(func() { *jobopts.Endpoint, *jobopts.EnvironmentType = oldEndpoint, oldEnv })
}

// logTail is the end of the job server's log, for failure messages: the Java
// side's exceptions never reach the Go error.
func (js *jobServer) logTail() string {
	data, _ := os.ReadFile(js.log)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// stage runs one pipeline on the job server under the stage deadline and
// fails t with the job server's log when it errs or hangs.
func (js *jobServer) stage(t *testing.T, what string, f func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), portableStageTimeout)
	defer cancel()
	began := time.Now()
	err := f(ctx)
	t.Logf("%s on %s: %.1f s", what, js.name, time.Since(began).Seconds())
	if err == nil {
		return
	}
	if ctx.Err() != nil {
		// The stacks are taken before the cleanup stops the JVM: they show
		// where the job is stuck, which the log does not.
		t.Fatalf("%s on %s did not finish in %v: %v\n"+
			"A Java runner that spins in a coder's decode usually met a Go row it cannot re-encode (docs/flink.md, \"A coder pitfall\").\n"+
			"busy job server threads:\n%s\njob server log (%s):\n%s", what, js.name, portableStageTimeout, err, js.busyThreads(), js.log, js.logTail())
	}
	t.Fatalf("%s on %s: %v\njob server log (%s):\n%s", what, js.name, err, js.log, js.logTail())
}

// busyThreads is the top of every runnable JVM thread that is inside Beam's
// coders, from jstack (part of the JDK; absent from a bare JRE).
func (js *jobServer) busyThreads() string {
	pid, err := os.ReadFile(filepath.Join(filepath.Dir(js.log), "jobserver.pid"))
	if err != nil {
		return err.Error()
	}
	out, err := exec.Command("jstack", strings.TrimSpace(string(pid))).Output()
	if err != nil {
		return fmt.Sprintf("jstack: %v", err)
	}
	var busy []string
	for _, th := range strings.Split(string(out), "\n\n") {
		if strings.Contains(th, "State: RUNNABLE") && strings.Contains(th, "org.apache.beam.sdk.coders.") {
			lines := strings.Split(th, "\n")
			busy = append(busy, strings.Join(lines[:min(len(lines), 14)], "\n"))
		}
	}
	if len(busy) == 0 {
		return "(none inside Beam's coders)"
	}
	return strings.Join(busy, "\n\n")
}

// headLines copies the header and the first n data lines of src to dst,
// then appends extra lines.
func headLines(t *testing.T, src, dst string, n int, extra ...string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	lines = append(lines[:n+1:n+1], extra...)
	if err := os.WriteFile(dst, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func shardSums(m *dataset.Manifest) string {
	var out []string
	for _, s := range m.Shards {
		out = append(out, s.Path+" "+s.SHA256)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// jsonDiff compares a and b as JSON and describes the first difference, or
// returns "". Whole numbers (counts) must match exactly; other numbers may
// differ in the last bits: a CombineFn sums float64s in whatever order the
// runner merges its accumulators, and addition does not associate (a Flink
// run gave one slice's log loss as ...728 against prism's ...729).
func jsonDiff(a, b any) string {
	var x, y any
	for _, p := range []struct {
		v   any
		dst *any
	}{{a, &x}, {b, &y}} {
		data, err := json.Marshal(p.v)
		if err != nil {
			return err.Error()
		}
		if err := json.Unmarshal(data, p.dst); err != nil {
			return err.Error()
		}
	}
	return valueDiff("", x, y)
}

func valueDiff(path string, x, y any) string {
	switch xv := x.(type) {
	case map[string]any:
		yv, ok := y.(map[string]any)
		if !ok || len(xv) != len(yv) {
			return fmt.Sprintf("%s: %v vs %v", path, x, y)
		}
		keys := make([]string, 0, len(xv))
		for k := range xv {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if d := valueDiff(path+"."+k, xv[k], yv[k]); d != "" {
				return d
			}
		}
	case []any:
		yv, ok := y.([]any)
		if !ok || len(xv) != len(yv) {
			return fmt.Sprintf("%s: %v vs %v", path, x, y)
		}
		for i := range xv {
			if d := valueDiff(fmt.Sprintf("%s[%d]", path, i), xv[i], yv[i]); d != "" {
				return d
			}
		}
	case float64:
		yv, ok := y.(float64)
		whole := xv == math.Trunc(xv) && ok && yv == math.Trunc(yv)
		if !ok || (whole && xv != yv) || math.Abs(xv-yv) > 1e-12*math.Max(1, math.Abs(xv)) {
			return fmt.Sprintf("%s: %v vs %v", path, x, y)
		}
	default:
		if x != y {
			return fmt.Sprintf("%s: %v vs %v", path, x, y)
		}
	}
	return ""
}

func asJSON(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return string(data)
}

// portableChain is what prepare -> train -> evaluate produced on one runner.
type portableChain struct {
	prep  *dataset.Manifest
	data  string
	train *TrainResult
	eval  *report.Report
}

// runChain prepares the tiny corpus, trains two three-step trials of
// all-MiniLM-L6-v2 on it and evaluates the winner, each stage reading what
// the previous one wrote on the same runner. The settings are deterministic
// (fixed seeds, one libtorch thread), so any two runners must agree exactly.
func runChain(t *testing.T, js *jobServer, runner, modelDir, trainTSV, devTSV, out string) *portableChain {
	t.Helper()
	stage := func(what string, f func(ctx context.Context) error) {
		if js != nil {
			js.stage(t, what, f)
			return
		}
		began := time.Now()
		if err := f(context.Background()); err != nil {
			t.Fatalf("%s on %s: %v", what, runner, err)
		}
		t.Logf("%s on %s: %.1f s", what, runner, time.Since(began).Seconds())
	}
	c := &portableChain{data: filepath.Join(out, "data")}

	po := DefaultPrepareOptions()
	po.Train = []string{trainTSV}
	po.Validation = []string{devTSV}
	po.Fields = dataset.Fields{Text: []string{"sentence"}, Label: "label"}
	po.ModelDir = modelDir
	po.MaxLength = 32
	po.ShardBytes = 4 << 10 // several shards per split, so the shard writers run in parallel
	po.Output = c.data
	po.Runner = runner
	stage("prepare", func(ctx context.Context) error {
		res, err := RunPrepare(ctx, po)
		if err == nil {
			c.prep = res.Manifest
		}
		return err
	})

	cfg := trainer.DefaultConfig()
	cfg.MaxSteps = 3
	cfg.BatchSize = 8
	cfg.LogEvery = 1
	cfg.LR = 1e-4
	stage("train", func(ctx context.Context) error {
		res, err := RunTrain(ctx, TrainOptions{
			Data: c.data, Init: modelDir, Output: filepath.Join(out, "run"), Name: "teacher",
			Config: cfg, Sweep: map[string][]string{"seed": {"1", "2"}},
			Device: "cpu", Threads: 1, Runner: runner,
		})
		if err == nil {
			c.train = res
		}
		return err
	})

	stage("evaluate", func(ctx context.Context) error {
		res, err := RunEvaluate(ctx, EvaluateOptions{
			Data: c.data, Split: dataset.SplitValidation, Output: filepath.Join(out, "report"),
			Models: []NamedModel{{Name: "teacher", Dir: c.train.ModelDir}},
			Seed:   1, InferBatch: 16, Device: "cpu", Threads: 1, SpeedRuns: 1, Runner: runner,
		})
		if err == nil {
			c.eval = res.Report
		}
		return err
	})
	return c
}

// compareChains checks that a Java runner's chain equals prism's: the same
// shard bytes and manifest counts, the same trials with the same losses and
// bit-identical published weights, and the same evaluation metrics.
func compareChains(t *testing.T, name string, want, got *portableChain) {
	t.Helper()
	if a, b := shardSums(want.prep), shardSums(got.prep); a != b {
		t.Errorf("%s: shards differ from prism's:\nprism:\n%s\n%s:\n%s", name, a, name, b)
	}
	for _, f := range []struct {
		what string
		a, b any
	}{
		{"splits", want.prep.Splits, got.prep.Splits},
		{"labels", want.prep.Labels, got.prep.Labels},
		{"rejected", want.prep.Rejected, got.prep.Rejected},
		{"dedupe", want.prep.Dedupe, got.prep.Dedupe},
		{"records read", want.prep.RecordsRead, got.prep.RecordsRead},
	} {
		if a, b := asJSON(f.a), asJSON(f.b); a != b {
			t.Errorf("%s: manifest %s differ from prism's:\nprism: %s\n%s: %s", name, f.what, a, name, b)
		}
	}

	trials := func(r *TrainResult) map[string]trainer.TrialResult {
		m := map[string]trainer.TrialResult{}
		for _, tr := range r.Trials {
			m[tr.Trial] = tr
		}
		return m
	}
	wt, gt := trials(want.train), trials(got.train)
	if len(wt) != 2 || len(gt) != len(wt) {
		t.Fatalf("%s: %d trials, prism %d, want 2 each", name, len(gt), len(wt))
	}
	for trial, a := range wt {
		b := gt[trial]
		if a.Steps != b.Steps || a.BestStep != b.BestStep || a.BestAccuracy != b.BestAccuracy || a.BestLoss != b.BestLoss {
			t.Errorf("%s: trial %s ended at step %d (best %d, accuracy %v, loss %v); prism: step %d (best %d, accuracy %v, loss %v)",
				name, trial, b.Steps, b.BestStep, b.BestAccuracy, b.BestLoss, a.Steps, a.BestStep, a.BestAccuracy, a.BestLoss)
		}
	}
	if want.train.Best.Trial != got.train.Best.Trial {
		t.Errorf("%s chose trial %s, prism %s", name, got.train.Best.Trial, want.train.Best.Trial)
	}
	if a, b := fileSHA(t, filepath.Join(want.train.ModelDir, "model.safetensors")), fileSHA(t, filepath.Join(got.train.ModelDir, "model.safetensors")); a != b {
		t.Errorf("%s: published weights differ from prism's (sha256 %s vs %s)", name, b, a)
	}

	if len(want.eval.Models) != 1 || len(got.eval.Models) != 1 {
		t.Fatalf("%s: reports hold %d and %d models, want 1", name, len(want.eval.Models), len(got.eval.Models))
	}
	wm, gm := want.eval.Models[0], got.eval.Models[0]
	if d := jsonDiff(wm.Metrics, gm.Metrics); d != "" {
		t.Errorf("%s: evaluation metrics differ from prism's (prism vs %s) at %s", name, name, d)
	}
	if d := jsonDiff(wm.Slices, gm.Slices); d != "" {
		t.Errorf("%s: slice metrics differ from prism's (prism vs %s) at %s", name, name, d)
	}
	if len(gm.Slices) == 0 {
		t.Errorf("%s: the report has no slices", name)
	}
	if got.eval.Examples != want.eval.Examples || got.eval.Examples != got.prep.Splits[dataset.SplitValidation].Rows {
		t.Errorf("%s: report scored %d examples, prism %d, validation split has %d", name, got.eval.Examples, want.eval.Examples, got.prep.Splits[dataset.SplitValidation].Rows)
	}
}

// TestJavaRunners runs prepare, train (a two-trial sweep) and evaluate on
// Beam's Flink runner (a Flink 1.19 mini cluster inside the job server) and
// on its Spark runner (Spark 3.5 in local mode), both real Java job servers
// started by scripts/flink-jobserver.sh, with --runner=flink|spark and
// LOOPBACK workers, and checks every stage's output against the same chain
// on prism.
func TestJavaRunners(t *testing.T) {
	modelDir := needModel(t)
	if _, err := exec.LookPath("java"); err != nil {
		t.Skipf("java not found (%v): the Flink and Spark job servers need Java 17 (Debian: apt-get install openjdk-17-jre-headless)", err)
	}
	dir := t.TempDir()
	trainTSV, devTSV := filepath.Join(dir, "train.tsv"), filepath.Join(dir, "dev.tsv")
	// 300 training rows plus a row without a label (it must reach the dead
	// letter through the runner's shuffle), 40 validation rows.
	headLines(t, filepath.Join("..", "testdata", "sample", "sst2_train.tsv"), trainTSV, 300, "a row that lost its label\t")
	headLines(t, filepath.Join("..", "testdata", "sample", "sst2_dev.tsv"), devTSV, 40)

	prism := runChain(t, nil, "prism", modelDir, trainTSV, devTSV, filepath.Join(dir, "prism"))
	if prism.prep.Rejected.Total != 1 || len(prism.prep.Shards) < 4 {
		t.Fatalf("prism: %d rejected (want 1), %d shards (want several)", prism.prep.Rejected.Total, len(prism.prep.Shards))
	}
	for _, runner := range []string{"flink", "spark"} {
		t.Run(runner, func(t *testing.T) {
			js := startJobServer(t, runner)
			js.use(t)
			got := runChain(t, js, runner, modelDir, trainTSV, devTSV, filepath.Join(dir, runner))
			compareChains(t, runner, prism, got)
			t.Logf("%s = prism: %d shards, trial %s accuracy %.4f loss %.4f, evaluate accuracy %.4f on %d rows",
				runner, len(got.prep.Shards), got.train.Best.Trial, got.train.Best.BestAccuracy, got.train.Best.BestLoss,
				got.eval.Models[0].Metrics.Accuracy, got.eval.Examples)
		})
	}
}

// TestJSONDiff: the comparison above must tell a merge-order rounding
// difference from a real one, and never let a count differ.
func TestJSONDiff(t *testing.T) {
	type m struct {
		Count int64
		Loss  float64
	}
	if d := jsonDiff(m{3, 0.7071729690484728}, m{3, 0.7071729690484729}); d != "" {
		t.Errorf("a last-bit difference was reported: %s", d)
	}
	if d := jsonDiff(m{3, 0.5}, m{3, 0.5000001}); d == "" {
		t.Error("a 2e-7 difference in a float was not reported")
	}
	if d := jsonDiff(m{3, 0.5}, m{4, 0.5}); d == "" {
		t.Error("a count difference was not reported")
	}
	if d := jsonDiff([]m{{1, 1}}, []m{{1, 1}, {1, 1}}); d == "" {
		t.Error("a missing element was not reported")
	}
}
