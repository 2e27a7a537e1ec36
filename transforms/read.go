package transforms

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/storage"
)

func init() {
	register.DoFn5x1[context.Context, InputFile, func(Record), func(BadRecord), func(FileFingerprint), error](&ReadRecordsFn{})
	register.Emitter1[Record]()
	register.Emitter1[BadRecord]()
	register.Emitter1[FileFingerprint]()
	beam.RegisterType(reflect.TypeOf((*FileFingerprint)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*InputFile)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*Record)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*BadRecord)(nil)).Elem())
}

// InputFile is one corpus file and how to parse it.
type InputFile struct {
	Path  string
	Parse ParseConfig
}

// ReadRecordsFn parses whole files into records; bad records go to the second
// output and each file's content hash to the third. gzip is detected from the
// content, not the name; the hash is of the bytes as stored.
type ReadRecordsFn struct{}

// ProcessElement reads one file.
func (fn *ReadRecordsFn) ProcessElement(ctx context.Context, in InputFile, emit func(Record), emitBad func(BadRecord), emitFile func(FileFingerprint)) error {
	raw, err := storage.Open(ctx, in.Path)
	if err != nil {
		return fmt.Errorf("read %s: %w", in.Path, err)
	}
	defer raw.Close()
	h := sha256.New()
	counted := &countingReader{r: io.TeeReader(raw, h)}
	r, err := maybeGunzip(counted)
	if err != nil {
		return fmt.Errorf("read %s: %w", in.Path, err)
	}
	p, err := NewParser(r, in.Path, in.Parse)
	if err != nil {
		return err
	}
	var good, rejected int64
	for {
		rec, bad, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", in.Path, err)
		}
		if rec != nil {
			emit(*rec)
			good++
			readRecords.Inc(ctx, 1)
		} else {
			emitBad(*bad)
			rejected++
			readBad.Inc(ctx, 1)
		}
	}
	// Drain what the parser did not need (gzip trailers) so the hash covers the file.
	if _, err := io.Copy(io.Discard, counted); err != nil {
		return fmt.Errorf("read %s: %w", in.Path, err)
	}
	emitFile(FileFingerprint{Path: in.Path, Split: in.Parse.Split, Bytes: counted.n, SHA256: hex.EncodeToString(h.Sum(nil)), Records: good, Rejected: rejected})
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

// FileFingerprint is the content hash of one input file, for the manifest.
type FileFingerprint struct {
	Path     string `json:"path"`
	Split    string `json:"split,omitempty"` // the split the input named
	Bytes    int64  `json:"bytes"`
	SHA256   string `json:"sha256"`
	Records  int64  `json:"records"`  // good records read
	Rejected int64  `json:"rejected"` // records sent to the dead letter while reading
}
