// Package gcstest runs an in-process fake GCS for tests, behind a proxy that
// injects faults, with the storage package pointed at it.
//
//	srv := gcstest.Start(t, "my-bucket")       // storage.* now talks to it
//	srv.Proxy.SetRules(1, gcstest.Rule{Kinds: gcstest.Write, Fault: gcstest.Reset, Prob: 0.3})
//	err := storage.WriteFile(ctx, "gs://my-bucket/x", data)
//	if srv.Proxy.Injected(gcstest.Write) == 0 { t.Fatal("no fault happened") }
//	got, _ := srv.Direct.ReadFile(ctx, "gs://my-bucket/x") // the truth, no faults
//
// The emulator is github.com/fsouza/fake-gcs-server, reached through the
// real cloud.google.com/go/storage client built by storage.NewGCSClient, so
// the code under test runs exactly as in production, retries included.
//
// Test-only: it imports the storage package, fake-gcs-server and the GCS
// client; nothing but tests may import it.
package gcstest

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	gcs "cloud.google.com/go/storage"
	"github.com/fsouza/fake-gcs-server/fakestorage"

	"github.com/beamtune/beamtune/storage"
)

// Server is a fake GCS and the clients and stores around it.
type Server struct {
	// Fake is the emulator.
	Fake *fakestorage.Server
	// Proxy sits between Client and Fake and injects faults (none until
	// rules are set).
	Proxy *Proxy
	// Client is a real client whose requests go through Proxy. Start makes
	// it the storage package's default client.
	Client *gcs.Client
	// Store is a storage.Store on Client with Options.
	Store *storage.Store
	// Direct is a Store whose client talks to Fake without the proxy:
	// what it reads is what is really stored.
	Direct *storage.Store
}

// Options returns the GCS tuning Start gives the default store and Store:
// short pauses and a short attempt timeout, so tests that inject faults
// take milliseconds per retry and a hung request a fraction of a second.
func Options() storage.GCSOptions {
	return storage.GCSOptions{
		InitialBackoff: 2 * time.Millisecond,
		MaxBackoff:     20 * time.Millisecond,
		MaxAttempts:    6,
		RetryTime:      10 * time.Second,
		AttemptTimeout: 500 * time.Millisecond,
	}
}

// Start runs a fake GCS holding the given (empty) buckets, a fault proxy in
// front of it (seeded with 1, no rules), and makes the storage package's
// default store use a client through the proxy with Options(). Everything
// is stopped, and the default store's client and options are restored,
// when the test ends. Tests that use the default store must not run in
// parallel with each other.
func Start(t testing.TB, buckets ...string) *Server {
	t.Helper()
	fake, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", Port: 0,
		// Without PublicHost the emulator answers object reads with 404.
		PublicHost: "127.0.0.1",
		Writer:     io.Discard,
	})
	if err != nil {
		t.Fatalf("gcstest: fake GCS server: %v", err)
	}
	t.Cleanup(fake.Stop)
	for _, b := range buckets {
		fake.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: b})
	}
	proxy := NewProxy(t, fake.URL(), 1)
	ctx := context.Background()
	client, err := storage.NewGCSClient(ctx, proxy.URL(), nil)
	if err != nil {
		t.Fatalf("gcstest: client: %v", err)
	}
	direct, err := storage.NewGCSClient(ctx, fake.URL(), nil)
	if err != nil {
		client.Close()
		t.Fatalf("gcstest: client: %v", err)
	}
	s := &Server{Fake: fake, Proxy: proxy, Client: client, Store: storage.NewStore(client), Direct: storage.NewStore(direct)}
	s.Store.SetGCSOptions(Options())
	s.Direct.SetGCSOptions(Options())
	prevClient := storage.SetGCSClient(client)
	prevOpts := storage.SetGCSOptions(Options())
	t.Cleanup(func() {
		storage.SetGCSClient(prevClient)
		storage.SetGCSOptions(prevOpts)
		client.Close()
		direct.Close()
	})
	return s
}

// URL is the endpoint to give storage.NewGCSClient for more clients
// through the proxy.
func (s *Server) URL() string { return s.Proxy.URL() }

// SetEmulatorEnv points STORAGE_EMULATOR_HOST at the proxy for the rest of
// the test, so GCS clients made from the environment (a zero storage.Store,
// Beam's gs:// filesystem, the Dataflow runner's staging checks) go through
// the proxy too, faults included.
func (s *Server) SetEmulatorEnv(t testing.TB) {
	t.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(s.Proxy.URL(), "http://"))
}
