package transforms

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/inference"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/storage/gcstest"
	"github.com/beamtune/beamtune/trainer"
)

// TestModelFolderOnGCS publishes a model folder to gs:// (fake GCS, real
// client), loads it for inference from there, and gets the logits of the
// local copy.
func TestModelFolderOnGCS(t *testing.T) {
	ctx := context.Background()
	gcstest.Start(t, "bt-models")
	local := filepath.Join("..", "testdata", "parity", "tiny-bert")
	remote := "gs://bt-models/tiny/teacher"
	if err := storage.PublishDir(ctx, local, remote, storage.Publication{}); err != nil {
		t.Fatal(err)
	}
	if !storage.Published(ctx, remote) {
		t.Fatal("published folder lacks its completion marker")
	}
	rows := &dataset.Rows{}
	rows.Append([]dataset.ShardRow{
		{ID: "a", Label: 0, InputIDs: []int32{5, 17, 300, 4}, Length: 4},
		{ID: "b", Label: 2, InputIDs: []int32{9, 8, 7, 6, 5, 4, 3}, Length: 7},
	})
	var got [2]trainer.EvalResult
	for i, dir := range []string{local, remote} {
		im := &inferModel{ModelHandler: inference.ModelHandler{ModelDir: dir, Device: "cpu", Threads: 1}}
		if err := im.setup(ctx); err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		ev, err := im.scorer(nil)(rows)
		im.teardown()
		if err != nil {
			t.Fatal(err)
		}
		got[i] = ev
	}
	for r := range got[0].Logits {
		for k := range got[0].Logits[r] {
			if got[0].Logits[r][k] != got[1].Logits[r][k] {
				t.Fatalf("row %d: local logits %v, from gs:// %v", r, got[0].Logits[r], got[1].Logits[r])
			}
		}
	}
	if _, err := storage.Stat(ctx, remote+"/"+model.SafetensorsFile); err != nil {
		t.Fatal(err)
	}
}
