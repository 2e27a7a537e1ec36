package pipelines

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/trainer"
)

// iterate turns a slice into a Beam side-input iterator.
func iterate[T any](xs []T) func(*T) bool {
	i := 0
	return func(x *T) bool {
		if i >= len(xs) {
			return false
		}
		*x = xs[i]
		i++
		return true
	}
}

// TestNothingPublishedFromPartialInput: prism can run a pipeline's last
// step after a bundle before it failed (see RELIABILITY.md), so the steps
// that publish a sweep's winner and a distillation dataset's manifest check
// that every trial and every shard arrived, and otherwise write nothing.
func TestNothingPublishedFromPartialInput(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	sel := &selectBestFn{Output: dir, Name: "teacher", Trials: 2}
	err := sel.ProcessElement(ctx, nil, iterate([]trainer.TrialResult{{Trial: "lr=1e-4", BestAccuracy: 0.9, BestDir: filepath.Join(dir, "best")}}))
	if err == nil || !strings.Contains(err.Error(), "1 of 2 trials finished") {
		t.Errorf("a sweep with a missing trial: error %v", err)
	}
	for _, f := range []string{"teacher", "teacher-trials.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			t.Errorf("%s was written from part of the sweep", f)
		}
	}

	man := &writeDistillManifestFn{Root: dir, Base: dataset.Manifest{Schema: dataset.ManifestSchema}, Shards: 3}
	err = man.ProcessElement(ctx, nil, iterate([]dataset.ShardInfo{{Split: "train", Path: "a"}, {Split: "validation", Path: "b"}}))
	if err == nil || !strings.Contains(err.Error(), "2 of 3 shards written") {
		t.Errorf("a teacher pass with a missing shard: error %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, dataset.ManifestFile)); err == nil {
		t.Error("a distillation manifest was written for part of the shards")
	}
	// All shards there: the manifest is written.
	man.Shards = 2
	if err := man.ProcessElement(ctx, nil, iterate([]dataset.ShardInfo{{Split: "train", Path: "a"}, {Split: "validation", Path: "b"}})); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, dataset.ManifestFile)); err != nil {
		t.Errorf("complete teacher pass: %v", err)
	}
}
