package storage

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	gcs "cloud.google.com/go/storage"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"
)

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
