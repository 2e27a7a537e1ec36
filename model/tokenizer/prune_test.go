package tokenizer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// tinyTokenizerJSON is a small BERT tokenizer.json, indented as HF writes
// it; HF tokenizers loads it and its pruned form (checked by hand).
const tinyTokenizerJSON = `{
  "version": "1.0",
  "truncation": {"max_length": 8, "strategy": "LongestFirst", "stride": 0},
  "padding": {"strategy": "BatchLongest", "direction": "Right", "pad_to_multiple_of": null, "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
  "added_tokens": [
    {"id": 0, "special": true, "content": "[PAD]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false},
    {"id": 2, "special": true, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false},
    {"id": 3, "special": true, "content": "[CLS]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false},
    {"id": 4, "special": true, "content": "[SEP]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false},
    {"id": 5, "special": true, "content": "[MASK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false}
  ],
  "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
  "pre_tokenizer": {"type": "BertPreTokenizer"},
  "post_processor": {
    "type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
    "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
    "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [3], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [4], "tokens": ["[SEP]"]}}
  },
  "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
  "model": {
    "type": "WordPiece",
    "unk_token": "[UNK]",
    "continuing_subword_prefix": "##",
    "max_input_chars_per_word": 100,
    "vocab": {"[PAD]": 0, "[unused0]": 1, "[UNK]": 2, "[CLS]": 3, "[SEP]": 4, "[MASK]": 5, "the": 6, "cat": 7, "##s": 8,
      "dog": 9, "un": 10, "##believ": 11, "##able": 12, "!": 13, "a": 14, "##x": 15, "café<&>": 16}
  }
}`

func TestPruneVocabByHand(t *testing.T) {
	orig, err := FromJSON([]byte(tinyTokenizerJSON))
	if err != nil {
		t.Fatal(err)
	}
	// dog, cat twice, ##s, ! and the odd token: the specials come on their own.
	pv, err := PruneVocab([]byte(tinyTokenizerJSON), []int{9, 7, 7, 8, 13, 16})
	if err != nil {
		t.Fatal(err)
	}
	wantOld := []int{0, 2, 3, 4, 5, 7, 8, 9, 13, 16}
	if !slices.Equal(pv.OldIDs, wantOld) {
		t.Errorf("OldIDs = %v, want %v", pv.OldIDs, wantOld)
	}
	wantTxt := "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ncat\n##s\ndog\n!\ncafé<&>\n"
	if string(pv.VocabTxt) != wantTxt {
		t.Errorf("VocabTxt = %q, want %q", pv.VocabTxt, wantTxt)
	}

	tok, err := FromJSON(pv.TokenizerJSON)
	if err != nil {
		t.Fatalf("pruned file does not load: %v\n%s", err, pv.TokenizerJSON)
	}
	if tok.VocabSize() != len(wantOld) {
		t.Errorf("VocabSize = %d, want %d", tok.VocabSize(), len(wantOld))
	}
	for newID, old := range pv.OldIDs {
		a, _ := orig.Token(int32(old))
		b, _ := tok.Token(int32(newID))
		if a != b {
			t.Errorf("new id %d is %q, old id %d was %q", newID, b, old, a)
		}
	}
	tok = noPadding(t, tok)
	orig = noPadding(t, orig)
	for _, c := range []struct {
		text string
		want []int32
	}{
		{"Cats dog!", []int32{2, 5, 6, 7, 8, 3}},
		// "the" and "unbelievable" lost their pieces: each whole word is [UNK].
		{"the cats unbelievable", []int32{2, 1, 5, 6, 1, 3}},
		// cat ##s ##x before; ##x is gone and the WHOLE word becomes [UNK],
		// not cat ##s [UNK].
		{"catsx", []int32{2, 1, 3}},
		{"[MASK] dog", []int32{2, 4, 7, 3}},
	} {
		if got := tok.Encode(c.text).IDs; !slices.Equal(got, c.want) {
			t.Errorf("Encode(%q) = %v, want %v (before pruning %v)", c.text, got, c.want, orig.Encode(c.text).IDs)
		}
	}
	if got := orig.Encode("catsx").IDs; !slices.Equal(got, []int32{3, 7, 8, 15, 4}) {
		t.Errorf("before pruning, catsx = %v, want [3 7 8 15 4]", got)
	}
	if e := tok.EncodePair("dog", "cat"); !slices.Equal(e.IDs, []int32{2, 7, 3, 5, 3}) || !slices.Equal(e.TypeIDs, []int32{0, 0, 0, 1, 1}) {
		t.Errorf("EncodePair = %v %v", e.IDs, e.TypeIDs)
	}

	// The fields with ids carry the new ones; the rest is as it was, in the
	// same key order; the layout stays indented.
	before, err := parseObject([]byte(tinyTokenizerJSON), "before")
	if err != nil {
		t.Fatal(err)
	}
	after, err := parseObject(pv.TokenizerJSON, "after")
	if err != nil {
		t.Fatal(err)
	}
	var keysBefore, keysAfter []string
	for _, m := range before {
		keysBefore = append(keysBefore, m.key)
	}
	for _, m := range after {
		keysAfter = append(keysAfter, m.key)
	}
	if !slices.Equal(keysBefore, keysAfter) {
		t.Errorf("top-level keys %v, want %v", keysAfter, keysBefore)
	}
	for i, m := range before {
		switch m.key {
		case "model", "added_tokens", "post_processor", "padding":
			continue
		}
		if !jsonEqual(t, m.value, after[i].value) {
			t.Errorf("%s changed: %s -> %s", m.key, m.value, after[i].value)
		}
	}
	if !bytes.HasPrefix(pv.TokenizerJSON, []byte("{\n  \"version\"")) {
		t.Errorf("output is not indented like the input: %.40q", pv.TokenizerJSON)
	}
	var got struct {
		Padding struct {
			PadID int `json:"pad_id"`
		} `json:"padding"`
		AddedTokens []struct {
			ID      int    `json:"id"`
			Content string `json:"content"`
		} `json:"added_tokens"`
		PostProcessor struct {
			SpecialTokens map[string]struct {
				IDs []int `json:"ids"`
			} `json:"special_tokens"`
		} `json:"post_processor"`
		Model struct {
			UnkToken string         `json:"unk_token"`
			Vocab    map[string]int `json:"vocab"`
		} `json:"model"`
	}
	if err := json.Unmarshal(pv.TokenizerJSON, &got); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{0, 1, 2, 3, 4} {
		if got.AddedTokens[i].ID != want {
			t.Errorf("added_tokens[%d] (%s) id = %d, want %d", i, got.AddedTokens[i].Content, got.AddedTokens[i].ID, want)
		}
	}
	if cls, sep := got.PostProcessor.SpecialTokens["[CLS]"].IDs, got.PostProcessor.SpecialTokens["[SEP]"].IDs; !slices.Equal(cls, []int{2}) || !slices.Equal(sep, []int{3}) {
		t.Errorf("special_tokens ids: [CLS] %v, [SEP] %v; want [2] [3]", cls, sep)
	}
	if got.Model.UnkToken != "[UNK]" || len(got.Model.Vocab) != len(wantOld) || got.Model.Vocab["café<&>"] != 9 {
		t.Errorf("model = %+v", got.Model)
	}
	if !strings.Contains(string(pv.TokenizerJSON), `"café<&>"`) {
		t.Errorf("strings were escaped: %s", pv.TokenizerJSON)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

// TestPruneVocabPadAndBertProcessing: [PAD] away from id 0, BertProcessing
// and a compact file; pad_id and sep/cls move with their tokens, and a field
// this package does not know passes through as it was.
func TestPruneVocabPadAndBertProcessing(t *testing.T) {
	src := `{"padding":{"strategy":{"Fixed":6},"direction":"Right","pad_to_multiple_of":null,"pad_id":4,"pad_type_id":0,"pad_token":"[PAD]"},` +
		`"added_tokens":[],"normalizer":{"type":"BertNormalizer"},"pre_tokenizer":{"type":"BertPreTokenizer"},` +
		`"post_processor":{"type":"BertProcessing","sep":["[SEP]",3],"cls":["[CLS]",2]},` +
		`"x_extra":{"b":[1,2.50,"<&>"],"a":null},` +
		`"model":{"type":"WordPiece","vocab":{"x":0,"[UNK]":1,"[CLS]":2,"[SEP]":3,"[PAD]":4,"y":5,"z":6}}}`
	pv, err := PruneVocab([]byte(src), []int{6})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 2, 3, 4, 6}; !slices.Equal(pv.OldIDs, want) {
		t.Errorf("OldIDs = %v, want %v", pv.OldIDs, want)
	}
	if bytes.Contains(pv.TokenizerJSON, []byte("\n")) {
		t.Errorf("compact input gave indented output")
	}
	tok, err := FromJSON(pv.TokenizerJSON)
	if err != nil {
		t.Fatalf("%v\n%s", err, pv.TokenizerJSON)
	}
	if p := tok.Padding(); p == nil || p.PadID != 3 {
		t.Errorf("padding = %+v, want pad id 3", p)
	}
	e := tok.EncodePair("z", "y z")
	if want := []int32{1, 4, 2, 0, 4, 2}; !slices.Equal(e.IDs, want) {
		t.Errorf("EncodePair = %v, want %v", e.IDs, want)
	}
	if !strings.Contains(string(pv.TokenizerJSON), `"sep":["[SEP]",2],"cls":["[CLS]",1]`) {
		t.Errorf("post_processor not remapped: %s", pv.TokenizerJSON)
	}
	if !strings.Contains(string(pv.TokenizerJSON), `"x_extra":{"b":[1,2.50,"<&>"],"a":null},"model":`) {
		t.Errorf("unknown field not passed through in place: %s", pv.TokenizerJSON)
	}
}

func TestPruneVocabErrors(t *testing.T) {
	for _, c := range []struct {
		name, src string
		keep      []int
		want      string
	}{
		{"out of range", tinyTokenizerJSON, []int{7, 17}, "keep[1]: token id 17 is out of range [0, 17)"},
		{"negative", tinyTokenizerJSON, []int{-1}, "keep[0]: token id -1 is out of range"},
		{"not JSON", "{", nil, "parsing tokenizer.json"},
		{"unsupported model", `{"pre_tokenizer":{"type":"BertPreTokenizer"},"model":{"type":"BPE"}}`, nil, "model.type"},
		{"shared id", `{"pre_tokenizer":{"type":"BertPreTokenizer"},"model":{"type":"WordPiece","vocab":{"[UNK]":0,"a":1,"b":1}}}`, nil, `model.vocab gives "a" and "b" the same id 1`},
		{"id gap", `{"pre_tokenizer":{"type":"BertPreTokenizer"},"model":{"type":"WordPiece","vocab":{"[UNK]":0,"a":2}}}`, nil, "id 1 has no token"},
		{"line break", `{"pre_tokenizer":{"type":"BertPreTokenizer"},"model":{"type":"WordPiece","vocab":{"[UNK]":0,"a\nb":1}}}`, []int{1}, "line break"},
	} {
		_, err := PruneVocab([]byte(c.src), c.keep)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

func TestUsedIDs(t *testing.T) {
	tok, err := FromJSON([]byte(tinyTokenizerJSON))
	if err != nil {
		t.Fatal(err)
	}
	// The file truncates to 8 tokens; UsedIDs must see past that.
	got := tok.UsedIDs([]string{"the the the the the the the the dog", "cats"}, []Pair{{A: "a", B: "unbelievable!"}})
	want := []int{3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14}
	if !slices.Equal(got, want) {
		t.Errorf("UsedIDs = %v, want %v", got, want)
	}
	if got := tok.UsedIDs(nil, nil); len(got) != 0 {
		t.Errorf("UsedIDs of nothing = %v", got)
	}
}

// pruneHeader is the header line of a testdata/tokenizer/vocab_prune fixture.
type pruneHeader struct {
	Set             string `json:"set"`
	PruneSource     string `json:"prune_source"`
	Source          string `json:"source"`
	Rows            int    `json:"rows"`
	MaxLength       int    `json:"max_length"`
	Tokenizers      string `json:"tokenizers"`
	TokenizerSHA256 string `json:"tokenizer_sha256"`
	VocabSize       int    `json:"vocab_size"`
	VocabSHA256     string `json:"vocab_sha256"`
	UnkRows         int    `json:"unk_rows"`
}

func readPruneFixture(t *testing.T, name string) (pruneHeader, []fixtureRow) {
	t.Helper()
	data, err := readGzip(filepath.Join(fixtureDir, "vocab_prune", name+".jsonl.gz"))
	if err != nil {
		t.Fatalf("reading fixture (regenerate with scripts/vocab_prune_fixtures.sh): %v", err)
	}
	var h pruneHeader
	rows := parseFixture(t, name, data, &h)
	return h, rows
}

// TestPruneEquality prunes the committed MiniLM tokenizer to the tokens of
// 2,000 SST-2 train phrases and, separately, of 2,000 AG News rows, and
// compares with scripts/vocab_prune_reference.py, which prunes on its own
// with HF tokenizers: the same tokens must stay, and on held-out texts (SST-2
// dev, AG News rows 2,000-3,999) the Go tokenizer loaded from the Go-pruned
// file must give HF's ids with HF's pruned file, [UNK]s included. With
// BEAMTUNE_PRUNE_OUT=DIR it also writes the pruned files there, for the
// script's check that HF loads them (scripts/vocab_prune_fixtures.sh).
func TestPruneEquality(t *testing.T) {
	requireSharedData(t)
	raw, err := readGzip(filepath.Join(fixtureDir, committedTokenizer))
	if err != nil {
		t.Fatal(err)
	}
	base := loadTestTokenizer(t)
	sst2Train := readTSVColumn(t, filepath.Join(sharedDataDir, "sst2", "train.tsv"), "sentence")
	sst2Dev := readTSVColumn(t, filepath.Join(sharedDataDir, "sst2", "dev.tsv"), "sentence")
	var ag []string
	for _, p := range readAGNews(t, filepath.Join(sharedDataDir, "ag_news", "test.csv")) {
		ag = append(ag, p.A+" "+p.B)
	}
	const n = 2000
	sets := []struct {
		name, pruneSource, source string
		prune, heldOut            []string
	}{
		{"sst2", "sst2/train.tsv:sentence[0:2000]", "sst2/dev.tsv:sentence", sst2Train[:n], sst2Dev},
		{"ag_news", "ag_news/test.csv:title+' '+description[0:2000]", "ag_news/test.csv:title+' '+description[2000:4000]", ag[:n], ag[n : 2*n]},
	}
	for _, set := range sets {
		t.Run(set.name, func(t *testing.T) {
			h, rows := readPruneFixture(t, set.name)
			if h.TokenizerSHA256 != testTokenizer.sum {
				t.Fatalf("fixture was made from another tokenizer.json (sha256 %s, committed copy %s)", h.TokenizerSHA256, testTokenizer.sum)
			}
			if h.PruneSource != set.pruneSource || h.Source != set.source || h.Rows != len(set.heldOut) {
				t.Fatalf("fixture covers %s -> %s (%d rows), the test %s -> %s (%d rows): regenerate it",
					h.PruneSource, h.Source, h.Rows, set.pruneSource, set.source, len(set.heldOut))
			}

			pv, err := PruneVocab(raw, base.UsedIDs(set.prune, nil))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(pv.VocabTxt)
			if len(pv.OldIDs) != h.VocabSize || hex.EncodeToString(sum[:]) != h.VocabSHA256 {
				t.Fatalf("kept %d tokens (vocab.txt sha256 %x); HF-based pruning kept %d (%s)", len(pv.OldIDs), sum, h.VocabSize, h.VocabSHA256)
			}
			t.Logf("%s: %d of %d tokens kept, vocab.txt equals the reference pruning", set.name, len(pv.OldIDs), base.VocabSize())
			if dir := os.Getenv("BEAMTUNE_PRUNE_OUT"); dir != "" {
				for file, data := range map[string][]byte{".tokenizer.json": pv.TokenizerJSON, ".vocab.txt": pv.VocabTxt} {
					if err := os.WriteFile(filepath.Join(dir, set.name+file), data, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}

			loaded, err := FromJSON(pv.TokenizerJSON)
			if err != nil {
				t.Fatal(err)
			}
			pruned := configure(t, loaded, &h.MaxLength, nil)
			orig := configure(t, base, &h.MaxLength, nil)
			oldUnk, _ := orig.TokenID("[UNK]")
			newUnk, _ := pruned.TokenID("[UNK]")

			// Inside the pruning corpus the segmentation is unchanged.
			changed := 0
			for i, text := range set.prune {
				a, b := orig.Encode(text), pruned.Encode(text)
				if !mapsTo(a.IDs, b.IDs, pv.OldIDs) {
					changed++
					if changed <= 3 {
						t.Errorf("pruning text %d %q: %v before, %v after pruning", i, clip(text), a.IDs, b.IDs)
					}
				}
			}
			t.Logf("%s: %d pruning texts, %d changed segmentation", set.name, len(set.prune), changed)

			// Held out: HF's ids, and some rows have [UNK]s they did not have.
			wantHash, wantRow, wantTr := expandRows(t, rows, h.Rows)
			m := &mismatches{t: t, set: set.name + " held out"}
			unkRows, differ := 0, 0
			for i, text := range set.heldOut {
				e := pruned.Encode(text)
				m.check(i, text, e, wantHash[i], wantRow[i], wantTr[i])
				before := orig.Encode(text)
				if slices.Contains(e.IDs, newUnk) && !slices.Contains(before.IDs, oldUnk) {
					unkRows++
				}
				if !mapsTo(before.IDs, e.IDs, pv.OldIDs) {
					differ++
				}
			}
			m.report()
			t.Logf("%s: %d held-out rows, %d encode differently after pruning, %d gain [UNK] (HF: %d)", set.name, len(set.heldOut), differ, unkRows, h.UnkRows)
			if unkRows != h.UnkRows || unkRows == 0 {
				t.Errorf("%d held-out rows gain [UNK], HF %d (and the test needs some)", unkRows, h.UnkRows)
			}
		})
	}
}

// mapsTo reports whether after, read through oldIDs, is before.
func mapsTo(before, after []int32, oldIDs []int) bool {
	if len(before) != len(after) {
		return false
	}
	for i, id := range after {
		if int(id) >= len(oldIDs) || oldIDs[id] != int(before[i]) {
			return false
		}
	}
	return true
}
