package storage_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/storage/gcstest"
)

const testBucket = "bt-test"

// fakeGCS starts a fake GCS (through a fault proxy with no rules yet) for
// one test; the package-level functions use it until the test ends.
func fakeGCS(t *testing.T) *gcstest.Server {
	t.Helper()
	return gcstest.Start(t, testBucket)
}

type backend struct {
	name string
	root string // a fresh, empty directory or gs:// prefix for the test
}

var gsRoots atomic.Int64

// gsRoot returns a gs:// prefix no other test (or -count repetition) uses.
func gsRoot(t *testing.T) string {
	return fmt.Sprintf("gs://%s/%s-%d", testBucket, strings.ReplaceAll(t.Name(), "/", "_"), gsRoots.Add(1))
}

// forEachBackend runs f on a local directory and on a gs:// prefix of a
// fake GCS, each with a Store that retries fast, and returns the server
// for checks that follow.
func forEachBackend(t *testing.T, f func(t *testing.T, s *storage.Store, root string)) *gcstest.Server {
	srv := fakeGCS(t)
	for _, b := range []backend{{"local", t.TempDir()}, {"gcs", gsRoot(t)}} {
		t.Run(b.name, func(t *testing.T) { f(t, srv.Store, b.root) })
	}
	return srv
}

// rel strips root and turns separators into '/'.
func rel(root string, paths []string) []string {
	out := []string{}
	for _, p := range paths {
		r := strings.TrimPrefix(p, root)
		out = append(out, strings.TrimPrefix(filepath.ToSlash(r), "/"))
	}
	return out
}

func mustWrite(t *testing.T, s *storage.Store, p string, data string) {
	t.Helper()
	if err := s.WriteFile(context.Background(), p, []byte(data)); err != nil {
		t.Fatalf("WriteFile(%s): %v", p, err)
	}
}

func mustRead(t *testing.T, s *storage.Store, p string) string {
	t.Helper()
	b, err := s.ReadFile(context.Background(), p)
	if err != nil {
		t.Fatalf("ReadFile(%s): %v", p, err)
	}
	return string(b)
}

func assertMissing(t *testing.T, s *storage.Store, p string) {
	t.Helper()
	ok, err := s.Exists(context.Background(), p)
	if err != nil || ok {
		t.Fatalf("Exists(%s) = %v, %v; want false, nil", p, ok, err)
	}
}

func TestRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *storage.Store, root string) {
		ctx := context.Background()
		p := storage.Join(root, "deep", "er", "file.bin")
		data := bytes.Repeat([]byte("beamtune\x00\xff"), 1000)
		if err := s.WriteFile(ctx, p, data); err != nil {
			t.Fatal(err)
		}
		got, err := s.ReadFile(ctx, p)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("ReadFile = %d bytes, %v; want %d bytes", len(got), err, len(data))
		}
		// Overwrite replaces the content.
		mustWrite(t, s, p, "short")
		if got := mustRead(t, s, p); got != "short" {
			t.Fatalf("after overwrite got %q", got)
		}
		// Open streams the same bytes.
		r, err := s.Open(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil || string(b) != "short" {
			t.Fatalf("Open read %q, %v", b, err)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		// Empty files round-trip.
		e := storage.Join(root, "empty")
		mustWrite(t, s, e, "")
		if got := mustRead(t, s, e); got != "" {
			t.Fatalf("empty file read %q", got)
		}
		// Create streams in pieces.
		w, err := s.Create(ctx, storage.Join(root, "streamed.txt"))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "line %d\n", i)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := mustRead(t, s, storage.Join(root, "streamed.txt")); got != "line 0\nline 1\nline 2\n" {
			t.Fatalf("streamed got %q", got)
		}
	})
}

func TestReadFileLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *storage.Store, root string) {
		ctx := context.Background()
		p := storage.Join(root, "ten")
		mustWrite(t, s, p, "0123456789")
		if b, err := s.ReadFileLimit(ctx, p, 10); err != nil || string(b) != "0123456789" {
			t.Fatalf("limit 10: %q, %v", b, err)
		}
		_, err := s.ReadFileLimit(ctx, p, 9)
		if !errors.Is(err, storage.ErrTooLarge) || !strings.Contains(err.Error(), p) {
			t.Fatalf("limit 9: err = %v; want storage.ErrTooLarge naming %s", err, p)
		}
		if _, err := s.ReadFileLimit(ctx, p, -1); err == nil {
			t.Fatal("negative limit accepted")
		}
	})
}

func gzipped(t *testing.T, parts ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, p := range parts { // one gzip member per part
		zw := gzip.NewWriter(&buf)
		zw.Write([]byte(p))
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestOpenMaybeGzip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *storage.Store, root string) {
		ctx := context.Background()
		cases := []struct {
			name    string
			content []byte
			want    string
		}{
			{"compressed.jsonl", gzipped(t, "hello\n", "world\n"), "hello\nworld\n"}, // no .gz: detected by magic
			{"plain.jsonl.gz", []byte("not actually gzip"), "not actually gzip"},     // .gz name, plain bytes
			{"one-byte", []byte{0x1f}, "\x1f"},
			{"empty", nil, ""},
		}
		for _, c := range cases {
			p := storage.Join(root, c.name)
			if err := s.WriteFile(ctx, p, c.content); err != nil {
				t.Fatal(err)
			}
			r, err := s.OpenMaybeGzip(ctx, p)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || string(got) != c.want {
				t.Fatalf("%s: read %q, %v; want %q", c.name, got, err, c.want)
			}
		}
		// A corrupt stream fails while reading, naming the path.
		bad := gzipped(t, strings.Repeat("payload ", 100))
		bad = bad[:len(bad)-12]
		p := storage.Join(root, "truncated")
		if err := s.WriteFile(ctx, p, bad); err != nil {
			t.Fatal(err)
		}
		r, err := s.OpenMaybeGzip(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(r)
		r.Close()
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Fatalf("truncated gzip: err = %v; want an error naming %s", err, p)
		}
	})
}

func TestCreateAtomic(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *storage.Store, root string) {
		ctx := context.Background()
		p := storage.Join(root, "out", "model.bin")
		dirGlob := storage.Join(root, "out", "*")

		// Not visible before Close; visible after.
		w, err := s.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("v1")); err != nil {
			t.Fatal(err)
		}
		assertMissing(t, s, p)
		if m, err := s.Glob(ctx, dirGlob); err != nil || len(m) != 0 {
			t.Fatalf("Glob during write = %v, %v; want nothing (no temp files)", m, err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.Abort(); err != nil {
			t.Fatalf("Abort after Close: %v", err)
		}
		if err := w.Close(); err == nil {
			t.Fatal("second Close succeeded")
		}
		if got := mustRead(t, s, p); got != "v1" {
			t.Fatalf("got %q, want v1", got)
		}

		// Abort keeps the old content.
		w, err = s.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("v2-aborted"))
		if err := w.Abort(); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err == nil {
			t.Fatal("Close after Abort succeeded")
		}
		if got := mustRead(t, s, p); got != "v1" {
			t.Fatalf("after Abort got %q, want v1", got)
		}

		// Abort of a new path leaves nothing.
		q := storage.Join(root, "out", "never.bin")
		w, err = s.Create(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("nope"))
		w.Abort()
		assertMissing(t, s, q)

		// A failed Write (context cancelled): Close reports it and publishes nothing.
		cctx, cancel := context.WithCancel(ctx)
		w, err = s.Create(cctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("partial")); err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := w.Write([]byte("more")); err == nil {
			t.Fatal("Write after cancel succeeded")
		}
		if err := w.Close(); err == nil {
			t.Fatal("Close after a failed Write succeeded")
		}
		assertMissing(t, s, q)

		// Cancelled between the last Write and Close: nothing published.
		cctx, cancel = context.WithCancel(ctx)
		w, err = s.Create(cctx, q)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("all of it"))
		cancel()
		if err := w.Close(); err == nil || !errors.Is(err, context.Canceled) {
			t.Fatalf("Close with cancelled ctx: %v; want context.Canceled", err)
		}
		assertMissing(t, s, q)

		// Only the one published file is there: no temp litter.
		m, err := s.Glob(ctx, dirGlob)
		if err != nil || !reflect.DeepEqual(rel(root, m), []string{"out/model.bin"}) {
			t.Fatalf("Glob = %v, %v; want only out/model.bin", m, err)
		}
		if !storage.IsGCS(root) {
			entries, err := os.ReadDir(filepath.Join(root, "out"))
			if err != nil || len(entries) != 1 {
				t.Fatalf("dir holds %v (%v); want only model.bin", entries, err)
			}
			if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o644 {
				t.Fatalf("mode %v, want 0644", fi.Mode().Perm())
			}
		}
	})
}

func TestGlob(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *storage.Store, root string) {
		ctx := context.Background()
		for _, f := range []string{"a/x.json", "a/y.json", "a/z.txt", "a/sub/w.json", "a/sub/deeper/v.json", "b/x.json", "ab.json"} {
			mustWrite(t, s, storage.Join(root, f), f)
		}
		// wantGCS (when not nil) differs: local Glob also returns directories.
		var same []string
		cases := []struct {
			pattern       string
			want, wantGCS []string
		}{
			{"a/*.json", []string{"a/x.json", "a/y.json"}, same},
			{"*/x.json", []string{"a/x.json", "b/x.json"}, same},
			{"a/*", []string{"a/sub", "a/x.json", "a/y.json", "a/z.txt"}, []string{"a/x.json", "a/y.json", "a/z.txt"}},
			{"a/*/*.json", []string{"a/sub/w.json"}, same},
			{"a/s*/d*/*", []string{"a/sub/deeper/v.json"}, same},
			{"a/s*/d*", []string{"a/sub/deeper"}, []string{}},
			{"?/x.json", []string{"a/x.json", "b/x.json"}, same},
			{"[ab]*", []string{"a", "ab.json", "b"}, []string{"ab.json"}},
			{"a/x.json", []string{"a/x.json"}, same}, // no wildcard: exists
			{"a/sub", []string{"a/sub"}, []string{}}, // no wildcard: a directory
			{"nothing*", []string{}, same},
			{"a/missing.json", []string{}, same},
		}
		for _, c := range cases {
			want := c.want
			if storage.IsGCS(root) && c.wantGCS != nil {
				want = c.wantGCS
			}
			got, err := s.Glob(ctx, storage.Join(root, c.pattern))
			if err != nil {
				t.Fatalf("Glob(%s): %v", c.pattern, err)
			}
			if r := rel(root, got); !reflect.DeepEqual(r, want) {
				t.Errorf("Glob(%s) = %v; want %v", c.pattern, r, want)
			}
		}
		for _, bad := range []string{"a/[", "**/x.json"} {
			if _, err := s.Glob(ctx, storage.Join(root, bad)); err == nil {
				t.Errorf("Glob(%s) succeeded; want an error", bad)
			}
		}
	})
	// Rejected before any request: a store without a client will do.
	if _, err := new(storage.Store).Glob(context.Background(), "gs://bt-*/x"); err == nil {
		t.Error("wildcard bucket accepted")
	}
}

func TestStatExistsNotFound(t *testing.T) {
	srv := forEachBackend(t, func(t *testing.T, s *storage.Store, root string) {
		ctx := context.Background()
		p := storage.Join(root, "dir", "f.txt")
		mustWrite(t, s, p, "12345")
		info, err := s.Stat(ctx, p)
		if err != nil || info.Size != 5 || info.IsDir || info.ModTime.IsZero() {
			t.Fatalf("Stat = %+v, %v", info, err)
		}
		if storage.IsGCS(root) && info.Generation <= 0 {
			t.Fatalf("gs Stat generation = %d", info.Generation)
		}
		if info, err := s.Stat(ctx, storage.Join(root, "dir")); err != nil || !info.IsDir {
			t.Fatalf("Stat(dir) = %+v, %v; want a directory", info, err)
		}
		for _, q := range []string{p, storage.Join(root, "dir")} {
			if ok, err := s.Exists(ctx, q); err != nil || !ok {
				t.Fatalf("Exists(%s) = %v, %v", q, ok, err)
			}
		}

		missing := storage.Join(root, "dir", "nope.txt")
		assertMissing(t, s, missing)
		assertMissing(t, s, storage.Join(root, "di")) // a name prefix is not a directory
		checkNotExist := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
				t.Errorf("%s: err = %v; want fs.ErrNotExist naming %s", what, err, missing)
			}
		}
		_, err = s.Stat(ctx, missing)
		checkNotExist("Stat", err)
		_, err = s.Open(ctx, missing)
		checkNotExist("Open", err)
		_, err = s.ReadFile(ctx, missing)
		checkNotExist("ReadFile", err)
		_, _, err = s.ReadFileWithGeneration(ctx, missing)
		checkNotExist("ReadFileWithGeneration", err)
		checkNotExist("Remove", s.Remove(ctx, missing))
		err = s.Copy(ctx, missing, storage.Join(root, "copy"))
		checkNotExist("Copy", err)

		if err := s.Remove(ctx, p); err != nil {
			t.Fatal(err)
		}
		assertMissing(t, s, p)
	})

	s := srv.Store
	ctx := context.Background()
	for _, p := range []string{"gs://no-such-bucket/x", "gs://no-such-bucket"} {
		if ok, err := s.Exists(ctx, p); err != nil || ok {
			t.Errorf("Exists(%s) = %v, %v; want false, nil", p, ok, err)
		}
	}
	if _, err := s.ReadFile(ctx, "gs://no-such-bucket/x"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("read from missing bucket: %v; want fs.ErrNotExist", err)
	}
	if ok, err := s.Exists(ctx, "gs://"+testBucket); err != nil || !ok {
		t.Errorf("Exists(bucket) = %v, %v", ok, err)
	}
}

func TestRemoveAll(t *testing.T) {
	srv := forEachBackend(t, func(t *testing.T, s *storage.Store, root string) {
		ctx := context.Background()
		for i := 0; i < 20; i++ {
			mustWrite(t, s, storage.Join(root, "run", fmt.Sprintf("ckpt-%02d", i/5), fmt.Sprintf("shard-%d", i)), "x")
		}
		mustWrite(t, s, storage.Join(root, "run2", "keep"), "k") // shares the name prefix "run"
		mustWrite(t, s, storage.Join(root, "runfile"), "k")
		if err := s.RemoveAll(ctx, storage.Join(root, "run")); err != nil {
			t.Fatal(err)
		}
		assertMissing(t, s, storage.Join(root, "run"))
		for _, kept := range []string{"run2/keep", "runfile"} {
			if got := mustRead(t, s, storage.Join(root, kept)); got != "k" {
				t.Fatalf("%s: %q", kept, got)
			}
		}
		if err := s.RemoveAll(ctx, storage.Join(root, "never-existed")); err != nil {
			t.Fatalf("RemoveAll(missing) = %v", err)
		}
		// A single file/object.
		if err := s.RemoveAll(ctx, storage.Join(root, "runfile")); err != nil {
			t.Fatal(err)
		}
		assertMissing(t, s, storage.Join(root, "runfile"))
	})
	s := srv.Store
	for _, p := range []string{"gs://" + testBucket, "gs://" + testBucket + "/"} {
		if err := s.RemoveAll(context.Background(), p); err == nil {
			t.Errorf("RemoveAll(%s) accepted", p)
		}
	}
	if err := s.RemoveAll(context.Background(), "/"); err == nil {
		t.Error("RemoveAll(/) accepted")
	}
}

func TestCompareAndSwap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *storage.Store, root string) {
		ctx := context.Background()
		p := storage.Join(root, "registry", "index.json")

		g1, err := s.WriteFileIfGeneration(ctx, p, []byte("v1"), 0)
		if err != nil || g1 == 0 {
			t.Fatalf("create with gen 0: %d, %v", g1, err)
		}
		if _, err := s.WriteFileIfGeneration(ctx, p, []byte("again"), 0); !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), p) {
			t.Fatalf("second create: %v; want storage.ErrPrecondition naming the path", err)
		}
		data, gen, err := s.ReadFileWithGeneration(ctx, p)
		if err != nil || string(data) != "v1" || gen != g1 {
			t.Fatalf("ReadFileWithGeneration = %q, %d, %v; want v1, %d", data, gen, err, g1)
		}
		g2, err := s.WriteFileIfGeneration(ctx, p, []byte("v2"), g1)
		if err != nil || g2 == g1 {
			t.Fatalf("update: %d, %v", g2, err)
		}
		if _, err := s.WriteFileIfGeneration(ctx, p, []byte("stale"), g1); !errors.Is(err, storage.ErrPrecondition) {
			t.Fatalf("stale update: %v; want ErrPrecondition", err)
		}
		if _, err := s.WriteFileIfGeneration(ctx, p, nil, -1); err == nil {
			t.Fatal("negative generation accepted")
		}
		// A plain write also changes the generation.
		mustWrite(t, s, p, "v3")
		if _, err := s.WriteFileIfGeneration(ctx, p, []byte("v4"), g2); !errors.Is(err, storage.ErrPrecondition) {
			t.Fatalf("update after a plain write: %v; want ErrPrecondition", err)
		}

		race := func(p string, from int64) {
			t.Helper()
			const n = 8
			var (
				wg      sync.WaitGroup
				start   = make(chan struct{})
				winners []int
				mu      sync.Mutex
				errs    = make([]error, n)
			)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, err := s.WriteFileIfGeneration(ctx, p, []byte(fmt.Sprintf("writer-%d", i)), from)
					errs[i] = err
					if err == nil {
						mu.Lock()
						winners = append(winners, i)
						mu.Unlock()
					}
				}()
			}
			close(start)
			wg.Wait()
			if len(winners) != 1 {
				t.Fatalf("%d winners %v; want exactly 1 (errors %v)", len(winners), winners, errs)
			}
			for i, err := range errs {
				if i != winners[0] && !errors.Is(err, storage.ErrPrecondition) {
					t.Fatalf("loser %d: %v; want ErrPrecondition", i, err)
				}
			}
			if got := mustRead(t, s, p); got != fmt.Sprintf("writer-%d", winners[0]) {
				t.Fatalf("content %q; want the winner's (writer-%d)", got, winners[0])
			}
		}
		_, gen, err = s.ReadFileWithGeneration(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		race(p, gen)                                               // update race
		race(storage.Join(root, "registry", "fresh.json"), 0)      // create race
		m, err := s.Glob(ctx, storage.Join(root, "registry", "*")) // no lock litter
		if err != nil || !reflect.DeepEqual(rel(root, m), []string{"registry/fresh.json", "registry/index.json"}) {
			t.Fatalf("Glob = %v, %v", m, err)
		}
		if !storage.IsGCS(root) {
			entries, _ := os.ReadDir(filepath.Join(root, "registry"))
			if len(entries) != 2 {
				t.Fatalf("registry dir holds %v; want 2 files", entries)
			}
		}
	})
}

func TestCopy(t *testing.T) {
	ctx := context.Background()
	s := fakeGCS(t).Store
	local := t.TempDir()
	gs := gsRoot(t)
	data := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	src := storage.Join(local, "src.bin")
	if err := s.WriteFile(ctx, src, data); err != nil {
		t.Fatal(err)
	}
	steps := []struct{ from, to string }{
		{src, storage.Join(gs, "a.bin")},                                    // local -> gs
		{storage.Join(gs, "a.bin"), storage.Join(gs, "b", "b.bin")},         // gs -> gs (server side)
		{storage.Join(gs, "b", "b.bin"), storage.Join(local, "x", "c.bin")}, // gs -> local
		{storage.Join(local, "x", "c.bin"), storage.Join(local, "d.bin")},   // local -> local
	}
	for _, st := range steps {
		if err := s.Copy(ctx, st.from, st.to); err != nil {
			t.Fatalf("Copy(%s, %s): %v", st.from, st.to, err)
		}
		got, err := s.ReadFile(ctx, st.to)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: %d bytes, %v", st.to, len(got), err)
		}
	}
	if err := s.Copy(ctx, storage.Join(gs, "missing"), storage.Join(gs, "z")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("gs copy of a missing object: %v; want fs.ErrNotExist", err)
	}
}

func TestParseGCS(t *testing.T) {
	good := []struct{ uri, bucket, object string }{
		{"gs://bucket/path/to/obj.json", "bucket", "path/to/obj.json"},
		{"gs://bucket", "bucket", ""},
		{"gs://bucket/", "bucket", ""},
		{"gs://my.bucket_1-x/dir/", "my.bucket_1-x", "dir/"},
		{"gs://bkt/a//b", "bkt", "a//b"},
	}
	for _, g := range good {
		b, o, err := storage.ParseGCS(g.uri)
		if err != nil || b != g.bucket || o != g.object {
			t.Errorf("storage.ParseGCS(%q) = %q, %q, %v; want %q, %q", g.uri, b, o, err, g.bucket, g.object)
		}
	}
	bad := map[string]string{
		"/local/path":      "not a gs:// URI",
		"gs:/bucket/x":     "not a gs:// URI",
		"s3://bucket/x":    "not a gs:// URI",
		"gs://":            "no bucket",
		"gs:///obj":        "no bucket",
		"gs://Bucket/x":    "invalid character",
		"gs://ab/x":        "3 to 63",
		"gs://-bucket/x":   "start and end",
		"gs://bucket/a\nb": "line feed",
		"gs://bucket/..":   "not allowed",
		"gs://bucket/\xff": "UTF-8",
		"gs://bucket/" + strings.Repeat("x", 1025): "1024",
		"gs://" + strings.Repeat("b", 64) + "/x":   "3 to 63",
	}
	for uri, want := range bad {
		_, _, err := storage.ParseGCS(uri)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("storage.ParseGCS(%q) err = %v; want it to mention %q", uri, err, want)
		}
	}
	// Near-miss URIs are not silently treated as local paths.
	for _, p := range []string{"gs:/bucket/x", "GS://bucket/x"} {
		if _, err := new(storage.Store).ReadFile(context.Background(), p); err == nil || !strings.Contains(err.Error(), "malformed") {
			t.Errorf("ReadFile(%q) err = %v; want malformed URI", p, err)
		}
	}
	if !storage.IsGCS("gs://b/x") || storage.IsGCS("/tmp/gs://x") || storage.IsGCS("gsx://b") {
		t.Error("storage.IsGCS wrong")
	}
}

func TestJoin(t *testing.T) {
	cases := []struct {
		got, want string
	}{
		{storage.Join("gs://b", "x", "y.json"), "gs://b/x/y.json"},
		{storage.Join("gs://b/", "x"), "gs://b/x"},
		{storage.Join("gs://b/run/", "/ckpt", "a"), "gs://b/run/ckpt/a"},
		{storage.Join("gs://b/run", "..", "..", "x"), "gs://b/x"},
		{storage.Join("gs://b/run"), "gs://b/run"},
		{storage.Join("gs://b/run/"), "gs://b/run"},
		{storage.Join("gs://b"), "gs://b"},
		{storage.Join("/tmp/a", "b", "c"), filepath.Join("/tmp/a", "b", "c")},
		{storage.Join("rel", "x"), filepath.Join("rel", "x")},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("storage.Join = %q; want %q", c.got, c.want)
		}
	}
}

// TestPackageLevel exercises the package-level functions on the default
// Store (pointed at the fake server by gcstest.Start).
func TestPackageLevel(t *testing.T) {
	srv := fakeGCS(t)
	ctx := context.Background()
	for _, p := range []string{storage.Join(t.TempDir(), "f"), storage.Join(gsRoot(t), "f")} {
		if err := storage.WriteFile(ctx, p, []byte("pkg")); err != nil {
			t.Fatal(err)
		}
		if b, err := storage.ReadFile(ctx, p); err != nil || string(b) != "pkg" {
			t.Fatalf("%s: %q, %v", p, b, err)
		}
		if ok, err := storage.Exists(ctx, p); err != nil || !ok {
			t.Fatalf("Exists(%s) = %v, %v", p, ok, err)
		}
		if err := storage.Remove(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if srv.Proxy.Requests(gcstest.AnyKind) == 0 {
		t.Error("the default store did not go through the test server")
	}
}

// TestEmulatorFromEnvironment checks the lazily created client honours
// STORAGE_EMULATOR_HOST (no credentials needed).
func TestEmulatorFromEnvironment(t *testing.T) {
	srv := fakeGCS(t)
	srv.SetEmulatorEnv(t)
	s := &storage.Store{}
	ctx := context.Background()
	p := storage.Join(gsRoot(t), "x")
	if err := s.WriteFile(ctx, p, []byte("env")); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, srv.Direct, p); got != "env" {
		t.Fatalf("got %q", got)
	}
	if srv.Proxy.Requests(gcstest.Write) == 0 {
		t.Error("the write did not go to the emulator named in the environment")
	}
	c := s.SetGCSClient(nil) // the client the store created
	if c == nil {
		t.Fatal("no client was created")
	}
	c.Close()
}

// TestLargeUpload covers uploads bigger than one 16 MiB chunk (a resumable
// session on GCS): a complete one round-trips, and one aborted after its
// first chunk was sent publishes nothing.
func TestLargeUpload(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *storage.Store, root string) {
		ctx := context.Background()
		chunk := bytes.Repeat([]byte("checkpoint-shard"), 1<<16) // 1 MiB
		write := func(p string, mib int) storage.Writer {
			t.Helper()
			w, err := s.Create(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < mib; i++ {
				if _, err := w.Write(chunk); err != nil {
					t.Fatal(err)
				}
			}
			return w
		}
		p := storage.Join(root, "big.bin")
		if err := write(p, 17).Close(); err != nil {
			t.Fatal(err)
		}
		if info, err := s.Stat(ctx, p); err != nil || info.Size != 17<<20 {
			t.Fatalf("Stat = %+v, %v; want %d bytes", info, err, 17<<20)
		}
		q := storage.Join(root, "aborted.bin")
		w := write(q, 18)
		if err := w.Abort(); err != nil {
			t.Fatal(err)
		}
		assertMissing(t, s, q)
	})
}
