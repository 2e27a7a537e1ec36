package model

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/beamtune/beamtune/model/safetensors"
	"github.com/sugarme/gotch"
)

// TestExportForTransformers exports all-MiniLM-L6-v2 with a new 3-class head,
// reloads the folder and checks the logits are unchanged. With
// BEAMTUNE_EXPORT_DIR set (scripts/parity.sh), the folder and the Go logits are
// kept there for transformers to load.
func TestExportForTransformers(t *testing.T) {
	src := DefaultModelDir()
	if _, err := os.Stat(filepath.Join(src, "model.safetensors")); err != nil {
		t.Skipf("pretrained model not installed (%v): run scripts/setup.sh", err)
	}
	dir := os.Getenv("BEAMTUNE_EXPORT_DIR")
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "exported")
	}
	defer LockThread()()
	Seed(3)
	labels := []string{"World", "Sports", "Business"}
	m, _, err := Load(src, LoadOptions{Labels: labels, Device: gotch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	ref := openRef(t, "minilm_ref.safetensors")
	ids, shape := ref.int64s("input_ids")
	mask, _ := ref.int64s("attention_mask")
	types, _ := ref.int64s("token_type_ids")
	L, n := int(shape[1]), 40
	b := Batch{InputIDs: rowsTensor(t, ids, L, 0, n), TokenTypeIDs: rowsTensor(t, types, L, 0, n), AttentionMask: rowsTensor(t, mask, L, 0, n)}
	logits := func(m *Bert) []float32 {
		var v []float32
		if err := NoGrad(func() error {
			out, err := m.Forward(b, false, false)
			if err != nil {
				return err
			}
			defer out.Free()
			v = values(t, out.Logits)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := logits(m)
	if err := m.Export(dir, src); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{ConfigFile, SafetensorsFile, "tokenizer.json", "vocab.txt"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("exported folder lacks %s", f)
		}
	}
	back, rep, err := Load(dir, LoadOptions{Device: gotch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Free()
	if len(rep.NewlyInitialized)+len(rep.Unused) != 0 {
		t.Errorf("reload of an exported folder should be exact: %s", rep)
	}
	if !slices.Equal(back.Config.Labels(), labels) {
		t.Errorf("labels after reload = %v, want %v", back.Config.Labels(), labels)
	}
	if d := maxAbsDiff(logits(back), before); d != 0 {
		t.Errorf("logits changed by %.3g after export and reload", d)
	}
	if os.Getenv("BEAMTUNE_EXPORT_DIR") != "" {
		i64 := func(name string, v []int64) safetensors.Tensor {
			raw := make([]byte, 8*len(v))
			for i, x := range v {
				for k := 0; k < 8; k++ {
					raw[8*i+k] = byte(uint64(x) >> (8 * k))
				}
			}
			return safetensors.Tensor{Name: name, DType: safetensors.I64, Shape: []int64{int64(n), int64(L)}, Data: raw}
		}
		lt, err := safetensors.FromFloat32("logits", safetensors.F32, []int64{int64(n), int64(len(labels))}, before)
		if err != nil {
			t.Fatal(err)
		}
		err = safetensors.WriteFile(filepath.Join(dir, "go_logits.safetensors"), []safetensors.Tensor{
			lt, i64("input_ids", ids[:n*L]), i64("attention_mask", mask[:n*L]), i64("token_type_ids", types[:n*L]),
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
}
