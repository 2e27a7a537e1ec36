package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseConfig feeds arbitrary bytes to ParseConfig. Every error must name
// the source. An accepted config must pass Validate, keep every size, the
// label count and the parameter count within the limits and every
// probability in [0,1), have a label for every class index, and survive the
// round trip through the config.json beamtune writes (MarshalJSON) unchanged,
// the written form becoming a fixed point.
func FuzzParseConfig(f *testing.F) {
	for _, p := range []string{
		filepath.Join("..", "testdata", "parity", "tiny-bert", ConfigFile),
		filepath.Join("..", "testdata", "parity", "tiny-bert-bin", ConfigFile),
	} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"num_labels":3,"hidden_act":"relu","classifier_dropout":0.2}`))
	f.Add([]byte(`{"label2id":{"b":1,"a":0},"architectures":[],"position_embedding_type":""}`))
	f.Add([]byte(`{"id2label":{"0":"x","1":"x"},"vocab_size":5,"pad_token_id":4,"hidden_size":8,"num_attention_heads":2}`))
	// Once built before any check, two billion labels (found while writing
	// this target); now refused up front.
	f.Add([]byte(`{"num_labels":2000000000}`))
	f.Add([]byte(`{"classifier_dropout":7}`))
	// Every size within 2^20, their product 2^40 weights (RELIABILITY.md).
	f.Add([]byte(`{"vocab_size":1048576,"hidden_size":1048576,"num_attention_heads":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		const src = "fuzz/config.json"
		c, err := ParseConfig(data, src)
		if err != nil {
			if !strings.HasPrefix(err.Error(), src+": ") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig accepted a config Validate refuses: %v", err)
		}
		labels := c.Labels()
		if len(labels) != c.NumLabels() || c.NumLabels() < 1 {
			t.Fatalf("%d labels for %d classes", len(labels), c.NumLabels())
		}
		for i := range labels {
			if _, ok := c.ID2Label[i]; !ok {
				t.Fatalf("no label for class %d of %d", i, c.NumLabels())
			}
		}
		if c.HiddenSize%c.NumAttentionHeads != 0 || c.PadTokenID < 0 || c.PadTokenID >= c.VocabSize || c.NumLabels() > maxLabels {
			t.Fatalf("inconsistent sizes accepted: %+v", c)
		}
		for _, d := range []int{c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize, c.MaxPositionEmbeddings, c.TypeVocabSize} {
			if d < 1 || d > maxDimension {
				t.Fatalf("size %d accepted: %+v", d, c)
			}
		}
		if n := c.ParamCount(); n < 1 || n > maxParams {
			t.Fatalf("%d parameters accepted: %+v", n, c)
		}
		for _, p := range []float64{c.HiddenDropoutProb, c.AttentionProbsDropoutProb, c.ClassifierDropoutProb()} {
			if !(p >= 0 && p < 1) {
				t.Fatalf("dropout probability %g accepted", p)
			}
		}
		if !(c.LayerNormEps > 0) {
			t.Fatalf("layer_norm_eps %g accepted", c.LayerNormEps)
		}

		out, err := json.Marshal(*c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		back, err := ParseConfig(out, "rewritten")
		if err != nil {
			t.Fatalf("the config.json written for an accepted config is refused: %v\n%s", err, out)
		}
		if a, b := canonicalConfig(*c), canonicalConfig(*back); !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", a, b)
		}
		// Once written by beamtune, re-reading and re-writing changes nothing
		// (the first write may still spell a default differently: "" ->
		// omitted -> "absolute").
		out2, err := json.Marshal(*back)
		if err != nil {
			t.Fatal(err)
		}
		back2, err := ParseConfig(out2, "rewritten twice")
		if err != nil {
			t.Fatal(err)
		}
		if out3, err := json.Marshal(*back2); err != nil || string(out3) != string(out2) {
			t.Fatalf("config.json is not a fixed point:\n%s\n%s", out2, out3)
		}
	})
}

// canonicalConfig folds the spellings that mean the same model: an empty
// position_embedding_type is "absolute" (HF's default, and what an omitted
// key gives), and an empty architectures list is no list (omitempty drops it).
func canonicalConfig(c Config) Config {
	if c.PositionEmbeddingType == "" {
		c.PositionEmbeddingType = "absolute"
	}
	if len(c.Architectures) == 0 {
		c.Architectures = nil
	}
	return c
}
