package transforms

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model/tokenizer"
	"github.com/beamtune/beamtune/storage"
)

func init() {
	register.DoFn5x1[context.Context, InputFile, func(dataset.Record), func(dataset.BadRecord), func(dataset.FileFingerprint), error](&ReadRecordsFn{})
	register.DoFn6x1[context.Context, InputFile, func(SpillRef), func(dataset.BadRecord), func(dataset.FileFingerprint), func(string), error](&SpillRecordsFn{})
	register.Emitter1[SpillRef]()
	register.Emitter1[string]()
	register.Emitter1[dataset.Record]()
	register.Emitter1[dataset.BadRecord]()
	register.Emitter1[dataset.FileFingerprint]()
	beam.RegisterType(reflect.TypeOf((*dataset.FileFingerprint)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*InputFile)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*dataset.Record)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*dataset.BadRecord)(nil)).Elem())
}

// InputFile is one corpus file and how to parse it.
type InputFile struct {
	Path  string
	Parse dataset.ParseConfig
}

// ReadRecordsFn parses whole files into records; bad records go to the second
// output and each file's content hash to the third. gzip is detected from the
// content, not the name; the hash is of the bytes as stored.
type ReadRecordsFn struct{}

// ProcessElement reads one file.
func (fn *ReadRecordsFn) ProcessElement(ctx context.Context, in InputFile, emit func(dataset.Record), emitBad func(dataset.BadRecord), emitFile func(dataset.FileFingerprint)) error {
	fp, err := readInput(ctx, in, func(r *dataset.Record) error { emit(*r); return nil }, emitBad)
	if err != nil {
		return err
	}
	emitFile(fp)
	return nil
}

// readInput parses one file, handing each good record to use and each bad
// one to emitBad, and returns the file's fingerprint.
func readInput(ctx context.Context, in InputFile, use func(*dataset.Record) error, emitBad func(dataset.BadRecord)) (dataset.FileFingerprint, error) {
	raw, err := storage.Open(ctx, in.Path)
	if err != nil {
		return dataset.FileFingerprint{}, fmt.Errorf("read %s: %w", in.Path, err)
	}
	defer raw.Close()
	h := sha256.New()
	counted := &countingReader{r: io.TeeReader(raw, h)}
	r, err := maybeGunzip(counted)
	if err != nil {
		return dataset.FileFingerprint{}, fmt.Errorf("read %s: %w", in.Path, err)
	}
	p, err := dataset.NewParser(r, in.Path, in.Parse)
	if err != nil {
		return dataset.FileFingerprint{}, err
	}
	var good, rejected int64
	for {
		rec, bad, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return dataset.FileFingerprint{}, fmt.Errorf("read %s: %w", in.Path, err)
		}
		if rec != nil {
			if err := use(rec); err != nil {
				return dataset.FileFingerprint{}, err
			}
			good++
		} else {
			emitBad(*bad)
			rejected++
		}
	}
	// Counted once per file: a metric update per record cost more than
	// parsing the record.
	readRecords.Inc(ctx, good)
	readBad.Inc(ctx, rejected)
	// Drain what the parser did not need (gzip trailers) so the hash covers the file.
	if _, err := io.Copy(io.Discard, counted); err != nil {
		return dataset.FileFingerprint{}, fmt.Errorf("read %s: %w", in.Path, err)
	}
	return dataset.FileFingerprint{Path: in.Path, Split: in.Parse.Split, Bytes: counted.n, SHA256: hex.EncodeToString(h.Sum(nil)), Records: good, Rejected: rejected}, nil
}

// SpillRecordsFn is prepare's per-record pass over one input file: parse,
// validate, assign the split, hash the dedupe key, tokenize, and append the
// row to a chunk of its final shard (see ShardPlan and WriteShardFn). It
// emits the chunks' names, the bad records, the file's fingerprint and the
// labels it saw (each once per file, for an inferred vocabulary), so what
// leaves it is small whatever the file's size. Rows wait in memory only
// until BufferBytes of them are pending; then the largest chunk is written.
//
// One file is one element: the work on a file is not spread over workers,
// but nothing is held for it but the buffer. A corpus of many files is read
// in parallel (the inputs are reshuffled first).
type SpillRecordsFn struct {
	TokenizerPath string // tokenizer.json, local or gs://
	MaxLength     int
	KeepText      bool
	Split         KeyByTextFn // the split rules
	Plan          ShardPlan
	TempDir       string // where chunks go; the caller removes it after the run
	BufferBytes   int64  // pending chunk bytes before the largest is written; 0 = 32 MiB

	tok *tokenizer.Tokenizer
}

// Setup loads the tokenizer.
func (fn *SpillRecordsFn) Setup(ctx context.Context) error {
	var err error
	fn.tok, err = loadTokenizer(ctx, fn.TokenizerPath, fn.MaxLength)
	return err
}

// ProcessElement reads, tokenizes and spills one file.
func (fn *SpillRecordsFn) ProcessElement(ctx context.Context, in InputFile, emitRef func(SpillRef), emitBad func(dataset.BadRecord),
	emitFile func(dataset.FileFingerprint), emitLabel func(string)) error {
	release, err := acquireHeavy(ctx) // see heavy: at most one file per CPU in memory
	if err != nil {
		return err
	}
	defer release()
	limit := fn.BufferBytes
	if limit <= 0 {
		limit = 32 << 20
	}
	sp := &spiller{ctx: ctx, dir: fn.TempDir, source: in.Path, limit: limit, emit: emitRef, bufs: map[spillSlot]*spillBuf{}}
	labels := map[string]bool{}
	pair := in.Parse.Fields.Pair != ""
	var tokenized, truncated int64
	fp, err := readInput(ctx, in, func(r *dataset.Record) error {
		h := HashKey(fn.Split.Assign(r))
		var enc tokenizer.Encoding
		if pair {
			enc = fn.tok.EncodePair(r.Text, r.Pair)
		} else {
			enc = fn.tok.Encode(r.Text)
		}
		if enc.Truncated {
			truncated++
		}
		tokenized++
		switch {
		case r.Label == "" || in.Parse.Task == dataset.Regression: // scores make no vocabulary
		case in.Parse.Task == dataset.MultiLabel:
			for _, l := range dataset.SplitLabelSet(r.Label) {
				labels[l] = true
			}
		default:
			labels[r.Label] = true
		}
		shard := fn.Plan.ShardOf(r.Split, h)
		rows := sp.slot(SpillRows, r.Split, shard)
		n := len(rows.data)
		rows.data = appendRow(rows.data, h, r, &enc, pair, fn.KeepText)
		rows.rows++
		keys := sp.slot(SpillKeys, r.Split, shard)
		k := len(keys.data)
		keys.data = appendKey(keys.data, h, r.Line, r.Label)
		keys.rows++
		return sp.grew(int64(len(rows.data) - n + len(keys.data) - k))
	}, emitBad)
	if err != nil {
		return err
	}
	if err := sp.flushAll(); err != nil {
		return err
	}
	tokExamples.Inc(ctx, tokenized)
	tokTruncated.Inc(ctx, truncated)
	emitFile(fp)
	seen := make([]string, 0, len(labels))
	for l := range labels {
		seen = append(seen, l)
	}
	sort.Strings(seen)
	for _, l := range seen {
		emitLabel(l)
	}
	return nil
}

// spiller keeps one pending chunk per (kind, split, shard) of one file.
type spiller struct {
	ctx     context.Context
	dir     string
	source  string
	limit   int64
	pending int64
	emit    func(SpillRef)
	bufs    map[spillSlot]*spillBuf
}

type spillSlot struct {
	kind, split string
	shard       int
}

type spillBuf struct {
	data []byte
	rows int64
}

func (s *spiller) slot(kind, split string, shard int) *spillBuf {
	k := spillSlot{kind, split, shard}
	b := s.bufs[k]
	if b == nil {
		b = &spillBuf{}
		s.bufs[k] = b
	}
	if b.data == nil {
		b.data = append(make([]byte, 0, 64<<10), spillMagic...)
	}
	return b
}

// grew accounts for n more pending bytes and writes the largest chunks while
// more than the limit is pending.
func (s *spiller) grew(n int64) error {
	s.pending += n
	for s.pending > s.limit {
		var big spillSlot
		var bigN int
		for k, b := range s.bufs {
			if b.rows > 0 && len(b.data) > bigN {
				big, bigN = k, len(b.data)
			}
		}
		if bigN == 0 {
			return nil
		}
		if err := s.flush(big); err != nil {
			return err
		}
	}
	return nil
}

// flush writes one slot's chunk under a fresh random name (a retried bundle
// never overwrites a chunk an earlier attempt published) and emits its ref.
func (s *spiller) flush(k spillSlot) error {
	b := s.bufs[k]
	if b == nil || b.rows == 0 {
		return nil
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	path := storage.Join(s.dir, fmt.Sprintf("%s-%05d-%s-%s.spill", k.split, k.shard, k.kind, hex.EncodeToString(id[:])))
	if err := writeChunk(s.ctx, path, b.data); err != nil {
		return fmt.Errorf("spill %s: %w", path, err)
	}
	s.emit(SpillRef{Kind: k.kind, Split: k.split, Shard: k.shard, Path: path, Source: s.source, Rows: b.rows})
	s.pending -= int64(len(b.data) - len(spillMagic))
	b.data, b.rows = nil, 0
	return nil
}

// writeChunk writes a chunk. On GCS an object write is already all or
// nothing. Locally it skips storage's fsync and rename: a chunk is scratch
// that no one reads unless its ref was emitted after a complete write, and a
// crashed run is redone from the inputs, so durability buys nothing, while an
// fsync per chunk cost about half a second each on a busy VM disk.
func writeChunk(ctx context.Context, path string, data []byte) error {
	if storage.IsGCS(path) {
		return storage.WriteFile(ctx, path, data)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func (s *spiller) flushAll() error {
	keys := make([]spillSlot, 0, len(s.bufs))
	for k := range s.bufs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.split != b.split {
			return a.split < b.split
		}
		if a.shard != b.shard {
			return a.shard < b.shard
		}
		return a.kind < b.kind
	})
	for _, k := range keys {
		if err := s.flush(k); err != nil {
			return err
		}
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// maybeGunzip decompresses r when it starts with the gzip magic bytes.
func maybeGunzip(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(2)
	if err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		zr.Multistream(true)
		return zr, nil
	}
	return br, nil
}

var (
	readRecords = beam.NewCounter("beamtune.prepare", "records_read")
	readBad     = beam.NewCounter("beamtune.prepare", "records_rejected")
)
