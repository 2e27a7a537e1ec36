package pipelines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/storage"
)

// Process faults: a prepare or a publish/promotion killed with SIGKILL at
// arbitrary moments leaves nothing half-done visible, and a rerun completes.
// (Training killed mid-epoch is transforms.TestTrainResumeAfterSIGKILL.)

// peakRSSLine starts the line a child prints with its own peak RSS.
const peakRSSLine = "beamtune-child-peak-rss-kib "

// reportPeakRSS prints this process's peak RSS (VmHWM) for the parent. The
// parent cannot use its rusage Maxrss: Go starts children with vfork, so
// until exec the child shares, and is charged for, the parent's pages, and
// Maxrss would report the (large) test process rather than the child.
func reportPeakRSS() {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Println(peakRSSLine + strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
}

// TestProcessFaultChild is the process the tests below kill; it only runs
// when asked through BEAMTUNE_FAULT_CHILD.
func TestProcessFaultChild(t *testing.T) {
	spec := os.Getenv("BEAMTUNE_FAULT_CHILD")
	if spec == "" {
		t.Skip("helper process for the SIGKILL tests")
	}
	ctx := context.Background()
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "prepare":
		var o PrepareOptions
		if err := json.Unmarshal([]byte(arg), &o); err != nil {
			t.Fatal(err)
		}
		_, err := RunPrepare(ctx, o)
		reportPeakRSS()
		if err != nil {
			t.Fatal(err)
		}
	case "retrain":
		if err := retrainChild(ctx, arg); err != nil {
			t.Fatal(err)
		}
	case "promote":
		// Publish model versions and promote each, forever: the parent kills it.
		reg := Registry{Root: arg, Name: "m"}
		for i := 0; ; i++ {
			if err := publishVersion(ctx, reg, fmt.Sprintf("run-%d-%d", os.Getpid(), i)); err != nil {
				t.Fatal(err)
			}
		}
	default:
		t.Fatalf("unknown child %q", kind)
	}
}

// publishVersion publishes a model folder whose files check each other (a
// weights file and its checksum in config.json) and promotes it.
func publishVersion(ctx context.Context, reg Registry, runID string) error {
	src, err := os.MkdirTemp("", "model-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	weights := make([]byte, 4<<20) // big enough that copying it takes a while
	for i := range weights {
		weights[i] = byte(i*31 + len(runID))
	}
	copy(weights, runID)
	sum := sha256.Sum256(weights)
	if err := os.WriteFile(filepath.Join(src, "model.safetensors"), weights, 0o644); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`{"weights_sha256": %q}`, hex.EncodeToString(sum[:]))
	if err := os.WriteFile(filepath.Join(src, "config.json"), []byte(cfg), 0o644); err != nil {
		return err
	}
	dst := reg.RunDir(runID) + "/student"
	if err := storage.PublishDir(ctx, src, dst, storage.Publication{}); err != nil {
		return err
	}
	_, gen, err := reg.ReadChampion(ctx)
	if err != nil {
		return err
	}
	return reg.Promote(ctx, Champion{RunID: runID, Model: dst}, gen)
}

// checkChampionComplete fails unless CHAMPION is absent or points at a
// complete model whose files agree with each other.
func checkChampionComplete(t *testing.T, reg Registry) (runID string) {
	t.Helper()
	ctx := context.Background()
	c, _, err := reg.ReadChampion(ctx)
	if err != nil {
		t.Fatalf("CHAMPION unreadable after a kill: %v", err)
	}
	if c == nil {
		return ""
	}
	if !storage.Published(ctx, c.Model) {
		t.Fatalf("CHAMPION points at %s, which has no completion marker", c.Model)
	}
	var cfg struct {
		Weights string `json:"weights_sha256"`
	}
	data, err := os.ReadFile(filepath.Join(c.Model, "config.json"))
	if err != nil || json.Unmarshal(data, &cfg) != nil {
		t.Fatalf("CHAMPION's config.json: %v", err)
	}
	w, err := os.ReadFile(filepath.Join(c.Model, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(w)
	if hex.EncodeToString(sum[:]) != cfg.Weights {
		t.Fatalf("CHAMPION %s: weights do not match its config (a torn publish)", c.Model)
	}
	return c.RunID
}

func startChild(t *testing.T, spec string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestProcessFaultChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BEAMTUNE_FAULT_CHILD="+spec)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func kill(cmd *exec.Cmd) bool {
	err := cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	return err == nil && !cmd.ProcessState.Success()
}

func TestPromoteSIGKILL(t *testing.T) {
	root := t.TempDir()
	reg := Registry{Root: root, Name: "m"}
	seen := map[string]bool{}
	for i, delay := range []time.Duration{150 * time.Millisecond, 400 * time.Millisecond, 900 * time.Millisecond, 1300 * time.Millisecond, 2100 * time.Millisecond} {
		cmd := startChild(t, "promote:"+root)
		time.Sleep(delay)
		if !kill(cmd) {
			t.Fatalf("kill %d: the child had already exited", i)
		}
		if id := checkChampionComplete(t, reg); id != "" {
			seen[id] = true
		}
	}
	if len(seen) < 2 {
		t.Fatalf("only %d distinct champions over 5 kills: the children promoted too little for the test to mean anything", len(seen))
	}
	// A new run promotes over whatever the killed ones left.
	if err := publishVersion(context.Background(), reg, "after"); err != nil {
		t.Fatal(err)
	}
	if id := checkChampionComplete(t, reg); id != "after" {
		t.Fatalf("champion after recovery: %s", id)
	}
}

// checkManifestComplete fails unless dir holds no manifest, or a manifest
// whose every shard exists with its recorded size and checksum.
func checkManifestComplete(t *testing.T, dir string) bool {
	t.Helper()
	m, err := dataset.ReadManifest(context.Background(), dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		t.Fatalf("manifest unreadable after a kill: %v", err)
	}
	for _, s := range m.Shards {
		data, err := os.ReadFile(filepath.Join(dir, s.Path))
		if err != nil {
			t.Fatalf("manifest lists %s: %v", s.Path, err)
		}
		sum := sha256.Sum256(data)
		if int64(len(data)) != s.Bytes || hex.EncodeToString(sum[:]) != s.SHA256 {
			t.Fatalf("shard %s does not match the manifest", s.Path)
		}
	}
	return true
}

func TestPrepareSIGKILL(t *testing.T) {
	modelDir := needModel(t)
	if testing.Short() {
		t.Skip("runs several prepares: skipped with -short")
	}
	ctx := context.Background()
	opts := func(out string) PrepareOptions { return sampleSST2Options(modelDir, out) }
	ref, err := RunPrepare(ctx, opts(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	killedMidway := 0
	for i, delay := range []time.Duration{200 * time.Millisecond, 500 * time.Millisecond, 900 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second} {
		spec, _ := json.Marshal(opts(out))
		cmd := startChild(t, "prepare:"+string(spec))
		time.Sleep(delay)
		if kill(cmd) {
			killedMidway++
		}
		complete := checkManifestComplete(t, out)
		t.Logf("kill %d after %v: manifest %v", i, delay, complete)
		if complete {
			break // a finished prepare: later kills would only hit the no-op rerun
		}
	}
	if killedMidway == 0 {
		t.Fatal("every child finished before its kill: the test proves nothing")
	}
	res, err := RunPrepare(ctx, opts(out))
	if err != nil {
		t.Fatalf("rerun after kills: %v", err)
	}
	if !checkManifestComplete(t, out) {
		t.Fatal("no manifest after the rerun")
	}
	if res.Manifest.Fingerprint != ref.Manifest.Fingerprint || len(res.Manifest.Shards) != len(ref.Manifest.Shards) {
		t.Fatalf("rerun manifest differs from a clean run: %d shards vs %d", len(res.Manifest.Shards), len(ref.Manifest.Shards))
	}
	for i, s := range res.Manifest.Shards {
		if s.SHA256 != ref.Manifest.Shards[i].SHA256 || s.Rows != ref.Manifest.Shards[i].Rows {
			t.Errorf("shard %s differs from a clean run's", s.Path)
		}
	}
}
