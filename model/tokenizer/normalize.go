package tokenizer

import (
	"sync"
	"unicode/utf8"
)

// normalizerConfig holds the BertNormalizer flags, with strip_accents already
// resolved (null follows lowercase).
type normalizerConfig struct {
	cleanText    bool
	chineseChars bool
	stripAccents bool
	lowercase    bool
}

func (c normalizerConfig) key() uint8 {
	var k uint8
	for i, f := range []bool{c.cleanText, c.chineseChars, c.stripAccents, c.lowercase} {
		if f {
			k |= 1 << i
		}
	}
	return k
}

// charInfo packs, for one code point, what normalization makes of it on its
// own and how the pre-tokenizer classes it.
type charInfo uint32

const (
	// How the normalizer rewrites the code point.
	kindKeep        charInfo = iota // unchanged
	kindDrop                        // removed
	kindMap                         // replaced by a mapping string
	kindIsolateKeep                 // chinese char: ' ' + itself + ' '
	kindIsolateMap                  // chinese char: ' ' + mapping + ' '
	kindMask        charInfo = 7

	// slowFlag: strip_accents keeps a non-starter from this code point's
	// decomposition, so NFD's canonical reordering can move it against its
	// neighbours and the per-code-point result is not enough.
	slowFlag charInfo = 1 << 3

	// Pre-tokenizer class of the code point itself.
	splitShift          = 4
	splitWord  charInfo = 0
	splitSpace charInfo = 1 << splitShift
	splitPunct charInfo = 2 << splitShift
	splitMask  charInfo = 3 << splitShift
	mapShift            = 8
	blockShift          = 8
	blockSize           = 1 << blockShift
	maxRune             = utf8.MaxRune
	numBlocks           = (maxRune + 1) >> blockShift
	asciiDrop           = -1
)

// charTable is a two-level lookup of charInfo for every code point, built for
// one normalizer configuration. Identical blocks are shared, which keeps the
// unassigned and private-use planes cheap.
type charTable struct {
	cfg    normalizerConfig
	index  [numBlocks]uint16
	blocks []charInfo
	maps   string   // all mapping strings, concatenated
	mapOff []uint32 // mapping i is maps[mapOff[i]:mapOff[i+1]]

	asciiOut   [utf8.RuneSelf]int16 // normalized byte, or asciiDrop
	asciiSplit [utf8.RuneSelf]charInfo
}

func (t *charTable) info(r rune) charInfo {
	return t.blocks[int(t.index[r>>blockShift])<<blockShift|int(r&(blockSize-1))]
}

func (t *charTable) mapping(info charInfo) string {
	i := info >> mapShift
	return t.maps[t.mapOff[i]:t.mapOff[i+1]]
}

var charTables struct {
	sync.Mutex
	byKey map[uint8]*charTableOnce
}

type charTableOnce struct {
	once  sync.Once
	table *charTable
}

// charTableFor returns the shared table for cfg, building it on first use
// (about a million code points, tens of milliseconds).
func charTableFor(cfg normalizerConfig) *charTable {
	charTables.Lock()
	if charTables.byKey == nil {
		charTables.byKey = make(map[uint8]*charTableOnce)
	}
	e := charTables.byKey[cfg.key()]
	if e == nil {
		e = &charTableOnce{}
		charTables.byKey[cfg.key()] = e
	}
	charTables.Unlock()
	e.once.Do(func() { e.table = buildCharTable(cfg) })
	return e.table
}

func buildCharTable(cfg normalizerConfig) *charTable {
	t := &charTable{cfg: cfg, mapOff: []uint32{0}}
	var maps []byte
	mapIndex := make(map[string]charInfo)
	addMap := func(s string) charInfo {
		if i, ok := mapIndex[s]; ok {
			return i
		}
		maps = append(maps, s...)
		t.mapOff = append(t.mapOff, uint32(len(maps)))
		i := charInfo(len(t.mapOff) - 2)
		mapIndex[s] = i
		return i
	}

	dropped := rangeCursor{table: hfDropped}
	spaces := rangeCursor{table: hfWhitespace}
	punct := rangeCursor{table: hfPunctuation}
	marks := rangeCursor{table: hfNonspacingMarks}
	lower := mappingCursor{table: hfLowercase}
	decomp := mappingCursor{table: hfDecompositions}
	classes := classCursor{table: hfCombiningClasses}

	blockIDs := make(map[[blockSize]charInfo]uint16)
	var block [blockSize]charInfo
	var seq, parts []rune
	for r := rune(0); r <= maxRune; r++ {
		isSpace := spaces.contains(r)
		var info charInfo
		switch {
		case isSpace:
			info = splitSpace
		case punct.contains(r):
			info = splitPunct
		}
		isDropped := dropped.contains(r)
		isMark := marks.contains(r)
		low, hasLow := lower.lookup(r)
		dec, hasDec := decomp.lookup(r)
		class := classes.lookup(r)

		switch {
		case cfg.cleanText && isDropped:
			info |= kindDrop
		case cfg.cleanText && isSpace && r != ' ':
			info |= kindMap | addMap(" ")<<mapShift
		default:
			seq = seq[:0]
			parts = parts[:0]
			if cfg.stripAccents {
				switch {
				case r >= hangulBase && r <= hangulLast:
					parts = appendDecomposition(parts, r)
				case hasDec:
					for _, x := range dec {
						parts = append(parts, x)
					}
				case !isMark:
					parts = append(parts, r)
					if class != 0 {
						info |= slowFlag
					}
				}
				if hasDec {
					// Survivors of the Mn filter that are non-starters can be reordered.
					kept := parts[:0]
					for _, x := range parts {
						if inRanges(hfNonspacingMarks, x) {
							continue
						}
						if combiningClass(x) != 0 {
							info |= slowFlag
						}
						kept = append(kept, x)
					}
					parts = kept
				}
			} else {
				parts = append(parts, r)
			}
			if cfg.lowercase {
				for _, x := range parts {
					if x == r && hasLow {
						for _, y := range low {
							seq = append(seq, y)
						}
						continue
					}
					seq = appendLower(seq, x)
				}
			} else {
				seq = append(seq, parts...)
			}
			isolate := cfg.chineseChars && isChineseChar(r)
			switch {
			case len(seq) == 0:
				info |= kindDrop
			case len(seq) == 1 && seq[0] == r:
				if isolate {
					info |= kindIsolateKeep
				} else {
					info |= kindKeep
				}
			default:
				m := addMap(string(seq))
				if isolate {
					info |= kindIsolateMap | m<<mapShift
				} else {
					info |= kindMap | m<<mapShift
				}
			}
		}
		block[r&(blockSize-1)] = info
		if r&(blockSize-1) == blockSize-1 {
			id, ok := blockIDs[block]
			if !ok {
				id = uint16(len(t.blocks) >> blockShift)
				blockIDs[block] = id
				t.blocks = append(t.blocks, block[:]...)
			}
			t.index[r>>blockShift] = id
		}
	}
	t.maps = string(maps)

	for b := 0; b < utf8.RuneSelf; b++ {
		info := t.info(rune(b))
		t.asciiSplit[b] = info & splitMask
		switch info & kindMask {
		case kindDrop:
			t.asciiOut[b] = asciiDrop
		case kindMap:
			m := t.mapping(info)
			// ASCII only ever maps to one ASCII byte (lowercase, or ' ').
			t.asciiOut[b] = int16(m[0])
		default:
			t.asciiOut[b] = int16(b)
		}
	}
	return t
}

type classCursor struct {
	table []classRange
	i     int
}

func (c *classCursor) lookup(r rune) uint8 {
	for c.i < len(c.table) && c.table[c.i].hi < r {
		c.i++
	}
	if c.i < len(c.table) && c.table[c.i].lo <= r {
		return c.table[c.i].class
	}
	return 0
}

const replacementUTF8 = "\uFFFD"

// appendNormalized appends BertNormalizer's output for src, one code point at
// a time. It reports false, with dst in an undefined state past its original
// length, when src holds a code point whose result depends on its neighbours
// (see slowFlag); the caller then uses appendNormalizedExact.
//
// Invalid UTF-8: each byte that does not start a valid sequence is read as
// U+FFFD (Go's decoding), which clean_text removes like HF removes U+FFFD.
func (t *charTable) appendNormalized(dst []byte, src string) ([]byte, bool) {
	for i := 0; i < len(src); {
		c := src[i]
		if c < utf8.RuneSelf {
			if o := t.asciiOut[c]; o != asciiDrop {
				dst = append(dst, byte(o))
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(src[i:])
		info := t.info(r)
		if info&slowFlag != 0 {
			return dst, false
		}
		switch info & kindMask {
		case kindKeep:
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, replacementUTF8...)
			} else {
				dst = append(dst, src[i:i+size]...)
			}
		case kindMap:
			dst = append(dst, t.mapping(info)...)
		case kindIsolateKeep:
			dst = append(dst, ' ')
			dst = append(dst, src[i:i+size]...)
			dst = append(dst, ' ')
		case kindIsolateMap:
			dst = append(dst, ' ')
			dst = append(dst, t.mapping(info)...)
			dst = append(dst, ' ')
		}
		i += size
	}
	return dst, true
}

// appendNormalizedExact runs BertNormalizer's steps one after the other over
// the whole of src, as HF does: clean_text, chinese chars, NFD with canonical
// reordering then Mn removal, lowercase. It is the reference the per-code-point
// table is built to agree with, and the path for text that needs reordering.
func (t *charTable) appendNormalizedExact(dst []byte, src string, runes []rune, classes []uint8) ([]byte, []rune, []uint8) {
	cfg := t.cfg
	runes = runes[:0]
	for _, r := range src { // invalid bytes arrive as U+FFFD
		if cfg.cleanText {
			if inRanges(hfDropped, r) {
				continue
			}
			if inRanges(hfWhitespace, r) {
				r = ' '
			}
		}
		if cfg.chineseChars && isChineseChar(r) {
			runes = append(runes, ' ', r, ' ')
			continue
		}
		runes = append(runes, r)
	}
	if cfg.stripAccents {
		n := len(runes)
		for _, r := range runes[:n] {
			runes = appendDecomposition(runes, r)
		}
		dec := runes[n:]
		classes = classes[:0]
		for _, r := range dec {
			classes = append(classes, combiningClass(r))
		}
		// Canonical ordering: stable sort of each run of non-starters by class.
		for i := 1; i < len(dec); i++ {
			for j := i; j > 0 && classes[j] != 0 && classes[j-1] > classes[j]; j-- {
				dec[j-1], dec[j] = dec[j], dec[j-1]
				classes[j-1], classes[j] = classes[j], classes[j-1]
			}
		}
		kept := runes[:0]
		for _, r := range dec {
			if !inRanges(hfNonspacingMarks, r) {
				kept = append(kept, r)
			}
		}
		runes = kept
	}
	if cfg.lowercase {
		n := len(runes)
		for _, r := range runes[:n] {
			runes = appendLower(runes, r)
		}
		runes = append(runes[:0], runes[n:]...)
	}
	for _, r := range runes {
		dst = utf8.AppendRune(dst, r)
	}
	return dst, runes, classes
}

// nextWord finds the first pre-token of norm[i:], as BertPreTokenizer splits:
// whitespace ends a word and is dropped, each punctuation character is a word
// of its own. It returns start == end when none is left.
func (t *charTable) nextWord(norm []byte, i int) (start, end int) {
	start = -1
	for i < len(norm) {
		c := norm[i]
		var split charInfo
		size := 1
		if c < utf8.RuneSelf {
			split = t.asciiSplit[c]
		} else {
			var r rune
			r, size = utf8.DecodeRune(norm[i:])
			split = t.info(r) & splitMask
		}
		switch {
		case split == splitWord:
			if start < 0 {
				start = i
			}
		case start >= 0:
			return start, i
		case split == splitPunct:
			return i, i + size
		}
		i += size
	}
	if start < 0 {
		return len(norm), len(norm)
	}
	return start, len(norm)
}
