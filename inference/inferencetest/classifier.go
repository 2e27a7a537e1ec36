// Package inferencetest makes model folders for tests of inference
// pipelines.
package inferencetest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/beamtune/beamtune/model"
)

// Classifier exports the pretrained all-MiniLM-L6-v2 (installed by
// scripts/setup.sh) with a fresh head for labels into a temporary HF folder
// with its tokenizer: a real model whose decisions mean nothing, for
// testing the plumbing around it.
func Classifier(t testing.TB, labels ...string) string {
	t.Helper()
	base := model.DefaultModelDir()
	if _, err := os.Stat(filepath.Join(base, model.SafetensorsFile)); err != nil {
		t.Fatalf("pretrained model missing (run scripts/setup.sh): %v", err)
	}
	unlock := model.LockThread()
	defer unlock()
	m, _, err := model.Load(base, model.LoadOptions{Labels: labels, HeadFromScratch: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	dir := filepath.Join(t.TempDir(), "classifier")
	if err := m.Export(dir, base, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}
