package tokenizer

import (
	"bufio"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unicode"
)

// modelDir is where the project keeps the model; tests that need it skip
// without it (the rest use the committed copy of tokenizer.json).
const modelDir = "/root/.cache/beamtune/models/all-MiniLM-L6-v2"

func noPadding(t testing.TB, tok *Tokenizer) *Tokenizer {
	t.Helper()
	tok, err := tok.WithPadding(nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestLoadModelFile(t *testing.T) {
	path := filepath.Join(modelDir, "tokenizer.json")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("model cache absent (%v); the committed copy is tested instead", err)
	}
	tok, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if tr := tok.Truncation(); tr == nil || tr.MaxLength != 128 {
		t.Errorf("truncation from file = %+v, want max length 128", tr)
	}
	if p := tok.Padding(); p == nil || p.Strategy != PadFixed || p.Length != 128 || p.PadID != 0 {
		t.Errorf("padding from file = %+v, want fixed 128 with [PAD]=0", p)
	}
	committed := loadTestTokenizer(t)
	for _, s := range []string{"Hello, world!", "İstanbul café 野口", ""} {
		if a, b := tok.Encode(s), committed.Encode(s); !equalInt32(a.IDs, b.IDs) {
			t.Errorf("%q: model file gives %v, committed copy %v", s, a.IDs, b.IDs)
		}
	}

	// vocab.txt beside it lists the same vocab, one token per line, line n being id n.
	f, err := os.Open(filepath.Join(modelDir, "vocab.txt"))
	if err != nil {
		t.Skipf("no vocab.txt: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	id := int32(0)
	for ; sc.Scan(); id++ {
		if got, ok := tok.model.vocab[sc.Text()]; !ok || got != id {
			t.Fatalf("vocab.txt line %d %q: tokenizer.json id %d (present %v)", id, sc.Text(), got, ok)
		}
	}
	if int(id) != len(tok.model.vocab) {
		t.Errorf("vocab.txt has %d tokens, tokenizer.json %d", id, len(tok.model.vocab))
	}
}

// committedJSON returns the committed tokenizer.json decoded, for tests that
// change one field.
func committedJSON(t *testing.T) map[string]any {
	t.Helper()
	data, err := readGzip(filepath.Join(fixtureDir, committedTokenizer))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFromJSONRejects(t *testing.T) {
	cases := []struct {
		name   string
		edit   func(m map[string]any)
		errHas string
	}{
		{"normalizer", func(m map[string]any) { m["normalizer"] = map[string]any{"type": "NFKC"} }, "normalizer.type \"NFKC\""},
		{"pre_tokenizer", func(m map[string]any) { m["pre_tokenizer"] = map[string]any{"type": "Whitespace"} }, "pre_tokenizer.type \"Whitespace\""},
		{"pre_tokenizer null", func(m map[string]any) { m["pre_tokenizer"] = nil }, "pre_tokenizer is null"},
		{"model", func(m map[string]any) { m["model"].(map[string]any)["type"] = "BPE" }, "model.type \"BPE\""},
		{"unk", func(m map[string]any) { m["model"].(map[string]any)["unk_token"] = "<unk>" }, "model.unk_token"},
		{"vocab id", func(m map[string]any) { m["model"].(map[string]any)["vocab"].(map[string]any)["hello"] = -1 }, "model.vocab[\"hello\"]"},
		{"huge id", func(m map[string]any) { m["model"].(map[string]any)["vocab"].(map[string]any)["hello"] = 2000000000 }, "too large"},
		{"post_processor", func(m map[string]any) { m["post_processor"] = map[string]any{"type": "RobertaProcessing"} }, "post_processor.type \"RobertaProcessing\""},
		{"added lstrip", func(m map[string]any) { m["added_tokens"].([]any)[1].(map[string]any)["lstrip"] = true }, "added_tokens[1].lstrip"},
		{"added normalized", func(m map[string]any) { m["added_tokens"].([]any)[0].(map[string]any)["normalized"] = true }, "added_tokens[0].normalized"},
		{"truncation strategy", func(m map[string]any) { m["truncation"].(map[string]any)["strategy"] = "OnlyFirst" }, "truncation.strategy"},
		{"truncation direction", func(m map[string]any) { m["truncation"].(map[string]any)["direction"] = "Left" }, "truncation.direction"},
		{"truncation too short", func(m map[string]any) { m["truncation"].(map[string]any)["max_length"] = 2 }, "truncation.max_length"},
		{"padding direction", func(m map[string]any) { m["padding"].(map[string]any)["direction"] = "Left" }, "padding.direction"},
		{"padding strategy", func(m map[string]any) { m["padding"].(map[string]any)["strategy"] = "Longest" }, "padding.strategy"},
		{"template", func(m map[string]any) {
			m["post_processor"].(map[string]any)["single"] = []any{map[string]any{"SpecialToken": map[string]any{"id": "[CLS]", "type_id": 0}}}
		}, "post_processor.single has no Sequence A"},
		{"template special", func(m map[string]any) {
			delete(m["post_processor"].(map[string]any)["special_tokens"].(map[string]any), "[SEP]")
		}, "\"[SEP]\" has no ids"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := committedJSON(t)
			c.edit(m)
			data, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			_, err = FromJSON(data)
			if err == nil || !strings.Contains(err.Error(), c.errHas) {
				t.Fatalf("error %v, want one that mentions %s", err, c.errHas)
			}
		})
	}
	if _, err := FromJSON([]byte("{")); err == nil {
		t.Error("truncated JSON accepted")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("missing file accepted")
	}
}

func TestBertProcessingAndDefaults(t *testing.T) {
	m := committedJSON(t)
	m["post_processor"] = map[string]any{"type": "BertProcessing", "sep": []any{"[SEP]", 102}, "cls": []any{"[CLS]", 101}}
	m["normalizer"] = map[string]any{"type": "BertNormalizer"} // every flag at HF's default
	m["truncation"], m["padding"] = nil, nil
	data, _ := json.Marshal(m)
	tok, err := FromJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	base := noPadding(t, loadTestTokenizer(t))
	base, _ = base.WithTruncation(nil)
	for _, p := range [][2]string{{"Hello there", "General Kenobi"}, {"ÀÉÎ", ""}} {
		a, b := tok.EncodePair(p[0], p[1]), base.EncodePair(p[0], p[1])
		if !equalInt32(a.IDs, b.IDs) || !equalInt32(a.TypeIDs, b.TypeIDs) {
			t.Errorf("%q: BertProcessing %v/%v, template %v/%v", p, a.IDs, a.TypeIDs, b.IDs, b.TypeIDs)
		}
	}
}

func TestWithTruncationAndPadding(t *testing.T) {
	tok := loadTestTokenizer(t)
	if _, err := tok.WithTruncation(&Truncation{MaxLength: 2}); err == nil {
		t.Error("max length 2 accepted, below the 3 special tokens of a pair")
	}
	if _, err := tok.WithPadding(&Padding{Strategy: PadFixed, Length: -1}); err == nil {
		t.Error("negative padding length accepted")
	}
	if _, err := tok.WithPadding(&Padding{Strategy: 7}); err == nil {
		t.Error("unknown strategy accepted")
	}
	tr, err := tok.WithTruncation(&Truncation{MaxLength: 3})
	if err != nil {
		t.Fatal(err)
	}
	tr = noPadding(t, tr)
	e := tr.EncodePair("one two", "three")
	if want := []int32{101, 102, 102}; !equalInt32(e.IDs, want) || !e.Truncated {
		t.Errorf("pair at max length 3 = %v truncated=%v, want %v truncated", e.IDs, e.Truncated, want)
	}
	// The copies do not change the original.
	if tok.Truncation().MaxLength != 128 || tok.Padding().Length != 128 {
		t.Error("With* changed the receiver")
	}
	// Fixed padding from tokenizer.json.
	e = tok.Encode("hello world")
	if len(e.IDs) != 128 || e.Length != 4 || e.AttentionMask[3] != 1 || e.AttentionMask[4] != 0 || e.IDs[127] != 0 {
		t.Errorf("padded encoding: len %d length %d mask %v", len(e.IDs), e.Length, e.AttentionMask[:6])
	}
	if got := tok.EncodeBatch(nil); len(got) != 0 {
		t.Errorf("empty batch gave %d encodings", len(got))
	}
}

func TestSpecialTokensInText(t *testing.T) {
	tok := noPadding(t, loadTestTokenizer(t))
	cases := map[string][]int32{
		"[CLS]":             {101, 101, 102},
		"a[MASK]b":          {101, 1037, 103, 1038, 102},
		"[cls]":             {101, 1031, 18856, 2015, 1033, 102}, // case matters: not the token
		"[[SEP]]":           {101, 1031, 102, 1033, 102},
		"x[PAD][UNK]":       {101, 1060, 0, 100, 102},
		"\u00a0[SEP]\u00a0": {101, 102, 102},
	}
	for in, want := range cases {
		if got := tok.Encode(in).IDs; !equalInt32(got, want) {
			t.Errorf("%q = %v, want %v", in, got, want)
		}
	}
}

func TestInvalidUTF8(t *testing.T) {
	tok := noPadding(t, loadTestTokenizer(t))
	// clean_text drops U+FFFD, and each invalid byte reads as U+FFFD.
	for in, same := range map[string]string{
		"a\xffb":         "ab",
		"caf\xc3":        "caf",
		"\xe2\x82 x":     " x",
		"\xed\xa0\x80 y": " y", // an encoded surrogate
		"\xc0\xaf!":      "!",
	} {
		if a, b := tok.Encode(in), tok.Encode(same); !equalInt32(a.IDs, b.IDs) {
			t.Errorf("%q = %v, want the ids of %q: %v", in, a.IDs, same, b.IDs)
		}
	}
	// Without clean_text the U+FFFD stays, a character the vocab lacks.
	c := *tok
	c.table = charTableFor(normalizerConfig{chineseChars: true, stripAccents: true, lowercase: true})
	if got := c.Encode("x \xff").IDs; !equalInt32(got, []int32{101, 1060, 100, 102}) {
		t.Errorf("no clean_text: %v", got)
	}
}

// randomText mixes ASCII with the code points that exercise each table.
func randomText(rng *rand.Rand, n int) string {
	special := []rune{0x0, 0x7, 0x85, 0xA0, 0x130, 0x212A, 0x2126, 0x212B, 0x1E9E, 0x3A3, 0x1FEF, 0x37E, 0x301, 0x334,
		0x34F, 0x8D4, 0x8E1, 0x1D165, 0x1D16D, 0x1D15E, 0x302E, 0xAC00, 0xD7A3, 0x4E00, 0xF900, 0x2F800, 0xFFFD, 0x200B, 0xFEFF}
	var b strings.Builder
	for i := 0; i < n; i++ {
		switch rng.IntN(6) {
		case 0, 1:
			b.WriteByte(byte(rng.IntN(128)))
		case 2:
			b.WriteRune(special[rng.IntN(len(special))])
		case 3:
			b.WriteRune(rune(0xC0 + rng.IntN(0x2000)))
		case 4:
			r := rune(rng.IntN(0x110000))
			if r >= 0xD800 && r <= 0xDFFF {
				r = 'x'
			}
			b.WriteRune(r)
		default:
			b.WriteByte(byte(0x80 + rng.IntN(128))) // stray continuation or lead byte
		}
	}
	return b.String()
}

func allNormalizerConfigs() []normalizerConfig {
	var out []normalizerConfig
	for k := 0; k < 16; k++ {
		out = append(out, normalizerConfig{cleanText: k&1 != 0, chineseChars: k&2 != 0, stripAccents: k&4 != 0, lowercase: k&8 != 0})
	}
	return out
}

// TestFastPathMatchesExact checks the per-code-point table against the
// step-by-step normalizer on random text, for every flag combination.
func TestFastPathMatchesExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	texts := make([]string, 3000)
	for i := range texts {
		texts[i] = randomText(rng, 1+rng.IntN(40))
	}
	for _, cfg := range allNormalizerConfigs() {
		tbl := charTableFor(cfg)
		for _, s := range texts {
			fast, ok := tbl.appendNormalized(nil, s)
			if !ok {
				continue
			}
			exact, _, _ := tbl.appendNormalizedExact(nil, s, nil, nil)
			if string(fast) != string(exact) {
				t.Fatalf("%+v: %q normalizes to %q (table) and %q (steps)", cfg, s, fast, exact)
			}
		}
	}
}

func TestConcurrentEncode(t *testing.T) {
	tok := loadTestTokenizer(t)
	rng := rand.New(rand.NewPCG(3, 4))
	texts := make([]string, 200)
	for i := range texts {
		texts[i] = randomText(rng, 80)
	}
	want := tok.EncodeBatch(texts)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, s := range texts {
				if got := tok.Encode(s); !equalInt32(got.IDs, want[i].IDs) {
					t.Errorf("concurrent Encode(%q) = %v, want %v", s, got.IDs, want[i].IDs)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestUnicodeDrift measures how far Go's unicode package (and so any encoder
// built on it) is from HF's tables; it fails only if the generated tables
// and HF's documented rules part ways for ASCII.
func TestUnicodeDrift(t *testing.T) {
	count := func(name string, hf []runeRange, goHas func(r rune) bool) {
		n := 0
		for r := rune(0); r <= unicode.MaxRune; r++ {
			if r >= 0xD800 && r <= 0xDFFF {
				continue
			}
			if inRanges(hf, r) != goHas(r) {
				n++
			}
		}
		t.Logf("%s: Go unicode %s and HF (%s) differ on %d code points", name, unicode.Version, tablesVersion, n)
	}
	count("clean_text drops", hfDropped, func(r rune) bool {
		return r != '\t' && r != '\n' && r != '\r' && (r == 0 || r == 0xFFFD || unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co))
	})
	count("punctuation", hfPunctuation, func(r rune) bool {
		return r < 128 && unicode.IsPrint(r) && r != ' ' && !unicode.IsLetter(r) && !unicode.IsDigit(r) || unicode.IsPunct(r)
	})
	count("Mn", hfNonspacingMarks, func(r rune) bool { return unicode.Is(unicode.Mn, r) })
	count("whitespace", hfWhitespace, unicode.IsSpace)
	lower := 0
	for r := rune(0); r <= unicode.MaxRune; r++ {
		want := string(appendLower(nil, r))
		if string(unicode.ToLower(r)) != want {
			lower++
		}
	}
	t.Logf("lowercase: Go unicode.ToLower and Rust char::to_lowercase differ on %d code points", lower)

	// ASCII rules are fixed: BertPreTokenizer's ASCII punctuation list.
	for r := rune(0); r < 128; r++ {
		want := r >= 33 && r <= 47 || r >= 58 && r <= 64 || r >= 91 && r <= 96 || r >= 123 && r <= 126
		if inRanges(hfPunctuation, r) != want {
			t.Errorf("ASCII %q: punctuation %v, want %v", r, !want, want)
		}
	}
}
