package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"

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
func (s *Store) retryOptions(always bool) []gcs.RetryOption {
	bo := s.backoff
	if bo.Initial <= 0 {
		bo.Initial = defaultInitialBackoff
	}
	if bo.Max <= 0 {
		bo.Max = defaultMaxBackoff
	}
	if bo.Multiplier <= 1 {
		bo.Multiplier = 2
	}
	n := s.maxAttempts
	if n <= 0 {
		n = defaultMaxAttempts
	}
	opts := []gcs.RetryOption{gcs.WithBackoff(gax.Backoff{Initial: bo.Initial, Max: bo.Max, Multiplier: bo.Multiplier}), gcs.WithMaxAttempts(n)}
	if always {
		opts = append(opts, gcs.WithPolicy(gcs.RetryAlways))
	}
	return opts
}

// object returns a fresh handle with this store's retry settings. Retryer
// mutates the handle's retry config in place, so it is applied exactly once
// to a handle no one else holds.
func (s *Store) object(c *gcs.Client, bucket, object string, always bool) *gcs.ObjectHandle {
	return c.Bucket(bucket).Object(object).Retryer(s.retryOptions(always)...)
}

func (s *Store) bucket(c *gcs.Client, bucket string) *gcs.BucketHandle {
	return c.Bucket(bucket).Retryer(s.retryOptions(false)...)
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

// gcsErr classifies err and names the path.
func gcsErr(op, p string, err error) error {
	if err == nil {
		return nil
	}
	return pathErr(op, p, classify(err))
}

func (s *Store) clientFor(ctx context.Context, op string, loc location) (*gcs.Client, error) {
	c, err := s.gcsClient(ctx)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: loc.path, Err: err}
	}
	return c, nil
}

func (s *Store) gcsOpen(ctx context.Context, loc location) (io.ReadCloser, int64, error) {
	c, err := s.clientFor(ctx, "open", loc)
	if err != nil {
		return nil, -1, err
	}
	r, err := s.object(c, loc.bucket, loc.object, false).NewReader(ctx)
	if err != nil {
		return nil, -1, gcsErr("open", loc.path, err)
	}
	size := r.Attrs.Size
	if r.Attrs.Decompressed { // served gunzipped: the stored size says nothing
		size = -1
	}
	return &readCloser{r: &namedReader{r: r, op: "read", path: loc.path}, close: r.Close}, size, nil
}

func (s *Store) gcsReadWithGeneration(ctx context.Context, loc location) ([]byte, int64, error) {
	c, err := s.clientFor(ctx, "read", loc)
	if err != nil {
		return nil, 0, err
	}
	r, err := s.object(c, loc.bucket, loc.object, false).NewReader(ctx)
	if err != nil {
		return nil, 0, gcsErr("read", loc.path, err)
	}
	defer r.Close()
	size := r.Attrs.Size
	if r.Attrs.Decompressed {
		size = -1
	}
	data, err := readAll(&namedReader{r: r, op: "read", path: loc.path}, loc.path, size, -1)
	if err != nil {
		return nil, 0, err
	}
	return data, r.Attrs.Generation, nil
}

// chunkSize picks the upload buffer for a known size (-1: unknown, the
// library default of 16 MiB). A size that fits one chunk is sent in a
// single request. It is never 0: chunking off would disable retries.
func chunkSize(size int) int {
	if size < 0 || size >= googleapi.DefaultUploadChunkSize {
		return googleapi.DefaultUploadChunkSize
	}
	n := size + 1
	if r := n % googleapi.MinUploadChunkSize; r != 0 {
		n += googleapi.MinUploadChunkSize - r
	}
	return n
}

// gcsWriter wraps a GCS upload. The object appears when Close succeeds;
// Abort and failed writes cancel the upload's context.
type gcsWriter struct {
	ctx    context.Context // the caller's context
	w      *gcs.Writer
	cancel context.CancelFunc
	path   string

	mu   sync.Mutex
	err  error
	done bool
}

func (s *Store) gcsCreate(ctx context.Context, loc location, size int) (*gcsWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, &fs.PathError{Op: "create", Path: loc.path, Err: err}
	}
	c, err := s.clientFor(ctx, "create", loc)
	if err != nil {
		return nil, err
	}
	// Uploads retry although unconditional: see the package documentation.
	return newGCSWriter(ctx, s.object(c, loc.bucket, loc.object, true), loc.path, size), nil
}

func newGCSWriter(ctx context.Context, h *gcs.ObjectHandle, p string, size int) *gcsWriter {
	uctx, cancel := context.WithCancel(ctx)
	w := h.NewWriter(uctx)
	w.ChunkSize = chunkSize(size)
	return &gcsWriter{ctx: ctx, w: w, cancel: cancel, path: p}
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
	n, err := w.w.Write(b)
	if err != nil {
		w.err = gcsErr("write", w.path, err)
	}
	return n, w.err
}

// Close finalizes the upload, which publishes the object. After a failed
// Write, or with the caller's context cancelled, it cancels the upload
// instead and returns the error.
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
		w.cancel()
		w.w.Close() // reaps the upload goroutine; fails on the cancelled context
		return w.err
	}
	err := w.w.Close()
	w.cancel()
	if err != nil {
		w.err = gcsErr("close", w.path, err)
	}
	return w.err
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
	w.cancel()
	w.w.Close()
	return nil
}

func (s *Store) gcsWriteIfGeneration(ctx context.Context, loc location, data []byte, gen int64) (int64, error) {
	c, err := s.clientFor(ctx, "write", loc)
	if err != nil {
		return 0, err
	}
	// The precondition makes the upload idempotent: RetryAlways is safe.
	h := s.object(c, loc.bucket, loc.object, true)
	if gen == 0 {
		h = h.If(gcs.Conditions{DoesNotExist: true})
	} else {
		h = h.If(gcs.Conditions{GenerationMatch: gen})
	}
	w := newGCSWriter(ctx, h, loc.path, len(data))
	if _, err := w.Write(data); err != nil {
		w.Abort()
		return 0, err
	}
	if err := w.Close(); err != nil {
		if errors.Is(err, ErrPrecondition) {
			err = &fs.PathError{Op: "write", Path: loc.path, Err: fmt.Errorf("%w: generation is no longer %d", ErrPrecondition, gen)}
		}
		return 0, err
	}
	return w.w.Attrs().Generation, nil
}

func (s *Store) gcsCopy(ctx context.Context, src, dst location) error {
	c, err := s.clientFor(ctx, "copy", src)
	if err != nil {
		return err
	}
	// Like uploads, a copy of the same source to the same name is safe to repeat.
	d := s.object(c, dst.bucket, dst.object, true)
	if _, err := d.CopierFrom(c.Bucket(src.bucket).Object(src.object)).Run(ctx); err != nil {
		return fmt.Errorf("storage: copy %s to %s: %w", src.path, dst.path, classify(err))
	}
	return nil
}

func (s *Store) gcsStat(ctx context.Context, loc location) (Info, error) {
	c, err := s.clientFor(ctx, "stat", loc)
	if err != nil {
		return Info{}, err
	}
	if loc.object == "" {
		if _, err := s.bucket(c, loc.bucket).Attrs(ctx); err != nil {
			return Info{}, gcsErr("stat", loc.path, err)
		}
		return Info{IsDir: true}, nil
	}
	if !strings.HasSuffix(loc.object, "/") {
		attrs, err := s.object(c, loc.bucket, loc.object, false).Attrs(ctx)
		if err == nil {
			return Info{Size: attrs.Size, ModTime: attrs.Updated, Generation: attrs.Generation}, nil
		}
		if !isGCSNotExist(err) {
			return Info{}, gcsErr("stat", loc.path, err)
		}
	}
	dir, err := s.hasObjectsUnder(ctx, c, loc.bucket, strings.TrimSuffix(loc.object, "/")+"/")
	if err != nil {
		return Info{}, gcsErr("stat", loc.path, err)
	}
	if !dir {
		return Info{}, &fs.PathError{Op: "stat", Path: loc.path, Err: notExistError{gcs.ErrObjectNotExist}}
	}
	return Info{IsDir: true}, nil
}

func (s *Store) hasObjectsUnder(ctx context.Context, c *gcs.Client, bucket, prefix string) (bool, error) {
	q := &gcs.Query{Prefix: prefix}
	if err := q.SetAttrSelection([]string{"Name"}); err != nil {
		return false, err
	}
	it := s.bucket(c, bucket).Objects(ctx, q)
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
	c, err := s.clientFor(ctx, "remove", loc)
	if err != nil {
		return err
	}
	attrs, err := s.object(c, loc.bucket, loc.object, false).Attrs(ctx)
	if err != nil {
		return gcsErr("remove", loc.path, err)
	}
	return s.deleteGeneration(ctx, c, loc.bucket, loc.object, attrs.Generation, loc.path)
}

// deleteGeneration deletes the live object if its generation is still gen.
// The precondition makes the delete idempotent, so the library retries it;
// "not found" means it is gone (by an earlier attempt whose response was
// lost, or by someone else), which is what was asked.
func (s *Store) deleteGeneration(ctx context.Context, c *gcs.Client, bucket, object string, gen int64, p string) error {
	err := s.object(c, bucket, object, false).If(gcs.Conditions{GenerationMatch: gen}).Delete(ctx)
	if err == nil || isGCSNotExist(err) {
		return nil
	}
	if isGCSPrecondition(err) {
		return &fs.PathError{Op: "remove", Path: p, Err: fmt.Errorf("%w: replaced concurrently (generation is no longer %d)", ErrPrecondition, gen)}
	}
	return gcsErr("remove", p, err)
}

func (s *Store) gcsRemoveAll(ctx context.Context, loc location) error {
	base := strings.TrimSuffix(loc.object, "/")
	if base == "" {
		return &fs.PathError{Op: "removeall", Path: loc.path, Err: errors.New("refusing to empty a whole bucket (name a prefix: gs://bucket/dir)")}
	}
	c, err := s.clientFor(ctx, "removeall", loc)
	if err != nil {
		return err
	}
	type target struct {
		name string
		gen  int64
	}
	var targets []target
	attrs, err := s.object(c, loc.bucket, base, false).Attrs(ctx)
	switch {
	case err == nil:
		targets = append(targets, target{base, attrs.Generation})
	case isGCSNotExist(err):
		if errors.Is(err, gcs.ErrBucketNotExist) {
			return nil
		}
	default:
		return gcsErr("removeall", loc.path, err)
	}
	q := &gcs.Query{Prefix: base + "/"}
	if err := q.SetAttrSelection([]string{"Name", "Generation"}); err != nil {
		return &fs.PathError{Op: "removeall", Path: loc.path, Err: err}
	}
	it := s.bucket(c, loc.bucket).Objects(ctx, q)
	for {
		a, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			if isGCSNotExist(err) {
				return nil
			}
			return gcsErr("removeall", loc.path, err)
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
				if err := s.deleteGeneration(ctx, c, loc.bucket, t.name, t.gen, uri); err != nil {
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
	if err := checkBucketName(bucketName); err != nil {
		return nil, &fs.PathError{Op: "glob", Path: pattern, Err: err}
	}
	if _, err := path.Match(objPat, ""); err != nil {
		return nil, &fs.PathError{Op: "glob", Path: pattern, Err: err}
	}
	loc := location{path: pattern, gs: true, bucket: bucketName, object: objPat}
	c, err := s.clientFor(ctx, "glob", loc)
	if err != nil {
		return nil, err
	}
	i := strings.IndexAny(objPat, `*?[\`)
	if i < 0 { // no wildcard: the object itself, if it exists
		if objPat == "" {
			return nil, nil
		}
		_, err := s.object(c, bucketName, objPat, false).Attrs(ctx)
		if err == nil {
			return []string{pattern}, nil
		}
		if isGCSNotExist(err) {
			return nil, nil
		}
		return nil, gcsErr("glob", pattern, err)
	}
	q := &gcs.Query{Prefix: objPat[:i]}
	if !strings.Contains(objPat[i:], "/") {
		q.Delimiter = "/"
	}
	if err := q.SetAttrSelection([]string{"Name"}); err != nil {
		return nil, &fs.PathError{Op: "glob", Path: pattern, Err: err}
	}
	var out []string
	it := s.bucket(c, bucketName).Objects(ctx, q)
	for {
		a, err := it.Next()
		if err == iterator.Done {
			break
		}
		if err != nil {
			if isGCSNotExist(err) { // missing bucket: nothing matches
				return nil, nil
			}
			return nil, gcsErr("glob", pattern, err)
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
