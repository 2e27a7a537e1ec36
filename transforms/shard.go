package transforms

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model/tokenizer"
	"github.com/beamtune/beamtune/storage"
)

func init() {
	register.Combiner3[Stats, Stats, Stats](&StatsFn{})
	register.DoFn2x0[SpillRef, func(string, SpillRef)](&RouteSpillFn{})
	register.DoFn7x1[context.Context, string, func(*SpillRef) bool, func(*[]string) bool, func(dataset.ShardInfo), func(Stats), func(DedupeEvent), error](&WriteShardFn{})
	register.Emitter2[string, SpillRef]()
	register.Emitter1[dataset.ShardInfo]()
	register.Emitter1[Stats]()
	register.Iter1[SpillRef]()
	register.Iter1[Stats]()
	beam.RegisterType(reflect.TypeOf((*dataset.ShardInfo)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*Stats)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*SplitStats)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*SpillRef)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*ShardPlan)(nil)).Elem())
}

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

// Add counts one example into its split's summary.
func (a *Stats) Add(e Example) {
	if a.Splits == nil {
		a.Splits = map[string]*SplitStats{}
	}
	s := a.Splits[e.Split]
	if s == nil {
		s = &SplitStats{Labels: map[int32]int64{}}
		a.Splits[e.Split] = s
	}
	s.Rows++
	switch {
	case e.Scored: // a score is no class
	case e.Labels != nil:
		for _, l := range e.Labels {
			s.Labels[l]++
		}
	default:
		s.Labels[e.Label]++
	}
	b := int(e.Length) / dataset.LengthBucket
	for len(s.Lengths) <= b {
		s.Lengths = append(s.Lengths, 0)
	}
	s.Lengths[b]++
	s.Tokens += int64(e.Length)
	if e.Truncated {
		s.Truncated++
	}
	s.Bytes += exampleBytes(e)
}

// StatsFn merges the per-shard summaries the shard writers emit into one,
// with mergeable accumulators so Beam can pre-combine on every worker.
type StatsFn struct{}

func (StatsFn) CreateAccumulator() Stats           { return Stats{Splits: map[string]*SplitStats{}} }
func (f StatsFn) AddInput(a Stats, in Stats) Stats { return f.MergeAccumulators(a, in) }

func (StatsFn) MergeAccumulators(a, b Stats) Stats {
	if a.Splits == nil {
		a.Splits = map[string]*SplitStats{}
	}
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
		if s.Labels == nil {
			s.Labels = map[int32]int64{}
		}
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

var shardsWritten = beam.NewCounter("beamtune.prepare", "shards_written")

// Shards without a shuffle of the rows.
//
// On Beam's in-process runners (prism, direct) every element that crosses a
// GroupByKey or a side input is held in memory until the stage after it
// runs, so a pipeline that groups whole rows by text (dedupe) or by shard
// needs memory in proportion to the corpus. Prepare therefore moves rows the
// way Beam's own file sinks do: the stage that tokenizes a file appends each
// row to a chunk file of its final shard (SpillRecordsFn), and only the
// chunks' names (SpillRef, a few hundred per GB) go through Beam. One writer
// per shard (WriteShardFn) reads its chunks back, dedupes, sorts and writes
// the Parquet file, so no step holds more than a shard's rows, and a worker
// process holds at most one shard (or one file's buffers) per CPU (heavy).
//
// Dedupe needs every copy of a text in one place. A row's shard is therefore
// picked from the hash of its normalized text (KeyHash), as a range of the
// 64-bit ring: copies in one split share a shard, and copies in other splits
// sit in the same range of those splits' rings. Next to each rows chunk the
// reader writes a keys chunk (hash, line, label: ~25 bytes a row); a shard's
// writer reads the keys chunks of the other splits' overlapping shards and
// so sees every copy of its texts. Shard contents depend only on the data and
// the plan, never on how a runner cut bundles, so every runner writes the
// same bytes.

// ShardPlan fixes before any record is read how many shards each split gets,
// from the inputs' sizes (see docs/manifest.md), so the reader can route each
// row to its final shard as soon as it is tokenized.
type ShardPlan struct {
	Shards map[string]int `json:"shards"` // split -> shard count (at least 1)
}

// PlanShards gives each split ceil(estimate / target) shards, at least one.
func PlanShards(estimates map[string]int64, target int64) ShardPlan {
	p := ShardPlan{Shards: map[string]int{}}
	for _, split := range []string{dataset.SplitTrain, dataset.SplitValidation, dataset.SplitTest} {
		n := 1
		if target > 0 && estimates[split] > target {
			n = int((estimates[split] + target - 1) / target)
		}
		p.Shards[split] = n
	}
	return p
}

// Count is the number of shards of split.
func (p ShardPlan) Count(split string) int { return max(1, p.Shards[split]) }

// ShardOf is the shard of split that holds the text with hash h.
func (p ShardPlan) ShardOf(split string, h KeyHash) int { return shardOf(h.position(), p.Count(split)) }

// shardOf maps a ring position to one of n equal ranges: floor(pos·n / 2⁶⁴).
func shardOf(pos uint64, n int) int {
	hi, _ := bits.Mul64(pos, uint64(n))
	return int(hi)
}

// rangeStart is the first ring position of shard i of n: ceil(i·2⁶⁴ / n).
func rangeStart(i, n int) uint64 {
	if i == 0 {
		return 0
	}
	q, r := bits.Div64(uint64(i), 0, uint64(n))
	if r != 0 {
		q++
	}
	return q
}

// rangeLast is the last ring position of shard i of n.
func rangeLast(i, n int) uint64 {
	if i+1 >= n {
		return math.MaxUint64
	}
	return rangeStart(i+1, n) - 1
}

// overlapping lists the shards of n whose ranges meet shard j of nj.
func overlapping(j, nj, n int) (first, last int) {
	return shardOf(rangeStart(j, nj), n), shardOf(rangeLast(j, nj), n)
}

// Spill chunk kinds.
const (
	SpillRows = "rows" // tokenized rows of one shard
	SpillKeys = "keys" // the same rows' dedupe facts only
)

// SpillRef names one chunk file. Every record in it comes from Source and
// belongs to shard Shard of Split.
type SpillRef struct {
	Kind   string
	Split  string
	Shard  int
	Path   string
	Source string
	Rows   int64
}

// spillMagic starts every chunk file; a reader refuses anything else.
const spillMagic = "beamtune-spill/1\n"

// appendRow encodes a rows-chunk record: the keys record, then the id, the
// tokens and (with --keep_text) the text. Integers are uvarints, strings
// and lists are length-prefixed.
func appendRow(b []byte, h KeyHash, r *dataset.Record, enc *tokenizer.Encoding, pair, keepText bool) []byte {
	b = appendKey(b, h, r.Line, r.Label)
	b = appendString(b, r.ID)
	b = binary.AppendUvarint(b, uint64(enc.Length))
	if enc.Truncated {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = appendInts(b, enc.IDs)
	if pair {
		b = appendInts(b, enc.TypeIDs)
	} else {
		b = appendInts(b, nil)
	}
	if keepText {
		return appendString(b, r.Text)
	}
	return appendString(b, "")
}

// appendKey encodes a keys-chunk record: what dedupe needs of a row.
func appendKey(b []byte, h KeyHash, line int64, label string) []byte {
	b = append(b, h[:]...)
	b = binary.AppendUvarint(b, uint64(line))
	return appendString(b, label)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendInts(b []byte, xs []int32) []byte {
	b = binary.AppendUvarint(b, uint64(len(xs)))
	for _, x := range xs {
		b = binary.AppendUvarint(b, uint64(uint32(x)))
	}
	return b
}

// readChunk reads a whole chunk (at most the reader's buffer, 32 MiB by
// default) and checks its header.
func readChunk(ctx context.Context, path string) ([]byte, error) {
	var data []byte
	var err error
	if storage.IsGCS(path) {
		data, err = storage.ReadFile(ctx, path)
	} else {
		// os.ReadFile allocates the file's size; storage.ReadFile's buffer
		// doubles on its last read, and a writer holds every chunk of its
		// shard at once.
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("spill chunk: %w", err)
	}
	if !bytes.HasPrefix(data, []byte(spillMagic)) {
		return nil, fmt.Errorf("spill chunk %s: not a chunk of this beamtune", path)
	}
	if int64(len(data)) > math.MaxUint32 {
		return nil, fmt.Errorf("spill chunk %s: %d bytes, over the 4 GiB a row offset can address", path, len(data))
	}
	return data, nil
}

// cursor decodes chunk records in place; the first malformed or cut-short
// field sets err and every later read returns zero values.
type cursor struct {
	b   []byte
	i   int
	err error
}

var errChunk = errors.New("chunk corrupt or cut short")

func (c *cursor) uvarint() uint64 {
	if c.err != nil {
		return 0
	}
	v, n := binary.Uvarint(c.b[c.i:])
	if n <= 0 {
		c.err = errChunk
		return 0
	}
	c.i += n
	return v
}

func (c *cursor) take(n uint64) []byte {
	if c.err != nil {
		return nil
	}
	if n > uint64(len(c.b)-c.i) {
		c.err = errChunk
		return nil
	}
	x := c.b[c.i : c.i+int(n)]
	c.i += int(n)
	return x
}

func (c *cursor) ints() []int32 {
	n := c.uvarint()
	if n == 0 || c.err != nil {
		return nil
	}
	if n > uint64(len(c.b)-c.i) { // each takes at least a byte
		c.err = errChunk
		return nil
	}
	xs := make([]int32, n)
	for i := range xs {
		xs[i] = int32(uint32(c.uvarint()))
	}
	return xs
}

func (c *cursor) skipInts() {
	n := c.uvarint()
	for ; n > 0 && c.err == nil; n-- {
		c.uvarint()
	}
}

// key reads a keys record (also the head of a rows record).
func (c *cursor) key() (h KeyHash, line int64, label []byte) {
	copy(h[:], c.take(16))
	line = int64(c.uvarint())
	label = c.take(c.uvarint())
	return h, line, label
}

// rowEntry is a shard row as the writer holds it: a fixed 48 bytes pointing
// into the chunk bytes the row was read in, with what sorting and dedupe
// look at. A decoded row (slices, strings) would take several times that.
type rowEntry struct {
	hash   KeyHash
	line   int64
	off    uint32 // the record's first byte in its chunk
	idOff  uint32
	idLen  uint32
	chunk  int32
	src    int32 // index into the shard's sorted list of sources, so comparing it compares the names
	length int32
}

// shardRows is one shard's rows: chunk bytes and an entry per row.
type shardRows struct {
	chunks  [][]byte
	sources []string
	entries []rowEntry
	labels  map[string]string // interned labels of dedupe copies
}

// readShardRows reads and indexes every rows chunk of a shard.
func readShardRows(ctx context.Context, refs []SpillRef) (*shardRows, error) {
	r := &shardRows{labels: map[string]string{}}
	var total int64
	srcIndex := map[string]int32{}
	for _, ref := range refs {
		total += ref.Rows
		srcIndex[ref.Source] = 0
	}
	for src := range srcIndex {
		r.sources = append(r.sources, src)
	}
	sort.Strings(r.sources)
	for i, src := range r.sources {
		srcIndex[src] = int32(i)
	}
	r.entries = make([]rowEntry, 0, total)
	for _, ref := range refs {
		data, err := readChunk(ctx, ref.Path)
		if err != nil {
			return nil, err
		}
		chunk := int32(len(r.chunks))
		r.chunks = append(r.chunks, data)
		c := cursor{b: data, i: len(spillMagic)}
		for c.i < len(c.b) && c.err == nil {
			e := rowEntry{off: uint32(c.i), chunk: chunk, src: srcIndex[ref.Source]}
			e.hash, e.line, _ = c.key()
			n := c.uvarint()
			e.idOff, e.idLen = uint32(c.i), uint32(n)
			c.take(n)
			e.length = int32(c.uvarint())
			c.take(1)
			c.skipInts()
			c.skipInts()
			c.take(c.uvarint())
			if c.err == nil {
				r.entries = append(r.entries, e)
			}
		}
		if c.err != nil {
			return nil, fmt.Errorf("spill chunk %s: %w at byte %d", ref.Path, c.err, c.i)
		}
	}
	return r, nil
}

func (r *shardRows) id(e *rowEntry) []byte {
	return r.chunks[e.chunk][e.idOff : e.idOff+e.idLen]
}

func (r *shardRows) label(e *rowEntry) string {
	c := cursor{b: r.chunks[e.chunk], i: int(e.off)}
	_, _, b := c.key()
	l, ok := r.labels[string(b)]
	if !ok {
		l = string(b)
		r.labels[l] = l
	}
	return l
}

// row decodes an entry's record into a shard row; label is the label text.
func (r *shardRows) row(e *rowEntry) (row dataset.ShardRow, label []byte, err error) {
	c := cursor{b: r.chunks[e.chunk], i: int(e.off)}
	_, _, label = c.key()
	row.ID = string(c.take(c.uvarint()))
	row.Length = int32(c.uvarint())
	t := c.take(1)
	row.Truncated = len(t) == 1 && t[0] == 1
	row.InputIDs = c.ints()
	row.TokenTypeIDs = c.ints()
	row.Text = string(c.take(c.uvarint()))
	return row, label, c.err
}

// readSpillKeys reads the other splits' keys chunks and keeps only the
// records of texts the shard holds (entries, sorted by hash), sorted by hash.
func readSpillKeys(ctx context.Context, refs []SpillRef, entries []rowEntry) ([]DedupeCopy, []KeyHash, error) {
	type found struct {
		h KeyHash
		c DedupeCopy
	}
	var out []found
	labels := map[string]string{}
	for _, ref := range refs {
		data, err := readChunk(ctx, ref.Path)
		if err != nil {
			return nil, nil, err
		}
		c := cursor{b: data, i: len(spillMagic)}
		for c.i < len(c.b) && c.err == nil {
			h, line, label := c.key()
			if c.err != nil {
				break
			}
			i := sort.Search(len(entries), func(i int) bool { return bytes.Compare(entries[i].hash[:], h[:]) >= 0 })
			if i == len(entries) || entries[i].hash != h {
				continue
			}
			l, ok := labels[string(label)]
			if !ok {
				l = string(label)
				labels[l] = l
			}
			out = append(out, found{h, DedupeCopy{Split: ref.Split, Label: l, Source: ref.Source, Line: line}})
		}
		if c.err != nil {
			return nil, nil, fmt.Errorf("spill chunk %s: %w at byte %d", ref.Path, c.err, c.i)
		}
	}
	sort.Slice(out, func(a, b int) bool { return bytes.Compare(out[a].h[:], out[b].h[:]) < 0 })
	copies := make([]DedupeCopy, len(out))
	hashes := make([]KeyHash, len(out))
	for i, f := range out {
		copies[i], hashes[i] = f.c, f.h
	}
	return copies, hashes, nil
}

// shardKey names shard i of split for the GroupByKey of chunk names.
func shardKey(split string, i int) string { return fmt.Sprintf("%s/%05d", split, i) }

func parseShardKey(k string) (split string, i int, err error) {
	split, num, ok := strings.Cut(k, "/")
	i, err = strconv.Atoi(num)
	if !ok || err != nil {
		return "", 0, fmt.Errorf("bad shard key %q", k)
	}
	return split, i, nil
}

// RouteSpillFn sends each chunk to the shard writers that need it: a rows
// chunk to its own shard's writer, a keys chunk to the writers of the other
// splits' shards whose ranges overlap its shard's.
type RouteSpillFn struct {
	Plan ShardPlan
}

func (fn *RouteSpillFn) ProcessElement(ref SpillRef, emit func(string, SpillRef)) {
	if ref.Kind == SpillRows {
		emit(shardKey(ref.Split, ref.Shard), ref)
		return
	}
	nj := fn.Plan.Count(ref.Split)
	for _, split := range []string{dataset.SplitTrain, dataset.SplitValidation, dataset.SplitTest} {
		if split == ref.Split {
			continue
		}
		n := fn.Plan.Count(split)
		first, last := overlapping(ref.Shard, nj, n)
		for i := first; i <= last; i++ {
			emit(shardKey(split, i), ref)
		}
	}
}

// WriteShardFn writes one shard from its chunks: it reads the shard's rows,
// applies the dedupe rules (ResolveCopies) with the other splits' copies of
// the same texts taken from their keys chunks, sorts the rows it keeps by
// length (so a trainer reading consecutive rows gets batches of similar
// length and pads little) and writes Dir/<split>/part-NNNNN-of-NNNNN.parquet
// atomically. It emits the shard's manifest entry, its split summary and the
// dedupe events charged to its split, so each event is counted once however
// many writers saw the text. A shard whose rows were all removed is not
// written. Memory: the shard's rows plus the other splits' copies of them.
type WriteShardFn struct {
	Root string // the manifest's folder
	Dir  string // data folder, relative to Root
	Plan ShardPlan
	Task string // the dataset's kind: how a row's label text becomes its target
}

func (fn *WriteShardFn) ProcessElement(ctx context.Context, key string, refs func(*SpillRef) bool, vocab func(*[]string) bool,
	emit func(dataset.ShardInfo), emitStats func(Stats), emitEvent func(DedupeEvent)) error {
	split, shard, err := parseShardKey(key)
	if err != nil {
		return err
	}
	release, err := acquireHeavy(ctx)
	if err != nil {
		return err
	}
	defer release()
	var rowRefs, keyRefs []SpillRef
	var ref SpillRef
	for refs(&ref) {
		if ref.Kind == SpillRows {
			rowRefs = append(rowRefs, ref)
		} else {
			keyRefs = append(keyRefs, ref)
		}
	}
	if len(rowRefs) == 0 {
		return nil // only other splits' keys fall in this range
	}
	rows, err := readShardRows(ctx, rowRefs)
	if err != nil {
		return err
	}
	es := rows.entries
	sort.Slice(es, func(a, b int) bool {
		x, y := &es[a], &es[b]
		if c := bytes.Compare(x.hash[:], y.hash[:]); c != 0 {
			return c < 0
		}
		if x.src != y.src {
			return x.src < y.src
		}
		return x.line < y.line
	})
	others, otherHashes, err := readSpillKeys(ctx, keyRefs, es)
	if err != nil {
		return err
	}

	// Walk the rows and the other splits' copies, both sorted by hash, one
	// text at a time, keeping the survivors at the front of es (at most one
	// per text, so the write index never passes the read index).
	kept := 0
	var copies []DedupeCopy
	// averaged holds the mean score a kept regression row takes instead of
	// its own, by the row's place in the chunks (es is re-sorted below).
	averaged := map[[2]int64]string{}
	o := 0
	for a := 0; a < len(es); {
		h := es[a].hash
		b := a + 1
		for b < len(es) && es[b].hash == h {
			b++
		}
		for o < len(others) && bytes.Compare(otherHashes[o][:], h[:]) < 0 {
			o++
		}
		oe := o
		for oe < len(others) && otherHashes[oe] == h {
			oe++
		}
		if b-a == 1 && oe == o {
			es[kept] = es[a]
			kept++
			a = b
			continue
		}
		copies = copies[:0]
		for i := a; i < b; i++ {
			copies = append(copies, DedupeCopy{Split: split, Label: rows.label(&es[i]), Source: rows.sources[es[i].src], Line: es[i].line})
		}
		copies = append(copies, others[o:oe]...)
		k, label, events := ResolveCopies(copies, fn.Task)
		if k >= 0 && k < b-a {
			es[kept] = es[a+k]
			if label != "" {
				averaged[entryPlace(&es[kept])] = label
			}
			kept++
		}
		for _, e := range events {
			if e.Split == split { // the writers of the other splits charge theirs
				countDedupe(ctx, e)
				emitEvent(e)
			}
		}
		a, o = b, oe
	}
	es = es[:kept]
	if len(es) == 0 {
		return nil
	}
	// Rows of equal length keep a total order (id, then file and line), so
	// the file's bytes do not depend on the order the chunks were read in.
	sort.Slice(es, func(a, b int) bool {
		x, y := &es[a], &es[b]
		if x.length != y.length {
			return x.length < y.length
		}
		if c := bytes.Compare(rows.id(x), rows.id(y)); c != 0 {
			return c < 0
		}
		if x.src != y.src {
			return x.src < y.src
		}
		return x.line < y.line
	})

	// The vocabulary is a singleton, absent when nothing read had a label
	// (an inferred vocabulary of unlabelled text).
	labelIndex := map[string]int32{}
	var labels []string
	for vocab(&labels) {
		for i, l := range labels {
			labelIndex[l] = int32(i)
		}
	}
	n := fn.Plan.Count(split)
	rel := fmt.Sprintf("%s/%s/part-%05d-of-%05d.parquet", fn.Dir, split, shard, n)
	w, err := storage.Create(ctx, storage.Join(fn.Root, rel))
	if err != nil {
		return fmt.Errorf("shard %s: %w", rel, err)
	}
	sum := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(w, sum)}
	var st Stats
	// Rows are decoded a batch at a time: the Parquet writer copies them
	// into its column buffers, so only the entries and chunk bytes stay.
	pw := dataset.NewShardWriter(cw)
	batch := make([]dataset.ShardRow, 0, 1024)
	fail := func(err error) error {
		w.Abort()
		return fmt.Errorf("shard %s: %w", rel, err)
	}
	for i := range es {
		row, label, err := rows.row(&es[i])
		if err != nil {
			return fail(err)
		}
		if mean, ok := averaged[entryPlace(&es[i])]; ok {
			label = []byte(mean)
		}
		row.Label = -1
		if len(label) > 0 {
			if err := setTarget(&row, fn.Task, string(label), labelIndex); err != nil {
				return fail(fmt.Errorf("%s:%d: %w", rows.sources[es[i].src], es[i].line, err))
			}
		}
		st.Add(Example{Split: split, ID: row.ID, Label: row.Label, Labels: row.Labels, Scored: fn.Task == dataset.Regression && len(label) > 0, InputIDs: row.InputIDs, TokenTypeIDs: row.TokenTypeIDs,
			Length: row.Length, Truncated: row.Truncated, Text: row.Text})
		if batch = append(batch, row); len(batch) == cap(batch) || i == len(es)-1 {
			if _, err := pw.Write(batch); err != nil {
				return fail(err)
			}
			batch = batch[:0]
		}
	}
	if err := pw.Close(); err != nil {
		return fail(err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("shard %s: %w", rel, err)
	}
	info := dataset.ShardInfo{Split: split, Path: rel, Rows: int64(len(es)), Bytes: cw.n, SHA256: hex.EncodeToString(sum.Sum(nil)),
		MinLength: es[0].length, MaxLength: es[len(es)-1].length}
	shardsWritten.Inc(ctx, 1)
	emit(info)
	emitStats(st)
	return nil
}

// setTarget turns a row's canonical label text into its training target:
// the class index, the class indices of a multi-label row, or the score.
// Labels outside a given vocabulary are rejected while reading, and an
// inferred vocabulary holds every label read, so a miss here is a bug.
func setTarget(row *dataset.ShardRow, task, label string, index map[string]int32) error {
	switch task {
	case dataset.Regression:
		v, err := dataset.ParseScore(label)
		row.Score = v
		return err
	case dataset.MultiLabel:
		for _, l := range dataset.SplitLabelSet(label) {
			idx, ok := index[l]
			if !ok {
				return fmt.Errorf("label %q is not in the vocabulary", l)
			}
			row.Labels = append(row.Labels, idx)
		}
		slices.Sort(row.Labels)
		return nil
	}
	idx, ok := index[label]
	if !ok {
		return fmt.Errorf("label %q is not in the vocabulary", label)
	}
	row.Label = idx
	return nil
}

// heavy bounds how many shard writers and file readers run at once in one
// worker process. Prism splits a bundle that makes no visible progress
// (one shard takes seconds) and runs the halves in parallel, up to 8 at a
// time, so without it a worker held up to 8 shards in memory at once on a
// 2-core machine (2.7 GB peak at 1 GB of input, against 0.6 GB on the
// direct runner, which runs them one after another). The work is CPU-bound:
// more at once than there are CPUs buys no speed, only memory.
var heavy = make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))

// acquireHeavy waits for a slot in heavy; release gives it back.
func acquireHeavy(ctx context.Context) (release func(), err error) {
	select {
	case heavy <- struct{}{}:
		return func() { <-heavy }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// entryPlace identifies a row by where its record sits in the shard's chunks.
func entryPlace(e *rowEntry) [2]int64 { return [2]int64{int64(e.chunk), int64(e.off)} }
