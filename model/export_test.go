package model

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/beamtune/beamtune/model/safetensors"
	"github.com/sugarme/gotch"
)

// exportKinds are the task kinds TestExportForTransformers exports, each with
// a new seeded head on all-MiniLM-L6-v2. sub is the folder under the export
// dir ("" for the dir itself: the single-label folder, where it always was).
var exportKinds = []struct {
	problemType string // "" leaves Config.ProblemType unset: Export must name single-label
	want        string // problem_type config.json must carry
	sub         string
	labels      []string
	seed        int64
	prune       bool // remove heads (a different number per layer) and FFN neurons before export
}{
	{"", "single_label_classification", "", []string{"World", "Sports", "Business"}, 3, false},
	{"multi_label_classification", "multi_label_classification", "multi_label_classification", []string{"World", "Sports", "Business"}, 4, false},
	{"regression", "regression", "regression", []string{"score"}, 5, false},
	{"", "single_label_classification", "pruned", []string{"World", "Sports", "Business"}, 6, true},
}

// prunedHeads is what the pruned kind removes, as positions in each layer
// at the time of the call (layer 0 is pruned twice, so the second call's
// positions are shifted), and wantPrunedHeads what config.json must record:
// indices of the unpruned model.
var (
	prunedHeads = []struct {
		layer int
		heads []int
	}{{0, []int{0, 3, 5}}, {2, []int{1}}, {0, []int{0}}, {5, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}}
	wantPrunedHeads = map[string][]int{"0": {0, 1, 3, 5}, "2": {1}, "5": {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}
)

// pruneForExport removes prunedHeads and keeps every FFN neuron whose index
// is not 1 mod 3 (1,024 of 1,536), so the exported folder is a pruned model.
func pruneForExport(t *testing.T, m *Bert) {
	t.Helper()
	for _, p := range prunedHeads {
		if err := m.PruneHeads(p.layer, p.heads); err != nil {
			t.Fatal(err)
		}
	}
	keep := make([][]int, m.Config.NumHiddenLayers)
	for l := range keep {
		for i := 0; i < m.Config.IntermediateSize; i++ {
			if i%3 != 1 {
				keep[l] = append(keep[l], i)
			}
		}
	}
	if err := m.PruneFFN(keep); err != nil {
		t.Fatal(err)
	}
}

// TestExportForTransformers exports all-MiniLM-L6-v2 with a new head for each
// task kind (3-class single-label, 3-label multi-label, 1-output regression),
// checks config.json names the task (problem_type, id2label, label2id),
// reloads each folder and checks the logits are unchanged. With
// BEAMTUNE_EXPORT_DIR set (scripts/parity.sh), the folders and the Go logits
// are kept there for transformers to load: the single-label folder is the
// dir itself, the others are its multi_label_classification/ and regression/.
func TestExportForTransformers(t *testing.T) {
	src := DefaultModelDir()
	if _, err := os.Stat(filepath.Join(src, "model.safetensors")); err != nil {
		t.Skipf("pretrained model not installed (%v): run scripts/setup.sh", err)
	}
	dir := os.Getenv("BEAMTUNE_EXPORT_DIR")
	keep := dir != ""
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "exported")
	}
	ref := openRef(t, "minilm_ref.safetensors")
	ids, shape := ref.int64s("input_ids")
	mask, _ := ref.int64s("attention_mask")
	types, _ := ref.int64s("token_type_ids")
	L, n := int(shape[1]), 40
	// In order: exporting the single-label folder replaces the dir, and with
	// it any kind folders an earlier run left inside.
	for _, k := range exportKinds {
		out := filepath.Join(dir, k.sub)
		ok := t.Run(k.want, func(t *testing.T) {
			defer LockThread()()
			before := exportKind(t, src, out, k.problemType, k.labels, k.seed, k.prune, ids, mask, types, L, n)
			checkExportedConfig(t, out, k.want, k.labels)
			if k.prune {
				checkPrunedConfig(t, out)
			}
			if keep {
				writeGoLogits(t, out, k.want, before, ids, mask, types, L, n, len(k.labels))
			}
		})
		if !ok {
			return
		}
	}
	t.Run("multitask", func(t *testing.T) {
		defer LockThread()()
		exportBundle(t, src, filepath.Join(dir, "multitask"), keep, ids, mask, types, L, n)
	})
}

// bundleHeads are the heads of the bundle TestExportForTransformers
// exports: one of each task kind.
var bundleHeads = []TaskHead{
	{Name: "topic", Labels: []string{"World", "Sports", "Business"}, ProblemType: "single_label_classification"},
	{Name: "tags", Labels: []string{"World", "Sports", "Business"}, ProblemType: "multi_label_classification"},
	{Name: "score", Labels: []string{"score"}, ProblemType: "regression"},
}

// exportBundle gives all-MiniLM-L6-v2 three seeded task heads, exports the
// bundle to dir, and checks each tasks/<task> folder is a plain model of
// its kind whose logits are the bundle head's on the shared encoder pass.
// With keep, each task folder gets those logits for transformers to match.
func exportBundle(t *testing.T, src, dir string, keep bool, ids, mask, types []int64, L, n int) {
	m, _, err := Load(src, LoadOptions{Device: gotch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := WithSeed(7, func() error { return m.SetHeads(bundleHeads) }); err != nil {
		t.Fatal(err)
	}
	b := Batch{InputIDs: rowsTensor(t, ids, L, 0, n), TokenTypeIDs: rowsTensor(t, types, L, 0, n), AttentionMask: rowsTensor(t, mask, L, 0, n)}
	defer drop(b.InputIDs, b.TokenTypeIDs, b.AttentionMask)
	heads := taskLogits(t, m, b, m.TaskNames()...)
	if err := m.Export(dir, src, nil); err != nil {
		t.Fatal(err)
	}
	for k, h := range bundleHeads {
		sub := filepath.Join(dir, TasksDir, h.Name)
		checkExportedConfig(t, sub, h.ProblemType, h.Labels)
		single, _, err := Load(sub, LoadOptions{Device: gotch.CPU})
		if err != nil {
			t.Fatal(err)
		}
		var got []float32
		err = NoGrad(func() error {
			out, err := single.Forward(b, false, false)
			if err != nil {
				return err
			}
			defer out.Free()
			got = values(t, out.Logits)
			return nil
		})
		single.Free()
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(got, heads[k]); d != 0 {
			t.Errorf("%s: the task folder's logits differ from the bundle head's by %g", h.Name, d)
		}
		if keep {
			writeGoLogits(t, sub, h.ProblemType, heads[k], ids, mask, types, L, n, len(h.Labels))
		}
	}
}

// exportKind loads src with a new head (labels, seeded), exports it to dir,
// reloads it and returns the logits of the first n reference rows.
func exportKind(t *testing.T, src, dir, problemType string, labels []string, seed int64, prune bool, ids, mask, types []int64, L, n int) []float32 {
	t.Helper()
	Seed(seed)
	m, _, err := Load(src, LoadOptions{Labels: labels, Device: gotch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	m.Config.ProblemType = problemType
	want := m.Config.Task()
	if prune {
		pruneForExport(t, m)
	}
	b := Batch{InputIDs: rowsTensor(t, ids, L, 0, n), TokenTypeIDs: rowsTensor(t, types, L, 0, n), AttentionMask: rowsTensor(t, mask, L, 0, n)}
	defer drop(b.InputIDs, b.TokenTypeIDs, b.AttentionMask)
	logits := func(m *Bert) []float32 {
		var v []float32
		if err := NoGrad(func() error {
			out, err := m.Forward(b, false, false)
			if err != nil {
				return err
			}
			defer out.Free()
			if got := Shape(out.Logits); !slices.Equal(got, []int64{int64(n), int64(len(labels))}) {
				return fmt.Errorf("logits shape %v, want [%d %d]", got, n, len(labels))
			}
			v = values(t, out.Logits)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := logits(m)
	if err := m.Export(dir, src, nil); err != nil {
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
	if got := back.Config.Task(); got != want || back.Config.ProblemType != want {
		t.Errorf("task after reload = %q (problem_type %q), want %q", got, back.Config.ProblemType, want)
	}
	if d := maxAbsDiff(logits(back), before); d != 0 {
		t.Errorf("logits changed by %.3g after export and reload", d)
	}
	return before
}

// checkExportedConfig reads dir/config.json as transformers would and checks
// it names the task: problem_type, the head's size (id2label, label2id and,
// if written, num_labels) and the label names.
func checkExportedConfig(t *testing.T, dir, problemType string, labels []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Architectures []string          `json:"architectures"`
		ProblemType   *string           `json:"problem_type"`
		ID2Label      map[string]string `json:"id2label"`
		Label2ID      map[string]int    `json:"label2id"`
		NumLabels     *int              `json:"num_labels"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("exported config.json: %v", err)
	}
	if !slices.Equal(cfg.Architectures, []string{"BertForSequenceClassification"}) {
		t.Errorf("architectures = %v, want [BertForSequenceClassification]", cfg.Architectures)
	}
	if cfg.ProblemType == nil {
		t.Errorf("config.json has no problem_type, want %q", problemType)
	} else if *cfg.ProblemType != problemType {
		t.Errorf("problem_type = %q, want %q", *cfg.ProblemType, problemType)
	}
	if cfg.NumLabels != nil && *cfg.NumLabels != len(labels) {
		t.Errorf("num_labels = %d, want %d", *cfg.NumLabels, len(labels))
	}
	if len(cfg.ID2Label) != len(labels) || len(cfg.Label2ID) != len(labels) {
		t.Errorf("id2label has %d entries and label2id %d, want %d labels: %v", len(cfg.ID2Label), len(cfg.Label2ID), len(labels), labels)
	}
	for i, name := range labels {
		if got := cfg.ID2Label[fmt.Sprint(i)]; got != name {
			t.Errorf("id2label[%d] = %q, want %q", i, got, name)
		}
		if got, ok := cfg.Label2ID[name]; !ok || got != i {
			t.Errorf("label2id[%q] = %d (present %v), want %d", name, got, ok, i)
		}
	}
	// And as beamtune parses it.
	c, err := ParseConfig(data, "exported config.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.Task() != problemType || c.NumLabels() != len(labels) {
		t.Errorf("parsed config: task %q, %d labels; want %q, %d", c.Task(), c.NumLabels(), problemType, len(labels))
	}
}

// writeGoLogits keeps the Go logits and their inputs next to the exported
// folder, for scripts/parity.py --roundtrip.
func writeGoLogits(t *testing.T, dir, problemType string, logits []float32, ids, mask, types []int64, L, n, labels int) {
	t.Helper()
	i64 := func(name string, v []int64) safetensors.Tensor {
		raw := make([]byte, 8*len(v))
		for i, x := range v {
			for k := 0; k < 8; k++ {
				raw[8*i+k] = byte(uint64(x) >> (8 * k))
			}
		}
		return safetensors.Tensor{Name: name, DType: safetensors.I64, Shape: []int64{int64(n), int64(L)}, Data: raw}
	}
	lt, err := safetensors.FromFloat32("logits", safetensors.F32, []int64{int64(n), int64(labels)}, logits)
	if err != nil {
		t.Fatal(err)
	}
	err = safetensors.WriteFile(filepath.Join(dir, "go_logits.safetensors"), []safetensors.Tensor{
		lt, i64("input_ids", ids[:n*L]), i64("attention_mask", mask[:n*L]), i64("token_type_ids", types[:n*L]),
	}, map[string]string{"problem_type": problemType})
	if err != nil {
		t.Fatal(err)
	}
}

// checkPrunedConfig reads the pruned folder's config.json as transformers
// would: pruned_heads with string layer keys and original head indices, and
// the smaller intermediate_size.
func checkPrunedConfig(t *testing.T, dir string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		PrunedHeads      map[string][]int `json:"pruned_heads"`
		IntermediateSize int              `json:"intermediate_size"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cfg.PrunedHeads) != fmt.Sprint(wantPrunedHeads) {
		t.Errorf("pruned_heads %v, want %v", cfg.PrunedHeads, wantPrunedHeads)
	}
	if cfg.IntermediateSize != 1024 {
		t.Errorf("intermediate_size %d, want 1024", cfg.IntermediateSize)
	}
}
