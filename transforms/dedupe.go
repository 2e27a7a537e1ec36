package transforms

import (
	"context"
	"fmt"
	"hash/fnv"
	"reflect"
	"sort"
	"strings"
	"unicode"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
)

func init() {
	register.DoFn2x0[Record, func(string, Record)](&KeyByTextFn{})
	register.DoFn5x0[context.Context, string, func(*Record) bool, func(Record), func(DedupeEvent)](&ResolveDuplicatesFn{})
	register.Emitter2[string, Record]()
	register.Emitter1[DedupeEvent]()
	register.Iter1[Record]()
	beam.RegisterType(reflect.TypeOf((*DedupeEvent)(nil)).Elem())
}

// Split names.
const (
	SplitTrain      = "train"
	SplitValidation = "validation"
	SplitTest       = "test"
)

// splitRank orders splits for leakage resolution: a text found in several
// splits stays in the highest-ranked one (test, then validation), so
// evaluation data is never thinned to keep training data.
var splitRank = map[string]int{SplitTrain: 0, SplitValidation: 1, SplitTest: 2}

// NormalizeText is the dedupe key of a text: lower case, runs of white space
// collapsed to one space, trimmed. "It 's  GOOD " and "it 's good" are duplicates.
func NormalizeText(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
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
func dedupeKey(r Record) string {
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
		return SplitTrain
	case u < f.Train+f.Validation:
		return SplitValidation
	default:
		return SplitTest
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

func (fn *KeyByTextFn) ProcessElement(r Record, emit func(string, Record)) {
	k := dedupeKey(r)
	switch {
	case r.Split == "":
		r.Split = AssignSplit(fn.Salt, k, fn.Fractions)
	case r.Split == SplitTrain && fn.ValidationFromTrain > 0:
		// The same hash as AssignSplit, so duplicates move together.
		r.Split = AssignSplit(fn.Salt, k, Fractions{Validation: fn.ValidationFromTrain, Train: 1 - fn.ValidationFromTrain})
	}
	emit(k, r)
}

// DedupeEvent is one thing dedupe did, counted in the manifest.
type DedupeEvent struct {
	Kind  string // duplicate, conflict_resolved, conflict_dropped, leakage
	Split string
	Rows  int64 // records removed by this event
}

// ResolveDuplicatesFn applies beamtune's dedupe rules to all records sharing
// a normalized text:
//
//  1. Leakage: a text in more than one split stays only in the highest-ranked
//     split (test > validation > train); the other copies are removed.
//  2. Exact duplicates in a split collapse to one record (the first by source
//     and line, so the choice is deterministic).
//  3. Conflicting labels: the majority label wins if it has more than half the
//     copies; otherwise every copy is dropped, since no label can be trusted.
type ResolveDuplicatesFn struct{}

func (fn *ResolveDuplicatesFn) ProcessElement(ctx context.Context, key string, values func(*Record) bool, emit func(Record), emitEvent func(DedupeEvent)) {
	var recs []Record
	var r Record
	for values(&r) {
		recs = append(recs, r)
	}
	if len(recs) == 1 {
		emit(recs[0])
		return
	}
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].Source != recs[j].Source {
			return recs[i].Source < recs[j].Source
		}
		return recs[i].Line < recs[j].Line
	})
	top := recs[0].Split
	for _, r := range recs {
		if splitRank[r.Split] > splitRank[top] {
			top = r.Split
		}
	}
	kept := recs[:0:0]
	for _, r := range recs {
		if r.Split != top {
			emitEvent(DedupeEvent{Kind: "leakage", Split: r.Split, Rows: 1})
			dedupeLeakage.Inc(ctx, 1)
			continue
		}
		kept = append(kept, r)
	}
	votes := map[string]int{}
	for _, r := range kept {
		votes[r.Label]++
	}
	if len(votes) == 1 {
		if n := len(kept) - 1; n > 0 {
			emitEvent(DedupeEvent{Kind: "duplicate", Split: top, Rows: int64(n)})
			dedupeDuplicates.Inc(ctx, int64(n))
		}
		emit(kept[0])
		return
	}
	best, bestN := "", 0
	for l, n := range votes {
		if n > bestN || (n == bestN && l < best) {
			best, bestN = l, n
		}
	}
	if 2*bestN > len(kept) {
		emitEvent(DedupeEvent{Kind: "conflict_resolved", Split: top, Rows: int64(len(kept) - 1)})
		dedupeConflicts.Inc(ctx, 1)
		for _, r := range kept {
			if r.Label == best {
				emit(r)
				return
			}
		}
	}
	emitEvent(DedupeEvent{Kind: "conflict_dropped", Split: top, Rows: int64(len(kept))})
	dedupeConflicts.Inc(ctx, 1)
}

var (
	dedupeDuplicates = beam.NewCounter("beamtune.prepare", "duplicates_removed")
	dedupeConflicts  = beam.NewCounter("beamtune.prepare", "label_conflicts")
	dedupeLeakage    = beam.NewCounter("beamtune.prepare", "leakage_removed")
)
