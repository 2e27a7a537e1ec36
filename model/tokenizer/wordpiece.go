package tokenizer

import "unicode/utf8"

// wordPiece is the WordPiece model: greedy longest-match-first over the vocab.
type wordPiece struct {
	vocab    map[string]int32
	unkID    int32
	prefix   string // continuing_subword_prefix
	maxChars int    // max_input_chars_per_word

	// Longest vocab entries, in bytes: no lookup of a longer candidate can
	// succeed, so the greedy search starts at these lengths instead of at the
	// end of the word. maxCont excludes the prefix.
	maxFirst int
	maxCont  int
}

func newWordPiece(vocab map[string]int32, unkID int32, prefix string, maxChars int) *wordPiece {
	w := &wordPiece{vocab: vocab, unkID: unkID, prefix: prefix, maxChars: maxChars, maxCont: -1}
	for tok := range vocab {
		if len(tok) > w.maxFirst {
			w.maxFirst = len(tok)
		}
		if len(tok) >= len(prefix) && tok[:len(prefix)] == prefix && len(tok)-len(prefix) > w.maxCont {
			w.maxCont = len(tok) - len(prefix)
		}
	}
	return w
}

// appendWord appends the ids of one pre-tokenized word (valid UTF-8). A word
// longer than maxChars characters, or one the vocab cannot cover, becomes the
// single unknown token, as in HF. key is scratch space, returned for reuse.
func (w *wordPiece) appendWord(dst []int32, word []byte, key []byte) ([]int32, []byte) {
	if len(word) > w.maxChars && utf8.RuneCount(word) > w.maxChars {
		return append(dst, w.unkID), key
	}
	if len(word) <= w.maxFirst {
		if id, ok := w.vocab[string(word)]; ok {
			return append(dst, id), key
		}
	}
	mark := len(dst)
	key = append(key[:0], w.prefix...)
	for start := 0; start < len(word); {
		limit := w.maxCont
		if start == 0 {
			limit = w.maxFirst
		}
		end := len(word)
		if end-start > limit {
			end = start + limit
			if end < start {
				end = start
			}
			for end > start && !utf8.RuneStart(word[end]) {
				end--
			}
		}
		found := false
		for end > start {
			var id int32
			var ok bool
			if start == 0 {
				id, ok = w.vocab[string(word[:end])]
			} else {
				key = append(key[:len(w.prefix)], word[start:end]...)
				id, ok = w.vocab[string(key)]
			}
			if ok {
				dst = append(dst, id)
				found = true
				break
			}
			_, size := utf8.DecodeLastRune(word[start:end])
			end -= size
		}
		if !found {
			return append(dst[:mark], w.unkID), key
		}
		start = end
	}
	return dst, key
}
