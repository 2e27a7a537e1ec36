package dataset

import (
	"bytes"
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go"
)

// LengthBucket is the width, in tokens, of the length histogram's buckets.
const LengthBucket = 8

// ShardRow is the Parquet schema of a shard (one row per example).
type ShardRow struct {
	ID    string `parquet:"id"`
	Label int32  `parquet:"label"` // single-label: the class index; -1 unlabelled or another task
	// Labels are a multi-label row's class indices, ascending (empty for
	// other tasks).
	Labels []int32 `parquet:"labels,list"`
	// Score is a regression row's target.
	Score        float32 `parquet:"score"`
	InputIDs     []int32 `parquet:"input_ids,list"`
	TokenTypeIDs []int32 `parquet:"token_type_ids,list"` // empty unless the task has text pairs
	Length       int32   `parquet:"length"`
	Truncated    bool    `parquet:"truncated"`
	Text         string  `parquet:"text"` // empty unless --keep_text
	// TeacherLogits are the teacher's logits in distillation shards, empty otherwise.
	TeacherLogits []float32 `parquet:"teacher_logits,list"`
	// TeacherHidden are the teacher's [CLS] vectors of the layers named by the
	// manifest's teacher_hidden_layers, concatenated, when the distillation
	// uses a hidden-state loss; empty otherwise.
	TeacherHidden []float32 `parquet:"teacher_hidden,list"`
}

// ShardInfo describes one written shard, for the manifest.
type ShardInfo struct {
	Split     string `json:"split"`
	Path      string `json:"path"` // relative to the manifest's folder
	Rows      int64  `json:"rows"`
	Bytes     int64  `json:"bytes"`
	SHA256    string `json:"sha256"`
	MinLength int32  `json:"min_length"`
	MaxLength int32  `json:"max_length"`
}

// WriteShardRows encodes rows as a zstd-compressed Parquet file.
func WriteShardRows(w io.Writer, rows []ShardRow) error {
	pw := NewShardWriter(w)
	if _, err := pw.Write(rows); err != nil {
		return err
	}
	return pw.Close()
}

// NewShardWriter is the one Parquet writer configuration of shards.
func NewShardWriter(w io.Writer) *parquet.GenericWriter[ShardRow] {
	return parquet.NewGenericWriter[ShardRow](w, parquet.Compression(&parquet.Zstd))
}

// ReadShardRows decodes a shard written by WriteShardRows.
func ReadShardRows(data []byte) ([]ShardRow, error) {
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, err
	}
	r := parquet.NewGenericReader[ShardRow](f)
	defer r.Close()
	rows := make([]ShardRow, f.NumRows())
	// In chunks: one Read of every row decodes each column's values for all
	// of them at once (a 24-byte parquet.Value per float), which for the
	// teacher_hidden column of full SST-2 peaked at 4.5 GB for a 301 MB file.
	const chunk = 1024
	n := 0
	for n < len(rows) {
		k, err := r.Read(rows[n:min(n+chunk, len(rows))])
		n += k
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if k == 0 {
			return nil, fmt.Errorf("parquet reader stopped at row %d of %d", n, len(rows))
		}
	}
	return rows[:n], nil
}
