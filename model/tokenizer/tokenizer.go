package tokenizer

import (
	"fmt"
	"strings"
	"sync"
)

// Tokenizer encodes text as a BERT WordPiece tokenizer.json does under HF
// tokenizers. Make one with Load or FromJSON (the zero value is not usable).
// It is immutable and safe for concurrent use; WithTruncation and WithPadding
// return configured copies that share the vocab and tables.
type Tokenizer struct {
	model    *wordPiece
	table    *charTable
	added    addedTokens
	single   []templatePiece
	pair     []templatePiece
	nSingle  int // special tokens the single template adds
	nPair    int // special tokens the pair template adds
	maxID    int32
	idTokens []string

	truncation *Truncation
	padding    *Padding

	scratch *sync.Pool // of *scratch, shared by copies
}

// Encoding is the model input for one text or pair of texts.
type Encoding struct {
	IDs           []int32
	TypeIDs       []int32
	AttentionMask []int32
	// Length counts the tokens before padding (the ones with mask 1).
	Length int
	// Truncated reports that truncation removed tokens.
	Truncated bool
}

// Pair is one input to EncodePairBatch.
type Pair struct {
	A, B string
}

// Truncation limits the length of an encoding, special tokens included. For a
// pair, tokens are removed from the longer sequence first (HF LongestFirst),
// from the right.
type Truncation struct {
	MaxLength int
}

// PaddingStrategy picks the padded length.
type PaddingStrategy int

const (
	// PadBatchLongest pads to the longest encoding of the batch (a single
	// Encode pads only to PadToMultipleOf).
	PadBatchLongest PaddingStrategy = iota
	// PadFixed pads to Padding.Length; longer encodings are left as they are.
	PadFixed
)

// maxPadLength bounds padding settings: every padded encoding allocates its
// length three times over, and no model takes inputs near this long.
const maxPadLength = 1 << 20

// Padding appends PadID tokens (type PadTypeID, mask 0) on the right.
type Padding struct {
	Strategy        PaddingStrategy
	Length          int // for PadFixed
	PadToMultipleOf int // 0: no rounding
	PadID           int32
	PadTypeID       int32
}

type templatePiece struct {
	ids      []int32 // special token ids; nil for a sequence
	sequence int     // 0: A, 1: B (when ids is nil)
	typeID   int32
}

type scratch struct {
	norm    []byte
	ids     [2][]int32 // per sequence, before post-processing
	out     []int32    // ids after post-processing
	types   []int32
	key     []byte
	runes   []rune
	classes []uint8
}

// VocabSize is one more than the largest token id the tokenizer can produce.
func (t *Tokenizer) VocabSize() int { return int(t.maxID) + 1 }

// TokenID returns the id of a vocab entry or added token.
func (t *Tokenizer) TokenID(token string) (int32, bool) {
	for _, a := range t.added.tokens {
		if a.content == token {
			return a.id, true
		}
	}
	id, ok := t.model.vocab[token]
	return id, ok
}

// Token returns the text of a token id.
func (t *Tokenizer) Token(id int32) (string, bool) {
	if id < 0 || int(id) >= len(t.idTokens) || t.idTokens[id] == "" {
		return "", false
	}
	return t.idTokens[id], true
}

// Truncation returns a copy of the truncation settings, nil when off.
func (t *Tokenizer) Truncation() *Truncation {
	if t.truncation == nil {
		return nil
	}
	c := *t.truncation
	return &c
}

// Padding returns a copy of the padding settings, nil when off.
func (t *Tokenizer) Padding() *Padding {
	if t.padding == nil {
		return nil
	}
	c := *t.padding
	return &c
}

// WithTruncation returns a copy of t that truncates as tr says; nil turns
// truncation off. MaxLength must leave room for the special tokens of a pair
// (HF silently stops truncating below that).
func (t *Tokenizer) WithTruncation(tr *Truncation) (*Tokenizer, error) {
	c := *t
	if tr == nil {
		c.truncation = nil
		return &c, nil
	}
	if need := max(t.nSingle, t.nPair); tr.MaxLength < need {
		return nil, fmt.Errorf("tokenizer: truncation max length %d is below the %d special tokens a pair gets", tr.MaxLength, need)
	}
	tc := *tr
	c.truncation = &tc
	return &c, nil
}

// WithPadding returns a copy of t that pads as p says; nil turns padding off.
func (t *Tokenizer) WithPadding(p *Padding) (*Tokenizer, error) {
	c := *t
	if p == nil {
		c.padding = nil
		return &c, nil
	}
	switch {
	case p.Strategy != PadBatchLongest && p.Strategy != PadFixed:
		return nil, fmt.Errorf("tokenizer: unknown padding strategy %d", p.Strategy)
	case p.Strategy == PadFixed && (p.Length < 0 || p.Length > maxPadLength):
		return nil, fmt.Errorf("tokenizer: padding length %d is outside [0, %d]", p.Length, maxPadLength)
	case p.PadToMultipleOf < 0 || p.PadToMultipleOf > maxPadLength:
		return nil, fmt.Errorf("tokenizer: pad_to_multiple_of %d is outside [0, %d]", p.PadToMultipleOf, maxPadLength)
	}
	pc := *p
	c.padding = &pc
	return &c, nil
}

// Encode encodes one text: tokens, then truncation, special tokens and padding.
func (t *Tokenizer) Encode(text string) Encoding {
	s := t.getScratch()
	defer t.scratch.Put(s)
	truncated := t.encodeInto(s, text, "", false)
	return t.finish(s, truncated, t.padTarget(len(s.out)))
}

// EncodePair encodes a sentence pair (type ids 0 for a, 1 for b).
func (t *Tokenizer) EncodePair(a, b string) Encoding {
	s := t.getScratch()
	defer t.scratch.Put(s)
	truncated := t.encodeInto(s, a, b, true)
	return t.finish(s, truncated, t.padTarget(len(s.out)))
}

// EncodeBatch encodes texts; with PadBatchLongest all encodings get the
// length of the longest. The encodings share one backing array.
func (t *Tokenizer) EncodeBatch(texts []string) []Encoding {
	return t.encodeBatch(len(texts), func(s *scratch, i int) bool {
		return t.encodeInto(s, texts[i], "", false)
	})
}

// EncodePairBatch is EncodeBatch for sentence pairs.
func (t *Tokenizer) EncodePairBatch(pairs []Pair) []Encoding {
	return t.encodeBatch(len(pairs), func(s *scratch, i int) bool {
		return t.encodeInto(s, pairs[i].A, pairs[i].B, true)
	})
}

func (t *Tokenizer) encodeBatch(n int, encode func(*scratch, int) bool) []Encoding {
	if n == 0 {
		return nil
	}
	s := t.getScratch()
	defer t.scratch.Put(s)
	// Keep every item's ids and type ids in two flat slices, then lay out the
	// padded results in one allocation.
	var allIDs, allTypes []int32
	ends := make([]int, n)
	truncated := make([]bool, n)
	longest := 0
	for i := 0; i < n; i++ {
		truncated[i] = encode(s, i)
		allIDs = append(allIDs, s.out...)
		allTypes = append(allTypes, s.types...)
		ends[i] = len(allIDs)
		longest = max(longest, len(s.out))
	}
	target := t.padTarget(longest)
	total := 0
	for i := range ends {
		total += max(target, ends[i]-itemStart(ends, i))
	}
	backing := make([]int32, 3*total)
	encs := make([]Encoding, n)
	for i := range encs {
		lo, hi := itemStart(ends, i), ends[i]
		size := max(target, hi-lo)
		e := layout(backing[:3*size:3*size], size)
		backing = backing[3*size:]
		fill(&e, allIDs[lo:hi], allTypes[lo:hi], t.padding)
		e.Truncated = truncated[i]
		encs[i] = e
	}
	return encs
}

func itemStart(ends []int, i int) int {
	if i == 0 {
		return 0
	}
	return ends[i-1]
}

func (t *Tokenizer) getScratch() *scratch {
	return t.scratch.Get().(*scratch)
}

// padTarget is the length to pad to, for encodings whose longest is n.
func (t *Tokenizer) padTarget(n int) int {
	p := t.padding
	if p == nil {
		return 0 // each encoding keeps its own length
	}
	target := n
	if p.Strategy == PadFixed {
		target = p.Length
	}
	if m := p.PadToMultipleOf; m > 0 && target%m != 0 {
		target += m - target%m
	}
	return target
}

func (t *Tokenizer) finish(s *scratch, truncated bool, target int) Encoding {
	size := max(target, len(s.out))
	e := layout(make([]int32, 3*size), size)
	fill(&e, s.out, s.types, t.padding)
	e.Truncated = truncated
	return e
}

func layout(backing []int32, size int) Encoding {
	return Encoding{
		IDs:           backing[:size:size],
		TypeIDs:       backing[size : 2*size : 2*size],
		AttentionMask: backing[2*size : 3*size : 3*size],
	}
}

// fill copies ids and type ids into e and pads the rest of it.
func fill(e *Encoding, ids, types []int32, p *Padding) {
	n := copy(e.IDs, ids)
	copy(e.TypeIDs, types)
	for i := 0; i < n; i++ {
		e.AttentionMask[i] = 1
	}
	e.Length = n
	if n < len(e.IDs) {
		// Only padding makes an encoding longer than its tokens.
		for i := n; i < len(e.IDs); i++ {
			e.IDs[i] = p.PadID
			e.TypeIDs[i] = p.PadTypeID
		}
	}
}

// encodeInto leaves the post-processed ids and type ids of one input in
// s.out and s.types and reports whether truncation removed tokens.
func (t *Tokenizer) encodeInto(s *scratch, a, b string, isPair bool) bool {
	s.ids[0] = t.appendSequence(s, s.ids[0][:0], a)
	s.ids[1] = s.ids[1][:0]
	template := t.single
	if isPair {
		s.ids[1] = t.appendSequence(s, s.ids[1], b)
		template = t.pair
	}
	truncated := false
	if t.truncation != nil {
		truncated = t.truncate(s, isPair)
	}
	s.out, s.types = s.out[:0], s.types[:0]
	for _, p := range template {
		ids := p.ids
		if ids == nil {
			ids = s.ids[p.sequence]
		}
		s.out = append(s.out, ids...)
		for range ids {
			s.types = append(s.types, p.typeID)
		}
	}
	return truncated
}

// truncate applies HF's LongestFirst truncation to s.ids, keeping room for
// the special tokens. For a pair: if the shorter one fits in half or less, the
// longer one gets the rest; otherwise both get half (the second one gets the
// odd token).
func (t *Tokenizer) truncate(s *scratch, isPair bool) bool {
	if !isPair {
		maxLen := t.truncation.MaxLength - t.nSingle
		if len(s.ids[0]) > maxLen {
			s.ids[0] = s.ids[0][:maxLen]
			return true
		}
		return false
	}
	maxLen := t.truncation.MaxLength - t.nPair
	n1, n2 := len(s.ids[0]), len(s.ids[1])
	if n1+n2 <= maxLen {
		return false
	}
	if maxLen == 0 {
		s.ids[0], s.ids[1] = s.ids[0][:0], s.ids[1][:0]
		return true
	}
	short, long := min(n1, n2), max(n1, n2)
	if short > maxLen {
		long = short
	} else {
		long = max(short, maxLen-short)
	}
	if short+long > maxLen {
		short = maxLen / 2
		long = short + maxLen%2
	}
	k1, k2 := short, long
	if n1 > n2 {
		k1, k2 = long, short
	}
	s.ids[0] = s.ids[0][:min(k1, n1)]
	s.ids[1] = s.ids[1][:min(k2, n2)]
	return true
}

// appendSequence appends the token ids of one text: added tokens are matched
// on the raw text first, the text between them is normalized, split into
// words, and each word goes through WordPiece.
func (t *Tokenizer) appendSequence(s *scratch, dst []int32, text string) []int32 {
	for len(text) > 0 {
		at, tok := t.added.find(text)
		segment := text
		if tok != nil {
			segment = text[:at]
		}
		if segment != "" {
			dst = t.appendSegment(s, dst, segment)
		}
		if tok == nil {
			break
		}
		dst = append(dst, tok.id)
		text = text[at+len(tok.content):]
	}
	return dst
}

func (t *Tokenizer) appendSegment(s *scratch, dst []int32, segment string) []int32 {
	norm, ok := t.table.appendNormalized(s.norm[:0], segment)
	if !ok {
		norm, s.runes, s.classes = t.table.appendNormalizedExact(norm[:0], segment, s.runes, s.classes)
	}
	s.norm = norm
	return t.appendWords(s, dst, norm)
}

// appendWords is BertPreTokenizer followed by WordPiece.
func (t *Tokenizer) appendWords(s *scratch, dst []int32, norm []byte) []int32 {
	for i := 0; ; {
		start, end := t.table.nextWord(norm, i)
		if start == end {
			return dst
		}
		dst, s.key = t.model.appendWord(dst, norm[start:end], s.key)
		i = end
	}
}

// addedToken is a token matched verbatim in the raw text before
// normalization (HF added tokens with normalized=false, such as [CLS]).
type addedToken struct {
	content string
	id      int32
}

type addedTokens struct {
	tokens  []addedToken // longest first, so the first match at a position is the longest
	first   [256]bool    // bytes that start some token
	single  byte         // the only first byte, when onlyOne
	onlyOne bool
}

func newAddedTokens(tokens []addedToken) addedTokens {
	a := addedTokens{tokens: append([]addedToken(nil), tokens...)}
	// Longest first; ties keep file order.
	for i := 1; i < len(a.tokens); i++ {
		for j := i; j > 0 && len(a.tokens[j].content) > len(a.tokens[j-1].content); j-- {
			a.tokens[j], a.tokens[j-1] = a.tokens[j-1], a.tokens[j]
		}
	}
	distinct := 0
	for _, tok := range a.tokens {
		c := tok.content[0]
		if !a.first[c] {
			distinct++
			a.single = c
		}
		a.first[c] = true
	}
	a.onlyOne = distinct == 1
	return a
}

// find returns the leftmost match, and among matches there the longest.
func (a *addedTokens) find(text string) (int, *addedToken) {
	if len(a.tokens) == 0 {
		return 0, nil
	}
	for i := 0; i < len(text); i++ {
		if a.onlyOne {
			j := strings.IndexByte(text[i:], a.single)
			if j < 0 {
				return 0, nil
			}
			i += j
		} else if !a.first[text[i]] {
			continue
		}
		for k := range a.tokens {
			if strings.HasPrefix(text[i:], a.tokens[k].content) {
				return i, &a.tokens[k]
			}
		}
	}
	return 0, nil
}
