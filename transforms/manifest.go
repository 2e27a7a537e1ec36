package transforms

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/storage"
)

func init() {
	register.DoFn9x1[context.Context, []byte, func(*dataset.ShardInfo) bool, func(*Stats) bool, func(*[]string) bool,
		func(*string, *int64) bool, func(*string, *int64) bool, func(*dataset.FileFingerprint) bool, func(*int64) bool, error](&WriteManifestFn{})
	register.Iter1[dataset.ShardInfo]()
	register.Iter1[[]string]()
	register.Iter2[string, int64]()
	register.Iter1[dataset.FileFingerprint]()
	register.Iter1[int64]()
	register.Function2x0(BadKindCount)
	register.Function2x0(DedupeKindCount)
	beam.RegisterType(reflect.TypeOf((*dataset.Manifest)(nil)).Elem())
}

// BadKindCount keys a dead-letter row by its kind, for counting.
func BadKindCount(b dataset.BadRecord, emit func(string, int64)) { emit(dataset.BadKind(b.Reason), 1) }

// DedupeKindCount keys a dedupe event by kind and split, for counting.
func DedupeKindCount(e DedupeEvent, emit func(string, int64)) { emit(e.Kind+"/"+e.Split, e.Rows) }

// WriteManifestFn assembles and writes the manifest once every shard is
// written (the shard infos are its side input, so Beam runs it last). It
// fails the pipeline, writing nothing, when too many records were rejected.
type WriteManifestFn struct {
	Root           string
	Base           dataset.Manifest // fields the driver knows: fingerprint, tokenizer, config...
	MaxBadFraction float64
	// Inputs is how many input files the dataset must account for (0: not
	// checked).
	Inputs int
}

func (fn *WriteManifestFn) ProcessElement(ctx context.Context, _ []byte, shards func(*dataset.ShardInfo) bool, stats func(*Stats) bool,
	labels func(*[]string) bool, bad func(*string, *int64) bool, dedupe func(*string, *int64) bool,
	files func(*dataset.FileFingerprint) bool, deadLetterRows func(*int64) bool) error {
	m := fn.Base
	m.Schema = dataset.ManifestSchema
	m.CreatedAt = time.Now().UTC().Format(time.RFC3339)
	var l []string
	for labels(&l) {
		m.Labels = l
	}
	if m.Task == dataset.Regression {
		m.Labels = dataset.RegressionLabels // one output: the score
	}
	h := sha256.Sum256([]byte(strings.Join(m.Labels, "\n")))
	m.LabelsSHA256 = hex.EncodeToString(h[:])

	var f dataset.FileFingerprint
	for files(&f) {
		m.Inputs = append(m.Inputs, f)
	}
	sort.Slice(m.Inputs, func(i, j int) bool { return m.Inputs[i].Path < m.Inputs[j].Path })

	var n int64
	for _, f := range m.Inputs {
		m.RecordsRead += f.Records + f.Rejected
	}
	m.Rejected.ByKind = map[string]int64{}
	var k string
	for bad(&k, &n) {
		m.Rejected.ByKind[k] += n
		m.Rejected.Total += n
	}
	var dl int64
	for deadLetterRows(&n) {
		dl += n
	}
	if dl == 0 {
		m.Rejected.DeadLetter = ""
	}
	if m.RecordsRead > 0 {
		m.Rejected.Fraction = float64(m.Rejected.Total) / float64(m.RecordsRead)
	}
	if fn.MaxBadFraction >= 0 && m.Rejected.Fraction > fn.MaxBadFraction {
		return fmt.Errorf("%d of %d records (%.2f%%) were rejected, over --max_bad_fraction=%g; see %s for each record and its reason (by kind: %v)",
			m.Rejected.Total, m.RecordsRead, 100*m.Rejected.Fraction, fn.MaxBadFraction, storage.Join(fn.Root, m.Rejected.DeadLetter), m.Rejected.ByKind)
	}
	m.Dedupe.Leakage = map[string]int64{}
	for dedupe(&k, &n) {
		kind, split, _ := strings.Cut(k, "/")
		switch kind {
		case "duplicate":
			m.Dedupe.Duplicates += n
		case "conflict_resolved":
			m.Dedupe.ConflictsResolved += n
		case "conflict_dropped":
			m.Dedupe.ConflictsDropped += n
		case "leakage":
			m.Dedupe.Leakage[split] += n
		}
	}
	var st Stats
	m.Splits = map[string]dataset.SplitSummary{}
	for stats(&st) {
		for name, s := range st.Splits {
			sum := dataset.SplitSummary{Rows: s.Rows, Labels: map[string]int64{}, LengthBucket: dataset.LengthBucket, LengthHistogram: s.Lengths, Tokens: s.Tokens, Truncated: s.Truncated}
			for idx, c := range s.Labels {
				name := "(none)"
				if idx >= 0 && int(idx) < len(m.Labels) {
					name = m.Labels[idx]
				}
				sum.Labels[name] += c
			}
			if s.Rows > 0 {
				sum.TruncationRate = float64(s.Truncated) / float64(s.Rows)
			}
			m.Splits[name] = sum
		}
	}
	var s dataset.ShardInfo
	for shards(&s) {
		m.Shards = append(m.Shards, s)
	}
	sort.Slice(m.Shards, func(i, j int) bool { return m.Shards[i].Path < m.Shards[j].Path })
	// Prism goes on running later stages after a bundle has failed, with
	// that bundle's output missing from their side inputs: without this
	// check a failed run published a manifest of no shards, which a rerun
	// then took for the finished dataset (TestPrepareThroughFaultyGCS).
	if err := m.CheckComplete(fn.Inputs, dl); err != nil {
		return fmt.Errorf("%s not written: %w", storage.Join(fn.Root, dataset.ManifestFile), err)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return storage.WriteFile(ctx, storage.Join(fn.Root, dataset.ManifestFile), append(data, '\n'))
}
