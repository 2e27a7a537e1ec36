package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sync"
)

// Load reads a HF tokenizer.json (BertNormalizer, BertPreTokenizer, WordPiece,
// TemplateProcessing or BertProcessing). Truncation and padding start as the
// file sets them; WithTruncation and WithPadding change them.
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := FromJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return t, nil
}

// FromJSON builds a Tokenizer from the contents of a tokenizer.json. Anything
// it cannot reproduce exactly is an error that names the field.
func FromJSON(data []byte) (*Tokenizer, error) {
	var file struct {
		AddedTokens   []addedTokenJSON `json:"added_tokens"`
		Normalizer    json.RawMessage  `json:"normalizer"`
		PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
		Model         json.RawMessage  `json:"model"`
		PostProcessor json.RawMessage  `json:"post_processor"`
		Truncation    json.RawMessage  `json:"truncation"`
		Padding       json.RawMessage  `json:"padding"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("tokenizer: parsing tokenizer.json: %w", err)
	}
	norm, err := parseNormalizer(file.Normalizer)
	if err != nil {
		return nil, err
	}
	if err := checkPreTokenizer(file.PreTokenizer); err != nil {
		return nil, err
	}
	model, err := parseModel(file.Model)
	if err != nil {
		return nil, err
	}
	t := &Tokenizer{
		model:   model,
		table:   charTableFor(norm),
		scratch: &sync.Pool{New: func() any { return new(scratch) }},
	}
	for _, id := range model.vocab {
		t.maxID = max(t.maxID, id)
	}
	added, err := parseAddedTokens(file.AddedTokens)
	if err != nil {
		return nil, err
	}
	t.added = newAddedTokens(added)
	for _, a := range added {
		t.maxID = max(t.maxID, a.id)
	}
	if err := t.parsePostProcessor(file.PostProcessor); err != nil {
		return nil, err
	}
	for _, p := range append(append([]templatePiece(nil), t.single...), t.pair...) {
		for _, id := range p.ids {
			t.maxID = max(t.maxID, id)
		}
	}
	if t.maxID >= maxTokenID {
		return nil, fmt.Errorf("tokenizer: token id %d is too large (ids must stay below %d)", t.maxID, maxTokenID)
	}
	t.idTokens = make([]string, int(t.maxID)+1)
	for tok, id := range model.vocab {
		t.idTokens[id] = tok
	}
	for _, a := range added {
		t.idTokens[a.id] = a.content
	}
	if t.truncation, err = parseTruncation(file.Truncation, max(t.nSingle, t.nPair)); err != nil {
		return nil, err
	}
	if t.padding, err = parsePadding(file.Padding); err != nil {
		return nil, err
	}
	return t, nil
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

func typeOf(raw json.RawMessage) string {
	var v struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(raw, &v)
	return v.Type
}

func parseNormalizer(raw json.RawMessage) (normalizerConfig, error) {
	if isNull(raw) {
		return normalizerConfig{}, nil
	}
	if ty := typeOf(raw); ty != "BertNormalizer" {
		return normalizerConfig{}, fmt.Errorf("tokenizer: normalizer.type %q is not supported (only BertNormalizer or null)", ty)
	}
	// Missing fields take HF's defaults.
	v := struct {
		CleanText    *bool `json:"clean_text"`
		ChineseChars *bool `json:"handle_chinese_chars"`
		StripAccents *bool `json:"strip_accents"`
		Lowercase    *bool `json:"lowercase"`
	}{}
	if err := json.Unmarshal(raw, &v); err != nil {
		return normalizerConfig{}, fmt.Errorf("tokenizer: normalizer: %w", err)
	}
	or := func(b *bool, def bool) bool {
		if b == nil {
			return def
		}
		return *b
	}
	c := normalizerConfig{
		cleanText:    or(v.CleanText, true),
		chineseChars: or(v.ChineseChars, true),
		lowercase:    or(v.Lowercase, true),
	}
	c.stripAccents = or(v.StripAccents, c.lowercase)
	return c, nil
}

func checkPreTokenizer(raw json.RawMessage) error {
	if isNull(raw) {
		return fmt.Errorf("tokenizer: pre_tokenizer is null; only BertPreTokenizer is supported")
	}
	if ty := typeOf(raw); ty != "BertPreTokenizer" {
		return fmt.Errorf("tokenizer: pre_tokenizer.type %q is not supported (only BertPreTokenizer)", ty)
	}
	return nil
}

func parseModel(raw json.RawMessage) (*wordPiece, error) {
	if isNull(raw) {
		return nil, fmt.Errorf("tokenizer: model is missing")
	}
	if ty := typeOf(raw); ty != "WordPiece" {
		return nil, fmt.Errorf("tokenizer: model.type %q is not supported (only WordPiece)", ty)
	}
	v := struct {
		UnkToken *string                `json:"unk_token"`
		Prefix   *string                `json:"continuing_subword_prefix"`
		MaxChars *int64                 `json:"max_input_chars_per_word"`
		Vocab    map[string]json.Number `json:"vocab"`
	}{}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("tokenizer: model: %w", err)
	}
	unk, prefix, maxChars := "[UNK]", "##", int64(100)
	if v.UnkToken != nil {
		unk = *v.UnkToken
	}
	if v.Prefix != nil {
		prefix = *v.Prefix
	}
	if v.MaxChars != nil {
		maxChars = *v.MaxChars
	}
	if maxChars < 0 || maxChars > math.MaxInt32 {
		return nil, fmt.Errorf("tokenizer: model.max_input_chars_per_word %d is out of range", maxChars)
	}
	if len(v.Vocab) == 0 {
		return nil, fmt.Errorf("tokenizer: model.vocab is empty")
	}
	vocab := make(map[string]int32, len(v.Vocab))
	for tok, n := range v.Vocab {
		id, err := tokenID(n)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: model.vocab[%q]: %w", tok, err)
		}
		vocab[tok] = id
	}
	unkID, ok := vocab[unk]
	if !ok {
		return nil, fmt.Errorf("tokenizer: model.unk_token %q is not in model.vocab", unk)
	}
	return newWordPiece(vocab, unkID, prefix, int(maxChars)), nil
}

// maxTokenID bounds ids so that a malformed file cannot make the id table huge.
const maxTokenID = 1 << 21

// tokenID accepts ids that fit the int32 the encodings carry.
func tokenID(n json.Number) (int32, error) {
	id, err := n.Int64()
	if err != nil || id < 0 || id >= math.MaxInt32 {
		return 0, fmt.Errorf("id %s is not an integer in [0, 2^31-1)", n)
	}
	return int32(id), nil
}

type addedTokenJSON struct {
	ID         json.Number `json:"id"`
	Content    string      `json:"content"`
	SingleWord bool        `json:"single_word"`
	LStrip     bool        `json:"lstrip"`
	RStrip     bool        `json:"rstrip"`
	Normalized bool        `json:"normalized"`
	Special    bool        `json:"special"`
}

func parseAddedTokens(list []addedTokenJSON) ([]addedToken, error) {
	var out []addedToken
	for i, a := range list {
		field := func(name string) error {
			return fmt.Errorf("tokenizer: added_tokens[%d].%s is true for %q; only verbatim added tokens are supported", i, name, a.Content)
		}
		switch {
		case a.SingleWord:
			return nil, field("single_word")
		case a.LStrip:
			return nil, field("lstrip")
		case a.RStrip:
			return nil, field("rstrip")
		case a.Normalized:
			return nil, field("normalized")
		case a.Content == "":
			return nil, fmt.Errorf("tokenizer: added_tokens[%d].content is empty", i)
		}
		id, err := tokenID(a.ID)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: added_tokens[%d].id: %w", i, err)
		}
		out = append(out, addedToken{content: a.Content, id: id})
	}
	return out, nil
}

func (t *Tokenizer) parsePostProcessor(raw json.RawMessage) error {
	if isNull(raw) {
		t.single = []templatePiece{{sequence: 0}}
		t.pair = []templatePiece{{sequence: 0}, {sequence: 1}}
		return nil
	}
	switch ty := typeOf(raw); ty {
	case "TemplateProcessing":
		return t.parseTemplate(raw)
	case "BertProcessing":
		var v struct {
			Sep [2]json.RawMessage `json:"sep"`
			Cls [2]json.RawMessage `json:"cls"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("tokenizer: post_processor: %w", err)
		}
		var sep, cls json.Number
		if err := json.Unmarshal(v.Sep[1], &sep); err != nil {
			return fmt.Errorf("tokenizer: post_processor.sep: %w", err)
		}
		if err := json.Unmarshal(v.Cls[1], &cls); err != nil {
			return fmt.Errorf("tokenizer: post_processor.cls: %w", err)
		}
		sepID, err := tokenID(sep)
		if err != nil {
			return fmt.Errorf("tokenizer: post_processor.sep: %w", err)
		}
		clsID, err := tokenID(cls)
		if err != nil {
			return fmt.Errorf("tokenizer: post_processor.cls: %w", err)
		}
		t.single = []templatePiece{{ids: []int32{clsID}}, {sequence: 0}, {ids: []int32{sepID}}}
		t.pair = []templatePiece{{ids: []int32{clsID}}, {sequence: 0}, {ids: []int32{sepID}},
			{sequence: 1, typeID: 1}, {ids: []int32{sepID}, typeID: 1}}
		t.nSingle, t.nPair = 2, 3
		return nil
	default:
		return fmt.Errorf("tokenizer: post_processor.type %q is not supported (only TemplateProcessing, BertProcessing or null)", ty)
	}
}

func (t *Tokenizer) parseTemplate(raw json.RawMessage) error {
	type item struct {
		ID     string      `json:"id"`
		TypeID json.Number `json:"type_id"`
	}
	type piece struct {
		SpecialToken *item `json:"SpecialToken"`
		Sequence     *item `json:"Sequence"`
	}
	var v struct {
		Single        []piece `json:"single"`
		Pair          []piece `json:"pair"`
		SpecialTokens map[string]struct {
			IDs []json.Number `json:"ids"`
		} `json:"special_tokens"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("tokenizer: post_processor: %w", err)
	}
	convert := func(name string, pieces []piece, wantSeqs int) ([]templatePiece, int, error) {
		var out []templatePiece
		specials := 0
		seen := [2]bool{}
		for i, p := range pieces {
			where := fmt.Sprintf("post_processor.%s[%d]", name, i)
			var it *item
			switch {
			case p.SpecialToken != nil && p.Sequence == nil:
				it = p.SpecialToken
			case p.Sequence != nil && p.SpecialToken == nil:
				it = p.Sequence
			default:
				return nil, 0, fmt.Errorf("tokenizer: %s is neither a SpecialToken nor a Sequence", where)
			}
			typeID, err := tokenID(it.TypeID)
			if err != nil {
				return nil, 0, fmt.Errorf("tokenizer: %s.type_id: %w", where, err)
			}
			if p.Sequence != nil {
				seq := -1
				switch it.ID {
				case "A":
					seq = 0
				case "B":
					seq = 1
				}
				if seq < 0 || seq >= wantSeqs || seen[seq] {
					return nil, 0, fmt.Errorf("tokenizer: %s.id %q is not a sequence this template takes once", where, it.ID)
				}
				seen[seq] = true
				out = append(out, templatePiece{sequence: seq, typeID: typeID})
				continue
			}
			st, ok := v.SpecialTokens[it.ID]
			if !ok || len(st.IDs) == 0 {
				return nil, 0, fmt.Errorf("tokenizer: %s.id %q has no ids in post_processor.special_tokens", where, it.ID)
			}
			ids := make([]int32, len(st.IDs))
			for j, n := range st.IDs {
				if ids[j], err = tokenID(n); err != nil {
					return nil, 0, fmt.Errorf("tokenizer: post_processor.special_tokens[%q].ids[%d]: %w", it.ID, j, err)
				}
			}
			specials += len(ids)
			out = append(out, templatePiece{ids: ids, typeID: typeID})
		}
		for s := 0; s < wantSeqs; s++ {
			if !seen[s] {
				return nil, 0, fmt.Errorf("tokenizer: post_processor.%s has no Sequence %c", name, 'A'+s)
			}
		}
		return out, specials, nil
	}
	var err error
	if t.single, t.nSingle, err = convert("single", v.Single, 1); err != nil {
		return err
	}
	if t.pair, t.nPair, err = convert("pair", v.Pair, 2); err != nil {
		return err
	}
	return nil
}

func parseTruncation(raw json.RawMessage, minLength int) (*Truncation, error) {
	if isNull(raw) {
		return nil, nil
	}
	var v struct {
		MaxLength *int64 `json:"max_length"`
		Strategy  string `json:"strategy"`
		Direction string `json:"direction"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("tokenizer: truncation: %w", err)
	}
	if v.Strategy != "" && v.Strategy != "LongestFirst" {
		return nil, fmt.Errorf("tokenizer: truncation.strategy %q is not supported (only LongestFirst)", v.Strategy)
	}
	if v.Direction != "" && v.Direction != "Right" {
		return nil, fmt.Errorf("tokenizer: truncation.direction %q is not supported (only Right)", v.Direction)
	}
	if v.MaxLength == nil {
		return nil, fmt.Errorf("tokenizer: truncation.max_length is missing")
	}
	if *v.MaxLength < int64(minLength) || *v.MaxLength > math.MaxInt32 {
		return nil, fmt.Errorf("tokenizer: truncation.max_length %d is out of range (at least %d, the special tokens of a pair)", *v.MaxLength, minLength)
	}
	return &Truncation{MaxLength: int(*v.MaxLength)}, nil
}

func parsePadding(raw json.RawMessage) (*Padding, error) {
	if isNull(raw) {
		return nil, nil
	}
	var v struct {
		Strategy        json.RawMessage `json:"strategy"`
		Direction       string          `json:"direction"`
		PadToMultipleOf *int64          `json:"pad_to_multiple_of"`
		PadID           json.Number     `json:"pad_id"`
		PadTypeID       json.Number     `json:"pad_type_id"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("tokenizer: padding: %w", err)
	}
	if v.Direction != "" && v.Direction != "Right" {
		return nil, fmt.Errorf("tokenizer: padding.direction %q is not supported (only Right)", v.Direction)
	}
	p := &Padding{}
	var name string
	var fixed struct {
		Fixed *int64 `json:"Fixed"`
	}
	switch {
	case json.Unmarshal(v.Strategy, &name) == nil && name == "BatchLongest":
		p.Strategy = PadBatchLongest
	case json.Unmarshal(v.Strategy, &fixed) == nil && fixed.Fixed != nil:
		if *fixed.Fixed < 0 || *fixed.Fixed > maxPadLength {
			return nil, fmt.Errorf("tokenizer: padding.strategy.Fixed %d is out of range", *fixed.Fixed)
		}
		p.Strategy, p.Length = PadFixed, int(*fixed.Fixed)
	default:
		return nil, fmt.Errorf("tokenizer: padding.strategy %s is not supported (BatchLongest or {\"Fixed\": n})", bytes.TrimSpace(v.Strategy))
	}
	if v.PadToMultipleOf != nil {
		if *v.PadToMultipleOf < 0 || *v.PadToMultipleOf > maxPadLength {
			return nil, fmt.Errorf("tokenizer: padding.pad_to_multiple_of %d is out of range", *v.PadToMultipleOf)
		}
		p.PadToMultipleOf = int(*v.PadToMultipleOf)
	}
	var err error
	if v.PadID != "" {
		if p.PadID, err = tokenID(v.PadID); err != nil {
			return nil, fmt.Errorf("tokenizer: padding.pad_id: %w", err)
		}
	}
	if v.PadTypeID != "" {
		if p.PadTypeID, err = tokenID(v.PadTypeID); err != nil {
			return nil, fmt.Errorf("tokenizer: padding.pad_type_id: %w", err)
		}
	}
	return p, nil
}
