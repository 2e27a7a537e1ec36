package storage

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	gcs "cloud.google.com/go/storage"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"
)

// ErrPrecondition is returned (wrapped, test it with errors.Is) by
// WriteFileIfGeneration when the object's current generation is not the
// expected one.
var ErrPrecondition = errors.New("storage: precondition failed (generation mismatch)")

// ErrTooLarge is returned (wrapped, test it with errors.Is) by ReadFileLimit
// when the file or object holds more bytes than the limit.
var ErrTooLarge = errors.New("storage: larger than the size limit")

// Info describes a file or object.
type Info struct {
	// Size in bytes (0 for directories).
	Size int64
	// ModTime is the modification time (GCS: the object's update time; zero
	// for a gs:// directory prefix).
	ModTime time.Time
	// Generation is the GCS object generation. Local paths report 0: their
	// generation is a hash of the content, which Stat does not read; use
	// ReadFileWithGeneration for compare-and-swap.
	Generation int64
	// IsDir is true for a local directory, a gs:// prefix under which objects
	// exist (gs://b/dir when gs://b/dir/x exists), and a bucket (gs://b).
	IsDir bool
}

// Writer is an atomic writer returned by Create. Nothing is visible at the
// destination until Close returns nil. Abort discards what was written; it
// is a no-op after a successful Close, so it can be deferred. A Writer is
// not meant for concurrent use; to stop a Write blocked on the network,
// cancel the context given to Create (Close then publishes nothing).
type Writer interface {
	io.WriteCloser
	// Abort discards the write: no file or object is published and any
	// existing one is left unchanged. It returns nil after a successful
	// Close and on repeated calls.
	Abort() error
}

// Store reads and writes local paths and gs:// URIs. The zero value is
// ready to use and creates its GCS client from the environment on first
// gs:// use (see NewGCSClient with an empty endpoint). A Store is safe for
// concurrent use.
type Store struct {
	mu     sync.Mutex
	client *gcs.Client
	opts   GCSOptions // as set; see options()
}

// NewStore returns a Store that uses client for gs:// paths. A nil client
// means: create one from the environment on first use.
func NewStore(client *gcs.Client) *Store { return &Store{client: client} }

var defaultStore = &Store{}

// Default returns the Store the package-level functions use.
func Default() *Store { return defaultStore }

// SetGCSClient sets the GCS client the package-level functions use and
// returns the previous one (nil if none was set or created yet); nil
// reverts to creating one from the environment on next use. It is safe to
// call concurrently with other calls, which use the client current when they
// start. The package never closes a client it was given.
func SetGCSClient(c *gcs.Client) (previous *gcs.Client) { return defaultStore.SetGCSClient(c) }

// SetGCSClient sets the client s uses for gs:// paths (nil: create one from
// the environment on next use) and returns the previous one.
func (s *Store) SetGCSClient(c *gcs.Client) (previous *gcs.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	previous, s.client = s.client, c
	return previous
}

// gcsClient returns the store's client, creating it from the environment on
// first use. A failed creation is not cached: the next call tries again.
func (s *Store) gcsClient(ctx context.Context) (*gcs.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return s.client, nil
	}
	// The client outlives this call: do not tie it to ctx's cancellation.
	c, err := NewGCSClient(context.WithoutCancel(ctx), "", nil)
	if err != nil {
		return nil, err
	}
	s.client = c
	return c, nil
}

// NewGCSClient creates a GCS client (HTTP/JSON API).
//
// endpoint "" means the real service, or the emulator named by
// STORAGE_EMULATOR_HOST when that is set (the client library reads it), with
// Application Default Credentials unless the emulator is used. A non-empty
// endpoint names an emulator and disables authentication; it may be
// "host:port", "http://host:port" or the full "http://host:port/storage/v1/".
//
// transport, when non-nil, carries every request: the injection point for
// fault-injection proxies (503s, resets), recording or custom dialing. With
// the real service, credentials are layered on top of it. nil means a
// clone of http.DefaultTransport.
//
// Either way the client's requests pass through this package's guard,
// which enforces a Store's GCSOptions (attempt timeout, retry budget); a
// client built otherwise and given to SetGCSClient gets only the library's
// own retries.
//
// The caller owns the client (Close it when done).
func NewGCSClient(ctx context.Context, endpoint string, transport http.RoundTripper) (*gcs.Client, error) {
	if transport == nil {
		transport = defaultBaseTransport()
	}
	guarded := &guardTransport{base: transport}
	var opts []option.ClientOption
	switch {
	case endpoint != "":
		ep, err := emulatorEndpoint(endpoint)
		if err != nil {
			return nil, err
		}
		opts = append(opts, option.WithEndpoint(ep), option.WithoutAuthentication(),
			option.WithHTTPClient(&http.Client{Transport: guarded}))
	case os.Getenv("STORAGE_EMULATOR_HOST") != "":
		// The library adds the emulator endpoint and WithoutAuthentication.
		opts = append(opts, option.WithHTTPClient(&http.Client{Transport: guarded}))
	default:
		authed, err := htransport.NewTransport(ctx, guarded,
			option.WithScopes(gcs.ScopeFullControl, "https://www.googleapis.com/auth/cloud-platform"))
		if err != nil {
			return nil, fmt.Errorf("storage: GCS credentials: %w", err)
		}
		opts = append(opts, option.WithHTTPClient(&http.Client{Transport: authed}))
	}
	c, err := gcs.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("storage: creating the GCS client: %w", err)
	}
	return c, nil
}

// defaultBaseTransport is what the client library would use on its own: the
// default transport with more idle connections per host (uploads and reads
// run in parallel against one host) and HTTP/2 pings, which detect a dead
// connection that would otherwise only be noticed by the attempt timeout.
func defaultBaseTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 100
	t.HTTP2 = &http.HTTP2Config{SendPingTimeout: 31 * time.Second, PingTimeout: 15 * time.Second}
	return t
}

// emulatorEndpoint turns "host:port", "http://host:port" or a full JSON API
// base URL into the base URL the client wants ("http://host:port/storage/v1/").
func emulatorEndpoint(endpoint string) (string, error) {
	raw := endpoint
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("storage: bad GCS endpoint %q (want host:port or http://host:port)", Redact(endpoint))
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/storage/v1/"
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	return u.String(), nil
}

// ---------------------------------------------------------------------------
// Paths

const gsScheme = "gs://"

// IsGCS reports whether p is a gs:// URI.
func IsGCS(p string) bool { return strings.HasPrefix(p, gsScheme) }

// ParseGCS splits "gs://bucket/object" into bucket and object. The object
// may be empty ("gs://bucket" or "gs://bucket/"); it is returned as written
// (no cleaning, a trailing "/" is kept). The bucket must be a valid GCS
// bucket name and the object a valid object name (UTF-8, no CR/LF, at most
// 1024 bytes, not "." or "..").
func ParseGCS(uri string) (bucket, object string, err error) {
	if !IsGCS(uri) {
		return "", "", fmt.Errorf("storage: %q is not a gs:// URI (want gs://bucket/object)", Redact(uri))
	}
	rest := uri[len(gsScheme):]
	bucket, object, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("storage: %q has no bucket name (want gs://bucket/object)", uri)
	}
	if strings.Contains(bucket, "@") {
		// Never echoed: what precedes '@' is a password or token.
		return "", "", fmt.Errorf("storage: %q: credentials in a gs:// URI are not supported; beamtune authenticates with GOOGLE_APPLICATION_CREDENTIALS or Application Default Credentials (beamtune doctor shows which)", Redact(uri))
	}
	if err := checkBucketName(bucket); err != nil {
		return "", "", fmt.Errorf("storage: %q: %w", uri, err)
	}
	if err := checkObjectName(object); err != nil {
		return "", "", fmt.Errorf("storage: %q: %w", uri, err)
	}
	return bucket, object, nil
}

// checkBucketName applies GCS's bucket naming rules: 3-63 characters (up to
// 222 when dotted, each dot-separated part at most 63) of lowercase letters,
// digits, '-', '_' and '.', starting and ending with a letter or digit.
func checkBucketName(b string) error {
	if strings.ContainsAny(b, "*?[") {
		return fmt.Errorf("bucket name %q contains a wildcard (only object names may)", b)
	}
	max := 63
	if strings.Contains(b, ".") {
		max = 222
	}
	if len(b) < 3 || len(b) > max {
		return fmt.Errorf("bucket name %q must be 3 to %d characters long", b, max)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("bucket name %q has invalid character %q (allowed: a-z 0-9 - _ .)", b, c)
		}
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	if !alnum(b[0]) || !alnum(b[len(b)-1]) {
		return fmt.Errorf("bucket name %q must start and end with a letter or digit", b)
	}
	for _, part := range strings.Split(b, ".") {
		if len(part) == 0 || len(part) > 63 {
			return fmt.Errorf("bucket name %q has an empty or over-long (>63) dot-separated part", b)
		}
	}
	return nil
}

func checkObjectName(o string) error {
	switch {
	case len(o) > 1024:
		return fmt.Errorf("object name is %d bytes long (max 1024)", len(o))
	case !utf8.ValidString(o):
		return errors.New("object name is not valid UTF-8")
	case strings.ContainsAny(o, "\r\n"):
		return errors.New("object name contains a carriage return or line feed")
	case o == "." || o == "..":
		return fmt.Errorf("object name %q is not allowed", o)
	}
	return nil
}

// Join joins path elements. For gs:// URIs it joins the object name with
// slash semantics (path.Join) and never touches the scheme or bucket (".."
// cannot climb out of the bucket); other paths use filepath.Join.
func Join(base string, elem ...string) string {
	if !IsGCS(base) {
		return filepath.Join(append([]string{base}, elem...)...)
	}
	rest := base[len(gsScheme):]
	bucket, object, _ := strings.Cut(rest, "/")
	parts := append([]string{"/", object}, elem...)
	joined := strings.TrimPrefix(path.Join(parts...), "/")
	if joined == "" {
		return gsScheme + bucket
	}
	return gsScheme + bucket + "/" + joined
}

// location is a routed path: local, or a parsed gs:// URI.
type location struct {
	path   string // as given, for error messages
	gs     bool
	bucket string
	object string
}

// locate routes p. It rejects empty paths and near-miss URIs such as
// "gs:/b/o" or "GS://b/o" that would otherwise become odd local paths.
func locate(op, p string) (location, error) {
	if p == "" {
		return location{}, &fs.PathError{Op: op, Path: p, Err: errors.New("empty path")}
	}
	if IsGCS(p) {
		b, o, err := ParseGCS(p)
		if err != nil {
			return location{}, &fs.PathError{Op: op, Path: Redact(p), Err: err}
		}
		return location{path: p, gs: true, bucket: b, object: o}, nil
	}
	if len(p) >= 4 && strings.EqualFold(p[:4], "gs:/") {
		return location{}, &fs.PathError{Op: op, Path: Redact(p), Err: errors.New("malformed gs:// URI (want gs://bucket/object)")}
	}
	return location{path: p}, nil
}

// locateObject is locate for operations that need an object, not a bucket.
func locateObject(op, p string) (location, error) {
	loc, err := locate(op, p)
	if err == nil && loc.gs && (loc.object == "" || strings.HasSuffix(loc.object, "/")) {
		return location{}, &fs.PathError{Op: op, Path: p, Err: errors.New("URI names a bucket or directory, not an object")}
	}
	return loc, err
}

// ---------------------------------------------------------------------------
// Reading

// Open opens path for reading. The caller must Close the reader. It does not
// decompress; see OpenMaybeGzip.
func (s *Store) Open(ctx context.Context, p string) (io.ReadCloser, error) {
	rc, _, err := s.open(ctx, p)
	return rc, err
}

// open returns the reader and the size when known (-1 otherwise).
func (s *Store) open(ctx context.Context, p string) (io.ReadCloser, int64, error) {
	loc, err := locateObject("open", p)
	if err != nil {
		return nil, -1, err
	}
	if loc.gs {
		return s.gcsOpen(ctx, loc)
	}
	return localOpen(p)
}

// OpenMaybeGzip opens path and, when its content starts with the gzip magic
// bytes (0x1f 0x8b), decompresses it (multi-member streams included).
// Detection is by content, not by name. Other content is returned as is.
func (s *Store) OpenMaybeGzip(ctx context.Context, p string) (io.ReadCloser, error) {
	rc, err := s.Open(ctx, p)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReader(rc)
	magic, err := br.Peek(2)
	if err != nil && err != io.EOF {
		rc.Close()
		return nil, pathErr("read", p, err)
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			rc.Close()
			return nil, &fs.PathError{Op: "gunzip", Path: p, Err: err}
		}
		return &readCloser{r: &namedReader{r: zr, op: "gunzip", path: p}, close: func() error {
			zr.Close()
			return rc.Close()
		}}, nil
	}
	return &readCloser{r: br, close: rc.Close}, nil
}

// ReadFile reads the whole file or object.
func (s *Store) ReadFile(ctx context.Context, p string) ([]byte, error) {
	return s.readFile(ctx, p, -1)
}

// ReadFileLimit reads the whole file or object, failing with an error that
// wraps ErrTooLarge (and names the path) when it holds more than max bytes.
func (s *Store) ReadFileLimit(ctx context.Context, p string, max int64) ([]byte, error) {
	if max < 0 {
		return nil, &fs.PathError{Op: "read", Path: p, Err: fmt.Errorf("negative size limit %d", max)}
	}
	return s.readFile(ctx, p, max)
}

func (s *Store) readFile(ctx context.Context, p string, max int64) ([]byte, error) {
	rc, size, err := s.open(ctx, p)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readAll(rc, p, size, max)
}

// readAll reads r to the end; max < 0 means no limit. size is a hint (-1:
// unknown); a known size above max fails before reading.
func readAll(r io.Reader, p string, size, max int64) ([]byte, error) {
	tooLarge := func() error {
		return &fs.PathError{Op: "read", Path: p, Err: fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)}
	}
	if max >= 0 {
		if size > max {
			return nil, tooLarge()
		}
		r = io.LimitReader(r, max+1)
	}
	const maxPrealloc = 64 << 20
	hint := size
	if hint < 0 || hint > maxPrealloc {
		hint = 512
	}
	buf := bytes.NewBuffer(make([]byte, 0, hint+1))
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, pathErr("read", p, err)
	}
	if max >= 0 && int64(buf.Len()) > max {
		return nil, tooLarge()
	}
	return buf.Bytes(), nil
}

// ReadFileWithGeneration reads a (small) file or object and returns its
// current generation, to pass to WriteFileIfGeneration. On GCS this is the
// generation of exactly the bytes returned; locally it is derived from the
// bytes (see the package documentation).
func (s *Store) ReadFileWithGeneration(ctx context.Context, p string) ([]byte, int64, error) {
	loc, err := locateObject("read", p)
	if err != nil {
		return nil, 0, err
	}
	if loc.gs {
		return s.gcsReadWithGeneration(ctx, loc)
	}
	data, err := readLocalFile(p)
	if err != nil {
		return nil, 0, err
	}
	return data, contentGeneration(data), nil
}

// ---------------------------------------------------------------------------
// Writing

// Create returns an atomic Writer for path (see the package documentation):
// the content becomes visible only when Close succeeds; Abort, a failed
// Write or a cancelled ctx publish nothing. Local parent directories are
// created as needed.
func (s *Store) Create(ctx context.Context, p string) (Writer, error) {
	loc, err := locateObject("create", p)
	if err != nil {
		return nil, err
	}
	if loc.gs {
		return s.gcsCreate(ctx, loc)
	}
	return localCreate(ctx, p)
}

// WriteFile atomically replaces path's content with data (via Create).
func (s *Store) WriteFile(ctx context.Context, p string, data []byte) error {
	loc, err := locateObject("write", p)
	if err != nil {
		return err
	}
	if loc.gs {
		return s.gcsWriteFile(ctx, loc, data)
	}
	w, err := localCreate(ctx, p)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort()
		return err
	}
	return w.Close()
}

// WriteFileIfGeneration atomically replaces path's content with data only
// if its current generation is gen (0: only if it does not exist), and
// returns the new generation. Otherwise it returns an error wrapping
// ErrPrecondition. gen comes from ReadFileWithGeneration (or a GCS Stat);
// treat it as opaque. Meant for small objects (the local backend reads the
// current content to compare).
func (s *Store) WriteFileIfGeneration(ctx context.Context, p string, data []byte, gen int64) (int64, error) {
	loc, err := locateObject("write", p)
	if err != nil {
		return 0, err
	}
	if gen < 0 {
		return 0, &fs.PathError{Op: "write", Path: p, Err: fmt.Errorf("invalid generation %d (want 0 for must-not-exist, or a generation read before)", gen)}
	}
	if loc.gs {
		return s.gcsWriteIfGeneration(ctx, loc, data, gen)
	}
	return localWriteIfGeneration(ctx, p, data, gen)
}

// Copy copies src to dst (any combination of local and gs://), streaming
// and atomically (dst appears complete or not at all). gs->gs uses GCS's
// server-side copy, which does not move the bytes through this process.
func (s *Store) Copy(ctx context.Context, src, dst string) error {
	sl, err := locateObject("copy", src)
	if err != nil {
		return err
	}
	dl, err := locateObject("copy", dst)
	if err != nil {
		return err
	}
	if sl.gs && dl.gs {
		return s.gcsCopy(ctx, sl, dl)
	}
	r, err := s.Open(ctx, src)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := s.Create(ctx, dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Abort()
		return fmt.Errorf("storage: copy %s to %s: %w", src, dst, err)
	}
	return w.Close()
}

// ---------------------------------------------------------------------------
// Metadata, listing, removal

// Stat describes path. A missing path gives an error satisfying
// errors.Is(err, fs.ErrNotExist).
func (s *Store) Stat(ctx context.Context, p string) (Info, error) {
	loc, err := locate("stat", p)
	if err != nil {
		return Info{}, err
	}
	if loc.gs {
		return s.gcsStat(ctx, loc)
	}
	return localStat(p)
}

// Exists reports whether path exists (a file, object, directory, or gs://
// prefix with objects under it). A missing path is (false, nil); other
// failures (permissions, network) are returned.
func (s *Store) Exists(ctx context.Context, p string) (bool, error) {
	_, err := s.Stat(ctx, p)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// Remove deletes one file, empty local directory or object. A missing path
// gives an error satisfying errors.Is(err, fs.ErrNotExist).
func (s *Store) Remove(ctx context.Context, p string) error {
	loc, err := locateObject("remove", p)
	if err != nil {
		return err
	}
	if loc.gs {
		return s.gcsRemove(ctx, loc)
	}
	return localRemove(p)
}

// RemoveAll deletes path and everything under it: locally like
// os.RemoveAll; on GCS the object named prefix (if any) and every object
// whose name starts with prefix + "/". Missing paths are not an error. It
// refuses to empty a whole bucket (gs://bucket) or a file-system root.
func (s *Store) RemoveAll(ctx context.Context, prefix string) error {
	loc, err := locate("removeall", prefix)
	if err != nil {
		return err
	}
	if loc.gs {
		return s.gcsRemoveAll(ctx, loc)
	}
	return localRemoveAll(prefix)
}

// Glob returns the paths matching pattern, sorted. Locally it is
// filepath.Glob (which also returns matching directories). On GCS the
// bucket must be literal and object names are matched against the object
// part with path.Match semantics ('*' and '?' do not cross '/'), listing
// only from its longest wildcard-free prefix; only objects match, never
// "directory" prefixes. "**" is rejected (no recursive matching). A pattern
// matching nothing (or a missing bucket) gives an empty result and no
// error. Temporary and lock files of this package never appear in local
// results.
func (s *Store) Glob(ctx context.Context, pattern string) ([]string, error) {
	if strings.Contains(pattern, "**") {
		return nil, &fs.PathError{Op: "glob", Path: Redact(pattern), Err: errors.New(`"**" (recursive match) is not supported`)}
	}
	if IsGCS(pattern) {
		return s.gcsGlob(ctx, pattern)
	}
	if _, err := locate("glob", pattern); err != nil {
		return nil, err
	}
	return localGlob(pattern)
}

// ---------------------------------------------------------------------------
// Package-level functions: the same operations on Default().

// Open opens path for reading with the default Store. See Store.Open.
func Open(ctx context.Context, p string) (io.ReadCloser, error) { return defaultStore.Open(ctx, p) }

// OpenMaybeGzip opens path, gunzipping gzip content. See Store.OpenMaybeGzip.
func OpenMaybeGzip(ctx context.Context, p string) (io.ReadCloser, error) {
	return defaultStore.OpenMaybeGzip(ctx, p)
}

// ReadFile reads a whole file or object. See Store.ReadFile.
func ReadFile(ctx context.Context, p string) ([]byte, error) { return defaultStore.ReadFile(ctx, p) }

// ReadFileLimit reads at most max bytes, else fails with ErrTooLarge. See Store.ReadFileLimit.
func ReadFileLimit(ctx context.Context, p string, max int64) ([]byte, error) {
	return defaultStore.ReadFileLimit(ctx, p, max)
}

// ReadFileWithGeneration reads content and generation. See Store.ReadFileWithGeneration.
func ReadFileWithGeneration(ctx context.Context, p string) ([]byte, int64, error) {
	return defaultStore.ReadFileWithGeneration(ctx, p)
}

// Create returns an atomic Writer. See Store.Create.
func Create(ctx context.Context, p string) (Writer, error) { return defaultStore.Create(ctx, p) }

// WriteFile atomically writes data. See Store.WriteFile.
func WriteFile(ctx context.Context, p string, data []byte) error {
	return defaultStore.WriteFile(ctx, p, data)
}

// WriteFileIfGeneration is a compare-and-swap write. See Store.WriteFileIfGeneration.
func WriteFileIfGeneration(ctx context.Context, p string, data []byte, gen int64) (int64, error) {
	return defaultStore.WriteFileIfGeneration(ctx, p, data, gen)
}

// Copy copies src to dst. See Store.Copy.
func Copy(ctx context.Context, src, dst string) error { return defaultStore.Copy(ctx, src, dst) }

// Stat describes path. See Store.Stat.
func Stat(ctx context.Context, p string) (Info, error) { return defaultStore.Stat(ctx, p) }

// Exists reports whether path exists. See Store.Exists.
func Exists(ctx context.Context, p string) (bool, error) { return defaultStore.Exists(ctx, p) }

// Remove deletes one file or object. See Store.Remove.
func Remove(ctx context.Context, p string) error { return defaultStore.Remove(ctx, p) }

// RemoveAll deletes path and everything under it. See Store.RemoveAll.
func RemoveAll(ctx context.Context, prefix string) error { return defaultStore.RemoveAll(ctx, prefix) }

// Glob lists paths matching pattern. See Store.Glob.
func Glob(ctx context.Context, pattern string) ([]string, error) {
	return defaultStore.Glob(ctx, pattern)
}

// ---------------------------------------------------------------------------
// Helpers

// pathErr wraps err as a *fs.PathError unless it already names a path.
func pathErr(op, p string, err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	return &fs.PathError{Op: op, Path: p, Err: err}
}

// readCloser combines a reader and a close function.
type readCloser struct {
	r     io.Reader
	close func() error
	once  sync.Once
	err   error
}

func (rc *readCloser) Read(p []byte) (int, error) { return rc.r.Read(p) }
func (rc *readCloser) Close() error {
	rc.once.Do(func() { rc.err = rc.close() })
	return rc.err
}

// namedReader adds the path to read errors (other than io.EOF).
type namedReader struct {
	r        io.Reader
	op, path string
}

func (n *namedReader) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	if err != nil && err != io.EOF {
		err = pathErr(n.op, n.path, err)
	}
	return k, err
}

// sortedUnique sorts names and drops duplicates.
func sortedUnique(names []string) []string {
	sort.Strings(names)
	out := names[:0]
	for i, n := range names {
		if i == 0 || n != names[i-1] {
			out = append(out, n)
		}
	}
	return out
}
