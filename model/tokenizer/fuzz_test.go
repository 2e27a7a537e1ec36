package tokenizer

import (
	"sync"
	"testing"
)

var fuzzTokenizers struct {
	once    sync.Once
	byFlags [16]*Tokenizer // one per BertNormalizer flag combination, no truncation or padding
}

// fuzzTokenizer picks normalizer flags, truncation and padding from mode and maxLen.
func fuzzTokenizer(t *testing.T, mode, maxLen uint8) *Tokenizer {
	base := loadTestTokenizer(t)
	fuzzTokenizers.once.Do(func() {
		plain, _ := base.WithTruncation(nil)
		plain, _ = plain.WithPadding(nil)
		for i, cfg := range allNormalizerConfigs() {
			c := *plain
			c.table = charTableFor(cfg)
			fuzzTokenizers.byFlags[i] = &c
		}
	})
	tok := fuzzTokenizers.byFlags[mode&15]
	var err error
	if mode&16 != 0 {
		if tok, err = tok.WithTruncation(&Truncation{MaxLength: 3 + int(maxLen)}); err != nil {
			t.Fatal(err)
		}
	}
	switch (mode >> 5) & 3 {
	case 1:
		tok, err = tok.WithPadding(&Padding{Strategy: PadFixed, Length: int(maxLen) / 2, PadID: 0})
	case 2:
		tok, err = tok.WithPadding(&Padding{Strategy: PadBatchLongest, PadToMultipleOf: int(maxLen % 9)})
	}
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// checkEncoding asserts what must hold for any input.
func checkEncoding(t *testing.T, tok *Tokenizer, e Encoding, isPair bool) {
	t.Helper()
	n := len(e.IDs)
	if len(e.TypeIDs) != n || len(e.AttentionMask) != n {
		t.Fatalf("lengths differ: ids %d, type ids %d, mask %d", n, len(e.TypeIDs), len(e.AttentionMask))
	}
	if e.Length < 0 || e.Length > n {
		t.Fatalf("Length %d outside [0, %d]", e.Length, n)
	}
	specials := tok.nSingle
	if isPair {
		specials = tok.nPair
	}
	if e.Length < specials {
		t.Fatalf("Length %d is below the %d special tokens", e.Length, specials)
	}
	if tr := tok.truncation; tr != nil && e.Length > tr.MaxLength {
		t.Fatalf("Length %d over max length %d", e.Length, tr.MaxLength)
	}
	if tok.truncation == nil && e.Truncated {
		t.Fatal("Truncated without truncation")
	}
	if n > e.Length && tok.padding == nil {
		t.Fatalf("%d padding tokens without padding", n-e.Length)
	}
	for i, id := range e.IDs {
		if id < 0 || int(id) >= tok.VocabSize() {
			t.Fatalf("id %d at %d outside the vocab (%d)", id, i, tok.VocabSize())
		}
		if i < e.Length {
			if e.AttentionMask[i] != 1 {
				t.Fatalf("mask %d at token %d", e.AttentionMask[i], i)
			}
			if i > 0 && e.TypeIDs[i] < e.TypeIDs[i-1] {
				t.Fatalf("type ids go down at %d: %v", i, e.TypeIDs)
			}
			continue
		}
		if e.AttentionMask[i] != 0 || id != tok.padding.PadID || e.TypeIDs[i] != tok.padding.PadTypeID {
			t.Fatalf("padding at %d: id %d type %d mask %d", i, id, e.TypeIDs[i], e.AttentionMask[i])
		}
	}
	if e.IDs[0] != 101 || e.IDs[e.Length-1] != 102 {
		t.Fatalf("not framed by [CLS] ... [SEP]: %v", e.IDs[:e.Length])
	}
	if !isPair && e.TypeIDs[e.Length-1] != 0 {
		t.Fatalf("single sequence with type id %d", e.TypeIDs[e.Length-1])
	}
}

// FuzzEncode: no input may panic, and every encoding is well formed; the
// per-code-point normalizer must agree with the step-by-step one.
func FuzzEncode(f *testing.F) {
	f.Add("Hello, world!", "second sentence", uint8(10), uint8(0x1F))
	f.Add("İstanbul K Ω Å ẞ", "a\u00a0b\u3000c", uint8(0), uint8(0x3F))
	f.Add("野口里佳 Noguchi", "\U0001d16d\u0301\U0001d165", uint8(200), uint8(0x55))
	f.Add("[CLS]x[MASK]\x00\xff\xfe", "", uint8(1), uint8(0x7F))
	f.Add("e\u0301\u0323\u0308", "\u08e1\u08d4\u1e9b\u0323", uint8(7), uint8(4))
	f.Fuzz(func(t *testing.T, a, b string, maxLen, mode uint8) {
		tok := fuzzTokenizer(t, mode, maxLen)
		e := tok.Encode(a)
		checkEncoding(t, tok, e, false)
		if again := tok.Encode(a); !equalInt32(again.IDs, e.IDs) {
			t.Fatalf("Encode is not deterministic: %v then %v", e.IDs, again.IDs)
		}
		p := tok.EncodePair(a, b)
		checkEncoding(t, tok, p, true)

		batch := tok.EncodeBatch([]string{a, b})
		pairs := tok.EncodePairBatch([]Pair{{a, b}, {b, a}})
		for i, e := range batch {
			checkEncoding(t, tok, e, false)
			if pad := tok.padding; pad != nil && pad.Strategy == PadBatchLongest && len(e.IDs) != len(batch[1-i].IDs) {
				t.Fatalf("batch-longest padding left lengths %d and %d", len(e.IDs), len(batch[1-i].IDs))
			}
		}
		for _, e := range pairs {
			checkEncoding(t, tok, e, true)
		}
		if !equalInt32(batch[0].IDs[:batch[0].Length], e.IDs[:e.Length]) {
			t.Fatalf("EncodeBatch %v, Encode %v", batch[0].IDs, e.IDs)
		}

		for _, s := range []string{a, b} {
			fast, ok := tok.table.appendNormalized(nil, s)
			if !ok {
				continue
			}
			exact, _, _ := tok.table.appendNormalizedExact(nil, s, nil, nil)
			if string(fast) != string(exact) {
				t.Fatalf("%+v: %q normalizes to %q (table) and %q (steps)", tok.table.cfg, s, fast, exact)
			}
		}
	})
}
