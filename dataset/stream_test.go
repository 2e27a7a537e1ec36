package dataset

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// writeShardedSplit writes rows (any order) as a train split of nShards
// shards, each sorted by length as prepare writes them, with teacher
// logits, and returns the dataset folder's manifest.
func writeShardedSplit(t *testing.T, dir string, rows []ShardRow, nShards int) *Manifest {
	t.Helper()
	m := &Manifest{Schema: ManifestSchema, DataDir: "data", Labels: []string{"0", "1"}}
	for s := range nShards {
		var shard []ShardRow
		for i := s; i < len(rows); i += nShards {
			shard = append(shard, rows[i])
		}
		sort.SliceStable(shard, func(i, j int) bool { return shard[i].Length < shard[j].Length })
		var buf strings.Builder
		if err := WriteShardRows(&buf, shard); err != nil {
			t.Fatal(err)
		}
		rel := fmt.Sprintf("data/train/part-%05d-of-%05d.parquet", s, nShards)
		if err := os.MkdirAll(filepath.Join(dir, "data", "train"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(buf.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		m.Shards = append(m.Shards, ShardInfo{Split: SplitTrain, Path: rel, Rows: int64(len(shard)), Bytes: int64(buf.Len())})
	}
	data, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}

func syntheticRows(n int, seed uint64) []ShardRow {
	rng := rand.New(rand.NewPCG(seed, 1))
	rows := make([]ShardRow, n)
	for i := range rows {
		l := 2 + rng.IntN(40)
		r := ShardRow{ID: fmt.Sprintf("r%05d", i), Label: int32(rng.IntN(2)), Length: int32(l), TeacherLogits: []float32{float32(i), -float32(i)}}
		for range l {
			r.InputIDs = append(r.InputIDs, int32(rng.IntN(1000)))
		}
		rows[i] = r
	}
	return rows
}

// epochBatches reads a whole epoch of s and returns its batches as row ids.
func epochBatches(t *testing.T, s *Stream, epoch int) [][]string {
	t.Helper()
	p := s.Plan(epoch)
	var out [][]string
	for wi := range p.Windows {
		rows, batches, err := s.Window(context.Background(), p, wi)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range batches {
			var ids []string
			for _, i := range b {
				ids = append(ids, rows.RowIDs[i])
				if rows.Teacher[i][0] != -rows.Teacher[i][1] {
					t.Fatalf("row %s came with another row's teacher logits", rows.RowIDs[i])
				}
			}
			out = append(out, ids)
		}
	}
	if len(out) != p.Batches {
		t.Fatalf("epoch %d: read %d batches, planned %d", epoch, len(out), p.Batches)
	}
	return out
}

// TestStreamCoversEveryRowOncePerEpoch: each streamed epoch yields every
// row exactly once, in batches no larger than the batch size; an epoch is
// a function of (seed, epoch); epochs differ.
func TestStreamCoversEveryRowOncePerEpoch(t *testing.T) {
	dir := t.TempDir()
	rows := syntheticRows(1003, 7)
	m := writeShardedSplit(t, dir, rows, 7)
	cfg := StreamConfig{BatchSize: 8, WindowRows: 40, BlockRows: 10, OpenShards: 3, Seed: 11}
	s, err := NewStream(dir, m, SplitTrain, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var epochs [][][]string
	for epoch := range 3 {
		batches := epochBatches(t, s, epoch)
		seen := map[string]int{}
		for _, b := range batches {
			if len(b) == 0 || len(b) > cfg.BatchSize {
				t.Fatalf("epoch %d: a batch of %d rows", epoch, len(b))
			}
			for _, id := range b {
				seen[id]++
			}
		}
		if len(seen) != len(rows) {
			t.Fatalf("epoch %d saw %d distinct rows of %d", epoch, len(seen), len(rows))
		}
		for id, n := range seen {
			if n != 1 {
				t.Fatalf("epoch %d saw row %s %d times", epoch, id, n)
			}
		}
		epochs = append(epochs, batches)
	}
	if reflect.DeepEqual(epochs[0], epochs[1]) {
		t.Fatal("epochs 0 and 1 visit rows in the same order")
	}
	again, err := NewStream(dir, m, SplitTrain, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if !reflect.DeepEqual(epochBatches(t, again, 1), epochs[1]) {
		t.Fatal("the same seed and epoch gave another order")
	}
	cfg.Seed++
	other, err := NewStream(dir, m, SplitTrain, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if reflect.DeepEqual(epochBatches(t, other, 1), epochs[1]) {
		t.Fatal("another seed gave the same order")
	}
}

// TestStreamBatchesMixTheCorpus: shards are sorted by length, yet a window
// draws blocks from every open shard and from all of a shard's length
// range, and batches stay length-homogeneous.
func TestStreamBatchesMixTheCorpus(t *testing.T) {
	dir := t.TempDir()
	rows := syntheticRows(2000, 3)
	m := writeShardedSplit(t, dir, rows, 4)
	s, err := NewStream(dir, m, SplitTrain, StreamConfig{BatchSize: 16, WindowRows: 256, BlockRows: 16, OpenShards: 4, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := s.Plan(0)
	first, _, err := s.Window(context.Background(), p, 0)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := slices.Min(first.Length), slices.Max(first.Length)
	if hi-lo < 30 {
		t.Fatalf("the first window spans lengths %d-%d: blocks are read in shard order, not mixed", lo, hi)
	}
	rows0, batches, err := s.Window(context.Background(), p, 1)
	if err != nil {
		t.Fatal(err)
	}
	var spread int32
	for _, b := range batches[:len(batches)-1] {
		var ls []int32
		for _, i := range b {
			ls = append(ls, rows0.Length[i])
		}
		spread = max(spread, slices.Max(ls)-slices.Min(ls))
	}
	if spread > 10 {
		t.Fatalf("a batch spans %d tokens of length: windows are not sorted into batches", spread)
	}
}

// TestStreamPositionIsAFunctionOfThePlan: a checkpoint's position record is
// the same when recomputed, and names the window's open shards and how far
// each was read.
func TestStreamPositionIsAFunctionOfThePlan(t *testing.T) {
	dir := t.TempDir()
	m := writeShardedSplit(t, dir, syntheticRows(500, 5), 5)
	cfg := StreamConfig{BatchSize: 8, WindowRows: 32, BlockRows: 8, OpenShards: 2, Seed: 3}
	p := PlanStream(m.ShardsOf(SplitTrain), cfg, 2)
	b := p.Batches * 2 / 3
	pos := p.Position(b, cfg.Seed)
	if !reflect.DeepEqual(pos, PlanStream(m.ShardsOf(SplitTrain), cfg, 2).Position(b, cfg.Seed)) {
		t.Fatal("a recomputed position differs")
	}
	w := p.Windows[pos.Window]
	if b < w.FirstBatch || b >= w.FirstBatch+w.Batches || pos.Batch != b-w.FirstBatch {
		t.Fatalf("position %+v does not hold batch %d", pos, b)
	}
	if len(pos.OpenShards) != 2 {
		t.Fatalf("open shards %+v, want 2", pos.OpenShards)
	}
	var read int64
	for _, c := range pos.OpenShards {
		read += c.Read
	}
	if read == 0 {
		t.Fatalf("two thirds into the epoch the open shards %+v have read nothing", pos.OpenShards)
	}
	// Another sharding of the same rows gives another position.
	m2 := writeShardedSplit(t, t.TempDir(), syntheticRows(500, 5), 4)
	if reflect.DeepEqual(pos, PlanStream(m2.ShardsOf(SplitTrain), cfg, 2).Position(b, cfg.Seed)) {
		t.Fatal("other shards gave the same position")
	}
}

// TestSampleSplitIsDeterministicAndShardFree: the validation sample is the
// same rows however the split is sharded, has n rows, and is the whole
// split when n covers it.
func TestSampleSplitIsDeterministicAndShardFree(t *testing.T) {
	rows := syntheticRows(900, 9)
	ids := func(m *Manifest, dir string, n int) []string {
		r, total, err := SampleSplit(context.Background(), dir, m, SplitTrain, n)
		if err != nil {
			t.Fatal(err)
		}
		if total != 900 {
			t.Fatalf("total %d, want 900", total)
		}
		out := append([]string{}, r.RowIDs...)
		sort.Strings(out)
		return out
	}
	d1, d2 := t.TempDir(), t.TempDir()
	m1, m2 := writeShardedSplit(t, d1, rows, 1), writeShardedSplit(t, d2, rows, 6)
	a, b := ids(m1, d1, 100), ids(m2, d2, 100)
	if len(a) != 100 || !reflect.DeepEqual(a, b) {
		t.Fatalf("samples differ between shardings (%d and %d rows)", len(a), len(b))
	}
	if all := ids(m2, d2, 900); len(all) != 900 {
		t.Fatalf("n = total gave %d rows", len(all))
	}
}

// TestMaxResidentRows: the test-only cap refuses to load a split larger
// than it, while a stream of the same split reads every window under it.
func TestMaxResidentRows(t *testing.T) {
	dir := t.TempDir()
	m := writeShardedSplit(t, dir, syntheticRows(1000, 2), 3)
	defer func(v int64) { MaxResidentRows = v }(MaxResidentRows)
	MaxResidentRows = 200
	if _, err := LoadSplit(context.Background(), dir, m, SplitTrain); err == nil || !strings.Contains(err.Error(), "over the 200 rows") {
		t.Fatalf("LoadSplit under a 200-row cap: %v", err)
	}
	s, err := NewStream(dir, m, SplitTrain, StreamConfig{BatchSize: 16, WindowRows: 64, BlockRows: 32, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	for _, b := range epochBatches(t, s, 0) {
		n += len(b)
	}
	if n != 1000 {
		t.Fatalf("streamed %d rows of 1000", n)
	}
	if _, err := NewStream(dir, m, SplitTrain, StreamConfig{BatchSize: 16, WindowRows: 512, BlockRows: 32}); err == nil {
		t.Fatal("a 512-row window was accepted under a 200-row cap")
	}
}

// TestStreamOpensEachShardOncePerEpoch: a shard stays open until its
// group's last block is read, so an epoch opens every shard exactly once
// (a gs:// shard is copied once), though windows skip shards of their group.
func TestStreamOpensEachShardOncePerEpoch(t *testing.T) {
	dir := t.TempDir()
	m := writeShardedSplit(t, dir, syntheticRows(3000, 4), 8)
	s, err := NewStream(dir, m, SplitTrain, StreamConfig{BatchSize: 8, WindowRows: 32, BlockRows: 8, OpenShards: 4, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	epochBatches(t, s, 0)
	if s.opens != 8 {
		t.Fatalf("an epoch over 8 shards opened shards %d times", s.opens)
	}
	if len(s.open) > 4 {
		t.Fatalf("%d shards open at the end of the epoch, at most 4 should be", len(s.open))
	}
}
