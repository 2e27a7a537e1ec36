package transforms

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/storage"
	"github.com/parquet-go/parquet-go"
)

func init() {
	register.Combiner3[Stats, Example, Stats](&StatsFn{})
	register.DoFn3x0[Example, func(*Stats) bool, func(string, Example)](&KeyByShardFn{})
	register.DoFn4x1[context.Context, string, func(*Example) bool, func(ShardInfo), error](&WriteShardFn{})
	register.Emitter2[string, Example]()
	register.Emitter1[ShardInfo]()
	register.Iter1[Example]()
	register.Iter1[Stats]()
	beam.RegisterType(reflect.TypeOf((*ShardInfo)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*Stats)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*SplitStats)(nil)).Elem())
}

// LengthBucket is the width, in tokens, of the length histogram's buckets.
const LengthBucket = 8

// SplitStats summarises one split's examples.
type SplitStats struct {
	Rows      int64           `json:"rows"`
	Labels    map[int32]int64 `json:"labels"` // class index -> rows
	Lengths   []int64         `json:"length_histogram"`
	Tokens    int64           `json:"tokens"`
	Truncated int64           `json:"truncated"`
	Bytes     int64           `json:"bytes_estimate"` // shard size estimate, before compression
}

// Stats maps split name to its summary.
type Stats struct {
	Splits map[string]*SplitStats
}

// StatsFn combines examples into Stats with mergeable accumulators, so Beam
// can pre-combine on every worker (no single key sees every row).
type StatsFn struct{}

func (StatsFn) CreateAccumulator() Stats { return Stats{Splits: map[string]*SplitStats{}} }

func (StatsFn) AddInput(a Stats, e Example) Stats {
	s := a.Splits[e.Split]
	if s == nil {
		s = &SplitStats{Labels: map[int32]int64{}}
		a.Splits[e.Split] = s
	}
	s.Rows++
	s.Labels[e.Label]++
	b := int(e.Length) / LengthBucket
	for len(s.Lengths) <= b {
		s.Lengths = append(s.Lengths, 0)
	}
	s.Lengths[b]++
	s.Tokens += int64(e.Length)
	if e.Truncated {
		s.Truncated++
	}
	s.Bytes += exampleBytes(e)
	return a
}

func (StatsFn) MergeAccumulators(a, b Stats) Stats {
	for name, o := range b.Splits {
		s := a.Splits[name]
		if s == nil {
			a.Splits[name] = o
			continue
		}
		s.Rows += o.Rows
		s.Tokens += o.Tokens
		s.Truncated += o.Truncated
		s.Bytes += o.Bytes
		for k, v := range o.Labels {
			s.Labels[k] += v
		}
		for len(s.Lengths) < len(o.Lengths) {
			s.Lengths = append(s.Lengths, 0)
		}
		for i, v := range o.Lengths {
			s.Lengths[i] += v
		}
	}
	return a
}

func (StatsFn) ExtractOutput(a Stats) Stats { return a }

// exampleBytes estimates an example's uncompressed size in a shard.
func exampleBytes(e Example) int64 {
	return int64(4*len(e.InputIDs)+4*len(e.TokenTypeIDs)+len(e.ID)+len(e.Text)) + 16
}

// KeyByShardFn picks each example's shard: as many shards per split as the
// split's size needs at TargetBytes each, the shard chosen by a hash of the
// id (stable across runs and runners).
type KeyByShardFn struct {
	TargetBytes int64

	shards map[string]int // split -> shard count, decoded from the side input once
}

func (fn *KeyByShardFn) ProcessElement(e Example, stats func(*Stats) bool, emit func(string, Example)) {
	if fn.shards == nil {
		// The side input is the same for every element (one global window,
		// and a DoFn instance serves one pipeline): decode it once.
		fn.shards = map[string]int{}
		var st Stats
		for stats(&st) {
			for name, s := range st.Splits {
				n := 1
				if fn.TargetBytes > 0 {
					n = max(1, int(math.Ceil(float64(s.Bytes)/float64(fn.TargetBytes))))
				}
				fn.shards[name] = n
			}
		}
	}
	n := max(1, fn.shards[e.Split])
	h := fnv.New32a()
	h.Write([]byte(e.ID))
	emit(shardKey(e.Split, int(h.Sum32()%uint32(n)), n), e)
}

func shardKey(split string, i, n int) string { return fmt.Sprintf("%s/%05d/%05d", split, i, n) }

func parseShardKey(k string) (split string, i, n int, err error) {
	parts := strings.Split(k, "/")
	if len(parts) != 3 {
		return "", 0, 0, fmt.Errorf("bad shard key %q", k)
	}
	i, err1 := strconv.Atoi(parts[1])
	n, err2 := strconv.Atoi(parts[2])
	if err1 != nil || err2 != nil {
		return "", 0, 0, fmt.Errorf("bad shard key %q", k)
	}
	return parts[0], i, n, nil
}

// ShardRow is the Parquet schema of a shard (one row per example).
type ShardRow struct {
	ID           string  `parquet:"id"`
	Label        int32   `parquet:"label"`
	InputIDs     []int32 `parquet:"input_ids,list"`
	TokenTypeIDs []int32 `parquet:"token_type_ids,list"` // empty unless the task has text pairs
	Length       int32   `parquet:"length"`
	Truncated    bool    `parquet:"truncated"`
	Text         string  `parquet:"text"` // empty unless --keep_text
	// TeacherLogits are the teacher's logits in distillation shards, empty otherwise.
	TeacherLogits []float32 `parquet:"teacher_logits,list"`
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

// WriteShardFn writes one shard's examples, sorted by length (so a trainer
// reading consecutive rows gets batches of similar length and pads little),
// to Dir/<split>/part-NNNNN-of-NNNNN.parquet, atomically.
type WriteShardFn struct {
	Root string // the manifest's folder
	Dir  string // data folder, relative to Root
}

func (fn *WriteShardFn) ProcessElement(ctx context.Context, key string, values func(*Example) bool, emit func(ShardInfo)) error {
	split, i, n, err := parseShardKey(key)
	if err != nil {
		return err
	}
	var rows []ShardRow
	var e Example
	for values(&e) {
		rows = append(rows, ShardRow{ID: e.ID, Label: e.Label, InputIDs: e.InputIDs, TokenTypeIDs: e.TokenTypeIDs, Length: e.Length, Truncated: e.Truncated, Text: e.Text})
	}
	sort.Slice(rows, func(a, b int) bool {
		if rows[a].Length != rows[b].Length {
			return rows[a].Length < rows[b].Length
		}
		return rows[a].ID < rows[b].ID
	})
	rel := fmt.Sprintf("%s/%s/part-%05d-of-%05d.parquet", fn.Dir, split, i, n)
	var buf bytes.Buffer
	if err := WriteShardRows(&buf, rows); err != nil {
		return fmt.Errorf("shard %s: %w", rel, err)
	}
	sum := sha256.Sum256(buf.Bytes())
	if err := storage.WriteFile(ctx, storage.Join(fn.Root, rel), buf.Bytes()); err != nil {
		return fmt.Errorf("shard %s: %w", rel, err)
	}
	info := ShardInfo{Split: split, Path: rel, Rows: int64(len(rows)), Bytes: int64(buf.Len()), SHA256: hex.EncodeToString(sum[:])}
	if len(rows) > 0 {
		info.MinLength, info.MaxLength = rows[0].Length, rows[len(rows)-1].Length
	}
	shardsWritten.Inc(ctx, 1)
	emit(info)
	return nil
}

var shardsWritten = beam.NewCounter("beamtune.prepare", "shards_written")

// WriteShardRows encodes rows as a zstd-compressed Parquet file.
func WriteShardRows(w io.Writer, rows []ShardRow) error {
	pw := parquet.NewGenericWriter[ShardRow](w, parquet.Compression(&parquet.Zstd))
	if _, err := pw.Write(rows); err != nil {
		return err
	}
	return pw.Close()
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
	n, err := r.Read(rows)
	if err != nil && err != io.EOF {
		return nil, err
	}
	return rows[:n], nil
}
