package pipelines

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/storage/gcstest"
)

func TestRetrainConfigErrors(t *testing.T) {
	good := `
name: m
registry: /tmp/reg
prepare: {train: [a.tsv], text_fields: [sentence], label_field: label}
`
	if _, err := ParseRetrainConfig("good.yaml", []byte(good)); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown key", good + "trian: {lr: 1}\n", "line 5: field trian not found"},
		{"unknown nested key", good + "train: {learning_rate: 1}\n", "field learning_rate not found"},
		{"wrong type", good + "train: {epochs: three}\n", "cannot unmarshal"},
		{"no name", "registry: r\nprepare: {train: [a], text_fields: [t], label_field: l}\n", "name \"\""},
		{"slash in name", strings.Replace(good, "name: m", "name: a/b", 1), "without slashes"},
		{"no registry", strings.Replace(good, "registry: /tmp/reg", "", 1), "registry: missing"},
		{"no inputs", "name: m\nregistry: r\nprepare: {text_fields: [t], label_field: l}\n", "give inputs"},
		{"bad ttl", good + "lease_ttl: soon\n", "lease_ttl \"soon\""},
		{"student without distill", good + "evaluate: {challenger: student}\n", "no student_layers"},
		{"both student sources", good + "distill: {student_layers: [0], student_init: x}\n", "not both"},
		{"bad sweep", good + "train: {sweep: {dropout: [0.1]}}\n", "dropout cannot be swept"},
		{"empty", "", "name \"\""},
		{"unknown fine-tuning method", good + "train: {peft: lorra}\n", `train: peft "lorra"`},
		{"lora settings without lora", good + "distill: {student_layers: [0], lora_r: 4}\n", "distill: lora_r, lora_alpha, lora_dropout and lora_targets need peft=lora"},
		{"bad freeze_layers", good + "train: {freeze_layers: top}\n", `"top" is not embeddings`},
		{"peft in compress", good + "compress: {head_keep: 0.5, peft: lora}\n", "compress: the recovery distillation trains every weight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRetrainConfig("retrain.yaml", []byte(tc.yaml))
			if err == nil || !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "retrain.yaml") {
				t.Fatalf("err = %v, want ErrConfig naming the file and %q", err, tc.want)
			}
			if RetrainExitCode(err) != 2 {
				t.Errorf("exit code %d, want 2", RetrainExitCode(err))
			}
		})
	}
	// The example config in testdata parses and keeps its values.
	c, err := LoadRetrainConfig(context.Background(), "../testdata/retrain/retrain.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Train.LR != 1e-4 || c.Distill.Alpha != 0.5 || len(c.Distill.StudentLayers) != 3 || c.Train.WarmupRatio != 0.1 {
		t.Errorf("example config read as %+v", c)
	}
	// Fine-tuning keys are read into each stage's recipe.
	lora, err := ParseRetrainConfig("retrain.yaml", []byte(good+"train: {peft: lora, lora_r: 16, lora_alpha: 32, lora_targets: \"query,value,dense\"}\ndistill: {student_layers: [0, 2], peft: bitfit, freeze_layers: embeddings}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if tr, d := lora.Train.Config, lora.Distill.Config; tr.PEFT != "lora" || tr.LoRAR != 16 || tr.LoRAAlpha != 32 || tr.LoRATargets != "query,value,dense" || d.PEFT != "bitfit" || d.FreezeLayers != "embeddings" {
		t.Errorf("fine-tuning keys read as train %+v, distill %+v", tr, d)
	}
}

// registryRoots runs f on a local registry and on one in fake GCS.
func registryRoots(t *testing.T, f func(t *testing.T, root string)) {
	t.Run("local", func(t *testing.T) { f(t, t.TempDir()) })
	t.Run("gcs", func(t *testing.T) {
		gcstest.Start(t, "reg")
		f(t, "gs://reg/models")
	})
}

func TestLease(t *testing.T) {
	registryRoots(t, func(t *testing.T, root string) {
		ctx := context.Background()
		reg := Registry{Root: root, Name: "m"}
		clock := time.Date(2026, 11, 29, 1, 0, 0, 0, time.UTC)
		now := func() time.Time { return clock }
		a, err := reg.AcquireLease(ctx, "run-a", time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		_, err = reg.AcquireLease(ctx, "run-b", time.Hour, now)
		if !errors.Is(err, ErrLeaseHeld) || !strings.Contains(err.Error(), "run-a") || RetrainExitCode(err) != 4 {
			t.Fatalf("second acquire: %v, want ErrLeaseHeld naming run-a", err)
		}
		// Renewal keeps it; once it is stale (a crashed run), another run takes over.
		clock = clock.Add(50 * time.Minute)
		if err := a.Renew(ctx); err != nil {
			t.Fatal(err)
		}
		clock = clock.Add(59 * time.Minute)
		if _, err := reg.AcquireLease(ctx, "run-b", time.Hour, now); !errors.Is(err, ErrLeaseHeld) {
			t.Fatalf("acquire before the renewed expiry: %v", err)
		}
		clock = clock.Add(2 * time.Minute)
		b, err := reg.AcquireLease(ctx, "run-b", time.Hour, now)
		if err != nil {
			t.Fatalf("taking over a stale lease: %v", err)
		}
		// The old holder learns it lost the lease, and its release leaves b's alone.
		if err := a.Renew(ctx); !errors.Is(err, ErrLeaseHeld) {
			t.Fatalf("renewing a lease taken over: %v", err)
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := reg.AcquireLease(ctx, "run-c", time.Hour, now); !errors.Is(err, ErrLeaseHeld) {
			t.Fatalf("a's release freed b's lease: %v", err)
		}
		if err := b.Release(ctx); err != nil {
			t.Fatal(err)
		}
		// Released: free at once. Then eight racers: exactly one wins.
		var wg sync.WaitGroup
		var mu sync.Mutex
		won, held := 0, 0
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := reg.AcquireLease(ctx, fmt.Sprintf("racer-%d", i), time.Hour, now)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case errors.Is(err, ErrLeaseHeld):
					held++
				default:
					t.Errorf("racer %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		if won != 1 || held != 7 {
			t.Fatalf("%d racers won the lease and %d were refused, want 1 and 7", won, held)
		}
	})
}

// publishFakeModel publishes a folder holding one file, as a trained model would be.
func publishFakeModel(t *testing.T, dst string) {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "config.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := storage.PublishDir(context.Background(), src, dst, storage.Publication{}); err != nil {
		t.Fatal(err)
	}
}

func TestPromoteRace(t *testing.T) {
	registryRoots(t, func(t *testing.T, root string) {
		ctx := context.Background()
		reg := Registry{Root: root, Name: "m"}
		// A model folder without its completion marker is never pointed at.
		half := storage.Join(root, "m", "runs", "half", "student")
		if err := storage.WriteFile(ctx, storage.Join(half, "config.json"), []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if err := reg.Promote(ctx, Champion{RunID: "half", Model: half}, 0); err == nil || !strings.Contains(err.Error(), "not a completely published model") {
			t.Fatalf("promoting an incomplete folder: %v", err)
		}
		const n = 8
		for i := range n {
			publishFakeModel(t, reg.RunDir(fmt.Sprintf("run-%d", i))+"/student")
		}
		var wg sync.WaitGroup
		errs := make([]error, n)
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = reg.Promote(ctx, Champion{RunID: fmt.Sprintf("run-%d", i), Model: reg.RunDir(fmt.Sprintf("run-%d", i)) + "/student", Accuracy: 0.9}, 0)
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("runs %d and %d both promoted", winner, i)
				}
				winner = i
			case errors.Is(err, ErrPromotionConflict):
				if RetrainExitCode(err) != 3 {
					t.Errorf("conflict exit code %d, want 3", RetrainExitCode(err))
				}
			default:
				t.Errorf("run %d: %v", i, err)
			}
		}
		if winner < 0 {
			t.Fatal("no run promoted")
		}
		c, gen, err := reg.ReadChampion(ctx)
		if err != nil || c == nil || c.RunID != fmt.Sprintf("run-%d", winner) || gen == 0 {
			t.Fatalf("CHAMPION = %+v (gen %d, err %v), want run-%d", c, gen, err, winner)
		}
		// The next promotion must name the generation it evaluated against.
		loser := (winner + 1) % n
		next := Champion{RunID: fmt.Sprintf("run-%d", loser), Model: reg.RunDir(fmt.Sprintf("run-%d", loser)) + "/student", Previous: c.RunID}
		if err := reg.Promote(ctx, next, 0); !errors.Is(err, ErrPromotionConflict) {
			t.Fatalf("promotion against a stale generation: %v", err)
		}
		if err := reg.Promote(ctx, next, gen); err != nil {
			t.Fatalf("promotion against the current generation: %v", err)
		}
	})
}

// tinyRetrain is a retrain config small enough for a test: 300 training
// rows, a few optimizer steps.
func tinyRetrain(t *testing.T, registry string, seed int64, distill bool) RetrainConfig {
	t.Helper()
	c := DefaultRetrainConfig()
	c.Name = "sst2"
	c.Registry = registry
	c.Model = model.DefaultModelDir()
	if _, err := os.Stat(filepath.Join(c.Model, "model.safetensors")); err != nil {
		t.Fatalf("pretrained model missing (run scripts/setup.sh): %v", err)
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	c.Prepare.Train = []string{abs("../testdata/retrain/train.tsv")}
	c.Prepare.Validation = []string{abs("../testdata/retrain/dev.tsv")}
	c.Prepare.TextFields, c.Prepare.LabelField, c.Prepare.MaxLength = []string{"sentence"}, "label", 48
	c.Train.Seed, c.Train.MaxSteps, c.Train.BatchSize, c.Train.LR, c.Train.EvalEvery, c.Train.LogEvery = seed, 6, 16, 1e-4, 6, 3
	if distill {
		c.Distill.StudentLayers = []int{0, 3}
		c.Distill.Seed, c.Distill.MaxSteps, c.Distill.BatchSize, c.Distill.LR, c.Distill.EvalEvery, c.Distill.LogEvery = seed, 4, 16, 1e-4, 4, 2
	}
	c.Evaluate.SpeedRuns = 2
	// The point here is the machinery, not the quality of six steps: the
	// gate lets any challenger through unless a test says otherwise.
	c.Gate = report.GateConfig{MaxAccuracyDrop: 100, MaxMacroF1Drop: 100, MaxClassRecallDrop: 100}
	c.Threads = 2
	c.Device = "cpu"
	return c
}

var errCrash = errors.New("simulated crash")

func TestRetrainResumeAndSkip(t *testing.T) {
	if testing.Short() {
		t.Skip("trains models: skipped with -short")
	}
	ctx := context.Background()
	root := t.TempDir()
	cfg := tinyRetrain(t, root, 1, true)

	// A run that dies after training: prepare and train have markers.
	_, err := RunRetrain(ctx, RetrainOptions{Config: cfg, afterStage: func(s string) error {
		if s == "train" {
			return errCrash
		}
		return nil
	}})
	if !errors.Is(err, errCrash) {
		t.Fatalf("crashing run: %v", err)
	}
	// Its lease was released, so the rerun starts at once and resumes.
	res, err := RunRetrain(ctx, RetrainOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if got := stagesOf(res); got != "prepare(done) train(done) distill evaluate promote" {
		t.Fatalf("resumed run stages: %s", got)
	}
	if !res.Promoted || res.Champion == nil || res.Champion.Model != res.RunDir+"/student" && res.Champion.Model != filepath.Join(res.RunDir, "student") {
		t.Fatalf("first run with no champion was not promoted: %+v", res)
	}
	if _, err := os.Stat(filepath.Join(res.RunDir, "report", "report.html")); err != nil {
		t.Errorf("no report: %v", err)
	}
	// Unchanged inputs: the same run id, nothing to do.
	again, err := RunRetrain(ctx, RetrainOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if again.RunID != res.RunID || stagesOf(again) != "prepare(done) train(done) distill(done) evaluate(done) promote(done)" || !again.Promoted {
		t.Fatalf("rerun: id %s (was %s), stages %s", again.RunID, res.RunID, stagesOf(again))
	}
	// A challenger the gate rejects leaves the champion alone, with exit code 0.
	strict := tinyRetrain(t, root, 2, false)
	strict.Gate = report.GateConfig{MinAccuracy: 101}
	rej, err := RunRetrain(ctx, RetrainOptions{Config: strict})
	if err != nil || RetrainExitCode(err) != 0 {
		t.Fatalf("rejected run: %v", err)
	}
	if rej.RunID == res.RunID || rej.Promoted || rej.Verdict != "rejected" || len(rej.Reasons) == 0 {
		t.Fatalf("rejected run: %+v", rej)
	}
	champ, _, err := Registry{Root: root, Name: "sst2"}.ReadChampion(ctx)
	if err != nil || champ.RunID != res.RunID {
		t.Fatalf("champion after a rejected run: %+v, %v", champ, err)
	}
}

func stagesOf(r *RetrainResult) string {
	var s []string
	for _, st := range r.Stages {
		if st.Skipped {
			s = append(s, st.Stage+"(done)")
		} else {
			s = append(s, st.Stage)
		}
	}
	return strings.Join(s, " ")
}

// Two retrains of the same model against a registry in (fake) GCS, both
// evaluated against the same champion, promote at the same moment: exactly
// one wins and the other reports the conflict. They run without the lease
// (as two operators' manual runs would), so only the CHAMPION
// generation-match precondition keeps them apart.
func TestRetrainConcurrentPromotionGCS(t *testing.T) {
	if testing.Short() {
		t.Skip("trains models: skipped with -short")
	}
	srv := gcstest.Start(t, "reg")
	_ = srv
	// Model folders are tens of MB: give uploads time (the gcstest defaults
	// are tuned for fault tests on small objects).
	opts := gcstest.Options()
	opts.AttemptTimeout, opts.RetryTime = time.Minute, 5*time.Minute
	prev := storage.SetGCSOptions(opts)
	defer storage.SetGCSOptions(prev)
	ctx := context.Background()
	root := "gs://reg/models"

	// Bring both runs up to their evaluation one after the other (torch on
	// 2 cores), then let them evaluate and promote concurrently.
	cfgs := []RetrainConfig{tinyRetrain(t, root, 3, false), tinyRetrain(t, root, 4, false)}
	for _, c := range cfgs {
		_, err := RunRetrain(ctx, RetrainOptions{Config: c, afterStage: func(s string) error {
			if s == "train" {
				return errCrash
			}
			return nil
		}})
		if !errors.Is(err, errCrash) {
			t.Fatalf("preparing run: %v", err)
		}
	}
	var ready sync.WaitGroup
	ready.Add(len(cfgs))
	results := make([]*RetrainResult, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, c := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = RunRetrain(ctx, RetrainOptions{Config: c, NoLease: true, beforePromote: func() {
				ready.Done()
				ready.Wait() // both have evaluated against "no champion"
			}})
		}()
	}
	wg.Wait()
	won := 0
	for i := range cfgs {
		switch {
		case errs[i] == nil && results[i].Promoted:
			won++
		case errors.Is(errs[i], ErrPromotionConflict):
		default:
			t.Fatalf("run %d: %v (%+v)", i, errs[i], results[i])
		}
	}
	if won != 1 {
		t.Fatalf("%d runs promoted, want exactly 1 (errors %v)", won, errs)
	}
	champ, _, err := Registry{Root: root, Name: "sst2"}.ReadChampion(ctx)
	if err != nil || champ == nil || !storage.Published(ctx, champ.Model) {
		t.Fatalf("CHAMPION %+v (%v) does not point at a published model", champ, err)
	}
	// The loser, run again, now evaluates against the winner.
	for i, c := range cfgs {
		if errs[i] == nil {
			continue
		}
		res, err := RunRetrain(ctx, RetrainOptions{Config: c})
		if err != nil {
			t.Fatalf("loser rerun: %v", err)
		}
		if got := stagesOf(res); got != "prepare(done) train(done) evaluate promote" {
			t.Errorf("loser rerun stages: %s", got)
		}
		if !res.Promoted || res.Champion.Previous != champ.RunID {
			t.Errorf("loser rerun against the new champion: %+v", res.Champion)
		}
	}
}
