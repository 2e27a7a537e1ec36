package dataset

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/beamtune/beamtune/storage"
)

// ManifestSchema names the manifest format; readers refuse other versions.
const ManifestSchema = "beamtune.dataset/v1"

// ManifestFile is the manifest's name inside a prepared dataset folder.
const ManifestFile = "manifest.json"

// DeadLetterFile is the name of the rejected records' file (JSON lines, one
// record with its file, line and reason each) that prepare and predict write.
const DeadLetterFile = "rejects.jsonl"

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
	// Task is the kind of problem (SingleLabel, MultiLabel, Regression);
	// absent in manifests from before tasks, which are SingleLabel.
	Task         string            `json:"task,omitempty"`
	Labels       []string          `json:"labels"` // class index -> label (regression: RegressionLabels)
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

// CheckComplete reports a dataset that does not account for its inputs:
// an input file not read, records read that are neither in a shard nor
// removed by dedupe, or rejected records missing from the dead letter
// (deadLetterRows is how many it holds). Each means some step's output was
// lost.
func (m *Manifest) CheckComplete(inputs int, deadLetterRows int64) error {
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

// FileFingerprint is the content hash of one input file, for the manifest.
type FileFingerprint struct {
	Path     string `json:"path"`
	Split    string `json:"split,omitempty"` // the split the input named
	Bytes    int64  `json:"bytes"`
	SHA256   string `json:"sha256"`
	Records  int64  `json:"records"`  // good records read
	Rejected int64  `json:"rejected"` // records sent to the dead letter while reading
}

// TaskKind is the manifest's task, SingleLabel for manifests without one.
func (m *Manifest) TaskKind() string {
	if m.Task == "" {
		return SingleLabel
	}
	return m.Task
}
