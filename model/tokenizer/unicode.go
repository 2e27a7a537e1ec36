package tokenizer

import (
	"sort"
	"unicode/utf8"
)

// The generated tables in unicode_tables.go record what HF tokenizers does to
// each code point; this file gives them a shape the encoder can use.

type runeRange struct{ lo, hi rune }

type classRange struct {
	lo, hi rune
	class  uint8
}

type runeMapping struct {
	r rune
	s string
}

func inRanges(table []runeRange, r rune) bool {
	i := sort.Search(len(table), func(i int) bool { return table[i].hi >= r })
	return i < len(table) && table[i].lo <= r
}

func combiningClass(r rune) uint8 {
	i := sort.Search(len(hfCombiningClasses), func(i int) bool { return hfCombiningClasses[i].hi >= r })
	if i < len(hfCombiningClasses) && hfCombiningClasses[i].lo <= r {
		return hfCombiningClasses[i].class
	}
	return 0
}

func lookupMapping(table []runeMapping, r rune) (string, bool) {
	i := sort.Search(len(table), func(i int) bool { return table[i].r >= r })
	if i < len(table) && table[i].r == r {
		return table[i].s, true
	}
	return "", false
}

// Hangul syllables decompose by formula (Unicode 3.12), so the tables leave them out.
const (
	hangulBase  = 0xAC00
	hangulLast  = 0xD7A3
	hangulLBase = 0x1100
	hangulVBase = 0x1161
	hangulTBase = 0x11A7
)

// appendDecomposition appends the full canonical decomposition of r, or r itself.
func appendDecomposition(dst []rune, r rune) []rune {
	if r >= hangulBase && r <= hangulLast {
		s := r - hangulBase
		dst = append(dst, hangulLBase+s/588, hangulVBase+(s%588)/28)
		if t := hangulTBase + s%28; t != hangulTBase {
			dst = append(dst, t)
		}
		return dst
	}
	if d, ok := lookupMapping(hfDecompositions, r); ok {
		for _, x := range d {
			dst = append(dst, x)
		}
		return dst
	}
	return append(dst, r)
}

// appendLower appends Rust's char::to_lowercase of r (one rune, or two for U+0130).
func appendLower(dst []rune, r rune) []rune {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return append(dst, r)
	}
	if l, ok := lookupMapping(hfLowercase, r); ok {
		for _, x := range l {
			dst = append(dst, x)
		}
		return dst
	}
	return append(dst, r)
}

// isChineseChar is BertNormalizer's notion of a CJK ideograph: fixed blocks,
// not a Unicode property, so it does not depend on a Unicode version.
func isChineseChar(r rune) bool {
	switch {
	case r >= 0x4E00 && r <= 0x9FFF,
		r >= 0x3400 && r <= 0x4DBF,
		r >= 0x20000 && r <= 0x2A6DF,
		r >= 0x2A700 && r <= 0x2B73F,
		r >= 0x2B740 && r <= 0x2B81F,
		r >= 0x2B920 && r <= 0x2CEAF,
		r >= 0xF900 && r <= 0xFAFF,
		r >= 0x2F800 && r <= 0x2FA1F:
		return true
	}
	return false
}

// rangeCursor answers membership for code points asked in increasing order,
// which lets the per-code-point table be built in one linear pass.
type rangeCursor struct {
	table []runeRange
	i     int
}

func (c *rangeCursor) contains(r rune) bool {
	for c.i < len(c.table) && c.table[c.i].hi < r {
		c.i++
	}
	return c.i < len(c.table) && c.table[c.i].lo <= r
}

type mappingCursor struct {
	table []runeMapping
	i     int
}

func (c *mappingCursor) lookup(r rune) (string, bool) {
	for c.i < len(c.table) && c.table[c.i].r < r {
		c.i++
	}
	if c.i < len(c.table) && c.table[c.i].r == r {
		return c.table[c.i].s, true
	}
	return "", false
}
