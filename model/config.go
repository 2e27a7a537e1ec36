package model

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
)

// Config is a BERT configuration as HF transformers writes it in config.json.
// Field names follow BertConfig so a checkpoint folder round-trips unchanged.
type Config struct {
	ModelType                 string   `json:"model_type"`
	Architectures             []string `json:"architectures,omitempty"`
	VocabSize                 int      `json:"vocab_size"`
	HiddenSize                int      `json:"hidden_size"`
	NumHiddenLayers           int      `json:"num_hidden_layers"`
	NumAttentionHeads         int      `json:"num_attention_heads"`
	IntermediateSize          int      `json:"intermediate_size"`
	HiddenAct                 string   `json:"hidden_act"`
	HiddenDropoutProb         float64  `json:"hidden_dropout_prob"`
	AttentionProbsDropoutProb float64  `json:"attention_probs_dropout_prob"`
	MaxPositionEmbeddings     int      `json:"max_position_embeddings"`
	TypeVocabSize             int      `json:"type_vocab_size"`
	InitializerRange          float64  `json:"initializer_range"`
	LayerNormEps              float64  `json:"layer_norm_eps"`
	PadTokenID                int      `json:"pad_token_id"`
	PositionEmbeddingType     string   `json:"position_embedding_type,omitempty"`
	ClassifierDropout         *float64 `json:"classifier_dropout"`
	// PrunedHeads lists, per layer, the attention heads removed from it, by
	// their index in the unpruned model, as HF's prune_heads records them;
	// transformers 4.x re-prunes a fresh model from it before loading weights.
	PrunedHeads map[int][]int `json:"pruned_heads,omitempty"`
	// ID2Label maps class index to name. NumLabels is derived from it; HF writes
	// both id2label and label2id and ignores num_labels when id2label is present.
	ID2Label map[int]string `json:"-"`
	// ProblemType is HF's problem_type: single_label_classification,
	// multi_label_classification or regression.
	ProblemType string `json:"problem_type,omitempty"`
}

// Task is the problem_type, single_label_classification when the config
// names none (HF then infers it from the labels; beamtune's older exports
// and most hub classifiers are single-label).
func (c *Config) Task() string {
	if c.ProblemType == "" {
		return "single_label_classification"
	}
	return c.ProblemType
}

// LayerHeads is the number of attention heads layer i keeps.
func (c *Config) LayerHeads(i int) int { return c.NumAttentionHeads - len(c.PrunedHeads[i]) }

// HeadDim is the width of one attention head.
func (c *Config) HeadDim() int { return c.HiddenSize / c.NumAttentionHeads }

// NumLabels is the size of the classification head.
func (c *Config) NumLabels() int { return len(c.ID2Label) }

// Labels returns the label names ordered by class index.
func (c *Config) Labels() []string {
	out := make([]string, len(c.ID2Label))
	for i := range out {
		out[i] = c.ID2Label[i]
	}
	return out
}

// SetLabels sets the label names of the head, in class-index order.
func (c *Config) SetLabels(names []string) {
	c.ID2Label = make(map[int]string, len(names))
	for i, n := range names {
		c.ID2Label[i] = n
	}
}

// supportedActivations are the hidden_act values the encoder implements.
var supportedActivations = map[string]bool{"gelu": true, "gelu_new": true, "gelu_pytorch_tanh": true, "relu": true}

// ParseConfig decodes and validates a HF config.json. source names the file in errors.
func ParseConfig(data []byte, source string) (*Config, error) {
	// HF defaults (BertConfig.__init__) for keys that older checkpoints omit.
	c := &Config{
		ModelType: "bert", VocabSize: 30522, HiddenSize: 768, NumHiddenLayers: 12,
		NumAttentionHeads: 12, IntermediateSize: 3072, HiddenAct: "gelu",
		HiddenDropoutProb: 0.1, AttentionProbsDropoutProb: 0.1, MaxPositionEmbeddings: 512,
		TypeVocabSize: 2, InitializerRange: 0.02, LayerNormEps: 1e-12,
		PositionEmbeddingType: "absolute",
	}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("%s: invalid config.json: %w", source, err)
	}
	var extra struct {
		ID2Label  map[string]string `json:"id2label"`
		Label2ID  map[string]int    `json:"label2id"`
		NumLabels *int              `json:"num_labels"`
	}
	if err := json.Unmarshal(data, &extra); err != nil {
		return nil, fmt.Errorf("%s: invalid id2label/label2id: %w", source, err)
	}
	switch {
	case len(extra.ID2Label) > 0:
		c.ID2Label = make(map[int]string, len(extra.ID2Label))
		for k, v := range extra.ID2Label {
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(extra.ID2Label) {
				return nil, fmt.Errorf("%s: id2label key %q is not a class index in [0,%d)", source, k, len(extra.ID2Label))
			}
			c.ID2Label[i] = v
		}
	case len(extra.Label2ID) > 0:
		c.ID2Label = make(map[int]string, len(extra.Label2ID))
		for name, i := range extra.Label2ID {
			if i < 0 || i >= len(extra.Label2ID) {
				return nil, fmt.Errorf("%s: label2id[%q] = %d is not in [0,%d)", source, name, i, len(extra.Label2ID))
			}
			c.ID2Label[i] = name
		}
	default:
		n := 2 // HF's default num_labels
		if extra.NumLabels != nil {
			n = *extra.NumLabels
		}
		// Checked before the names are built: a hostile num_labels must not
		// make us allocate billions of them.
		if n < 1 || n > maxLabels {
			return nil, fmt.Errorf("%s: num_labels %d outside [1, %d]", source, n, maxLabels)
		}
		c.ID2Label = make(map[int]string, n)
		for i := 0; i < n; i++ {
			c.ID2Label[i] = fmt.Sprintf("LABEL_%d", i)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return c, nil
}

// Limits on untrusted config.json values (RELIABILITY.md).
const (
	maxLabels    = 100_000
	maxDimension = 1 << 20 // any single size: vocabulary, widths, layers, positions
	// maxParams bounds the parameter count the sizes multiply out to: 4.3
	// billion, 16 GiB of float32 weights before gradients and optimizer state,
	// 13 times BERT-large. Each size alone may be 2^20, but vocab_size =
	// hidden_size = 2^20 would ask libtorch for 2^40 weights.
	maxParams = 1 << 32
)

// ParamCount is the number of parameters of the classifier c describes:
// embeddings, encoder layers, pooler and head (what ParamNames lists). It
// saturates at math.MaxInt64, so the sizes of a hostile config.json cannot
// overflow it; negative sizes count as 0.
func (c *Config) ParamCount() int64 {
	h, in := nonNeg(c.HiddenSize), nonNeg(c.IntermediateSize)
	labels := int64(len(c.ID2Label))
	rows := satAdd(satAdd(nonNeg(c.VocabSize), nonNeg(c.MaxPositionEmbeddings)), nonNeg(c.TypeVocabSize))
	embeddings := satAdd(satMul(rows, h), 2*h) // word, position, token type; LayerNorm
	// Per layer: query, key, value and attention output (h×h + h each), two
	// LayerNorms (2h each), intermediate (h×in + in), output (in×h + h).
	layer := satAdd(satMul(4, satMul(h, h)), satMul(2, satMul(h, in)))
	layer = satAdd(layer, satAdd(satMul(9, h), in))
	pooler := satAdd(satMul(h, h), h)
	head := satAdd(satMul(labels, h), labels)
	total := satAdd(satAdd(embeddings, satMul(nonNeg(c.NumHiddenLayers), layer)), satAdd(pooler, head))
	// A pruned head takes its rows of query, key and value (weights and
	// biases) and its columns of the attention output with it.
	if c.NumAttentionHeads > 0 && c.HiddenSize >= c.NumAttentionHeads {
		dh := int64(c.HiddenSize / c.NumAttentionHeads)
		for l, heads := range c.PrunedHeads {
			if l >= 0 && l < c.NumHiddenLayers {
				total -= int64(len(heads)) * dh * (4*h + 3)
			}
		}
	}
	return total
}

func nonNeg(v int) int64 { return int64(max(v, 0)) }

// satAdd and satMul add and multiply non-negative int64s, saturating at math.MaxInt64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func satMul(a, b int64) int64 {
	if a != 0 && b > math.MaxInt64/a {
		return math.MaxInt64
	}
	return a * b
}

// Validate checks that the configuration describes a BERT encoder beamtune can build.
func (c *Config) Validate() error {
	if c.ModelType != "bert" {
		return fmt.Errorf("model_type %q is not supported: beamtune builds BERT encoders only (model_type \"bert\"); RoBERTa, DistilBERT and others differ in embeddings or layer layout", c.ModelType)
	}
	if c.PositionEmbeddingType != "" && c.PositionEmbeddingType != "absolute" {
		return fmt.Errorf("position_embedding_type %q is not supported (only \"absolute\")", c.PositionEmbeddingType)
	}
	if !supportedActivations[c.HiddenAct] {
		return fmt.Errorf("hidden_act %q is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)", c.HiddenAct)
	}
	pos := []struct {
		name string
		v    int
	}{{"vocab_size", c.VocabSize}, {"hidden_size", c.HiddenSize}, {"num_hidden_layers", c.NumHiddenLayers},
		{"num_attention_heads", c.NumAttentionHeads}, {"intermediate_size", c.IntermediateSize},
		{"max_position_embeddings", c.MaxPositionEmbeddings}, {"type_vocab_size", c.TypeVocabSize}}
	for _, p := range pos {
		if p.v <= 0 {
			return fmt.Errorf("%s must be positive, got %d", p.name, p.v)
		}
		// Far above any BERT checkpoint (bert-large: vocab 30522, hidden 1024,
		// 24 layers, intermediate 4096): a config past it is hostile or broken,
		// and would otherwise become a giant libtorch allocation.
		if p.v > maxDimension {
			return fmt.Errorf("%s %d is larger than beamtune accepts (%d)", p.name, p.v, maxDimension)
		}
	}
	if len(c.ID2Label) > maxLabels {
		return fmt.Errorf("%d labels: more than beamtune accepts (%d)", len(c.ID2Label), maxLabels)
	}
	if n := c.ParamCount(); n > maxParams {
		count := strconv.FormatInt(n, 10)
		if n == math.MaxInt64 {
			count = "more than " + count
		}
		return fmt.Errorf("vocab_size %d, hidden_size %d, num_hidden_layers %d, intermediate_size %d, max_position_embeddings %d, type_vocab_size %d and %d labels make %s parameters, more than beamtune accepts (%d)",
			c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.IntermediateSize, c.MaxPositionEmbeddings, c.TypeVocabSize, len(c.ID2Label), count, int64(maxParams))
	}
	if c.HiddenSize%c.NumAttentionHeads != 0 {
		return fmt.Errorf("hidden_size %d is not a multiple of num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads)
	}
	for l, heads := range c.PrunedHeads {
		if l < 0 || l >= c.NumHiddenLayers {
			return fmt.Errorf("pruned_heads names layer %d; the model has %d", l, c.NumHiddenLayers)
		}
		seen := map[int]bool{}
		for _, h := range heads {
			if h < 0 || h >= c.NumAttentionHeads || seen[h] {
				return fmt.Errorf("pruned_heads[%d]: head %d is out of [0,%d) or listed twice", l, h, c.NumAttentionHeads)
			}
			seen[h] = true
		}
		if len(heads) >= c.NumAttentionHeads {
			return fmt.Errorf("pruned_heads[%d] removes all %d heads; keep at least one", l, c.NumAttentionHeads)
		}
	}
	if c.PadTokenID < 0 || c.PadTokenID >= c.VocabSize {
		return fmt.Errorf("pad_token_id %d outside the vocabulary [0,%d)", c.PadTokenID, c.VocabSize)
	}
	if len(c.ID2Label) < 1 {
		return fmt.Errorf("the classification head needs at least one label")
	}
	for i := 0; i < len(c.ID2Label); i++ {
		if _, ok := c.ID2Label[i]; !ok {
			return fmt.Errorf("id2label has no entry for class %d", i)
		}
	}
	for _, p := range []struct {
		name string
		v    float64
	}{{"hidden_dropout_prob", c.HiddenDropoutProb}, {"attention_probs_dropout_prob", c.AttentionProbsDropoutProb}, {"classifier_dropout", c.ClassifierDropoutProb()}} {
		if p.v < 0 || p.v >= 1 {
			return fmt.Errorf("%s must be in [0,1), got %g", p.name, p.v)
		}
	}
	if c.LayerNormEps <= 0 {
		return fmt.Errorf("layer_norm_eps must be positive, got %g", c.LayerNormEps)
	}
	return nil
}

// ClassifierDropoutProb is the dropout before the head (HF: classifier_dropout, else hidden_dropout_prob).
func (c *Config) ClassifierDropoutProb() float64 {
	if c.ClassifierDropout != nil {
		return *c.ClassifierDropout
	}
	return c.HiddenDropoutProb
}

// MarshalJSON writes config.json for BertForSequenceClassification with id2label
// and label2id, the form AutoModelForSequenceClassification expects.
func (c Config) MarshalJSON() ([]byte, error) {
	type plain Config // drops this method, keeps the tags
	base, err := json.Marshal(plain(c))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(base, &m); err != nil {
		return nil, err
	}
	id2label := map[string]string{}
	label2id := map[string]int{}
	keys := make([]int, 0, len(c.ID2Label))
	for k := range c.ID2Label {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	for _, k := range keys {
		id2label[strconv.Itoa(k)] = c.ID2Label[k]
		label2id[c.ID2Label[k]] = k
	}
	m["id2label"] = id2label
	m["label2id"] = label2id
	return json.MarshalIndent(m, "", "  ")
}
