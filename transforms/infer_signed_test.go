package transforms

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/inference"
	"github.com/beamtune/beamtune/signing"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/storage/gcstest"
)

// TestInferenceVerifiesOnTheWorker: the inference DoFns' loader, under a
// trust policy, loads a signed model folder from gs:// and refuses one whose
// objects changed after signing before reading any weights, naming the
// gs:// folder and the file.
func TestInferenceVerifiesOnTheWorker(t *testing.T) {
	ctx := context.Background()
	gcstest.Start(t, "bt-signed")
	local := filepath.Join(t.TempDir(), "teacher")
	names, err := storage.Files(ctx, filepath.Join("..", "testdata", "parity", "tiny-bert"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := storage.Copy(ctx, filepath.Join("..", "testdata", "parity", "tiny-bert", n), filepath.Join(local, n)); err != nil {
			t.Fatal(err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m, err := signing.HashDir(local)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signing.Sign(m, "teacher", nil, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(local, signing.SignatureFile), sig, 0o644); err != nil {
		t.Fatal(err)
	}
	pub, err := signing.PublicPEM(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	trust := signing.Trust{Keys: []string{string(pub)}}
	remote := "gs://bt-signed/models/teacher"
	if err := storage.UploadDir(ctx, local, remote); err != nil {
		t.Fatal(err)
	}
	im := &inferModel{ModelHandler: inference.ModelHandler{ModelDir: remote, Device: "cpu", Threads: 1, Trust: trust}}
	if err := im.setup(ctx); err != nil {
		t.Fatalf("the signed folder: %v", err)
	}
	im.teardown()

	if err := storage.WriteFile(ctx, remote+"/config.json", []byte(`{"model_type":"bert"}`)); err != nil {
		t.Fatal(err)
	}
	im = &inferModel{ModelHandler: inference.ModelHandler{ModelDir: remote, Device: "cpu", Threads: 1, Trust: trust}}
	err = im.setup(ctx)
	if err == nil || !strings.Contains(err.Error(), "verify "+remote+": config.json: changed after signing") {
		t.Fatalf("a folder changed on gs:// after signing: %v", err)
	}
	if im.m != nil {
		t.Error("a model was loaded from a refused folder")
	}
}
