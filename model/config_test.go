package model

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	minilm := `{"architectures":["BertModel"],"attention_probs_dropout_prob":0.1,"hidden_act":"gelu","hidden_dropout_prob":0.1,
		"hidden_size":384,"intermediate_size":1536,"layer_norm_eps":1e-12,"max_position_embeddings":512,"model_type":"bert",
		"num_attention_heads":12,"num_hidden_layers":6,"pad_token_id":0,"type_vocab_size":2,"vocab_size":30522}`
	c, err := ParseConfig([]byte(minilm), "minilm/config.json")
	if err != nil {
		t.Fatal(err)
	}
	if c.HiddenSize != 384 || c.NumHiddenLayers != 6 || c.NumLabels() != 2 || c.Labels()[1] != "LABEL_1" || c.LayerNormEps != 1e-12 {
		t.Errorf("parsed %+v", c)
	}
	withLabels := strings.Replace(minilm, `"vocab_size":30522`, `"vocab_size":30522,"id2label":{"0":"World","1":"Sports","2":"Business","3":"Sci/Tech"}`, 1)
	c, err = ParseConfig([]byte(withLabels), "x")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Labels(), ",") != "World,Sports,Business,Sci/Tech" {
		t.Errorf("labels %v", c.Labels())
	}
	// Round trip through the exported form keeps labels and the architecture.
	c.Architectures = []string{"BertForSequenceClassification"}
	out, err := json.Marshal(*c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m["label2id"].(map[string]any)["Sci/Tech"].(float64) != 3 || m["id2label"].(map[string]any)["1"] != "Sports" {
		t.Errorf("exported config: %s", out)
	}
	back, err := ParseConfig(out, "exported")
	if err != nil || strings.Join(back.Labels(), ",") != strings.Join(c.Labels(), ",") {
		t.Errorf("round trip: %v %v", back, err)
	}

	bad := map[string]string{
		`"model_type":"roberta"`:                   `model_type "roberta" is not supported`,
		`"model_type":"distilbert"`:                `model_type "distilbert" is not supported`,
		`"hidden_act":"swish"`:                     `hidden_act "swish" is not supported`,
		`"num_attention_heads":7`:                  `not a multiple of num_attention_heads 7`,
		`"hidden_dropout_prob":1.5`:                `hidden_dropout_prob must be in [0,1)`,
		`"pad_token_id":40000`:                     `pad_token_id 40000 outside the vocabulary`,
		`"position_embedding_type":"relative_key"`: `position_embedding_type "relative_key" is not supported`,
	}
	for field, want := range bad {
		key := strings.SplitN(field, ":", 2)[0]
		var patched string
		if strings.Contains(minilm, key) {
			start := strings.Index(minilm, key)
			end := start + strings.IndexAny(minilm[start:], ",}")
			patched = minilm[:start] + field + minilm[end:]
		} else {
			patched = strings.Replace(minilm, "{", "{"+field+",", 1)
		}
		_, err := ParseConfig([]byte(patched), "bad/config.json")
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "bad/config.json: ") {
			t.Errorf("%s: error %v, want it to name the file and say %q", field, err, want)
		}
	}
	if _, err := ParseConfig([]byte(`{"model_type": "bert",`), "trunc.json"); err == nil || !strings.Contains(err.Error(), "trunc.json") {
		t.Errorf("truncated JSON: %v", err)
	}
}
