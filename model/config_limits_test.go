package model

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

// TestParamCountMatchesShapes: ParamCount equals the sum of the shapes
// ParamShape gives every parameter ParamNames lists, and bert-base with two
// labels has the 109,483,778 parameters HF's BertForSequenceClassification has.
func TestParamCountMatchesShapes(t *testing.T) {
	base := `{"vocab_size":30522,"hidden_size":768,"num_hidden_layers":12,"num_attention_heads":12,"intermediate_size":3072}`
	cases := []string{
		base,
		`{"vocab_size":30522,"hidden_size":384,"num_hidden_layers":6,"intermediate_size":1536,"num_labels":4}`,
		`{"vocab_size":7,"hidden_size":6,"num_hidden_layers":3,"num_attention_heads":2,"intermediate_size":5,"max_position_embeddings":11,"type_vocab_size":3,"num_labels":13}`,
		`{"vocab_size":99,"hidden_size":4,"num_hidden_layers":1,"num_attention_heads":1,"intermediate_size":1,"max_position_embeddings":1,"type_vocab_size":1,"num_labels":1}`,
	}
	for _, js := range cases {
		c, err := ParseConfig([]byte(js), "config.json")
		if err != nil {
			t.Fatal(err)
		}
		var want int64
		for _, name := range ParamNames(c) {
			shape, err := ParamShape(c, name)
			if err != nil {
				t.Fatal(err)
			}
			n := int64(1)
			for _, d := range shape {
				n *= d
			}
			want += n
		}
		if got := c.ParamCount(); got != want {
			t.Errorf("%s: ParamCount %d, the shapes add up to %d", js, got, want)
		}
	}
	c, err := ParseConfig([]byte(base), "config.json")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ParamCount(); got != 109_483_778 {
		t.Errorf("bert-base, 2 labels: %d parameters, want 109483778", got)
	}
}

// TestParamCountBound: sizes each within 2^20 whose product is too large are
// refused with an error naming the sizes and the count, without overflowing;
// a large config under the bound is accepted.
func TestParamCountBound(t *testing.T) {
	refused := []struct {
		js, count string
	}{
		// 2^40 word embeddings alone: 4 TiB of float32.
		{`{"vocab_size":1048576,"hidden_size":1048576,"num_attention_heads":1}`, ""},
		// Every size at its limit: 6.9e18, close to int64's end (checked in Python).
		{`{"vocab_size":1048576,"hidden_size":1048576,"num_attention_heads":1,"num_hidden_layers":1048576,"intermediate_size":1048576,"max_position_embeddings":1048576,"type_vocab_size":1048576,"num_labels":100000}`, " make 6917544525664716448 parameters"},
		// Just over: a vocabulary of 2^20 rows of 4096.
		{`{"vocab_size":1048576,"hidden_size":4096,"num_attention_heads":16}`, ""},
	}
	for _, r := range refused {
		_, err := ParseConfig([]byte(r.js), "hostile/config.json")
		if err == nil {
			t.Fatalf("%s accepted", r.js)
		}
		msg := err.Error()
		for _, want := range []string{"hostile/config.json: ", "vocab_size 1048576", "hidden_size ", "num_hidden_layers ", "parameters, more than beamtune accepts (4294967296)", r.count} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: error %q does not say %q", r.js, msg, want)
			}
		}
	}
	// The count in the message is ParamCount's, in decimal.
	var c Config
	c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.IntermediateSize, c.MaxPositionEmbeddings, c.TypeVocabSize = 1<<20, 1<<20, 12, 3072, 512, 2
	c.SetLabels([]string{"a", "b"})
	n := c.ParamCount()
	if n <= 1<<40 || n == math.MaxInt64 {
		t.Fatalf("ParamCount = %d, want just over 2^40", n)
	}
	if _, err := ParseConfig([]byte(`{"vocab_size":1048576,"hidden_size":1048576,"num_attention_heads":1}`), "x"); err == nil || !strings.Contains(err.Error(), fmt.Sprintf(" make %d parameters", n)) {
		t.Errorf("error %v does not give the count %d", err, n)
	}

	// Sizes past the per-size limit, as a caller that skips Validate may
	// pass: the count saturates instead of wrapping negative.
	c.VocabSize, c.NumHiddenLayers = math.MaxInt, math.MaxInt
	if n := c.ParamCount(); n != math.MaxInt64 {
		t.Errorf("ParamCount with math.MaxInt sizes = %d, want math.MaxInt64", n)
	}

	// Large but plausible: 2^20 × 2048 embeddings, 12 layers of 2048, about 2.8 billion.
	ok, err := ParseConfig([]byte(`{"vocab_size":1048576,"hidden_size":2048,"num_attention_heads":16,"intermediate_size":8192}`), "big/config.json")
	if err != nil {
		t.Fatalf("a config under the bound is refused: %v", err)
	}
	if n := ok.ParamCount(); n < 2_000_000_000 || n > maxParams {
		t.Errorf("ParamCount = %d", n)
	}
}
