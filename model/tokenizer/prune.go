package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// PrunedVocab is a tokenizer cut down to part of its vocab. A fine-tuned
// classifier only ever sees the tokens of its domain, so dropping the rest
// shrinks the embedding matrix (for a MiniLM, most of the parameters) without
// changing the encoding of any text whose words the kept tokens still cover.
type PrunedVocab struct {
	// TokenizerJSON is the new tokenizer.json: the WordPiece vocab, the
	// added tokens, the post-processor's special token ids and padding.pad_id
	// carry the new ids; every other field is passed through as it was, in
	// the original key order.
	TokenizerJSON []byte
	// VocabTxt lists the kept tokens one a line, line n holding new id n, as
	// BERT's vocab.txt does (added tokens outside the WordPiece vocab too, so
	// that every new id has its line).
	VocabTxt []byte
	// OldIDs[newID] is the token's id before pruning, in increasing order:
	// the model gathers its embedding rows with it.
	OldIDs []int
}

// alwaysKept names the BERT special tokens that stay in a pruned vocab even
// when the file does not declare them as added tokens: the model and the
// training code refer to them by name.
var alwaysKept = []string{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}

// PruneVocab keeps the tokens whose ids keep lists (any order, duplicates
// allowed) and renumbers them 0, 1, ... in increasing order of their old id,
// so the order of the embedding rows is kept and [PAD]=0 stays 0. Tokens the
// file itself relies on are kept whether listed or not: the added tokens,
// model.unk_token, the post-processor's special tokens, padding's pad_id and
// pad_token, and [PAD], [UNK], [CLS], [SEP], [MASK] where the vocab has them.
//
// The result loads with FromJSON and with HF tokenizers. A text whose words
// the kept tokens cover encodes as before (ids mapped through OldIDs):
// WordPiece matches longest first and every match it made is still there. A
// word that needs a dropped piece becomes [UNK] as a whole, as WordPiece does
// with any word it cannot cover.
func PruneVocab(tokenizerJSON []byte, keep []int) (*PrunedVocab, error) {
	// Parsing through FromJSON first means the file is one this package
	// encodes exactly, and gives its ids.
	t, err := FromJSON(tokenizerJSON)
	if err != nil {
		return nil, err
	}
	n := t.VocabSize()
	tokens := t.idTokens
	for id, tok := range tokens {
		if tok == "" {
			// Every id must have a token, or vocab.txt would shift.
			return nil, fmt.Errorf("tokenizer: prune: id %d has no token in model.vocab or added_tokens", id)
		}
	}
	if err := checkUniqueIDs(t); err != nil {
		return nil, err
	}

	kept := make([]bool, n)
	for i, id := range keep {
		if id < 0 || id >= n {
			return nil, fmt.Errorf("tokenizer: prune: keep[%d]: token id %d is out of range [0, %d)", i, id, n)
		}
		kept[id] = true
	}
	for _, a := range t.added.tokens {
		kept[a.id] = true
	}
	kept[t.model.unkID] = true
	for _, p := range append(slices.Clone(t.single), t.pair...) {
		for _, id := range p.ids {
			kept[id] = true
		}
	}
	// special_tokens may list entries no template uses; HF still reads them.
	listed, err := templateSpecialIDs(tokenizerJSON)
	if err != nil {
		return nil, err
	}
	for _, l := range listed {
		if l.id < 0 || l.id >= n {
			return nil, fmt.Errorf("tokenizer: prune: %s: token id %d is out of range [0, %d)", l.field, l.id, n)
		}
		kept[l.id] = true
	}
	names := alwaysKept
	if t.padding != nil {
		kept[t.padding.PadID] = true
		if pad, err := padToken(tokenizerJSON); err != nil {
			return nil, err
		} else if pad != "" {
			names = append(slices.Clone(names), pad)
		}
	}
	for _, name := range names {
		if id, ok := t.TokenID(name); ok {
			kept[id] = true
		}
	}

	newID := make([]int, n)
	var oldIDs []int
	var vocabTxt bytes.Buffer
	for id, k := range kept {
		newID[id] = -1
		if !k {
			continue
		}
		if strings.ContainsAny(tokens[id], "\r\n") {
			return nil, fmt.Errorf("tokenizer: prune: token %q (id %d) holds a line break, which vocab.txt cannot hold", tokens[id], id)
		}
		newID[id] = len(oldIDs)
		oldIDs = append(oldIDs, id)
		vocabTxt.WriteString(tokens[id])
		vocabTxt.WriteByte('\n')
	}

	out, err := rewriteTokenizerJSON(tokenizerJSON, t, newID, oldIDs)
	if err != nil {
		return nil, err
	}
	// The rewrite must give a file this package reads back with the same
	// tokens under the new ids; anything else is a bug here, reported rather
	// than handed on.
	check, err := FromJSON(out)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: prune: the pruned tokenizer.json does not load: %w", err)
	}
	if check.VocabSize() != len(oldIDs) {
		return nil, fmt.Errorf("tokenizer: prune: the pruned tokenizer.json has %d ids, want %d", check.VocabSize(), len(oldIDs))
	}
	for nid, old := range oldIDs {
		if got, _ := check.Token(int32(nid)); got != tokens[old] {
			return nil, fmt.Errorf("tokenizer: prune: new id %d is %q in the pruned tokenizer.json, want %q", nid, got, tokens[old])
		}
	}
	return &PrunedVocab{TokenizerJSON: out, VocabTxt: vocabTxt.Bytes(), OldIDs: oldIDs}, nil
}

// checkUniqueIDs rejects files where two tokens share an id: vocab.txt could
// not list both, and HF would give one of them another id on load.
func checkUniqueIDs(t *Tokenizer) error {
	owner := make([]string, t.VocabSize())
	for tok, id := range t.model.vocab {
		if owner[id] != "" {
			a, b := min(owner[id], tok), max(owner[id], tok)
			return fmt.Errorf("tokenizer: prune: model.vocab gives %q and %q the same id %d", a, b, id)
		}
		owner[id] = tok
	}
	for _, a := range t.added.tokens {
		if id, ok := t.model.vocab[a.content]; ok && id != a.id {
			return fmt.Errorf("tokenizer: prune: added_tokens entry %q has id %d but model.vocab gives it %d", a.content, a.id, id)
		}
		if owner[a.id] != "" && owner[a.id] != a.content {
			return fmt.Errorf("tokenizer: prune: added_tokens entry %q has id %d, which model.vocab gives %q", a.content, a.id, owner[a.id])
		}
	}
	return nil
}

type listedID struct {
	field string
	id    int
}

// templateSpecialIDs reads every id in TemplateProcessing's special_tokens.
func templateSpecialIDs(data []byte) ([]listedID, error) {
	var v struct {
		PostProcessor *struct {
			Type          string `json:"type"`
			SpecialTokens map[string]struct {
				IDs []json.Number `json:"ids"`
			} `json:"special_tokens"`
		} `json:"post_processor"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("tokenizer: prune: post_processor.special_tokens: %w", err)
	}
	if v.PostProcessor == nil || v.PostProcessor.Type != "TemplateProcessing" {
		return nil, nil
	}
	var out []listedID
	for name, st := range v.PostProcessor.SpecialTokens {
		for j, n := range st.IDs {
			field := fmt.Sprintf("post_processor.special_tokens[%q].ids[%d]", name, j)
			id, err := tokenID(n)
			if err != nil {
				return nil, fmt.Errorf("tokenizer: prune: %s: %w", field, err)
			}
			out = append(out, listedID{field: field, id: int(id)})
		}
	}
	return out, nil
}

// padToken reads padding.pad_token, which FromJSON does not keep.
func padToken(data []byte) (string, error) {
	var v struct {
		Padding *struct {
			PadToken string `json:"pad_token"`
		} `json:"padding"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return "", fmt.Errorf("tokenizer: prune: padding.pad_token: %w", err)
	}
	if v.Padding == nil {
		return "", nil
	}
	return v.Padding.PadToken, nil
}

// rewriteTokenizerJSON writes data with the ids moved to newID (-1: dropped).
// Only the fields that hold ids are decoded; the rest stay raw bytes.
func rewriteTokenizerJSON(data []byte, t *Tokenizer, newID []int, oldIDs []int) ([]byte, error) {
	top, err := parseObject(data, "tokenizer.json")
	if err != nil {
		return nil, err
	}
	remap := func(field string, n json.Number) (json.RawMessage, error) {
		id, err := tokenID(n)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: prune: %s: %w", field, err)
		}
		if int(id) >= len(newID) || newID[id] < 0 {
			// FromJSON accepted the file, so this would be an id it read
			// differently from here.
			return nil, fmt.Errorf("tokenizer: prune: %s: id %d is not kept", field, id)
		}
		return json.RawMessage(strconv.Itoa(newID[id])), nil
	}
	for i := range top {
		m := &top[i]
		if isNull(m.value) {
			continue
		}
		switch m.key {
		case "model":
			m.value, err = rewriteModel(m.value, t, newID, oldIDs)
		case "added_tokens":
			m.value, err = rewriteAddedTokens(m.value, remap)
		case "post_processor":
			m.value, err = rewritePostProcessor(m.value, remap)
		case "padding":
			m.value, err = editMember(m.value, "padding", "pad_id", func(v json.RawMessage) (json.RawMessage, error) {
				return remapNumber(v, "padding.pad_id", remap)
			})
		}
		if err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	writeObject(&buf, top)
	out := buf.Bytes()
	// HF writes tokenizer.json indented; keep the look of the input.
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); len(trimmed) > 1 && bytes.ContainsAny(trimmed[1:2], "\r\n") {
		var ind bytes.Buffer
		if err := json.Indent(&ind, out, "", "  "); err != nil {
			return nil, fmt.Errorf("tokenizer: prune: indenting the output: %w", err)
		}
		out = ind.Bytes()
	}
	return out, nil
}

func remapNumber(v json.RawMessage, field string, remap func(string, json.Number) (json.RawMessage, error)) (json.RawMessage, error) {
	var n json.Number
	if err := json.Unmarshal(v, &n); err != nil {
		return nil, fmt.Errorf("tokenizer: prune: %s: %w", field, err)
	}
	return remap(field, n)
}

// rewriteModel replaces model.vocab with the kept WordPiece entries, listed
// in new-id order as HF lists them.
func rewriteModel(raw json.RawMessage, t *Tokenizer, newID []int, oldIDs []int) (json.RawMessage, error) {
	return editMember(raw, "model", "vocab", func(json.RawMessage) (json.RawMessage, error) {
		var buf bytes.Buffer
		buf.WriteByte('{')
		first := true
		for nid, old := range oldIDs {
			tok := t.idTokens[old]
			if id, ok := t.model.vocab[tok]; !ok || int(id) != old {
				continue // an added token outside the WordPiece vocab
			}
			if !first {
				buf.WriteByte(',')
			}
			first = false
			writeString(&buf, tok)
			buf.WriteByte(':')
			buf.WriteString(strconv.Itoa(nid))
		}
		buf.WriteByte('}')
		return buf.Bytes(), nil
	})
}

func rewriteAddedTokens(raw json.RawMessage, remap func(string, json.Number) (json.RawMessage, error)) (json.RawMessage, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("tokenizer: prune: added_tokens: %w", err)
	}
	return joinArray(len(list), func(i int) (json.RawMessage, error) {
		field := fmt.Sprintf("added_tokens[%d]", i)
		return editMember(list[i], field, "id", func(v json.RawMessage) (json.RawMessage, error) {
			return remapNumber(v, field+".id", remap)
		})
	})
}

// joinArray writes a JSON array of n elements, element i from elem(i).
func joinArray(n int, elem func(i int) (json.RawMessage, error)) (json.RawMessage, error) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i := 0; i < n; i++ {
		v, err := elem(i)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(v)
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}

// rewritePostProcessor moves the ids of TemplateProcessing's special_tokens
// (each entry's "ids" list) or BertProcessing's sep and cls pairs.
func rewritePostProcessor(raw json.RawMessage, remap func(string, json.Number) (json.RawMessage, error)) (json.RawMessage, error) {
	switch typeOf(raw) {
	case "TemplateProcessing":
		return editMember(raw, "post_processor", "special_tokens", func(v json.RawMessage) (json.RawMessage, error) {
			entries, err := parseObject(v, "post_processor.special_tokens")
			if err != nil {
				return nil, err
			}
			for i := range entries {
				e := &entries[i]
				field := fmt.Sprintf("post_processor.special_tokens[%q]", e.key)
				e.value, err = editMember(e.value, field, "ids", func(v json.RawMessage) (json.RawMessage, error) {
					var ids []json.Number
					if err := json.Unmarshal(v, &ids); err != nil {
						return nil, fmt.Errorf("tokenizer: prune: %s.ids: %w", field, err)
					}
					return joinArray(len(ids), func(j int) (json.RawMessage, error) {
						return remap(fmt.Sprintf("%s.ids[%d]", field, j), ids[j])
					})
				})
				if err != nil {
					return nil, err
				}
			}
			var buf bytes.Buffer
			writeObject(&buf, entries)
			return buf.Bytes(), nil
		})
	case "BertProcessing":
		for _, key := range []string{"sep", "cls"} {
			field := "post_processor." + key
			var err error
			raw, err = editMember(raw, "post_processor", key, func(v json.RawMessage) (json.RawMessage, error) {
				var pair []json.RawMessage
				if err := json.Unmarshal(v, &pair); err != nil || len(pair) != 2 {
					return nil, fmt.Errorf("tokenizer: prune: %s is not a [token, id] pair", field)
				}
				id, err := remapNumber(pair[1], field+"[1]", remap)
				if err != nil {
					return nil, err
				}
				return joinArray(2, func(j int) (json.RawMessage, error) { return []json.RawMessage{pair[0], id}[j], nil })
			})
			if err != nil {
				return nil, err
			}
		}
		return raw, nil
	}
	// FromJSON accepts no other post-processor with ids.
	return raw, nil
}

// member is one key of a JSON object, its value left undecoded, so that an
// object can be rewritten in its own key order.
type member struct {
	key   string
	value json.RawMessage
}

func parseObject(raw []byte, field string) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	fail := func(err error) ([]member, error) {
		return nil, fmt.Errorf("tokenizer: prune: %s: %w", field, err)
	}
	tok, err := dec.Token()
	if err != nil {
		return fail(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fail(fmt.Errorf("not an object"))
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fail(err)
		}
		key, ok := tok.(string)
		if !ok {
			return fail(fmt.Errorf("object key is %v", tok))
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return fail(fmt.Errorf("%q: %w", key, err))
		}
		out = append(out, member{key: key, value: v})
	}
	if _, err := dec.Token(); err != nil {
		return fail(err)
	}
	return out, nil
}

// editMember replaces the value of key in the object raw by edit(value);
// an object without key is returned as it was.
func editMember(raw json.RawMessage, field, key string, edit func(json.RawMessage) (json.RawMessage, error)) (json.RawMessage, error) {
	ms, err := parseObject(raw, field)
	if err != nil {
		return nil, err
	}
	found := false
	for i := range ms {
		if ms[i].key == key && !isNull(ms[i].value) {
			if ms[i].value, err = edit(ms[i].value); err != nil {
				return nil, err
			}
			found = true
		}
	}
	if !found {
		return raw, nil
	}
	var buf bytes.Buffer
	writeObject(&buf, ms)
	return buf.Bytes(), nil
}

func writeObject(buf *bytes.Buffer, ms []member) {
	buf.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeString(buf, m.key)
		buf.WriteByte(':')
		buf.Write(bytes.TrimSpace(m.value))
	}
	buf.WriteByte('}')
}

// writeString writes s as a JSON string, leaving <, > and & as they are
// (HF does not escape them either).
func writeString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)           // a string always encodes
	buf.Truncate(buf.Len() - 1) // Encode ends with '\n'
}

// UsedIDs returns the sorted, distinct token ids that encoding texts (each
// alone) and pairs gives, the post-processor's special tokens included: the
// keep list for PruneVocab that leaves the encoding of this corpus unchanged.
// Truncation and padding are ignored, so every token of a long text counts.
func (t *Tokenizer) UsedIDs(texts []string, pairs []Pair) []int {
	c := *t
	c.truncation = nil
	s := c.getScratch()
	defer c.scratch.Put(s)
	seen := make([]bool, c.VocabSize())
	mark := func() {
		for _, id := range s.out {
			seen[id] = true
		}
	}
	for _, text := range texts {
		c.encodeInto(s, text, "", false)
		mark()
	}
	for _, p := range pairs {
		c.encodeInto(s, p.A, p.B, true)
		mark()
	}
	var out []int
	for id, ok := range seen {
		if ok {
			out = append(out, id)
		}
	}
	return out
}
