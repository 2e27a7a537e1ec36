package storage

import (
	"errors"
	"io"
	"sync"
	"time"

	gcs "cloud.google.com/go/storage"
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
