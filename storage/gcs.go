package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	gcs "cloud.google.com/go/storage"
	gax "github.com/googleapis/gax-go/v2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// removeAllWorkers bounds the concurrent deletes of RemoveAll.
const removeAllWorkers = 16

// retryOptions returns the retry options of one GCS call. always selects
// RetryAlways (see the package documentation for which calls use it);
// otherwise the library's default policy retries idempotent calls only.
func retryOptions(o GCSOptions, always bool) []gcs.RetryOption {
	opts := []gcs.RetryOption{
		gcs.WithBackoff(gax.Backoff{Initial: o.InitialBackoff, Max: o.MaxBackoff, Multiplier: 2}),
		gcs.WithMaxAttempts(o.MaxAttempts),
	}
	if always {
		opts = append(opts, gcs.WithPolicy(gcs.RetryAlways))
	}
	return opts
}

// object returns a fresh handle with the operation's retry settings.
// Retryer mutates the handle's retry config in place, so it is applied
// exactly once to a handle no one else holds.
func object(c *gcs.Client, op *opState, bucket, name string, always bool) *gcs.ObjectHandle {
	return c.Bucket(bucket).Object(name).Retryer(retryOptions(op.opts, always)...)
}

func bucketHandle(c *gcs.Client, op *opState, bucket string) *gcs.BucketHandle {
	return c.Bucket(bucket).Retryer(retryOptions(op.opts, false)...)
}

// definitive reports whether a failed upload must not be repeated: GCS
// answered with a status that repetition cannot change (4xx other than 408
// and 429: bad request, no permission, missing bucket, precondition), the
// retry budget is spent, or the caller gave up. Anything else (transport
// errors, 5xx, an answer cut short or garbled) leaves the outcome unknown,
// and repeating a complete upload is safe (see put).
func definitive(ctx context.Context, err error) bool {
	var be *budgetError
	if ctx.Err() != nil || errors.As(err, &be) {
		return true
	}
	if c := httpCode(err); c >= 400 && c < 500 && c != http.StatusRequestTimeout && c != http.StatusTooManyRequests {
		return true
	}
	return isGCSNotExist(err) || isGCSPrecondition(err)
}

// pause sleeps for the next backoff step, or until ctx ends.
func pause(ctx context.Context, bo *gax.Backoff) error {
	t := time.NewTimer(bo.Pause())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func newBackoff(o GCSOptions) *gax.Backoff {
	return &gax.Backoff{Initial: o.InitialBackoff, Max: o.MaxBackoff, Multiplier: 2}
}

// notExistError marks a GCS "not found" so that errors.Is(err,
// fs.ErrNotExist) holds, keeping the library's message.
type notExistError struct{ err error }

func (e notExistError) Error() string        { return e.err.Error() }
func (e notExistError) Unwrap() error        { return e.err }
func (e notExistError) Is(target error) bool { return target == fs.ErrNotExist }

// preconditionError marks a failed GCS precondition as ErrPrecondition.
type preconditionError struct{ err error }

func (e preconditionError) Error() string        { return ErrPrecondition.Error() + ": " + e.err.Error() }
func (e preconditionError) Unwrap() error        { return e.err }
func (e preconditionError) Is(target error) bool { return target == ErrPrecondition }

func httpCode(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

func isGCSNotExist(err error) bool {
	return errors.Is(err, gcs.ErrObjectNotExist) || errors.Is(err, gcs.ErrBucketNotExist) ||
		httpCode(err) == http.StatusNotFound || status.Code(err) == codes.NotFound
}

func isGCSPrecondition(err error) bool {
	return httpCode(err) == http.StatusPreconditionFailed || status.Code(err) == codes.FailedPrecondition
}

// classify marks not-found and precondition errors.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case isGCSNotExist(err):
		return notExistError{err}
	case isGCSPrecondition(err):
		return preconditionError{err}
	}
	return err
}

// gcsErr explains (see explain) and classifies err, and names the path.
func gcsErr(ctx context.Context, op, p string, err error) error {
	if err == nil {
		return nil
	}
	return pathErr(op, p, classify(explain(ctx, err)))
}

func (s *Store) clientFor(ctx context.Context, op string, loc location) (*gcs.Client, error) {
	c, err := s.gcsClient(ctx)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: loc.path, Err: err}
	}
	return c, nil
}

// ---------------------------------------------------------------------------
// Reading

// errIntegrity marks content that does not match the size or CRC32C GCS
// reports for the object.
var errIntegrity = errors.New("storage: content does not match the object's size or checksum")

// errTruncated is recorded in the retry budget when a response body ended
// early; it never reaches callers.
var errTruncated = errors.New("storage: response body ended before the object did")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// gcsReader reads one generation of an object and checks what it delivers
// against the object's size and CRC32C.
//
// The library already resumes a body that breaks off (the transport sees
// fewer bytes than Content-Length) and checks the CRC32C of a whole-object
// read. What it does not survive is a body that ends cleanly but early (a
// proxy that drops Content-Length, a chunked response cut short): it then
// reports a CRC mismatch (or, for a ranged read, a plain EOF) with the
// bytes so far. gcsReader tells that truncation apart from corruption using
// the object's size (from the response, or fetched when the response did
// not say) and resumes from where the data stopped, pinned to the same
// generation. A running CRC32C over every byte delivered catches
// corruption, which a stream cannot take back: it fails the read.
type gcsReader struct {
	ctx  context.Context // carries the operation's retry budget
	op   *opState
	h    *gcs.ObjectHandle
	path string

	r            *gcs.Reader
	gen          int64
	size         int64 // -1: not known yet
	wantCRC      uint32
	haveCRC      bool
	decompressed bool // served gunzipped: sizes and checksums are of the stored bytes

	seen  int64  // bytes delivered
	sum   uint32 // CRC32C of them
	stuck int    // consecutive resumes that delivered nothing
	err   error  // sticky
}

func (s *Store) gcsOpenReader(ctx context.Context, op string, loc location) (*gcsReader, error) {
	ctx, o := s.withOp(ctx)
	c, err := s.clientFor(ctx, op, loc)
	if err != nil {
		return nil, err
	}
	g, err := openObject(ctx, c, o, loc, 0)
	if err != nil {
		return nil, gcsErr(ctx, op, loc.path, err)
	}
	return g, nil
}

// openObject opens generation gen of the object (0: the live one).
func openObject(ctx context.Context, c *gcs.Client, o *opState, loc location, gen int64) (*gcsReader, error) {
	h := object(c, o, loc.bucket, loc.object, false)
	if gen != 0 {
		h = h.Generation(gen)
	}
	r, err := h.NewReader(ctx)
	if err != nil {
		return nil, err
	}
	g := &gcsReader{ctx: ctx, op: o, h: h, path: loc.path, r: r, gen: r.Attrs.Generation, size: r.Attrs.Size}
	if r.Attrs.Decompressed {
		g.decompressed, g.size = true, -1
	} else if r.Attrs.CRC32C != 0 || r.Attrs.Size == 0 {
		// The library reports 0 when the response carried no checksum;
		// a real CRC32C of 0 on non-empty content just goes unchecked.
		g.wantCRC, g.haveCRC = r.Attrs.CRC32C, true
	}
	return g, nil
}

func (g *gcsReader) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	for {
		n, err := g.r.Read(p)
		if n > 0 {
			g.seen += int64(n)
			g.sum = crc32.Update(g.sum, castagnoli, p[:n])
			g.stuck = 0
		}
		if err == nil {
			return n, nil
		}
		if g.decompressed || (err != io.EOF && !isBadCRC(err)) {
			if err != io.EOF {
				g.err = gcsErr(g.ctx, "read", g.path, err)
				err = g.err
			}
			return n, err
		}
		short, verr := g.check()
		if verr != nil {
			g.err = verr
			return n, verr
		}
		if !short {
			return n, io.EOF
		}
		if rerr := g.resume(); rerr != nil {
			g.err = rerr
			if n > 0 {
				return n, nil
			}
			return 0, rerr
		}
		if n > 0 {
			return n, nil
		}
	}
}

// isBadCRC recognizes the library's whole-object checksum failure, which
// has no sentinel.
func isBadCRC(err error) bool {
	return err != nil && strings.Contains(err.Error(), "bad CRC on read")
}

// check decides, at the end of a body, whether the object is complete
// (false, nil), was cut short (true, nil) or is corrupt (an error).
func (g *gcsReader) check() (short bool, err error) {
	if g.size < 0 && g.haveCRC && g.sum == g.wantCRC {
		return false, nil // complete, although the response gave no size
	}
	if g.size < 0 {
		// Learn the size of this very generation.
		a, err := g.h.Generation(g.gen).Attrs(g.ctx)
		if err != nil {
			return false, gcsErr(g.ctx, "read", g.path, err)
		}
		g.size = a.Size
		if !g.haveCRC {
			g.wantCRC, g.haveCRC = a.CRC32C, a.CRC32C != 0 || a.Size == 0
		}
	}
	switch {
	case g.seen < g.size:
		return true, nil
	case g.seen > g.size:
		return false, &fs.PathError{Op: "read", Path: g.path, Err: fmt.Errorf("%w: got %d bytes, the object has %d", errIntegrity, g.seen, g.size)}
	case g.haveCRC && g.sum != g.wantCRC:
		return false, &fs.PathError{Op: "read", Path: g.path, Err: fmt.Errorf("%w: CRC32C %08x, the object's is %08x", errIntegrity, g.sum, g.wantCRC)}
	}
	return false, nil
}

// resume reopens the same generation at the first byte not yet delivered.
// Each resume counts as a failed attempt against the operation's budget;
// data delivered afterwards resets it, so only resumes that bring nothing
// add up to giving up.
func (g *gcsReader) resume() error {
	g.stuck++
	if g.stuck > g.op.opts.MaxAttempts {
		return &fs.PathError{Op: "read", Path: g.path, Err: fmt.Errorf("%w: stopped at byte %d of %d after %d attempts that delivered nothing", errTruncated, g.seen, g.size, g.stuck-1)}
	}
	g.op.fail(errTruncated)
	g.r.Close() // its error is the truncation already handled
	r, err := g.h.Generation(g.gen).NewRangeReader(g.ctx, g.seen, -1)
	if err != nil {
		return gcsErr(g.ctx, "read", g.path, err)
	}
	g.r = r
	return nil
}

func (g *gcsReader) Close() error {
	err := g.r.Close()
	if g.err != nil || err == nil {
		return nil // a read error was already returned to the caller
	}
	return gcsErr(g.ctx, "read", g.path, err)
}

func (s *Store) gcsOpen(ctx context.Context, loc location) (io.ReadCloser, int64, error) {
	g, err := s.gcsOpenReader(ctx, "open", loc)
	if err != nil {
		return nil, -1, err
	}
	return g, g.size, nil
}

func (s *Store) gcsReadWithGeneration(ctx context.Context, loc location) ([]byte, int64, error) {
	g, err := s.gcsOpenReader(ctx, "read", loc)
	if err != nil {
		return nil, 0, err
	}
	defer g.Close()
	data, err := readAll(g, loc.path, g.size, -1)
	if err != nil {
		return nil, 0, err
	}
	return data, g.gen, nil
}

// ---------------------------------------------------------------------------
// Writing

// writeIDKey is the custom metadata key under which a compare-and-swap
// write stores a random token, to recognize its own object afterwards.
const writeIDKey = "beamtune-write-id"

// uploadChunk picks the chunk size for an upload of size bytes (-1:
// unknown). A size below the store's chunk size is sent in one request
// (the library then uses a single multipart upload); the chunk is never 0,
// which would turn the library's retries off.
func uploadChunk(size, chunk int) int {
	if size < 0 || size >= chunk {
		return chunk
	}
	n := size + 1
	if r := n % googleapi.MinUploadChunkSize; r != 0 {
		n += googleapi.MinUploadChunkSize - r
	}
	return n
}

// verifyUpload compares what GCS stored with what was sent. GCS itself
// rejects an upload whose CRC32C does not match the one sent with it, but a
// resumable session fed the wrong bytes (a chunk repeated or skipped) is
// only caught here. The mismatching generation is deleted so that no
// corrupt object stays under the name; the error says so.
func (s *Store) verifyUpload(ctx context.Context, c *gcs.Client, loc location, a *gcs.ObjectAttrs, n int64, sum uint32) error {
	if a == nil || (a.Size == n && (a.CRC32C == 0 || a.CRC32C == sum)) {
		return nil
	}
	dctx, o := s.withOp(ctx)
	derr := object(c, o, loc.bucket, loc.object, false).If(gcs.Conditions{GenerationMatch: a.Generation}).Delete(dctx)
	what := "deleted it"
	if derr != nil && !isGCSNotExist(derr) {
		what = "deleting it failed: " + derr.Error()
	}
	return &fs.PathError{Op: "write", Path: loc.path, Err: fmt.Errorf("%w: GCS stored %d bytes (CRC32C %08x), %d (%08x) were sent; %s",
		errIntegrity, a.Size, a.CRC32C, n, sum, what)}
}

// put uploads data as the object, retrying the whole upload while that is
// safe. Without a precondition it always is: every attempt sends the
// complete content, and GCS publishes an upload only when it is complete,
// so a repeat at worst publishes the same bytes again; and if it finally
// fails after a failed request, the object may hold our bytes anyway (see
// holds). With a precondition (cond, for compare-and-swap), an attempt
// whose response was lost may have been applied, and the retry then fails
// its precondition; when the operation saw any failed request, put reads
// the object back and reports success if it is ours (token in its
// metadata, content equal: see landed).
func (s *Store) put(ctx context.Context, c *gcs.Client, loc location, data []byte, cond *gcs.Conditions, token string) (*gcs.ObjectAttrs, error) {
	o := opFrom(ctx)
	sum := crc32.Checksum(data, castagnoli)
	bo := newBackoff(o.opts)
	for attempt := 1; ; attempt++ {
		h := object(c, o, loc.bucket, loc.object, true)
		if cond != nil {
			h = h.If(*cond)
		}
		uctx, cancel := context.WithCancel(ctx)
		w := h.NewWriter(uctx)
		w.ChunkSize = uploadChunk(len(data), o.opts.ChunkSize)
		w.ChunkRetryDeadline = o.opts.RetryTime
		// GCS refuses to publish an upload whose content does not match.
		w.CRC32C, w.SendCRC32C = sum, true
		if token != "" {
			w.Metadata = map[string]string{writeIDKey: token}
		}
		_, err := w.Write(data)
		if err != nil {
			cancel()
			w.Close()
		} else {
			err = w.Close()
			cancel()
		}
		if err == nil {
			a := w.Attrs()
			if verr := s.verifyUpload(ctx, c, loc, a, int64(len(data)), sum); verr != nil {
				return nil, verr
			}
			return a, nil
		}
		if cond == nil && o.failed() > 0 && ctx.Err() == nil {
			if a, ok := s.holds(ctx, c, loc, int64(len(data)), sum); ok {
				return a, nil // stored, its answer lost
			}
		}
		if cond != nil && isGCSPrecondition(err) && o.failed() > 0 {
			a, ours, rerr := s.landed(ctx, c, loc, data, token)
			if rerr != nil {
				return nil, &fs.PathError{Op: "write", Path: loc.path, Err: fmt.Errorf("outcome unknown: the upload hit a precondition failure after a lost response, and reading the object back failed: %w", rerr)}
			}
			if ours {
				return a, nil
			}
			return nil, gcsErr(ctx, "write", loc.path, err)
		}
		// The library has retried the requests already; this repeats the
		// whole upload (a new session) for what it gave up on, which
		// includes answers it could not parse. A definitive refusal by GCS
		// is final. The failed requests are in the budget, which admit
		// consults.
		if attempt >= o.opts.MaxAttempts || definitive(ctx, err) || o.admit() != nil || pause(ctx, bo) != nil {
			return nil, gcsErr(ctx, "write", loc.path, err)
		}
		// The attempt may have been applied: recorded as a failure, it
		// makes a precondition failure of the next one ambiguous.
		o.fail(err)
	}
}

// landed reports whether the live object is the one a compare-and-swap
// write with this token and content published (its response lost). It
// runs with a fresh retry budget: the write's may be spent.
func (s *Store) landed(ctx context.Context, c *gcs.Client, loc location, data []byte, token string) (*gcs.ObjectAttrs, bool, error) {
	ctx, o := s.withOp(ctx)
	a, err := object(c, o, loc.bucket, loc.object, false).Attrs(ctx)
	if isGCSNotExist(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if a.Metadata[writeIDKey] != token || a.Size != int64(len(data)) {
		return nil, false, nil
	}
	g, err := openObject(ctx, c, o, loc, a.Generation)
	if isGCSNotExist(err) {
		return nil, false, nil // replaced since
	}
	if err != nil {
		return nil, false, err
	}
	defer g.Close()
	got, err := readAll(g, loc.path, a.Size, -1)
	if err != nil {
		return nil, false, err
	}
	return a, bytes.Equal(got, data), nil
}

// gcsWriter is the Writer of Create on GCS. Content that fits one chunk is
// kept in memory and uploaded by Close with put, so the whole upload can be
// retried; once it outgrows the chunk it streams through a resumable
// upload, whose chunks the library retries (it keeps the current chunk).
// Either way the object appears only when Close succeeds; Abort and failed
// writes cancel the upload.
type gcsWriter struct {
	s    *Store
	ctx  context.Context // the caller's, with the operation's budget
	op   *opState
	c    *gcs.Client
	loc  location
	path string

	mu     sync.Mutex
	buf    []byte      // content so far, while not streaming
	w      *gcs.Writer // the streaming upload, once started
	cancel context.CancelFunc
	n      int64  // bytes written
	sum    uint32 // their CRC32C
	err    error
	done   bool
}

func (s *Store) gcsCreate(ctx context.Context, loc location) (*gcsWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, &fs.PathError{Op: "create", Path: loc.path, Err: err}
	}
	ctx, o := s.withOp(ctx)
	c, err := s.clientFor(ctx, "create", loc)
	if err != nil {
		return nil, err
	}
	return &gcsWriter{s: s, ctx: ctx, op: o, c: c, loc: loc, path: loc.path}, nil
}

// startStream opens the resumable upload and hands it what was buffered.
// Uploads retry although unconditional: see the package documentation.
func (w *gcsWriter) startStream() error {
	uctx, cancel := context.WithCancel(w.ctx)
	sw := object(w.c, w.op, w.loc.bucket, w.loc.object, true).NewWriter(uctx)
	sw.ChunkSize = w.op.opts.ChunkSize
	sw.ChunkRetryDeadline = w.op.opts.RetryTime
	w.w, w.cancel = sw, cancel
	if len(w.buf) > 0 {
		if _, err := sw.Write(w.buf); err != nil {
			return err
		}
	}
	w.buf = nil
	return nil
}

func (w *gcsWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return 0, &fs.PathError{Op: "write", Path: w.path, Err: fs.ErrClosed}
	}
	if w.err != nil {
		return 0, w.err
	}
	if err := w.ctx.Err(); err != nil {
		w.err = &fs.PathError{Op: "write", Path: w.path, Err: err}
		return 0, w.err
	}
	if w.w == nil && len(w.buf)+len(b) <= w.op.opts.ChunkSize {
		w.buf = append(w.buf, b...)
	} else {
		if w.w == nil {
			if err := w.startStream(); err != nil {
				w.err = gcsErr(w.ctx, "write", w.path, err)
				return 0, w.err
			}
		}
		n, err := w.w.Write(b)
		w.n += int64(n)
		w.sum = crc32.Update(w.sum, castagnoli, b[:n])
		if err != nil {
			w.err = gcsErr(w.ctx, "write", w.path, err)
			return n, w.err
		}
		return n, nil
	}
	w.n += int64(len(b))
	w.sum = crc32.Update(w.sum, castagnoli, b)
	return len(b), nil
}

// Close publishes the content. After a failed Write, or with the caller's
// context cancelled, it cancels the upload instead and returns the error.
func (w *gcsWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		if w.err != nil {
			return w.err
		}
		return &fs.PathError{Op: "close", Path: w.path, Err: fs.ErrClosed}
	}
	w.done = true
	if w.err == nil {
		if err := w.ctx.Err(); err != nil {
			w.err = &fs.PathError{Op: "close", Path: w.path, Err: err}
		}
	}
	if w.err != nil {
		w.stop()
		return w.err
	}
	if w.w == nil {
		_, err := w.s.put(w.ctx, w.c, w.loc, w.buf, nil, "")
		w.buf = nil
		w.err = err
		return err
	}
	err := w.w.Close()
	w.cancel()
	if err != nil {
		// Even a 404 may be a lost answer: resent to a session that has
		// finished meanwhile, a chunk finds nothing there. (A missing bucket
		// also says 404; holds then finds no object.)
		if w.ctx.Err() == nil && w.op.failed() > 0 {
			if _, ok := w.s.holds(w.ctx, w.c, w.loc, w.n, w.sum); ok {
				return nil
			}
		}
		w.err = gcsErr(w.ctx, "close", w.path, err)
		return w.err
	}
	if err := w.s.verifyUpload(w.ctx, w.c, w.loc, w.w.Attrs(), w.n, w.sum); err != nil {
		w.err = err
	}
	return w.err
}

// holds reports whether the live object has exactly n bytes with CRC32C
// sum. After an unconditional upload failed with a failed request along
// the way (an answer lost, the last chunk resent to a session that had
// finished meanwhile), that is the outcome asked for, whoever wrote it.
// Runs with a fresh budget: the upload's may be spent.
func (s *Store) holds(ctx context.Context, c *gcs.Client, loc location, n int64, sum uint32) (*gcs.ObjectAttrs, bool) {
	ctx, o := s.withOp(ctx)
	a, err := object(c, o, loc.bucket, loc.object, false).Attrs(ctx)
	return a, err == nil && a.Size == n && a.CRC32C == sum
}

// stop cancels a started upload and reaps its goroutine.
func (w *gcsWriter) stop() {
	w.buf = nil
	if w.w != nil {
		w.cancel()
		w.w.Close() // fails on the cancelled context
	}
}

// Abort cancels the upload. No-op after Close.
func (w *gcsWriter) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	w.done = true
	w.err = &fs.PathError{Op: "write", Path: w.path, Err: errors.New("aborted")}
	w.stop()
	return nil
}

func (s *Store) gcsWriteFile(ctx context.Context, loc location, data []byte) error {
	ctx, _ = s.withOp(ctx)
	c, err := s.clientFor(ctx, "write", loc)
	if err != nil {
		return err
	}
	_, err = s.put(ctx, c, loc, data, nil, "")
	return err
}

func (s *Store) gcsWriteIfGeneration(ctx context.Context, loc location, data []byte, gen int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, &fs.PathError{Op: "write", Path: loc.path, Err: err}
	}
	ctx, _ = s.withOp(ctx)
	c, err := s.clientFor(ctx, "write", loc)
	if err != nil {
		return 0, err
	}
	cond := gcs.Conditions{GenerationMatch: gen}
	if gen == 0 {
		cond = gcs.Conditions{DoesNotExist: true}
	}
	var tok [16]byte
	rand.Read(tok[:])
	// The precondition makes each attempt idempotent: RetryAlways is safe.
	a, err := s.put(ctx, c, loc, data, &cond, hex.EncodeToString(tok[:]))
	if err != nil {
		if errors.Is(err, ErrPrecondition) {
			err = &fs.PathError{Op: "write", Path: loc.path, Err: fmt.Errorf("%w: generation is no longer %d", ErrPrecondition, gen)}
		}
		return 0, err
	}
	return a.Generation, nil
}

func (s *Store) gcsCopy(ctx context.Context, src, dst location) error {
	ctx, o := s.withOp(ctx)
	c, err := s.clientFor(ctx, "copy", src)
	if err != nil {
		return err
	}
	// Like uploads, a copy of the same source to the same name is safe to repeat.
	d := object(c, o, dst.bucket, dst.object, true)
	if _, err := d.CopierFrom(c.Bucket(src.bucket).Object(src.object)).Run(ctx); err != nil {
		return fmt.Errorf("storage: copy %s to %s: %w", src.path, dst.path, classify(explain(ctx, err)))
	}
	return nil
}

func (s *Store) gcsStat(ctx context.Context, loc location) (Info, error) {
	ctx, o := s.withOp(ctx)
	c, err := s.clientFor(ctx, "stat", loc)
	if err != nil {
		return Info{}, err
	}
	if loc.object == "" {
		if _, err := bucketHandle(c, o, loc.bucket).Attrs(ctx); err != nil {
			return Info{}, gcsErr(ctx, "stat", loc.path, err)
		}
		return Info{IsDir: true}, nil
	}
	if !strings.HasSuffix(loc.object, "/") {
		attrs, err := object(c, o, loc.bucket, loc.object, false).Attrs(ctx)
		if err == nil {
			return Info{Size: attrs.Size, ModTime: attrs.Updated, Generation: attrs.Generation}, nil
		}
		if !isGCSNotExist(err) {
			return Info{}, gcsErr(ctx, "stat", loc.path, err)
		}
	}
	dir, err := hasObjectsUnder(ctx, c, o, loc.bucket, strings.TrimSuffix(loc.object, "/")+"/")
	if err != nil {
		return Info{}, gcsErr(ctx, "stat", loc.path, err)
	}
	if !dir {
		return Info{}, &fs.PathError{Op: "stat", Path: loc.path, Err: notExistError{gcs.ErrObjectNotExist}}
	}
	return Info{IsDir: true}, nil
}

func hasObjectsUnder(ctx context.Context, c *gcs.Client, o *opState, bucket, prefix string) (bool, error) {
	q := &gcs.Query{Prefix: prefix}
	if err := q.SetAttrSelection([]string{"Name"}); err != nil {
		return false, err
	}
	it := bucketHandle(c, o, bucket).Objects(ctx, q)
	it.PageInfo().MaxSize = 1
	_, err := it.Next()
	if err == iterator.Done {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

func (s *Store) gcsRemove(ctx context.Context, loc location) error {
	ctx, o := s.withOp(ctx)
	c, err := s.clientFor(ctx, "remove", loc)
	if err != nil {
		return err
	}
	attrs, err := object(c, o, loc.bucket, loc.object, false).Attrs(ctx)
	if err != nil {
		return gcsErr(ctx, "remove", loc.path, err)
	}
	return deleteGeneration(ctx, c, o, loc.bucket, loc.object, attrs.Generation, loc.path)
}

// deleteGeneration deletes the live object if its generation is still gen.
// The precondition makes the delete idempotent, so the library retries it;
// "not found" means it is gone (by an earlier attempt whose response was
// lost, or by someone else), which is what was asked.
func deleteGeneration(ctx context.Context, c *gcs.Client, o *opState, bucket, name string, gen int64, p string) error {
	err := object(c, o, bucket, name, false).If(gcs.Conditions{GenerationMatch: gen}).Delete(ctx)
	if err == nil || isGCSNotExist(err) {
		return nil
	}
	if isGCSPrecondition(err) {
		return &fs.PathError{Op: "remove", Path: p, Err: fmt.Errorf("%w: replaced concurrently (generation is no longer %d)", ErrPrecondition, gen)}
	}
	return gcsErr(ctx, "remove", p, err)
}

func (s *Store) gcsRemoveAll(ctx context.Context, loc location) error {
	base := strings.TrimSuffix(loc.object, "/")
	if base == "" {
		return &fs.PathError{Op: "removeall", Path: loc.path, Err: errors.New("refusing to empty a whole bucket (name a prefix: gs://bucket/dir)")}
	}
	ctx, o := s.withOp(ctx)
	c, err := s.clientFor(ctx, "removeall", loc)
	if err != nil {
		return err
	}
	type target struct {
		name string
		gen  int64
	}
	var targets []target
	attrs, err := object(c, o, loc.bucket, base, false).Attrs(ctx)
	switch {
	case err == nil:
		targets = append(targets, target{base, attrs.Generation})
	case isGCSNotExist(err):
		if errors.Is(err, gcs.ErrBucketNotExist) {
			return nil
		}
	default:
		return gcsErr(ctx, "removeall", loc.path, err)
	}
	q := &gcs.Query{Prefix: base + "/"}
	if err := q.SetAttrSelection([]string{"Name", "Generation"}); err != nil {
		return &fs.PathError{Op: "removeall", Path: loc.path, Err: err}
	}
	it := bucketHandle(c, o, loc.bucket).Objects(ctx, q)
	for {
		a, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			if isGCSNotExist(err) {
				return nil
			}
			return gcsErr(ctx, "removeall", loc.path, err)
		}
		targets = append(targets, target{a.Name, a.Generation})
	}

	var (
		mu       sync.Mutex
		firstErr error
		failed   int
		wg       sync.WaitGroup
		next     = make(chan target)
	)
	for i := 0; i < min(removeAllWorkers, len(targets)); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range next {
				uri := gsScheme + loc.bucket + "/" + t.name
				// Each delete has its own budget: the workers' failures
				// are independent.
				dctx, do := s.withOp(ctx)
				if err := deleteGeneration(dctx, c, do, loc.bucket, t.name, t.gen, uri); err != nil {
					mu.Lock()
					failed++
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		next <- t
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return &fs.PathError{Op: "removeall", Path: loc.path, Err: fmt.Errorf("%d of %d deletes failed, first: %w", failed, len(targets), firstErr)}
	}
	if err := ctx.Err(); err != nil {
		return &fs.PathError{Op: "removeall", Path: loc.path, Err: err}
	}
	return nil
}

// gcsGlob lists from the pattern's longest wildcard-free prefix and keeps
// the object names that path.Match the object part of the pattern. Only
// objects match (GCS has no directories): "gs://b/run/*" does not return
// gs://b/run/ckpt for objects under run/ckpt/. When the wildcard part has
// no '/', listing uses the "/" delimiter so it stays at that level instead of
// walking everything below.
func (s *Store) gcsGlob(ctx context.Context, pattern string) ([]string, error) {
	bucketName, objPat, _ := strings.Cut(pattern[len(gsScheme):], "/")
	if strings.Contains(bucketName, "@") {
		_, _, err := ParseGCS(pattern) // its error for credentials in the URI, which it does not echo
		return nil, &fs.PathError{Op: "glob", Path: Redact(pattern), Err: err}
	}
	if err := checkBucketName(bucketName); err != nil {
		return nil, &fs.PathError{Op: "glob", Path: pattern, Err: err}
	}
	if _, err := path.Match(objPat, ""); err != nil {
		return nil, &fs.PathError{Op: "glob", Path: pattern, Err: err}
	}
	loc := location{path: pattern, gs: true, bucket: bucketName, object: objPat}
	ctx, o := s.withOp(ctx)
	c, err := s.clientFor(ctx, "glob", loc)
	if err != nil {
		return nil, err
	}
	i := strings.IndexAny(objPat, `*?[\`)
	if i < 0 { // no wildcard: the object itself, if it exists
		if objPat == "" {
			return nil, nil
		}
		_, err := object(c, o, bucketName, objPat, false).Attrs(ctx)
		if err == nil {
			return []string{pattern}, nil
		}
		if isGCSNotExist(err) {
			return nil, nil
		}
		return nil, gcsErr(ctx, "glob", pattern, err)
	}
	q := &gcs.Query{Prefix: objPat[:i]}
	if !strings.Contains(objPat[i:], "/") {
		q.Delimiter = "/"
	}
	if err := q.SetAttrSelection([]string{"Name"}); err != nil {
		return nil, &fs.PathError{Op: "glob", Path: pattern, Err: err}
	}
	var out []string
	it := bucketHandle(c, o, bucketName).Objects(ctx, q)
	for {
		a, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			if isGCSNotExist(err) { // missing bucket: nothing matches
				return nil, nil
			}
			return nil, gcsErr(ctx, "glob", pattern, err)
		}
		if a.Name == "" { // a "/"-delimited prefix, not an object
			continue
		}
		if m, _ := path.Match(objPat, a.Name); m {
			out = append(out, gsScheme+bucketName+"/"+a.Name)
		}
	}
	return sortedUnique(out), nil
}
