package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/model/safetensors"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// The PEFT fixtures (testdata/peft, scripts/peft_fixture.sh) are on the
// tiny parity model.
var (
	tinyBertDir = filepath.Join("..", "testdata", "parity", "tiny-bert")
	peftDir     = filepath.Join("..", "testdata", "peft")
)

// peftInputs is the fixture's batch (24 padded rows with type ids).
func peftInputs(t *testing.T) (refFile, Batch) {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(peftDir, "peft_ref.safetensors"), nil)
	if err != nil {
		t.Fatalf("PEFT fixture: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	r := refFile{t, f}
	var b Batch
	for _, x := range []struct {
		name string
		dst  **ts.Tensor
	}{{"input_ids", &b.InputIDs}, {"attention_mask", &b.AttentionMask}, {"token_type_ids", &b.TokenTypeIDs}} {
		v, shape := r.int64s(x.name)
		*x.dst = rowsTensor(t, v, int(shape[1]), 0, int(shape[0]))
	}
	t.Cleanup(func() { drop(b.InputIDs, b.AttentionMask, b.TokenTypeIDs) })
	return r, b
}

// TestLoadPEFTAdapter loads adapters PEFT 0.12 saved (one plain, one
// rsLoRA over every dense layer, each with its classifier saved as
// modules_to_save) over the base they were made on, and checks beamtune's
// logits against PEFT's, merged and unmerged: the unmerged forward pass
// (base + (α/r)·B·A·x per layer) and the merged one (W + (α/r)·B·A) agree.
func TestLoadPEFTAdapter(t *testing.T) {
	ref, b := peftInputs(t)
	for _, name := range []string{"peft-adapter", "peft-adapter-rslora"} {
		want, _ := ref.floats("logits." + name)
		dir := filepath.Join(peftDir, name)
		for _, unmerged := range []bool{false, true} {
			m, rep, err := Load(dir, LoadOptions{BaseDir: tinyBertDir, Unmerged: unmerged})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if got := m.LoRA() != nil; got != unmerged {
				t.Errorf("%s unmerged=%v: model has an adapter: %v", name, unmerged, got)
			}
			got := evalLogits(t, m, b)
			if d := maxAbsDiff(got, want); d > parityTol {
				t.Errorf("%s unmerged=%v: logits differ from PEFT's by %g (> %g)", name, unmerged, d, parityTol)
			}
			if !strings.Contains(rep.Format, "LoRA adapter") {
				t.Errorf("load report format %q", rep.Format)
			}
			m.Free()
		}
	}
}

// beamtuneAdapter is the adapter beamtune writes for the PEFT direction:
// LoRA r=4, α=16 on query, value and both output.dense layers of the tiny
// model, lora_B and the head drawn from seed 7 so the update is not zero.
func beamtuneAdapter(t *testing.T) *Bert {
	t.Helper()
	m, _, err := Load(tinyBertDir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	err = WithSeed(7, func() error {
		if err := m.Tune(Tuning{Method: TuneLoRA, LoRA: LoRAConfig{R: 4, Alpha: 16, Dropout: 0.1, Targets: []string{"query", "value", "output.dense"}}}); err != nil {
			return err
		}
		return NoGrad(func() error {
			for _, p := range m.AdapterParams() {
				if strings.HasSuffix(p.Name, "lora_B.weight") {
					if err := p.T.Normal_(0, 0.3); err != nil {
						return err
					}
				}
			}
			return m.Param("classifier.weight").T.Normal_(0, 0.3)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestAdapterForPEFT writes a beamtune adapter and checks it is the one
// PEFT was shown: the same adapter_model.safetensors tensors and
// adapter_config.json as testdata/peft/beamtune-adapter, which
// PeftModel.from_pretrained loaded, giving the logits recorded in
// peft_logits_of_beamtune_adapter.safetensors; beamtune's logits must equal
// those. With BEAMTUNE_PEFT_EXPORT_DIR set (scripts/peft_fixture.sh) the
// adapter and its Go logits are written there for PEFT to check instead.
func TestAdapterForPEFT(t *testing.T) {
	_, b := peftInputs(t)
	m := beamtuneAdapter(t)
	defer m.Free()
	logits := evalLogits(t, m, b)
	exportDir := os.Getenv("BEAMTUNE_PEFT_EXPORT_DIR")
	dir := exportDir
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "adapter")
	}
	base, err := filepath.Abs(tinyBertDir)
	if err != nil {
		t.Fatal(err)
	}
	file, digest, err := WeightsDigest(base)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ExportAdapter(dir, "", AdapterBase{Path: base, WeightsFile: file, SHA256: digest}, nil); err != nil {
		t.Fatal(err)
	}
	if exportDir != "" {
		shape := []int64{int64(len(logits) / 3), 3}
		lt, err := safetensors.FromFloat32("logits", safetensors.F32, shape, logits)
		if err != nil {
			t.Fatal(err)
		}
		if err := safetensors.WriteFile(filepath.Join(exportDir, "go_logits.safetensors"), []safetensors.Tensor{lt}, nil); err != nil {
			t.Fatal(err)
		}
		return
	}
	// The weights PEFT loaded, tensor for tensor: the same names, dtypes and
	// shapes, and values within float32 rounding (the seeded draws may take
	// another libtorch kernel on another CPU).
	sameTensors(t, filepath.Join(peftDir, "beamtune-adapter", AdapterWeightsFile), filepath.Join(dir, AdapterWeightsFile))
	var gotCfg, wantCfg map[string]any
	readJSONFile(t, filepath.Join(dir, AdapterConfigFile), &gotCfg)
	readJSONFile(t, filepath.Join(peftDir, "beamtune-adapter", AdapterConfigFile), &wantCfg)
	delete(gotCfg, "base_model_name_or_path") // this checkout's path
	delete(wantCfg, "base_model_name_or_path")
	if g, w := mustJSON(t, gotCfg), mustJSON(t, wantCfg); g != w {
		t.Errorf("adapter_config.json:\n got %s\nwant %s", g, w)
	}
	f, err := safetensors.Open(filepath.Join(peftDir, "peft_logits_of_beamtune_adapter.safetensors"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	peftLogits, err := f.Float32("logits")
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(logits, peftLogits); d > parityTol {
		t.Errorf("beamtune's logits differ from PEFT's on the same adapter by %g (> %g)", d, parityTol)
	}
	// And beamtune reads its own adapter back: merged, the same outputs.
	back, _, err := Load(dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Free()
	if d := maxAbsDiff(evalLogits(t, back, b), logits); d > 1e-5 {
		t.Errorf("reloaded adapter: logits differ by %g", d)
	}
}

// sameTensors fails unless the safetensors file got holds want's tensors
// (names, dtypes, shapes) with values within 1e-6.
func sameTensors(t *testing.T, want, got string) {
	t.Helper()
	w, err := safetensors.Open(want, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	g, err := safetensors.Open(got, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if !slices.Equal(g.Names(), w.Names()) {
		t.Fatalf("%s has tensors %v, the file PEFT loaded %v: rerun scripts/peft_fixture.sh if the format changed on purpose", got, g.Names(), w.Names())
	}
	for _, name := range w.Names() {
		wi, _ := w.Info(name)
		gi, _ := g.Info(name)
		if wi.DType != gi.DType || !slices.Equal(wi.Shape, gi.Shape) {
			t.Errorf("%s: %s %v, the file PEFT loaded has %s %v", name, gi.DType, gi.Shape, wi.DType, wi.Shape)
			continue
		}
		wv, err := w.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		gv, err := g.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(gv, wv); d > 1e-6 {
			t.Errorf("%s differs from the file PEFT loaded by %g", name, d)
		}
	}
}

func readJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestAdapterRefusesChangedBase: an adapter records its base's weights
// digest, and loading it over other weights fails, naming both digests.
func TestAdapterRefusesChangedBase(t *testing.T) {
	base := copyTiny(t, keep, same)
	m := beamtuneAdapter(t)
	defer m.Free()
	file, digest, err := WeightsDigest(base)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := m.ExportAdapter(dir, "", AdapterBase{Path: base, WeightsFile: file, SHA256: digest}, nil); err != nil {
		t.Fatal(err)
	}
	if back, _, err := Load(dir, LoadOptions{}); err != nil {
		t.Fatalf("unchanged base: %v", err)
	} else {
		back.Free()
	}
	// Another base: one weight changed.
	other := copyTiny(t, func(tensors []safetensors.Tensor) []safetensors.Tensor {
		for i := range tensors {
			if tensors[i].Name == "bert.pooler.dense.bias" {
				tensors[i].Data[0] ^= 1
			}
		}
		return tensors
	}, same)
	if err := os.Rename(filepath.Join(other, SafetensorsFile), filepath.Join(base, SafetensorsFile)); err != nil {
		t.Fatal(err)
	}
	_, _, err = Load(dir, LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "not the same base model") || !strings.Contains(err.Error(), digest) {
		t.Fatalf("changed base: got %v, want a digest mismatch naming %s", err, digest)
	}
}

// TestTuneTrainsOnlyTheTrainableSet takes optimizer steps under each
// method and checks that every weight outside the trainable set is bit for
// bit unchanged (and got no gradient), and that every trainable one moved.
func TestTuneTrainsOnlyTheTrainableSet(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tuning Tuning
		trains func(name string) bool
	}{
		{"lora", Tuning{Method: TuneLoRA, LoRA: LoRAConfig{R: 2, Alpha: 4, Targets: DefaultLoRATargets}},
			func(n string) bool { return strings.HasPrefix(n, "classifier.") || strings.Contains(n, ".lora_") }},
		{"bitfit", Tuning{Method: TuneBitFit},
			func(n string) bool { return strings.HasPrefix(n, "classifier.") || strings.HasSuffix(n, ".bias") }},
		{"freeze", Tuning{FreezeEmbeddings: true, FreezeLayers: []int{0}},
			func(n string) bool {
				return !strings.HasPrefix(n, "bert.embeddings.") && !strings.HasPrefix(n, "bert.encoder.layer.0.")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := loadTiny(t)
			defer m.Free()
			if err := WithSeed(3, func() error { return m.Tune(tc.tuning) }); err != nil {
				t.Fatal(err)
			}
			before := map[string][]float32{}
			all := append(slices.Clone(m.Params()), m.AdapterParams()...)
			for _, p := range all {
				before[p.Name] = values(t, p.T)
			}
			trainable := m.Trainable()
			for _, p := range trainable {
				if !tc.trains(p.Name) {
					t.Errorf("%s is in the trainable set", p.Name)
				}
			}
			if len(trainable) == 0 || CountParams(trainable) >= CountParams(all) && tc.name != "full" {
				t.Fatalf("trainable set: %d of %d scalars", CountParams(trainable), CountParams(all))
			}
			opt, err := NewAdamW(trainable, DefaultAdamW())
			if err != nil {
				t.Fatal(err)
			}
			defer opt.Free()
			b := tinyBatch(t, m)
			labels, err := Int64Tensor([]int64{0, 2}, 2, 1, gotch.CPU)
			if err != nil {
				t.Fatal(err)
			}
			labels1, err := labels.View([]int64{2}, false)
			if err != nil {
				t.Fatal(err)
			}
			for step := 0; step < 3; step++ {
				err := WithGrad(true, func() error {
					out, err := m.Forward(b, true, false)
					if err != nil {
						return err
					}
					defer out.Free()
					loss, err := CrossEntropy(out.Logits, labels1)
					if err != nil {
						return err
					}
					defer loss.Drop()
					return loss.Backward()
				})
				if err != nil {
					t.Fatal(err)
				}
				for _, p := range all {
					g, err := p.T.Grad(false)
					if err != nil {
						t.Fatal(err)
					}
					defined, _ := g.Defined()
					drop(g)
					if defined != tc.trains(p.Name) {
						t.Errorf("step %d: %s has a gradient: %v", step, p.Name, defined)
					}
				}
				if err := opt.Step(1e-2, 1); err != nil {
					t.Fatal(err)
				}
				if err := ZeroGrad(trainable); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range all {
				changed := maxAbsDiff(values(t, p.T), before[p.Name]) > 0
				// lora_A's first gradient is zero (lora_B starts at zero), but
				// after a step of lora_B it moves too.
				if changed != tc.trains(p.Name) {
					t.Errorf("%s changed: %v, trainable: %v", p.Name, changed, tc.trains(p.Name))
				}
			}
		})
	}
}

// TestParseFreeze reads --freeze_layers values and names what is wrong.
func TestParseFreeze(t *testing.T) {
	emb, layers, err := ParseFreeze("embeddings, 0-2,4", 6)
	if err != nil || !emb || !slices.Equal(layers, []int{0, 1, 2, 4}) {
		t.Fatalf("got %v %v %v", emb, layers, err)
	}
	for _, bad := range []string{"0-9", "x", "3-1", "-1"} {
		if _, _, err := ParseFreeze(bad, 6); err == nil || !strings.Contains(err.Error(), "freeze_layers") {
			t.Errorf("%q: got %v", bad, err)
		}
	}
}

// TestLoRATargetsMustMatch: a target naming no linear layer is an error
// that lists the names that work.
func TestLoRATargetsMustMatch(t *testing.T) {
	m := loadTiny(t)
	defer m.Free()
	err := m.AddLoRA(LoRAConfig{R: 2, Alpha: 2, Targets: []string{"query", "qkv"}})
	if err == nil || !strings.Contains(err.Error(), `"qkv"`) || !strings.Contains(err.Error(), "intermediate.dense") {
		t.Fatalf("got %v", err)
	}
}

// TestAdaptersShareOneBase loads both PEFT adapters over one loaded base:
// each gives PEFT's logits, unmerged, without copying the base's weights
// (their tensors are the base's own), and freeing them leaves the base
// whole and unchanged.
func TestAdaptersShareOneBase(t *testing.T) {
	ref, b := peftInputs(t)
	base, _, err := Load(tinyBertDir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer base.Free()
	before := evalLogits(t, base, b)
	var views []*Bert
	for _, name := range []string{"peft-adapter", "peft-adapter-rslora"} {
		m, _, err := Load(filepath.Join(peftDir, name), LoadOptions{BaseDir: tinyBertDir, Base: base})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		views = append(views, m)
		want, _ := ref.floats("logits." + name)
		if d := maxAbsDiff(evalLogits(t, m, b), want); d > parityTol {
			t.Errorf("%s over the shared base: logits differ from PEFT's by %g", name, d)
		}
		if m.Param("bert.encoder.layer.0.attention.self.query.weight").T != base.Param("bert.encoder.layer.0.attention.self.query.weight").T {
			t.Errorf("%s: the base weight was copied, not shared", name)
		}
		if m.Param("classifier.weight").T == base.Param("classifier.weight").T {
			t.Errorf("%s: the adapter's head did not replace the base's", name)
		}
		if err := m.MergeLoRA(); err == nil {
			t.Errorf("%s: merging into shared weights was allowed", name)
		}
	}
	for _, v := range views {
		v.Free()
	}
	if d := maxAbsDiff(evalLogits(t, base, b), before); d != 0 {
		t.Errorf("the base's logits changed by %g after serving adapters", d)
	}
}
