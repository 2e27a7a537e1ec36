package storage

import (
	"time"

	"google.golang.org/api/googleapi"
)

// GCSOptions tunes how a Store talks to GCS: retries, their bounds and the
// upload chunk size. Zero fields select the defaults below. The bounds
// (attempt timeout, attempts, retry time) are enforced by the transport that
// NewGCSClient installs; a client built some other way gets only the client
// library's own retries.
type GCSOptions struct {
	// InitialBackoff is the first pause between attempts (default 200ms);
	// each later pause doubles, up to MaxBackoff (default 30s). Pauses are
	// jittered by the client library.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// MaxAttempts bounds the attempts of one request (default 8), and the
	// consecutive failed requests of one operation: an operation whose last
	// MaxAttempts requests all failed starts no more.
	MaxAttempts int
	// RetryTime bounds how long one operation keeps retrying: no new
	// attempt starts once the current run of failures is older than this
	// (default 5m). A request that delivers data ends the run, so long
	// transfers with rare faults are not cut short.
	RetryTime time.Duration
	// AttemptTimeout abandons (and retries) a request that makes no progress
	// for this long: no request bytes sent, no response headers, no response
	// bytes while a Read waits for them (default 2m). It turns a hung
	// connection into a retry instead of a hang of the whole operation.
	AttemptTimeout time.Duration
	// ChunkSize is the resumable-upload chunk (default 16 MiB, rounded up
	// to a multiple of 256 KiB); each streaming upload holds one in memory. A Create whose content
	// fits one chunk is sent in a single request from memory, which lets
	// the whole upload be retried; bigger ones stream chunk by chunk.
	ChunkSize int
}

// Defaults, see GCSOptions.
const (
	defaultInitialBackoff = 200 * time.Millisecond
	defaultMaxBackoff     = 30 * time.Second
	defaultMaxAttempts    = 8
	defaultRetryTime      = 5 * time.Minute
	defaultAttemptTimeout = 2 * time.Minute
)

// resolved fills in the defaults.
func (o GCSOptions) resolved() GCSOptions {
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = defaultInitialBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = defaultMaxBackoff
	}
	if o.MaxBackoff < o.InitialBackoff {
		o.MaxBackoff = o.InitialBackoff
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = defaultMaxAttempts
	}
	if o.RetryTime <= 0 {
		o.RetryTime = defaultRetryTime
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = defaultAttemptTimeout
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = googleapi.DefaultUploadChunkSize
	}
	if r := o.ChunkSize % googleapi.MinUploadChunkSize; r != 0 {
		o.ChunkSize += googleapi.MinUploadChunkSize - r
	}
	return o
}

// SetGCSOptions replaces the store's GCS tuning and returns the previous
// one. Calls already running keep the options they started with.
func (s *Store) SetGCSOptions(o GCSOptions) GCSOptions {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.opts
	s.opts = o
	return prev
}

// options returns the store's tuning with the defaults filled in.
func (s *Store) options() GCSOptions {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts.resolved()
}

// SetGCSOptions tunes the default Store (see Store.SetGCSOptions) and
// returns the previous tuning.
func SetGCSOptions(o GCSOptions) GCSOptions { return defaultStore.SetGCSOptions(o) }
