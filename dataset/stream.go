package dataset

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand"
	"os"
	"slices"

	"github.com/beamtune/beamtune/storage"
	"github.com/parquet-go/parquet-go"
)

// Streaming a split: the rows of an epoch are read a window at a time, so
// memory holds one window (a few thousand rows) whatever the corpus size.
//
// An epoch's order, all of it a function of (seed, epoch) and the shards'
// row counts, so a resumed run recomputes it without reading anything:
//  1. the split's shards are put in a seeded order and taken OpenShards at
//     a time (a group);
//  2. each shard of a group is cut into blocks of BlockRows consecutive
//     rows, and the group's blocks are shuffled together: a window draws
//     from every open shard, and since a shard is sorted by length, from
//     every part of the length range;
//  3. consecutive blocks make windows of at least WindowRows rows (a
//     window never splits a block); a window's rows are shuffled, sorted by
//     length (ties stay shuffled), cut into batches of similar length, and
//     the batches are shuffled, as PlanBatches does in memory.

// StreamConfig says how a split is streamed.
type StreamConfig struct {
	BatchSize  int
	WindowRows int   // rows mixed by the shuffle buffer (batch size × shuffle buffer batches)
	BlockRows  int   // consecutive rows read from one shard at a time (0: DefaultBlockRows)
	OpenShards int   // shards whose blocks are mixed (0: DefaultOpenShards)
	Seed       int64 // the run's seed
}

// Streaming defaults: a block is a few Parquet pages of one shard, and four
// open shards mix four parts of the corpus in every window.
const (
	DefaultBlockRows  = 256
	DefaultOpenShards = 4
)

// MaxResidentRows, when positive, is the most rows the dataset package may
// hold in memory at once: LoadSplit refuses a larger split and a stream a
// larger window. Tests set it to prove that a run stays within a bound; it
// is not a user setting.
var MaxResidentRows int64

func (c StreamConfig) withDefaults() StreamConfig {
	if c.BlockRows <= 0 {
		c.BlockRows = DefaultBlockRows
	}
	if c.OpenShards <= 0 {
		c.OpenShards = DefaultOpenShards
	}
	if c.WindowRows < c.BatchSize {
		c.WindowRows = c.BatchSize
	}
	return c
}

// Block is up to BlockRows consecutive rows of one shard.
type Block struct {
	Shard int   // index in the split's shard list
	Start int64 // first row in the shard
	Rows  int64
}

// StreamWindow is a run of consecutive blocks of an epoch's order.
type StreamWindow struct {
	First, End int   // blocks [First, End) of the epoch's order
	Rows       int64 // rows in those blocks
	Batches    int   // batches the window makes
	FirstBatch int   // index of its first batch in the epoch
}

// StreamPlan is one epoch of a streamed split: block order and windows.
type StreamPlan struct {
	Epoch      int
	ShardOrder []int // shard indices in the order the epoch opens them
	Blocks     []Block
	Windows    []StreamWindow
	Batches    int // batches in the epoch
	openShards int
	blockRows  int
	shardRows  []int64
	lastBlock  map[int]int // each shard's last block in Blocks
}

// PlanStream is the epoch's order for shards (a split's, in manifest order).
func PlanStream(shards []ShardInfo, cfg StreamConfig, epoch int) *StreamPlan {
	cfg = cfg.withDefaults()
	rng := rand.New(rand.NewSource(cfg.Seed*1_000_003 + int64(epoch)))
	p := &StreamPlan{Epoch: epoch, ShardOrder: rng.Perm(len(shards)), openShards: cfg.OpenShards, blockRows: cfg.BlockRows}
	for _, s := range shards {
		p.shardRows = append(p.shardRows, s.Rows)
	}
	for g := 0; g < len(p.ShardOrder); g += cfg.OpenShards {
		var group []Block
		for _, s := range p.ShardOrder[g:min(g+cfg.OpenShards, len(p.ShardOrder))] {
			for start := int64(0); start < shards[s].Rows; start += int64(cfg.BlockRows) {
				group = append(group, Block{Shard: s, Start: start, Rows: min(int64(cfg.BlockRows), shards[s].Rows-start)})
			}
		}
		rng.Shuffle(len(group), func(i, j int) { group[i], group[j] = group[j], group[i] })
		p.Blocks = append(p.Blocks, group...)
	}
	p.lastBlock = map[int]int{}
	for i, b := range p.Blocks {
		p.lastBlock[b.Shard] = i
	}
	w := StreamWindow{}
	for i, b := range p.Blocks {
		w.Rows += b.Rows
		if w.Rows >= int64(cfg.WindowRows) || i == len(p.Blocks)-1 {
			w.End = i + 1
			w.Batches = int((w.Rows + int64(cfg.BatchSize) - 1) / int64(cfg.BatchSize))
			w.FirstBatch = p.Batches
			p.Batches += w.Batches
			p.Windows = append(p.Windows, w)
			w = StreamWindow{First: i + 1}
		}
	}
	return p
}

// WindowOf is the index of the window holding the epoch's batch b.
func (p *StreamPlan) WindowOf(b int) int {
	i, found := slices.BinarySearchFunc(p.Windows, b, func(w StreamWindow, b int) int {
		switch {
		case b < w.FirstBatch:
			return 1
		case b >= w.FirstBatch+w.Batches:
			return -1
		}
		return 0
	})
	if !found {
		return len(p.Windows)
	}
	return i
}

// StreamPosition is where a stream stands, as a checkpoint records it: the
// epoch's shard order, the window in progress, and how far each shard of
// the open group had been read when that window began. Resuming recomputes
// all of it from (seed, epoch) and checks it against this record, so a
// dataset whose shards changed under a checkpoint is refused, not mixed.
type StreamPosition struct {
	Epoch      int           `json:"epoch"`
	ShardOrder []int         `json:"shard_order"`
	Window     int           `json:"window"`      // window in progress
	Batch      int           `json:"batch"`       // next batch inside that window
	WindowSeed int64         `json:"window_seed"` // seeds the window's row and batch shuffles
	OpenShards []ShardCursor `json:"open_shards"` // the window's group, with rows read before the window
	FirstBlock int           `json:"first_block"` // the window's first block in the epoch's order
	BlockRows  int           `json:"block_rows"`  // the block size the order was made with
	ShardRows  []int64       `json:"shard_rows"`  // rows of each shard, in manifest order
}

// ShardCursor is one open shard and the rows of it read so far.
type ShardCursor struct {
	Shard int   `json:"shard"`
	Read  int64 `json:"read"`
}

// Position is the record of the epoch's batch b (the next to run).
func (p *StreamPlan) Position(b int, seed int64) StreamPosition {
	wi := p.WindowOf(b)
	pos := StreamPosition{Epoch: p.Epoch, ShardOrder: p.ShardOrder, Window: wi, ShardRows: p.shardRows}
	if wi >= len(p.Windows) {
		return pos
	}
	w := p.Windows[wi]
	pos.Batch, pos.WindowSeed, pos.FirstBlock, pos.BlockRows = b-w.FirstBatch, windowSeed(seed, p.Epoch, wi), w.First, p.blockRows
	// The group of the window's first block, and each of its shards' rows
	// read by the blocks before the window.
	g := slices.Index(p.ShardOrder, p.Blocks[w.First].Shard) / p.openShards * p.openShards
	read := map[int]int64{}
	for _, blk := range p.Blocks[:w.First] {
		read[blk.Shard] += blk.Rows
	}
	for _, s := range p.ShardOrder[g:min(g+p.openShards, len(p.ShardOrder))] {
		pos.OpenShards = append(pos.OpenShards, ShardCursor{Shard: s, Read: read[s]})
	}
	return pos
}

func windowSeed(seed int64, epoch, window int) int64 {
	return (seed*1_000_003+int64(epoch))*1_000_033 + int64(window)
}

// Stream reads the windows of a split's epochs from its shards.
type Stream struct {
	data   string
	shards []ShardInfo
	cfg    StreamConfig
	open   map[int]*shardFile
	opens  int // shard opens so far (each gs:// open is a copy)
}

// NewStream streams split of the prepared dataset at data.
func NewStream(data string, m *Manifest, split string, cfg StreamConfig) (*Stream, error) {
	cfg = cfg.withDefaults()
	if cfg.BatchSize <= 0 {
		return nil, fmt.Errorf("stream: batch size must be positive")
	}
	// A window is at least WindowRows rows and overshoots by less than a block.
	if resident := int64(cfg.WindowRows + cfg.BlockRows - 1); MaxResidentRows > 0 && resident > MaxResidentRows {
		return nil, fmt.Errorf("stream: a window of up to %d rows is over the %d rows this process may hold", resident, MaxResidentRows)
	}
	return &Stream{data: data, shards: m.ShardsOf(split), cfg: cfg, open: map[int]*shardFile{}}, nil
}

// Plan is the stream's order for epoch.
func (s *Stream) Plan(epoch int) *StreamPlan { return PlanStream(s.shards, s.cfg, epoch) }

// Rows is the number of rows in the split.
func (s *Stream) Rows() int64 {
	var n int64
	for _, sh := range s.shards {
		n += sh.Rows
	}
	return n
}

// Window reads window wi of plan and returns its rows and its batches (row
// indices into them, in the order they are to run).
func (s *Stream) Window(ctx context.Context, p *StreamPlan, wi int) (*Rows, [][]int, error) {
	w := p.Windows[wi]
	// A shard stays open until its group is done: the group's blocks are
	// shuffled together, so a window may skip a shard that a later window
	// of the group reads again (reopening a gs:// shard would copy it again).
	for i, f := range s.open {
		if last, ok := p.lastBlock[i]; !ok || last < w.First {
			f.close()
			delete(s.open, i)
		}
	}
	rows := &Rows{}
	for _, b := range p.Blocks[w.First:w.End] {
		f, err := s.file(ctx, b.Shard)
		if err != nil {
			return nil, nil, err
		}
		got, err := f.read(b.Start, b.Rows)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: rows %d-%d: %w", s.shards[b.Shard].Path, b.Start, b.Start+b.Rows, err)
		}
		rows.Append(got)
	}
	rng := rand.New(rand.NewSource(windowSeed(s.cfg.Seed, p.Epoch, wi)))
	order := rng.Perm(rows.Len())
	sortByLength(order, rows.Length)
	var batches [][]int
	for lo := 0; lo < len(order); lo += s.cfg.BatchSize {
		batches = append(batches, order[lo:min(lo+s.cfg.BatchSize, len(order))])
	}
	rng.Shuffle(len(batches), func(i, j int) { batches[i], batches[j] = batches[j], batches[i] })
	if len(batches) != w.Batches {
		return nil, nil, fmt.Errorf("stream: window %d has %d batches, its plan %d: the shards hold other rows than the manifest says", wi, len(batches), w.Batches)
	}
	return rows, batches, nil
}

// Each calls fn with the split's rows, a block at a time, in manifest order.
func (s *Stream) Each(ctx context.Context, fn func([]ShardRow) error) error {
	defer s.Close()
	for i, sh := range s.shards {
		f, err := s.file(ctx, i)
		if err != nil {
			return err
		}
		for start := int64(0); start < sh.Rows; start += int64(s.cfg.BlockRows) {
			got, err := f.read(start, min(int64(s.cfg.BlockRows), sh.Rows-start))
			if err != nil {
				return fmt.Errorf("%s: rows from %d: %w", sh.Path, start, err)
			}
			if err := fn(got); err != nil {
				return err
			}
		}
		f.close()
		delete(s.open, i)
	}
	return nil
}

// Close closes every open shard (the local copy of a gs:// shard goes with it).
func (s *Stream) Close() {
	for i, f := range s.open {
		f.close()
		delete(s.open, i)
	}
}

func (s *Stream) file(ctx context.Context, i int) (*shardFile, error) {
	if f := s.open[i]; f != nil {
		return f, nil
	}
	f, err := openShard(ctx, s.data, s.shards[i])
	if err != nil {
		return nil, err
	}
	s.open[i] = f
	s.opens++
	return f, nil
}

// shardFile is an open shard: its Parquet reader over a local file (a
// gs:// shard is copied to an unlinked temporary file first, so reading it
// costs disk, not memory).
type shardFile struct {
	file   *os.File
	reader *parquet.GenericReader[ShardRow]
	rows   int64
}

func openShard(ctx context.Context, data string, s ShardInfo) (*shardFile, error) {
	p := storage.Join(data, s.Path)
	sf := &shardFile{}
	var err error
	if storage.IsGCS(p) {
		if sf.file, err = copyToTemp(ctx, p); err != nil {
			return nil, err
		}
	} else if sf.file, err = os.Open(p); err != nil {
		return nil, err
	}
	st, err := sf.file.Stat()
	if err != nil {
		sf.close()
		return nil, err
	}
	pf, err := parquet.OpenFile(sf.file, st.Size())
	if err != nil {
		sf.close()
		return nil, fmt.Errorf("%s: %w", s.Path, err)
	}
	if pf.NumRows() != s.Rows {
		sf.close()
		return nil, fmt.Errorf("%s holds %d rows, the manifest says %d", s.Path, pf.NumRows(), s.Rows)
	}
	sf.reader, sf.rows = parquet.NewGenericReader[ShardRow](pf), pf.NumRows()
	return sf, nil
}

func copyToTemp(ctx context.Context, p string) (*os.File, error) {
	r, err := storage.Open(ctx, p)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	f, err := os.CreateTemp("", "beamtune-shard-*.parquet")
	if err != nil {
		return nil, err
	}
	// Unlinked at once: the open handle keeps the copy readable, and a
	// killed process leaves nothing behind.
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close()
		return nil, err
	}
	if _, err := io.Copy(f, r); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return f, nil
}

// read returns rows [start, start+n) of the shard, in fresh slices (the
// reader may reuse the buffers it is given).
func (f *shardFile) read(start, n int64) ([]ShardRow, error) {
	if start+n > f.rows {
		return nil, fmt.Errorf("rows %d-%d past the shard's %d", start, start+n, f.rows)
	}
	if err := f.reader.SeekToRow(start); err != nil {
		return nil, err
	}
	out := make([]ShardRow, n)
	got := 0
	for got < len(out) {
		k, err := f.reader.Read(out[got:])
		got += k
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if k == 0 {
			break
		}
	}
	if got != len(out) {
		return nil, fmt.Errorf("read %d of %d rows", got, len(out))
	}
	return out, nil
}

func (f *shardFile) close() {
	if f.reader != nil {
		_ = f.reader.Close()
	}
	if f.file != nil {
		_ = f.file.Close()
	}
}

// SampleSplit holds at most n rows of split in memory: all of them when the
// split has no more (in manifest order, as LoadSplit), else the n whose ids
// hash lowest, a deterministic sample that does not depend on how the rows
// are sharded, kept in manifest order. total is the split's row count.
func SampleSplit(ctx context.Context, data string, m *Manifest, split string, n int) (rows *Rows, total int64, err error) {
	for _, s := range m.ShardsOf(split) {
		total += s.Rows
	}
	if n <= 0 || total <= int64(n) {
		rows, err = LoadSplit(ctx, data, m, split)
		return rows, total, err
	}
	s, err := NewStream(data, m, split, StreamConfig{BatchSize: 1})
	if err != nil {
		return nil, 0, err
	}
	h := &sampleHeap{}
	var seen int64
	err = s.Each(ctx, func(block []ShardRow) error {
		for _, r := range block {
			c := sampled{hash: idHash(r.ID), order: seen, row: r}
			seen++
			if h.Len() < n {
				heap.Push(h, c)
			} else if c.less(h.items[0]) {
				h.items[0] = c
				heap.Fix(h, 0)
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	slices.SortFunc(h.items, func(a, b sampled) int { return cmp.Compare(a.order, b.order) })
	rows = &Rows{}
	for _, c := range h.items {
		rows.Append([]ShardRow{c.row})
	}
	return rows, total, nil
}

// EachRows calls fn with split's rows, up to chunk at a time, in manifest
// order: a whole split scored in bounded memory.
func EachRows(ctx context.Context, data string, m *Manifest, split string, chunk int, fn func(*Rows) error) error {
	s, err := NewStream(data, m, split, StreamConfig{BatchSize: 1, BlockRows: chunk})
	if err != nil {
		return err
	}
	return s.Each(ctx, func(block []ShardRow) error {
		r := &Rows{}
		r.Append(block)
		return fn(r)
	})
}

// idHash is FNV-1a of a row id: the sample's key.
func idHash(id string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	return h.Sum64()
}

type sampled struct {
	hash  uint64
	order int64 // position in manifest order: breaks ties, orders the sample
	row   ShardRow
}

func (a sampled) less(b sampled) bool {
	return a.hash < b.hash || a.hash == b.hash && a.order < b.order
}

// sampleHeap is a max-heap: its top is the sampled row to evict first.
type sampleHeap struct{ items []sampled }

func (h *sampleHeap) Len() int           { return len(h.items) }
func (h *sampleHeap) Less(i, j int) bool { return h.items[j].less(h.items[i]) }
func (h *sampleHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *sampleHeap) Push(x any)         { h.items = append(h.items, x.(sampled)) }
func (h *sampleHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}
