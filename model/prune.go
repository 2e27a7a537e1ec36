package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Structured pruning removes whole attention heads and whole feed-forward
// neurons, so the result is a smaller dense BERT that any runtime executes
// faster, not a sparse one that needs special kernels. Which ones to remove
// is decided by importance scores (Michel et al., 2019): a mask of ones
// multiplies every head's output and every FFN neuron's activation, and the
// magnitude of the loss gradient with respect to each mask entry, summed over
// batches, says how much the loss depends on that unit.

// ImportanceMasks are the per-layer mask tensors: Heads[l] has the layer's
// current head count, FFN[l] its intermediate width. Both are leaves that
// require grad; their gradients after backward are the importance signals.
type ImportanceMasks struct {
	Heads, FFN []*ts.Tensor
}

// EnableImportanceMasks attaches fresh all-ones masks to the model; Forward
// multiplies by them until DisableImportanceMasks. The outputs do not change
// (the masks are ones), only the gradients gain the mask entries.
func (m *Bert) EnableImportanceMasks() (*ImportanceMasks, error) {
	m.DisableImportanceMasks()
	mk := &ImportanceMasks{}
	for l := 0; l < m.Config.NumHiddenLayers; l++ {
		h, err := ts.Ones([]int64{int64(m.Config.LayerHeads(l))}, gotch.Float, m.Device)
		if err != nil {
			mk.free()
			return nil, err
		}
		f, err := ts.Ones([]int64{int64(m.Config.IntermediateSize)}, gotch.Float, m.Device)
		if err != nil {
			drop(h)
			mk.free()
			return nil, err
		}
		mk.Heads, mk.FFN = append(mk.Heads, h), append(mk.FFN, f)
		for _, t := range []*ts.Tensor{h, f} {
			if err := t.RequiresGrad_(true); err != nil {
				mk.free()
				return nil, err
			}
		}
	}
	m.masks = mk
	return mk, nil
}

// DisableImportanceMasks detaches and frees the masks.
func (m *Bert) DisableImportanceMasks() {
	if m.masks != nil {
		m.masks.free()
		m.masks = nil
	}
}

func (mk *ImportanceMasks) free() {
	drop(mk.Heads...)
	drop(mk.FFN...)
	mk.Heads, mk.FFN = nil, nil
}

// AccumulateGrads adds |gradient| of every mask entry to heads and ffn
// (per layer, created on first use) and clears the gradients for the next
// batch. Call it after backward of one batch's loss.
func (mk *ImportanceMasks) AccumulateGrads(heads, ffn [][]float64) error {
	add := func(dst []float64, t *ts.Tensor) error {
		g, err := t.Grad(false)
		if err != nil {
			return err
		}
		defer drop(g)
		vals, err := Float32s(g)
		if err != nil {
			return err
		}
		if len(vals) != len(dst) {
			return fmt.Errorf("mask gradient has %d values, want %d", len(vals), len(dst))
		}
		for i, v := range vals {
			if v < 0 {
				v = -v
			}
			dst[i] += float64(v)
		}
		return resetGrad(t)
	}
	for l := range mk.Heads {
		if err := add(heads[l], mk.Heads[l]); err != nil {
			return fmt.Errorf("layer %d heads: %w", l, err)
		}
		if err := add(ffn[l], mk.FFN[l]); err != nil {
			return fmt.Errorf("layer %d ffn: %w", l, err)
		}
	}
	return nil
}

// PruneHeads removes the given heads from layer l. Indices are positions in
// the layer as it is now (0..LayerHeads(l)-1); Config.PrunedHeads records
// them as indices of the unpruned model, as HF does, so pruning in rounds
// composes. At least one head must stay.
func (m *Bert) PruneHeads(l int, remove []int) error {
	cfg := m.Config
	if l < 0 || l >= cfg.NumHiddenLayers {
		return fmt.Errorf("prune heads: no layer %d", l)
	}
	if len(remove) == 0 {
		return nil
	}
	// Original indices of the heads the layer has now, in order.
	var current []int
	for h := 0; h < cfg.NumAttentionHeads; h++ {
		if !slices.Contains(cfg.PrunedHeads[l], h) {
			current = append(current, h)
		}
	}
	drops := map[int]bool{}
	for _, h := range remove {
		if h < 0 || h >= len(current) || drops[h] {
			return fmt.Errorf("prune heads: layer %d has %d heads; cannot remove head %d (or it is listed twice)", l, len(current), h)
		}
		drops[h] = true
	}
	if len(drops) >= len(current) {
		return fmt.Errorf("prune heads: removing %d of layer %d's %d heads would leave none", len(drops), l, len(current))
	}
	dh := cfg.HeadDim()
	var rows []int64 // rows of query/key/value (columns of the output) to keep
	for h := range current {
		if !drops[h] {
			for j := 0; j < dh; j++ {
				rows = append(rows, int64(h*dh+j))
			}
		}
	}
	p := fmt.Sprintf("bert.encoder.layer.%d.", l)
	for _, n := range []string{"query", "key", "value"} {
		if err := m.selectParam(p+"attention.self."+n+".weight", 0, rows); err != nil {
			return err
		}
		if err := m.selectParam(p+"attention.self."+n+".bias", 0, rows); err != nil {
			return err
		}
	}
	if err := m.selectParam(p+"attention.output.dense.weight", 1, rows); err != nil {
		return err
	}
	if cfg.PrunedHeads == nil {
		cfg.PrunedHeads = map[int][]int{}
	}
	for h := range current {
		if drops[h] {
			cfg.PrunedHeads[l] = append(cfg.PrunedHeads[l], current[h])
		}
	}
	slices.Sort(cfg.PrunedHeads[l])
	m.freeInt8() // packed weights no longer match
	return nil
}

// PruneFFN keeps, in every layer, the intermediate neurons listed for it
// (indices into the current width, any order). Every layer must keep the
// same number, so the result is a plain BERT config with a smaller
// intermediate_size.
func (m *Bert) PruneFFN(keep [][]int) error {
	cfg := m.Config
	if len(keep) != cfg.NumHiddenLayers {
		return fmt.Errorf("prune ffn: %d layers given, the model has %d", len(keep), cfg.NumHiddenLayers)
	}
	width := len(keep[0])
	if width == 0 {
		return fmt.Errorf("prune ffn: every layer must keep at least one neuron")
	}
	for l, k := range keep {
		if len(k) != width {
			return fmt.Errorf("prune ffn: layer %d keeps %d neurons, layer 0 keeps %d; widths must be uniform", l, len(k), width)
		}
	}
	for l, k := range keep {
		idx := make([]int64, len(k))
		seen := map[int]bool{}
		for i, v := range k {
			if v < 0 || v >= cfg.IntermediateSize || seen[v] {
				return fmt.Errorf("prune ffn: layer %d: neuron %d is out of [0,%d) or listed twice", l, v, cfg.IntermediateSize)
			}
			seen[v] = true
			idx[i] = int64(v)
		}
		slices.Sort(idx) // keep the surviving neurons in their original order
		p := fmt.Sprintf("bert.encoder.layer.%d.", l)
		if err := m.selectParam(p+"intermediate.dense.weight", 0, idx); err != nil {
			return err
		}
		if err := m.selectParam(p+"intermediate.dense.bias", 0, idx); err != nil {
			return err
		}
		if err := m.selectParam(p+"output.dense.weight", 1, idx); err != nil {
			return err
		}
	}
	cfg.IntermediateSize = width
	m.freeInt8()
	return nil
}

// PruneVocab keeps the word-embedding rows of the given old token ids, in
// that order (new id i is old id oldIDs[i]); the tokenizer files must be
// rewritten to match (model/tokenizer.PruneVocab gives both).
func (m *Bert) PruneVocab(oldIDs []int) error {
	cfg := m.Config
	idx := make([]int64, len(oldIDs))
	newPad := -1
	for i, v := range oldIDs {
		if v < 0 || v >= cfg.VocabSize {
			return fmt.Errorf("prune vocab: token id %d out of [0,%d)", v, cfg.VocabSize)
		}
		if v == cfg.PadTokenID {
			newPad = i
		}
		idx[i] = int64(v)
	}
	if newPad < 0 {
		return fmt.Errorf("prune vocab: the kept ids lack pad_token_id %d", cfg.PadTokenID)
	}
	if err := m.selectParam("bert.embeddings.word_embeddings.weight", 0, idx); err != nil {
		return err
	}
	cfg.VocabSize, cfg.PadTokenID = len(oldIDs), newPad
	return nil
}

// selectParam replaces the named parameter by its slices at idx along dim
// (a new leaf that requires grad, as every parameter).
func (m *Bert) selectParam(name string, dim int64, idx []int64) error {
	p := m.byName[name]
	if p == nil {
		return fmt.Errorf("no parameter %s", name)
	}
	it, err := ts.OfSlice(idx)
	if err != nil {
		return err
	}
	defer drop(it)
	dev, err := toDevice(it, m.Device)
	if err != nil {
		return err
	}
	if dev != it {
		defer drop(dev)
	}
	var t *ts.Tensor
	err = NoGrad(func() error {
		sel, err := p.T.IndexSelect(dim, dev, false)
		if err != nil {
			return err
		}
		t, err = sel.Contiguous(true)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := t.RequiresGrad_(true); err != nil {
		drop(t)
		return err
	}
	drop(p.T)
	p.T = t
	weightsChanged()
	return nil
}

// VocabMapFile, in a vocabulary-pruned folder, maps the source tokenizer's
// ids to the folder's, so the model can still score datasets prepared with
// the source tokenizer (evaluate, distill) without preparing them again.
const VocabMapFile = "vocab_map.json"

// VocabMap is the content of VocabMapFile.
type VocabMap struct {
	SourceTokenizerSHA256 string `json:"source_tokenizer_sha256"`
	SourceVocabSize       int    `json:"source_vocab_size"`
	UnkID                 int    `json:"unk_id"`  // the folder's [UNK], for source ids the pruning dropped
	OldIDs                []int  `json:"old_ids"` // the source id of every id of the folder
}

// ReadVocabMap reads dir's vocab map; nil without error when there is none.
func ReadVocabMap(dir string) (*VocabMap, error) {
	data, err := os.ReadFile(filepath.Join(dir, VocabMapFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var vm VocabMap
	if err := json.Unmarshal(data, &vm); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, VocabMapFile), err)
	}
	return &vm, nil
}

// SetSourceVocab makes the model read token ids of the source vocabulary vm
// describes: each id is mapped to the pruned one, and ids the pruning
// dropped become [UNK]. nil turns the mapping off. A text the source
// tokenizer split into pieces the pruning dropped is then scored as those
// pieces made [UNK], where the pruned tokenizer may split it otherwise (only
// for words the training split never used); predict on raw text uses the
// pruned tokenizer itself.
func (m *Bert) SetSourceVocab(vm *VocabMap) error {
	drop(m.inputMap)
	m.inputMap = nil
	if vm == nil {
		return nil
	}
	sourceVocab, unk := vm.SourceVocabSize, vm.UnkID
	if unk < 0 || unk >= m.Config.VocabSize || sourceVocab < len(vm.OldIDs) {
		return fmt.Errorf("vocab map: unk_id %d or source_vocab_size %d out of range", unk, sourceVocab)
	}
	table := make([]int64, sourceVocab)
	for i := range table {
		table[i] = int64(unk)
	}
	for newID, old := range vm.OldIDs {
		if old < 0 || old >= sourceVocab || newID >= m.Config.VocabSize {
			return fmt.Errorf("vocab map: id %d -> %d outside the vocabularies (%d, %d)", old, newID, sourceVocab, m.Config.VocabSize)
		}
		table[old] = int64(newID)
	}
	t, err := ts.OfSlice(table)
	if err != nil {
		return err
	}
	if m.inputMap, err = toDevice(t, m.Device); err != nil {
		return err
	}
	return nil
}
