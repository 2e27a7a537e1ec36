package transforms

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/dataset"
)

func init() {
	register.DoFn2x0[dataset.Record, func(string, dataset.Record)](&KeyByTextFn{})
	register.Emitter2[string, dataset.Record]()
	register.Emitter1[DedupeEvent]()
	beam.RegisterType(reflect.TypeOf((*DedupeEvent)(nil)).Elem())
}

// splitRank orders splits for leakage resolution: a text found in several
// splits stays in the highest-ranked one (test, then validation), so
// evaluation data is never thinned to keep training data.
var splitRank = map[string]int{dataset.SplitTrain: 0, dataset.SplitValidation: 1, dataset.SplitTest: 2}

// NormalizeText is the dedupe key of a text: lower case, runs of white space
// collapsed to one space, trimmed. "It 's  GOOD " and "it 's good" are duplicates.
func NormalizeText(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i := 0; i < len(s); {
		// ASCII, most of most corpora, without decoding runes or calling
		// into the unicode tables: this runs once per record read.
		if c := s[i]; c < utf8.RuneSelf {
			i++
			if c == ' ' || ('\t' <= c && c <= '\r') {
				space = true
				continue
			}
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b.WriteByte(c)
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		i += n
		if unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// dedupeKey joins the normalized text and pair.
func dedupeKey(r dataset.Record) string {
	if r.Pair == "" {
		return NormalizeText(r.Text)
	}
	return NormalizeText(r.Text) + "\x00" + NormalizeText(r.Pair)
}

// Fractions are the shares of train, validation and test when splits are
// assigned by hash.
type Fractions struct {
	Train, Validation, Test float64
}

// Validate checks the fractions are non-negative and sum to 1.
func (f Fractions) Validate() error {
	if f.Train < 0 || f.Validation < 0 || f.Test < 0 {
		return fmt.Errorf("split fractions must be non-negative: %+v", f)
	}
	if s := f.Train + f.Validation + f.Test; s < 0.999999 || s > 1.000001 {
		return fmt.Errorf("split fractions sum to %g, not 1", s)
	}
	return nil
}

// AssignSplit picks a split from a hash of the salt and the dedupe key, so a
// text lands in the same split on every runner, every run and every machine,
// and duplicates can never straddle splits.
func AssignSplit(salt, key string, f Fractions) string {
	h := fnv.New64a()
	h.Write([]byte(salt))
	h.Write([]byte{0})
	h.Write([]byte(key))
	// FNV-1a alone leaves its high bits poorly mixed for short, similar keys
	// ("row 1", "row 2", ...: 14% instead of 10% landed in a 10% split), so
	// the splitmix64 finalizer spreads every input bit over the whole word.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	u := float64(x>>11) / float64(1<<53) // uniform in [0,1)
	switch {
	case u < f.Train:
		return dataset.SplitTrain
	case u < f.Train+f.Validation:
		return dataset.SplitValidation
	default:
		return dataset.SplitTest
	}
}

// KeyByTextFn keys records by their dedupe key, assigning a split by hash to
// records whose input named none, and moving a hashed share of the training
// records to validation when ValidationFromTrain is set.
type KeyByTextFn struct {
	Salt                string
	Fractions           Fractions
	ValidationFromTrain float64
}

func (fn *KeyByTextFn) ProcessElement(r dataset.Record, emit func(string, dataset.Record)) {
	k := fn.Assign(&r)
	emit(k, r)
}

// Assign sets r's split as ProcessElement does and returns its dedupe key.
func (fn *KeyByTextFn) Assign(r *dataset.Record) string {
	k := dedupeKey(*r)
	switch {
	case r.Split == "":
		r.Split = AssignSplit(fn.Salt, k, fn.Fractions)
	case r.Split == dataset.SplitTrain && fn.ValidationFromTrain > 0:
		// The same hash as AssignSplit, so duplicates move together.
		r.Split = AssignSplit(fn.Salt, k, Fractions{Validation: fn.ValidationFromTrain, Train: 1 - fn.ValidationFromTrain})
	}
	return k
}

// DedupeEvent is one thing dedupe did, counted in the manifest.
type DedupeEvent struct {
	Kind  string // duplicate, conflict_resolved, conflict_dropped, leakage
	Split string
	Rows  int64 // records removed by this event
}

// KeyHash identifies a dedupe key in 16 bytes: the first half of the
// SHA-256 of the normalized text. Dedupe compares these instead of the texts
// so the facts it gathers about every record stay small; two different texts
// collide with probability about n²/2¹²⁹ (nil for any real corpus). Its
// first 8 bytes also place the record's shard (see ShardPlan).
type KeyHash [16]byte

// HashKey hashes a dedupe key (see dedupeKey).
func HashKey(key string) KeyHash {
	sum := sha256.Sum256([]byte(key))
	var h KeyHash
	copy(h[:], sum[:16])
	return h
}

// position is the key's place on the 64-bit ring that shards divide.
func (h KeyHash) position() uint64 { return binary.BigEndian.Uint64(h[:8]) }

// DedupeCopy is what the dedupe rules need to know about one record of a
// text: its split and label, and its file and line (the deterministic order
// that picks which copy survives).
type DedupeCopy struct {
	Split, Label, Source string
	Line                 int64
}

// ResolveCopies applies beamtune's dedupe rules to all records sharing a
// normalized text and returns the index in copies of the one kept (-1 when
// none is) and what was removed:
//
//  1. Leakage: a text in more than one split stays only in the highest-ranked
//     split (test > validation > train); the other copies are removed.
//  2. Exact duplicates in a split collapse to one record (the first by source
//     and line, so the choice is deterministic).
//  3. Conflicting labels: the majority label wins if it has more than half the
//     copies; otherwise every copy is dropped, since no label can be trusted.
//     A regression task's scores are not votes: the kept copy takes the mean
//     of the copies' scores (label, "" otherwise), as raters' scores of one
//     text are averaged; a copy whose score does not parse falls back to
//     the vote.
//
// Leakage events name the split a copy was removed from; the others name the
// split the text stays in.
func ResolveCopies(copies []DedupeCopy, task string) (keep int, label string, events []DedupeEvent) {
	if len(copies) == 1 {
		return 0, "", nil
	}
	order := make([]int, len(copies))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool {
		x, y := copies[order[a]], copies[order[b]]
		if x.Source != y.Source {
			return x.Source < y.Source
		}
		return x.Line < y.Line
	})
	top := copies[order[0]].Split
	for _, c := range copies {
		if splitRank[c.Split] > splitRank[top] {
			top = c.Split
		}
	}
	leaked := map[string]int64{}
	kept := order[:0:0]
	for _, i := range order {
		if copies[i].Split != top {
			leaked[copies[i].Split]++
			continue
		}
		kept = append(kept, i)
	}
	for _, split := range []string{dataset.SplitTrain, dataset.SplitValidation, dataset.SplitTest} {
		if n := leaked[split]; n > 0 {
			events = append(events, DedupeEvent{Kind: "leakage", Split: split, Rows: n})
		}
	}
	votes := map[string]int{}
	for _, i := range kept {
		votes[copies[i].Label]++
	}
	if len(votes) == 1 {
		if n := len(kept) - 1; n > 0 {
			events = append(events, DedupeEvent{Kind: "duplicate", Split: top, Rows: int64(n)})
		}
		return kept[0], "", events
	}
	if task == dataset.Regression {
		if mean, ok := meanScore(copies, kept); ok {
			return kept[0], mean, append(events, DedupeEvent{Kind: "conflict_resolved", Split: top, Rows: int64(len(kept) - 1)})
		}
	}
	best, bestN := "", 0
	for l, n := range votes {
		if n > bestN || (n == bestN && l < best) {
			best, bestN = l, n
		}
	}
	if 2*bestN > len(kept) {
		events = append(events, DedupeEvent{Kind: "conflict_resolved", Split: top, Rows: int64(len(kept) - 1)})
		for _, i := range kept {
			if copies[i].Label == best {
				return i, "", events
			}
		}
	}
	return -1, "", append(events, DedupeEvent{Kind: "conflict_dropped", Split: top, Rows: int64(len(kept))})
}

// meanScore is the mean of the kept copies' scores, written as the shortest
// text that reads back as the same float32; false when one does not parse.
func meanScore(copies []DedupeCopy, kept []int) (string, bool) {
	var sum float64
	for _, i := range kept {
		v, err := dataset.ParseScore(copies[i].Label)
		if err != nil {
			return "", false
		}
		sum += float64(v)
	}
	return strconv.FormatFloat(float64(float32(sum/float64(len(kept)))), 'g', -1, 32), true
}

// countDedupe adds an event to the pipeline's metrics.
func countDedupe(ctx context.Context, e DedupeEvent) {
	switch e.Kind {
	case "leakage":
		dedupeLeakage.Inc(ctx, e.Rows)
	case "duplicate":
		dedupeDuplicates.Inc(ctx, e.Rows)
	default:
		dedupeConflicts.Inc(ctx, 1)
	}
}

var (
	dedupeDuplicates = beam.NewCounter("beamtune.prepare", "duplicates_removed")
	dedupeConflicts  = beam.NewCounter("beamtune.prepare", "label_conflicts")
	dedupeLeakage    = beam.NewCounter("beamtune.prepare", "leakage_removed")
)
