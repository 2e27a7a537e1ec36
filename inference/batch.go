package inference

import (
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/beamtune/beamtune/dataset"
)

// pending is an example waiting in a bundle for its batch: its key (keyed
// input) and its tokens.
type pending struct {
	key any
	ex  Example
	ids []int32
	tts []int32 // token types, for pairs
}

// encode tokenizes an example with the model's tokenizer, or says why it
// cannot be scored.
func (im *Model) encode(ex Example) (pending, string) {
	switch {
	case im.tok == nil:
		return pending{}, fmt.Sprintf("model %s has no tokenizer.json: it cannot score text", im.Handler.ModelDir)
	case strings.TrimSpace(ex.Text) == "":
		return pending{}, "empty text"
	case !utf8.ValidString(ex.Text):
		return pending{}, fmt.Sprintf("text is not valid UTF-8 (at byte %d)", invalidAt(ex.Text))
	case !utf8.ValidString(ex.Pair):
		return pending{}, fmt.Sprintf("pair text is not valid UTF-8 (at byte %d)", invalidAt(ex.Pair))
	}
	p := pending{ex: ex}
	if ex.Pair != "" {
		enc := im.tok.EncodePair(ex.Text, ex.Pair)
		if enc.Truncated && im.Handler.NoTruncation {
			return pending{}, fmt.Sprintf("more than %d tokens and truncation is off", im.maxLength)
		}
		p.ids, p.tts = enc.IDs, enc.TypeIDs
		return p, ""
	}
	enc := im.tok.Encode(ex.Text)
	if enc.Truncated && im.Handler.NoTruncation {
		return pending{}, fmt.Sprintf("more than %d tokens and truncation is off", im.maxLength)
	}
	p.ids = enc.IDs
	return p, ""
}

func invalidAt(s string) int {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(s)
}

// batches orders examples by length (so a batch pads little) and cuts them
// into batches of at most maxSize examples and maxTokens padded tokens
// (examples × the longest); an example longer than maxTokens alone is a
// batch of one.
func batches(xs []pending, maxSize, maxTokens int) [][]pending {
	sort.SliceStable(xs, func(i, j int) bool { return len(xs[i].ids) < len(xs[j].ids) })
	var out [][]pending
	start := 0
	for i := range xs {
		n := i - start + 1
		if n > 1 && (n > maxSize || n*len(xs[i].ids) > maxTokens) {
			out = append(out, xs[start:i])
			start = i
		}
	}
	if start < len(xs) {
		out = append(out, xs[start:])
	}
	return out
}

// rowsOf is a batch as the rows the scorer takes.
func rowsOf(batch []pending) *dataset.Rows {
	rows := &dataset.Rows{}
	out := make([]dataset.ShardRow, len(batch))
	for i, p := range batch {
		out[i] = dataset.ShardRow{ID: p.ex.ID, Label: -1, InputIDs: p.ids, TokenTypeIDs: p.tts, Length: int32(len(p.ids))}
	}
	rows.Append(out)
	return rows
}
