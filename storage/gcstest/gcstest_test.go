package gcstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/beamtune/beamtune/storage"
)

// rawGet fetches an object through the proxy with a plain HTTP client (no
// retries), to see each fault as the wire shows it.
func rawGet(t *testing.T, srv *Server, object string) (*http.Response, []byte, error) {
	t.Helper()
	c := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	res, err := c.Get(srv.URL() + "/bkt1/" + object)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res, body, err
}

func TestFaultsOnTheWire(t *testing.T) {
	srv := Start(t, "bkt1")
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789"), 1000)
	if err := storage.WriteFile(ctx, "gs://bkt1/obj", data); err != nil {
		t.Fatal(err)
	}
	for _, f := range Faults {
		t.Run(f.String(), func(t *testing.T) {
			srv.Proxy.SetRules(1, Rule{Kinds: Read, Fault: f, Limit: 1})
			res, body, err := rawGet(t, srv, "obj")
			switch f {
			case Unavailable, TooManyRequests:
				want := map[Fault]int{Unavailable: 503, TooManyRequests: 429}[f]
				if err != nil || res.StatusCode != want {
					t.Fatalf("got %v, %v; want HTTP %d", res, err, want)
				}
			case Hang:
				var ue interface{ Timeout() bool }
				if !errors.As(err, &ue) || !ue.Timeout() {
					t.Fatalf("err = %v; want the client's timeout", err)
				}
			case Reset:
				if err == nil || !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "EOF") {
					t.Fatalf("err = %v; want a connection reset", err)
				}
			case ShortRead:
				if !errors.Is(err, io.ErrUnexpectedEOF) || res.ContentLength != int64(len(data)) || len(body) >= len(data) {
					t.Fatalf("got %d of %d bytes (Content-Length %d), err %v; want a short body with the full Content-Length",
						len(body), len(data), res.ContentLength, err)
				}
			case Truncate:
				if err != nil || res.ContentLength != -1 || len(body) >= len(data) || !bytes.Equal(body, data[:len(body)]) {
					t.Fatalf("got %d of %d bytes, err %v; want a clean, shorter prefix", len(body), len(data), err)
				}
			}
			if n := srv.Proxy.Injected(Read, f); n != 1 {
				t.Fatalf("%d %s faults counted, want 1", n, f)
			}
			// Limit 1: the next request passes.
			if _, body, err := rawGet(t, srv, "obj"); err != nil || !bytes.Equal(body, data) {
				t.Fatalf("second request: %d bytes, %v", len(body), err)
			}
		})
	}
}

// TestClassify checks the request kinds of the storage operations.
func TestClassify(t *testing.T) {
	srv := Start(t, "bkt1")
	ctx := context.Background()
	p := srv.Proxy
	step := func(name string, want Kind, run func() error) {
		t.Helper()
		p.ResetCounts()
		if err := run(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, k := range []Kind{Read, Write, List, Metadata} {
			if n := p.Requests(k); (n > 0) != (k&want != 0) {
				t.Errorf("%s: %d %s requests; want kinds %s (%s)", name, n, k, want, p.Summary())
			}
		}
	}
	step("WriteFile", Write, func() error { return storage.WriteFile(ctx, "gs://bkt1/a/x", []byte("x")) })
	step("ReadFile", Read, func() error { _, err := storage.ReadFile(ctx, "gs://bkt1/a/x"); return err })
	step("Stat", Metadata, func() error { _, err := storage.Stat(ctx, "gs://bkt1/a/x"); return err })
	step("Glob", List, func() error { _, err := storage.Glob(ctx, "gs://bkt1/a/*"); return err })
	step("Copy", Write, func() error { return storage.Copy(ctx, "gs://bkt1/a/x", "gs://bkt1/a/y") })
	step("Remove", Metadata|Write, func() error { return storage.Remove(ctx, "gs://bkt1/a/y") })
}

// TestRulesDeterministic: the same seed and requests give the same
// injections; Skip and Limit count matching requests.
func TestRulesDeterministic(t *testing.T) {
	srv := Start(t, "bkt1")
	ctx := context.Background()
	storage.WriteFile(ctx, "gs://bkt1/x", []byte("x"))
	srv.Store.SetGCSOptions(storage.GCSOptions{MaxAttempts: 1}) // each fault fails a Stat
	run := func(seed uint64) string {
		srv.Proxy.SetRules(seed, Rule{Kinds: Metadata, Fault: Unavailable, Prob: 0.5})
		var got strings.Builder
		for range 40 {
			n := srv.Proxy.Injected(Metadata)
			_, err := srv.Store.Stat(ctx, "gs://bkt1/x")
			fmt.Fprintf(&got, "%v", err != nil)
			if (err != nil) != (srv.Proxy.Injected(Metadata) > n) {
				t.Fatalf("error %v but injections %d -> %d", err, n, srv.Proxy.Injected(Metadata))
			}
		}
		return got.String()
	}
	a, b, c := run(7), run(7), run(8)
	if a != b || a == c {
		t.Fatalf("seed 7 twice: %q vs %q; seed 8: %q", a, b, c)
	}
	if !strings.Contains(a, "true") || !strings.Contains(a, "false") {
		t.Fatalf("probability 0.5 gave %q", a)
	}

	srv.Proxy.SetRules(1, Rule{Kinds: Metadata, Fault: Unavailable, Skip: 2, Limit: 3})
	var pattern []bool
	for range 7 {
		_, err := srv.Store.Stat(ctx, "gs://bkt1/x")
		pattern = append(pattern, err != nil)
	}
	if fmt.Sprint(pattern) != "[false false true true true false false]" {
		t.Fatalf("Skip 2, Limit 3 gave failures %v", pattern)
	}
}

// TestResentChunks: a chunk whose answer was lost is sent again; the proxy
// must make the emulator keep one copy, as GCS does.
func TestResentChunks(t *testing.T) {
	srv := Start(t, "bkt1")
	s := storage.NewStore(srv.Client)
	o := Options()
	o.ChunkSize = 256 << 10
	s.SetGCSOptions(o)
	data := make([]byte, 1<<20+5)
	for i := range data {
		data[i] = byte(i * 7)
	}
	srv.Proxy.SetRules(2, Rule{Kinds: Write, Fault: Reset, After: true,
		Match: func(r *http.Request) bool { return r.URL.Query().Get("upload_id") != "" }, Limit: 3})
	w, err := s.Create(context.Background(), "gs://bkt1/big")
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := srv.Proxy.Injected(Write, Reset); n != 3 {
		t.Fatalf("%d chunk answers lost, want 3", n)
	}
	got, err := srv.Direct.ReadFile(context.Background(), "gs://bkt1/big")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored %d bytes (%v), want the %d written", len(got), err, len(data))
	}
}
