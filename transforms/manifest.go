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
	"github.com/beamtune/beamtune/storage"
)

func init() {
	register.DoFn9x1[context.Context, []byte, func(*ShardInfo) bool, func(*Stats) bool, func(*[]string) bool,
		func(*string, *int64) bool, func(*string, *int64) bool, func(*FileFingerprint) bool, func(*int64) bool, error](&WriteManifestFn{})
	register.Iter1[ShardInfo]()
	register.Iter1[[]string]()
	register.Iter2[string, int64]()
	register.Iter1[FileFingerprint]()
	register.Iter1[int64]()
	register.Function2x0(BadKindCount)
	register.Function2x0(DedupeKindCount)
	beam.RegisterType(reflect.TypeOf((*Manifest)(nil)).Elem())
}

// ManifestSchema names the manifest format; readers refuse other versions.
const ManifestSchema = "beamtune.dataset/v1"

// ManifestFile is the manifest's name inside a prepared dataset folder.
const ManifestFile = "manifest.json"

// Manifest describes a prepared dataset. It is written last, atomically: a
// folder without one holds no usable data, and a reader sees either the old
// manifest and its shards or the new one and its shards, never a mix.
// See docs/manifest.md for the field-by-field schema.
type Manifest struct {
	Schema      string `json:"schema"`
	CreatedAt   string `json:"created_at"`
	Fingerprint string `json:"fingerprint"` // of the inputs (name, size, version) and the configuration
	DataDir     string `json:"data_dir"`    // shards live under this folder, relative to the manifest

	Tokenizer struct {
		Path      string `json:"path"`
		SHA256    string `json:"sha256"`
		MaxLength int    `json:"max_length"`
	} `json:"tokenizer"`
	Labels       []string          `json:"labels"` // class index -> label
	LabelsSHA256 string            `json:"labels_sha256"`
	Inputs       []FileFingerprint `json:"inputs"`
	Config       json.RawMessage   `json:"config"` // the resolved prepare options

	Splits map[string]SplitSummary `json:"splits"`
	Dedupe struct {
		Duplicates        int64            `json:"duplicates_removed"`
		ConflictsResolved int64            `json:"conflicts_resolved"` // rows dropped by majority vote
		ConflictsDropped  int64            `json:"conflicts_dropped"`  // rows dropped: no majority label
		Leakage           map[string]int64 `json:"leakage_removed"`    // split the copy was removed from -> rows
	} `json:"dedupe"`
	Rejected struct {
		Total      int64            `json:"total"`
		ByKind     map[string]int64 `json:"by_kind"`
		DeadLetter string           `json:"dead_letter"` // JSONL, relative path
		Fraction   float64          `json:"fraction"`    // rejected / records read
	} `json:"rejected"`
	RecordsRead int64       `json:"records_read"` // records parsed from the inputs (good + rejected while reading)
	Shards      []ShardInfo `json:"shards"`
	// TeacherHiddenLayers, in a distillation dataset with a hidden-state
	// loss, are the teacher hidden states (0: embeddings, k: layer k's
	// output) whose [CLS] vectors each row's teacher_hidden holds, in order.
	TeacherHiddenLayers []int `json:"teacher_hidden_layers,omitempty"`
}

// SplitSummary is a split's share of the manifest.
type SplitSummary struct {
	Rows            int64            `json:"rows"`
	Labels          map[string]int64 `json:"labels"` // label -> rows
	LengthBucket    int              `json:"length_bucket"`
	LengthHistogram []int64          `json:"length_histogram"` // count of lengths in [i*bucket, (i+1)*bucket)
	Tokens          int64            `json:"tokens"`
	Truncated       int64            `json:"truncated"`
	TruncationRate  float64          `json:"truncation_rate"`
}

// ShardsOf lists a split's shards in order.
func (m *Manifest) ShardsOf(split string) []ShardInfo {
	var out []ShardInfo
	for _, s := range m.Shards {
		if s.Split == split {
			out = append(out, s)
		}
	}
	return out
}

// ReadManifest loads and checks dir/manifest.json.
func ReadManifest(ctx context.Context, dir string) (*Manifest, error) {
	path := storage.Join(dir, ManifestFile)
	data, err := storage.ReadFileLimit(ctx, path, 64<<20)
	if err != nil {
		return nil, err
	}
	return ParseManifest(data, path)
}

// ParseManifest decodes and checks a manifest.json read from source (named
// in errors). It is ReadManifest without the storage, so the parsing of
// files from elsewhere can be tested and fuzzed on its own.
func ParseManifest(data []byte, source string) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: invalid manifest: %w", source, err)
	}
	if m.Schema != ManifestSchema {
		return nil, fmt.Errorf("%s: schema %q, this beamtune reads %q", source, m.Schema, ManifestSchema)
	}
	return &m, nil
}

// BadKind is the category of a dead-letter reason, for counting.
func BadKind(reason string) string {
	switch {
	case reason == "empty line":
		return "empty_line"
	case reason == "empty text", reason == "empty pair text":
		return "empty_text"
	case reason == "missing label":
		return "missing_label"
	case strings.HasPrefix(reason, "unknown label"):
		return "unknown_label"
	case strings.HasPrefix(reason, "invalid UTF-8"):
		return "invalid_utf8"
	case strings.HasPrefix(reason, "record exceeds"):
		return "too_long"
	case strings.Contains(reason, "quot"):
		return "malformed_csv"
	case strings.HasPrefix(reason, "expected "):
		return "field_count"
	case strings.HasPrefix(reason, "invalid JSON"):
		return "invalid_json"
	}
	return "missing_field"
}

// BadKindCount keys a dead-letter row by its kind, for counting.
func BadKindCount(b BadRecord, emit func(string, int64)) { emit(BadKind(b.Reason), 1) }

// DedupeKindCount keys a dedupe event by kind and split, for counting.
func DedupeKindCount(e DedupeEvent, emit func(string, int64)) { emit(e.Kind+"/"+e.Split, e.Rows) }

// WriteManifestFn assembles and writes the manifest once every shard is
// written (the shard infos are its side input, so Beam runs it last). It
// fails the pipeline, writing nothing, when too many records were rejected.
type WriteManifestFn struct {
	Root           string
	Base           Manifest // fields the driver knows: fingerprint, tokenizer, config...
	MaxBadFraction float64
	// Inputs is how many input files the dataset must account for (0: not
	// checked).
	Inputs int
}

func (fn *WriteManifestFn) ProcessElement(ctx context.Context, _ []byte, shards func(*ShardInfo) bool, stats func(*Stats) bool,
	labels func(*[]string) bool, bad func(*string, *int64) bool, dedupe func(*string, *int64) bool,
	files func(*FileFingerprint) bool, deadLetterRows func(*int64) bool) error {
	m := fn.Base
	m.Schema = ManifestSchema
	m.CreatedAt = time.Now().UTC().Format(time.RFC3339)
	var l []string
	for labels(&l) {
		m.Labels = l
	}
	h := sha256.Sum256([]byte(strings.Join(m.Labels, "\n")))
	m.LabelsSHA256 = hex.EncodeToString(h[:])

	var f FileFingerprint
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
	m.Splits = map[string]SplitSummary{}
	for stats(&st) {
		for name, s := range st.Splits {
			sum := SplitSummary{Rows: s.Rows, Labels: map[string]int64{}, LengthBucket: LengthBucket, LengthHistogram: s.Lengths, Tokens: s.Tokens, Truncated: s.Truncated}
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
	var s ShardInfo
	for shards(&s) {
		m.Shards = append(m.Shards, s)
	}
	sort.Slice(m.Shards, func(i, j int) bool { return m.Shards[i].Path < m.Shards[j].Path })
	// Prism goes on running later stages after a bundle has failed, with
	// that bundle's output missing from their side inputs: without this
	// check a failed run published a manifest of no shards, which a rerun
	// then took for the finished dataset (TestPrepareThroughFaultyGCS).
	if err := m.checkComplete(fn.Inputs, dl); err != nil {
		return fmt.Errorf("%s not written: %w", storage.Join(fn.Root, ManifestFile), err)
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return storage.WriteFile(ctx, storage.Join(fn.Root, ManifestFile), append(data, '\n'))
}

// checkComplete reports a dataset that does not account for its inputs:
// an input file not read, records read that are neither in a shard nor
// removed by dedupe, or rejected records missing from the dead letter
// (deadLetterRows is how many it holds). Each means some step's output was
// lost.
func (m *Manifest) checkComplete(inputs int, deadLetterRows int64) error {
	if inputs > 0 && len(m.Inputs) != inputs {
		return fmt.Errorf("%d of %d input files were read", len(m.Inputs), inputs)
	}
	var read, kept, inShards int64
	for _, f := range m.Inputs {
		read += f.Records
	}
	for _, sp := range m.Splits {
		kept += sp.Rows
	}
	for _, s := range m.Shards {
		inShards += s.Rows
	}
	removed := m.Dedupe.Duplicates + m.Dedupe.ConflictsResolved + m.Dedupe.ConflictsDropped
	for _, n := range m.Dedupe.Leakage {
		removed += n
	}
	if inShards != kept {
		return fmt.Errorf("the shards hold %d rows, the split summaries count %d", inShards, kept)
	}
	if kept+removed != read {
		return fmt.Errorf("%d records were read, but the shards hold %d and dedupe removed %d", read, kept, removed)
	}
	if deadLetterRows != m.Rejected.Total {
		return fmt.Errorf("%d records were rejected, but the dead letter holds %d", m.Rejected.Total, deadLetterRows)
	}
	return nil
}
