package dataset

import (
	"context"
	"fmt"
	"math/rand"

	"github.com/beamtune/beamtune/storage"
)

// Batch plans: which rows form each batch of an epoch. Rows of a shard are
// sorted by length, so consecutive rows make batches that need little
// padding; the batch order is then shuffled, so an epoch does not run from
// short texts to long ones. Everything is a function of (seed, epoch): a
// resumed run rebuilds the same plan and skips the batches it already did.

// Example rows held in memory for training or evaluation.
type Rows struct {
	IDs     [][]int32   // token ids per row
	Types   [][]int32   // token type ids per row (nil rows for single texts)
	Labels  []int32     // single-label class index per row (-1: none)
	Multi   [][]int32   // multi-label class indices per row (nil rows for other tasks)
	Scores  []float32   // regression target per row
	Teacher [][]float32 // cached teacher logits per row (nil rows outside distillation)
	Hidden  [][]float32 // cached teacher [CLS] vectors per row (nil rows without a hidden-state loss)
	Length  []int32
	RowIDs  []string
}

// Len is the number of rows.
func (r *Rows) Len() int { return len(r.IDs) }

// Append adds a shard's rows. Shard order is kept: each shard is sorted by length.
func (r *Rows) Append(rows []ShardRow) {
	for _, x := range rows {
		r.IDs = append(r.IDs, x.InputIDs)
		var t []int32
		if len(x.TokenTypeIDs) > 0 {
			t = x.TokenTypeIDs
		}
		r.Types = append(r.Types, t)
		r.Labels = append(r.Labels, x.Label)
		var multi []int32
		if len(x.Labels) > 0 {
			multi = x.Labels
		}
		r.Multi = append(r.Multi, multi)
		r.Scores = append(r.Scores, x.Score)
		r.Length = append(r.Length, x.Length)
		r.RowIDs = append(r.RowIDs, x.ID)
		var logits []float32
		if len(x.TeacherLogits) > 0 {
			logits = x.TeacherLogits
		}
		r.Teacher = append(r.Teacher, logits)
		var hidden []float32
		if len(x.TeacherHidden) > 0 {
			hidden = x.TeacherHidden
		}
		r.Hidden = append(r.Hidden, hidden)
	}
}

// HasTeacher reports whether the rows carry teacher logits (a distillation
// dataset: every row has them).
func (r *Rows) HasTeacher() bool { return len(r.Teacher) > 0 && r.Teacher[0] != nil }

// HasHidden reports whether the rows carry the teacher's [CLS] vectors.
func (r *Rows) HasHidden() bool { return len(r.Hidden) > 0 && r.Hidden[0] != nil }

// PlanBatches splits rows [0,n) into batches of consecutive rows (similar
// length) and shuffles them with a shuffle buffer of bufferBatches batches,
// seeded by (seed, epoch). Rows are first grouped in windows of
// bufferBatches*batchSize consecutive rows, shuffled inside the window, then
// sorted by length inside each batch-sized run, so batches differ between
// epochs but stay length-homogeneous.
func PlanBatches(lengths []int32, batchSize, bufferBatches int, seed int64, epoch int) [][]int {
	n := len(lengths)
	if n == 0 || batchSize <= 0 {
		return nil
	}
	if bufferBatches < 1 {
		bufferBatches = 1
	}
	rng := rand.New(rand.NewSource(seed*1_000_003 + int64(epoch)))
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	// Shuffle rows within windows of consecutive (length-sorted) rows: rows
	// of similar length meet different neighbours each epoch.
	window := batchSize * bufferBatches
	for lo := 0; lo < n; lo += window {
		hi := min(lo+window, n)
		w := order[lo:hi]
		rng.Shuffle(len(w), func(i, j int) { w[i], w[j] = w[j], w[i] })
		// Re-sort each window by length so batches pad little.
		sortByLength(w, lengths)
	}
	var batches [][]int
	for lo := 0; lo < n; lo += batchSize {
		batches = append(batches, order[lo:min(lo+batchSize, n)])
	}
	rng.Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })
	return batches
}

// sortByLength is a stable insertion-free sort of idx by lengths[idx] (ties keep order).
func sortByLength(idx []int, lengths []int32) {
	// Counting sort: lengths are small integers.
	maxL := int32(0)
	for _, i := range idx {
		maxL = max(maxL, lengths[i])
	}
	buckets := make([][]int, maxL+1)
	for _, i := range idx {
		buckets[lengths[i]] = append(buckets[lengths[i]], i)
	}
	k := 0
	for _, b := range buckets {
		k += copy(idx[k:], b)
	}
}

// LoadSplit reads every shard of a split into memory, in manifest order.
func LoadSplit(ctx context.Context, data string, m *Manifest, split string) (*Rows, error) {
	var total int64
	for _, s := range m.ShardsOf(split) {
		total += s.Rows
	}
	if MaxResidentRows > 0 && total > MaxResidentRows {
		return nil, fmt.Errorf("the %s split has %d rows, over the %d rows this process may hold: stream it (--train_input=stream)", split, total, MaxResidentRows)
	}
	rows := &Rows{}
	for _, s := range m.ShardsOf(split) {
		r, err := ReadShard(ctx, data, s)
		if err != nil {
			return nil, err
		}
		rows.Append(r)
	}
	return rows, nil
}

// ReadShard reads the rows of shard s of the dataset at data (local or gs://).
func ReadShard(ctx context.Context, data string, s ShardInfo) ([]ShardRow, error) {
	b, err := storage.ReadFile(ctx, storage.Join(data, s.Path))
	if err != nil {
		return nil, err
	}
	r, err := ReadShardRows(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Path, err)
	}
	return r, nil
}
