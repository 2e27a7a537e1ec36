package transforms

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/inference"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/signing"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/storage/gcstest"
	"github.com/beamtune/beamtune/trainer"
)

// peftAdapterOver copies a PEFT fixture adapter (testdata/peft) to a temp
// folder, naming base as its base model.
func peftAdapterOver(t *testing.T, name, base string) string {
	t.Helper()
	src := filepath.Join("..", "testdata", "peft", name)
	dst := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{model.AdapterConfigFile, model.AdapterWeightsFile} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if f == model.AdapterConfigFile {
			var cfg map[string]any
			if err := json.Unmarshal(data, &cfg); err != nil {
				t.Fatal(err)
			}
			cfg["base_model_name_or_path"] = base
			if data, err = json.Marshal(cfg); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dst, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestAdaptersShareTheWorkersBase serves two LoRA adapters over one base
// model on gs:// (fake GCS, real client): the worker process loads the base
// once for both, each adapter scores as its own merged model does, and the
// base is freed when the last adapter tears down.
func TestAdaptersShareTheWorkersBase(t *testing.T) {
	ctx := context.Background()
	gcstest.Start(t, "bt-adapters")
	local := filepath.Join("..", "testdata", "parity", "tiny-bert")
	remote := "gs://bt-adapters/tiny/base"
	if err := storage.PublishDir(ctx, local, remote, storage.Publication{}); err != nil {
		t.Fatal(err)
	}
	rows := &dataset.Rows{}
	rows.Append([]dataset.ShardRow{
		{ID: "a", Label: 0, InputIDs: []int32{5, 17, 300, 4}, Length: 4},
		{ID: "b", Label: 2, InputIDs: []int32{9, 8, 7, 6, 5, 4, 3}, Length: 7},
	})
	loads := inference.Stats().BaseLoads
	var served []*inferModel
	for _, name := range []string{"peft-adapter", "peft-adapter-rslora"} {
		dir := peftAdapterOver(t, name, remote)
		im := &inferModel{ModelHandler: inference.ModelHandler{ModelDir: dir, Device: "cpu", Threads: 1}}
		if err := im.setup(ctx); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		served = append(served, im)
		got, err := im.scorer(nil)(rows)
		if err != nil {
			t.Fatal(err)
		}
		// The same adapter loaded on its own, merged into a private base.
		m, _, cleanup, err := trainer.LoadModel(ctx, dir, model.LoadOptions{}, signing.Trust{})
		if err != nil {
			t.Fatal(err)
		}
		want, err := trainer.EvaluateHidden(m, rows, 8, nil)
		m.Free()
		cleanup()
		if err != nil {
			t.Fatal(err)
		}
		for r := range want.Logits {
			for k := range want.Logits[r] {
				if d := math.Abs(float64(got.Logits[r][k] - want.Logits[r][k])); d > 1e-5 {
					t.Fatalf("%s row %d: shared-base logits %v, merged %v", name, r, got.Logits[r], want.Logits[r])
				}
			}
		}
	}
	if n := inference.Stats().BaseLoads - loads; n != 1 {
		t.Errorf("the base was loaded %d times for two adapters, want once", n)
	}
	for _, im := range served {
		im.teardown()
	}
	if left := inference.Stats().BasesHeld; left != 0 {
		t.Errorf("%d base models left after every adapter tore down", left)
	}
}
