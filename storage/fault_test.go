package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/storage/gcstest"
)

// These tests run every storage operation on gs:// through gcstest's fault
// proxy: transient faults must be retried away with correct results,
// persistent ones must end in a clean error naming the path within the
// retry bounds, and no failure may ever leave a partial object.

// faultChunk is the upload chunk of the fault tests: small, so that a
// 1 MiB Create streams several chunks through a resumable session.
const faultChunk = 256 << 10

// faultStore is a Store through the proxy with gcstest's fast retries,
// small chunks and a shorter attempt timeout (each injected hang costs one).
func faultStore(srv *gcstest.Server) *storage.Store {
	s := storage.NewStore(srv.Client)
	o := gcstest.Options()
	o.ChunkSize, o.AttemptTimeout = faultChunk, 250*time.Millisecond
	s.SetGCSOptions(o)
	return s
}

// blob is deterministic content of n bytes (distinct per tag).
func blob(tag string, n int) []byte {
	r := rand.New(rand.NewPCG(uint64(len(tag)), uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	copy(b, tag)
	return b
}

// op is one storage operation that checks its own result against what is
// really stored (srv.Direct, which bypasses the proxy).
type op struct {
	name string
	// prepare runs before the faults are switched on.
	prepare func(t *testing.T, d *storage.Store, root string)
	// run performs the operation; check verifies its result once it
	// succeeded.
	run   func(ctx context.Context, s *storage.Store, root string) error
	check func(t *testing.T, d *storage.Store, root string)
}

func want(t *testing.T, d *storage.Store, p string, data []byte) {
	t.Helper()
	got, err := d.ReadFile(context.Background(), p)
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("%s holds %d bytes, want %d (content differs)", p, len(got), len(data))
	}
}

func put(t *testing.T, d *storage.Store, p string, data []byte) {
	t.Helper()
	if err := d.WriteFile(context.Background(), p, data); err != nil {
		t.Fatal(err)
	}
}

var (
	small  = blob("small", 3000)
	medium = blob("medium", 300<<10)   // two chunks when streamed, one request with WriteFile
	large  = blob("large", 1<<20+1234) // five chunks
)

// ops is the table of operations; each uses its own names under root.
// direct reads the truth; tempDir gives local directories.
func ops(direct *storage.Store, tempDir func() string) []op {
	var gen int64 // of cas-update, set by prepare
	sameGeneration := func(ctx context.Context, p string, g int64) error {
		info, err := direct.Stat(ctx, p)
		if err == nil && info.Generation != g {
			return fmt.Errorf("returned generation %d, stored %d", g, info.Generation)
		}
		return err
	}
	return []op{
		{name: "WriteFile",
			run: func(ctx context.Context, s *storage.Store, root string) error {
				return s.WriteFile(ctx, root+"/wf", medium)
			},
			check: func(t *testing.T, d *storage.Store, root string) { want(t, d, root+"/wf", medium) }},
		{name: "Create/small",
			run: func(ctx context.Context, s *storage.Store, root string) error {
				w, err := s.Create(ctx, root+"/cs")
				if err != nil {
					return err
				}
				defer w.Abort()
				w.Write(small[:1000])
				w.Write(small[1000:])
				return w.Close()
			},
			check: func(t *testing.T, d *storage.Store, root string) { want(t, d, root+"/cs", small) }},
		{name: "Create/chunked",
			run: func(ctx context.Context, s *storage.Store, root string) error {
				w, err := s.Create(ctx, root+"/cc")
				if err != nil {
					return err
				}
				defer w.Abort()
				for b := large; len(b) > 0; {
					n := min(len(b), 100<<10)
					if _, err := w.Write(b[:n]); err != nil {
						return err
					}
					b = b[n:]
				}
				return w.Close()
			},
			check: func(t *testing.T, d *storage.Store, root string) { want(t, d, root+"/cc", large) }},
		{name: "ReadFile",
			prepare: func(t *testing.T, d *storage.Store, root string) { put(t, d, root+"/rf", medium) },
			run: func(ctx context.Context, s *storage.Store, root string) error {
				got, err := s.ReadFile(ctx, root+"/rf")
				if err == nil && !bytes.Equal(got, medium) {
					return fmt.Errorf("ReadFile returned %d bytes, want %d (content differs)", len(got), len(medium))
				}
				return err
			}},
		{name: "Open",
			prepare: func(t *testing.T, d *storage.Store, root string) { put(t, d, root+"/op", large) },
			run: func(ctx context.Context, s *storage.Store, root string) error {
				r, err := s.Open(ctx, root+"/op")
				if err != nil {
					return err
				}
				defer r.Close()
				got, err := io.ReadAll(r)
				if err == nil && !bytes.Equal(got, large) {
					return fmt.Errorf("Open read %d bytes, want %d (content differs)", len(got), len(large))
				}
				return err
			}},
		{name: "ReadFileWithGeneration",
			prepare: func(t *testing.T, d *storage.Store, root string) { put(t, d, root+"/rg", small) },
			run: func(ctx context.Context, s *storage.Store, root string) error {
				got, g, err := s.ReadFileWithGeneration(ctx, root+"/rg")
				if err != nil {
					return err
				}
				info, err := s.Stat(ctx, root+"/rg")
				if err == nil && (!bytes.Equal(got, small) || g != info.Generation) {
					return fmt.Errorf("read %d bytes at generation %d; want %d at %d", len(got), g, len(small), info.Generation)
				}
				return err
			}},
		{name: "CAS/create",
			run: func(ctx context.Context, s *storage.Store, root string) error {
				g, err := s.WriteFileIfGeneration(ctx, root+"/cas-new", small, 0)
				if err == nil {
					err = sameGeneration(ctx, root+"/cas-new", g)
				}
				return err
			},
			check: func(t *testing.T, d *storage.Store, root string) { want(t, d, root+"/cas-new", small) }},
		{name: "CAS/update",
			prepare: func(t *testing.T, d *storage.Store, root string) {
				put(t, d, root+"/cas", []byte("old"))
				info, err := d.Stat(context.Background(), root+"/cas")
				if err != nil {
					t.Fatal(err)
				}
				gen = info.Generation
			},
			run: func(ctx context.Context, s *storage.Store, root string) error {
				g, err := s.WriteFileIfGeneration(ctx, root+"/cas", medium, gen)
				if err == nil {
					err = sameGeneration(ctx, root+"/cas", g)
				}
				return err
			},
			check: func(t *testing.T, d *storage.Store, root string) { want(t, d, root+"/cas", medium) }},
		{name: "Stat",
			prepare: func(t *testing.T, d *storage.Store, root string) { put(t, d, root+"/st", small) },
			run: func(ctx context.Context, s *storage.Store, root string) error {
				info, err := s.Stat(ctx, root+"/st")
				if err == nil && (info.Size != int64(len(small)) || info.Generation == 0) {
					return fmt.Errorf("Stat = %+v", info)
				}
				return err
			}},
		{name: "Exists/dir",
			prepare: func(t *testing.T, d *storage.Store, root string) { put(t, d, root+"/dir/x", small) },
			run: func(ctx context.Context, s *storage.Store, root string) error {
				ok, err := s.Exists(ctx, root+"/dir")
				if err == nil && !ok {
					return errors.New("directory reported missing")
				}
				return err
			}},
		{name: "Glob",
			prepare: func(t *testing.T, d *storage.Store, root string) {
				for _, n := range []string{"a.json", "b.json", "c.txt"} {
					put(t, d, root+"/g/"+n, small)
				}
			},
			run: func(ctx context.Context, s *storage.Store, root string) error {
				got, err := s.Glob(ctx, root+"/g/*.json")
				if w := []string{root + "/g/a.json", root + "/g/b.json"}; err == nil && !reflect.DeepEqual(got, w) {
					return fmt.Errorf("Glob = %v, want %v", got, w)
				}
				return err
			}},
		{name: "Copy/gs-gs",
			prepare: func(t *testing.T, d *storage.Store, root string) { put(t, d, root+"/src", medium) },
			run: func(ctx context.Context, s *storage.Store, root string) error {
				return s.Copy(ctx, root+"/src", root+"/dst")
			},
			check: func(t *testing.T, d *storage.Store, root string) { want(t, d, root+"/dst", medium) }},
		{name: "Copy/local-gs-local",
			run: func(ctx context.Context, s *storage.Store, root string) error {
				dir := tempDir()
				local := filepath.Join(dir, "in")
				if err := s.WriteFile(ctx, local, large); err != nil {
					return err
				}
				if err := s.Copy(ctx, local, root+"/up"); err != nil {
					return err
				}
				if err := s.Copy(ctx, root+"/up", filepath.Join(dir, "back")); err != nil {
					return err
				}
				got, err := s.ReadFile(ctx, filepath.Join(dir, "back"))
				if err == nil && !bytes.Equal(got, large) {
					return errors.New("round trip through gs:// changed the content")
				}
				return err
			},
			check: func(t *testing.T, d *storage.Store, root string) { want(t, d, root+"/up", large) }},
		{name: "Remove",
			prepare: func(t *testing.T, d *storage.Store, root string) { put(t, d, root+"/rm", small) },
			run:     func(ctx context.Context, s *storage.Store, root string) error { return s.Remove(ctx, root+"/rm") },
			check:   func(t *testing.T, d *storage.Store, root string) { assertMissing(t, d, root+"/rm") }},
		{name: "RemoveAll",
			prepare: func(t *testing.T, d *storage.Store, root string) {
				for i := range 5 {
					put(t, d, fmt.Sprintf("%s/tree/%d", root, i), small)
				}
			},
			run:   func(ctx context.Context, s *storage.Store, root string) error { return s.RemoveAll(ctx, root+"/tree") },
			check: func(t *testing.T, d *storage.Store, root string) { assertMissing(t, d, root+"/tree") }},
	}
}

// runOps runs every op under the rules, each in a fresh root, and checks
// it succeeded with faults actually injected into it.
func runOps(t *testing.T, srv *gcstest.Server, s *storage.Store, rules ...gcstest.Rule) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, o := range ops(srv.Direct, t.TempDir) {
		t.Run(o.name, func(t *testing.T) {
			root := gsRoot(t)
			srv.Proxy.Clear()
			if o.prepare != nil {
				o.prepare(t, srv.Direct, root)
			}
			before := srv.Proxy.Injected(gcstest.AnyKind)
			seen := len(srv.Proxy.Events())
			srv.Proxy.SetRules(uint64(i+1), rules...)
			err := o.run(ctx, s, root)
			srv.Proxy.Clear()
			if err != nil {
				t.Fatalf("%v\nfaults: %v", err, srv.Proxy.Events()[seen:])
			}
			if srv.Proxy.Injected(gcstest.AnyKind) == before {
				t.Fatalf("no fault was injected (%s)", srv.Proxy.Summary())
			}
			if o.check != nil {
				o.check(t, srv.Direct, root)
			}
		})
	}
}

// TestTransientFaults: every operation survives its first requests
// failing with each fault.
func TestTransientFaults(t *testing.T) {
	srv := fakeGCS(t)
	s := faultStore(srv)
	for _, f := range gcstest.Faults {
		t.Run(f.String(), func(t *testing.T) {
			limit := 2
			if f == gcstest.Hang {
				limit = 1 // each costs an attempt timeout
			}
			runOps(t, srv, s, gcstest.Rule{Fault: f, Limit: limit})
		})
	}
}

// TestLostResponses: requests that change objects take effect but their
// answer is lost (connection reset, hang, 503 or a cut body after the
// server applied them); the retries must converge on the right result.
func TestLostResponses(t *testing.T) {
	srv := fakeGCS(t)
	s := faultStore(srv)
	for _, f := range []gcstest.Fault{gcstest.Reset, gcstest.Hang, gcstest.Unavailable, gcstest.ShortRead} {
		t.Run(f.String(), func(t *testing.T) {
			runOps(t, srv, s, gcstest.Rule{Kinds: gcstest.Write, Fault: f, After: true, Limit: 1},
				// Ops that do not write get their faults elsewhere.
				gcstest.Rule{Kinds: gcstest.Read | gcstest.List | gcstest.Metadata, Fault: f, After: true, Limit: 1})
		})
	}
}

// TestRandomFaults mixes every fault on every kind of request at random
// (seeded), at a rate the retries absorb.
func TestRandomFaults(t *testing.T) {
	srv := fakeGCS(t)
	s := faultStore(srv)
	var rules []gcstest.Rule
	for _, f := range gcstest.Faults {
		p := 0.06
		if f == gcstest.Hang {
			p = 0.01
		}
		rules = append(rules, gcstest.Rule{Fault: f, Prob: p}, gcstest.Rule{Kinds: gcstest.Write, Fault: f, Prob: p / 2, After: true})
	}
	// Make sure each op meets at least one fault.
	rules = append(rules, gcstest.Rule{Fault: gcstest.Unavailable, Limit: 1})
	runOps(t, srv, s, rules...)
}

// TestPersistentFaults: when a fault never clears, each kind of operation
// fails within its retry bounds with an error naming the path, and leaves
// nothing partial behind.
func TestPersistentFaults(t *testing.T) {
	srv := fakeGCS(t)
	s := storage.NewStore(srv.Client)
	o := gcstest.Options()
	// A short attempt timeout: every op here meets hangs until it gives up.
	o.MaxAttempts, o.AttemptTimeout, o.ChunkSize = 3, 100*time.Millisecond, faultChunk
	s.SetGCSOptions(o)
	// The worst case: MaxAttempts attempt timeouts plus backoff pauses.
	bound := time.Duration(o.MaxAttempts)*(o.AttemptTimeout+o.MaxBackoff) + 2*time.Second
	ctx := context.Background()

	type attempt struct {
		name   string
		path   string
		old    []byte // what path holds before
		new    []byte // what a write puts there (nil: not a write)
		vanish bool   // a delete: path may be gone
		run    func(p string) error
		kinds  gcstest.Kind // where the fault strikes
	}
	for _, f := range gcstest.Faults {
		t.Run(f.String(), func(t *testing.T) {
			root := gsRoot(t)
			var gen int64
			attempts := []attempt{
				{name: "WriteFile", path: root + "/wf", old: small, new: medium, kinds: gcstest.Write,
					run: func(p string) error { return s.WriteFile(ctx, p, medium) }},
				{name: "Create/chunked", path: root + "/cc", old: small, new: large, kinds: gcstest.Write,
					run: func(p string) error {
						w, err := s.Create(ctx, p)
						if err != nil {
							return err
						}
						defer w.Abort()
						if _, err := w.Write(large); err != nil {
							return err
						}
						return w.Close()
					}},
				{name: "CAS", path: root + "/cas", old: small, new: medium, kinds: gcstest.Write,
					run: func(p string) error { _, err := s.WriteFileIfGeneration(ctx, p, medium, gen); return err }},
				{name: "Copy", path: root + "/cp", old: small, new: large, kinds: gcstest.Write,
					run: func(p string) error { return s.Copy(ctx, root+"/cc-src", p) }},
				{name: "ReadFile", path: root + "/rf", old: medium, kinds: gcstest.Read,
					run: func(p string) error { _, err := s.ReadFile(ctx, p); return err }},
				{name: "Open", path: root + "/op", old: large, kinds: gcstest.Read,
					run: func(p string) error {
						r, err := s.Open(ctx, p)
						if err != nil {
							return err
						}
						defer r.Close()
						_, err = io.Copy(io.Discard, r)
						return err
					}},
				{name: "ReadFileWithGeneration", path: root + "/rg", old: small, kinds: gcstest.Read,
					run: func(p string) error { _, _, err := s.ReadFileWithGeneration(ctx, p); return err }},
				{name: "Stat", path: root + "/st", old: small, kinds: gcstest.Metadata,
					run: func(p string) error { _, err := s.Stat(ctx, p); return err }},
				{name: "Exists", path: root + "/ex", old: small, kinds: gcstest.Metadata | gcstest.List,
					run: func(p string) error { _, err := s.Exists(ctx, p+"-dir"); return err }},
				{name: "Glob", path: root + "/gl", old: small, kinds: gcstest.List,
					run: func(p string) error { _, err := s.Glob(ctx, p+"*"); return err }},
				{name: "Remove", path: root + "/rm", old: small, vanish: true, kinds: gcstest.AnyKind,
					run: func(p string) error { return s.Remove(ctx, p) }},
				{name: "RemoveAll", path: root + "/ra", old: small, vanish: true, kinds: gcstest.AnyKind,
					run: func(p string) error { return s.RemoveAll(ctx, p) }},
			}
			put(t, srv.Direct, root+"/cc-src", large)
			for _, a := range attempts {
				t.Run(a.name, func(t *testing.T) {
					srv.Proxy.Clear()
					put(t, srv.Direct, a.path, a.old)
					info, err := srv.Direct.Stat(ctx, a.path)
					if err != nil {
						t.Fatal(err)
					}
					gen = info.Generation
					before := srv.Proxy.Injected(gcstest.AnyKind)
					srv.Proxy.SetRules(7, gcstest.Rule{Kinds: a.kinds, Fault: f})
					start := time.Now()
					err = a.run(a.path)
					took := time.Since(start)
					srv.Proxy.Clear()
					if err == nil {
						t.Fatalf("succeeded under a persistent %s (%s)", f, srv.Proxy.Summary())
					}
					if !strings.Contains(err.Error(), a.path) || errors.Is(err, fs.ErrNotExist) {
						t.Errorf("error %q: want one naming %s, not a not-found", err, a.path)
					}
					if took > bound {
						t.Errorf("gave up after %s, bound %s", took, bound)
					}
					if srv.Proxy.Injected(gcstest.AnyKind) == before {
						t.Error("no fault injected")
					}
					t.Logf("%s after %s: %v", f, took.Round(time.Millisecond), err)
					// The invariant: the old content or the complete new one
					// (or, for deletes, nothing).
					got, err := srv.Direct.ReadFile(ctx, a.path)
					if a.vanish && errors.Is(err, fs.ErrNotExist) {
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, a.old) && (a.new == nil || !bytes.Equal(got, a.new)) {
						t.Fatalf("%s holds %d bytes: neither the old (%d) nor the new content", a.path, len(got), len(a.old))
					}
				})
			}
		})
	}
}

// TestRetryTimeBound: with attempts unbounded, RetryTime alone ends the
// retrying, with a RetryError that says what kept failing.
func TestRetryTimeBound(t *testing.T) {
	srv := fakeGCS(t)
	s := storage.NewStore(srv.Client)
	s.SetGCSOptions(storage.GCSOptions{InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		MaxAttempts: 100000, RetryTime: 400 * time.Millisecond})
	p := gsRoot(t) + "/x"
	put(t, srv.Direct, p, small)
	srv.Proxy.SetRules(3, gcstest.Rule{Fault: gcstest.Unavailable})
	for name, run := range map[string]func() error{
		"read":  func() error { _, err := s.ReadFile(context.Background(), p); return err },
		"write": func() error { return s.WriteFile(context.Background(), p, medium) },
		"stat":  func() error { _, err := s.Stat(context.Background(), p); return err },
	} {
		start := time.Now()
		err := run()
		took := time.Since(start)
		var re *storage.RetryError
		if !errors.As(err, &re) || re.Attempts < 3 || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "503") {
			t.Errorf("%s: err = %v; want a RetryError naming %s and the 503", name, err, p)
		}
		if took < 400*time.Millisecond || took > 3*time.Second {
			t.Errorf("%s: gave up after %s; want about RetryTime (400ms)", name, took)
		}
	}
	want(t, srv.Direct, p, small)
}

// TestWriteInvariant writes versions of a few objects with every kind of
// write under heavy random faults and checks, after every single write,
// that the object holds a complete version: the new one after a success,
// the previous or the new one after a failure; never a mix, never a part.
func TestWriteInvariant(t *testing.T) {
	srv := fakeGCS(t)
	s := storage.NewStore(srv.Client)
	o := gcstest.Options()
	o.MaxAttempts, o.AttemptTimeout, o.ChunkSize = 3, 200*time.Millisecond, faultChunk
	s.SetGCSOptions(o)
	ctx := context.Background()
	root := gsRoot(t)
	rng := rand.New(rand.NewPCG(42, 42))
	var rules []gcstest.Rule
	// About half of all write requests fail, so that with 3 attempts some
	// writes fail and most succeed, through every path.
	for _, f := range gcstest.Faults {
		p := 0.07
		if f == gcstest.Hang {
			p = 0.01
		}
		rules = append(rules, gcstest.Rule{Kinds: gcstest.Write, Fault: f, Prob: p},
			gcstest.Rule{Kinds: gcstest.Write, Fault: f, Prob: p / 2, After: true},
			gcstest.Rule{Kinds: gcstest.Read | gcstest.Metadata, Fault: f, Prob: p / 2})
	}
	current := map[string][]byte{} // path -> the version stored (nil: none)
	var ok, failed int
	for i := range 60 {
		p := fmt.Sprintf("%s/obj-%d", root, i%3)
		size := []int{0, 10, 5000, 300 << 10, 700 << 10}[rng.IntN(5)]
		data := blob(fmt.Sprintf("v%d", i), size)
		how := []string{"WriteFile", "Create", "CAS"}[rng.IntN(3)]
		var gen int64
		if how == "CAS" && current[p] != nil {
			info, err := srv.Direct.Stat(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			gen = info.Generation
		}
		srv.Proxy.SetRules(uint64(i), rules...)
		var err error
		switch how {
		case "WriteFile":
			err = s.WriteFile(ctx, p, data)
		case "Create":
			var w storage.Writer
			if w, err = s.Create(ctx, p); err == nil {
				for b := data; len(b) > 0 && err == nil; {
					n := min(len(b), 64<<10)
					_, err = w.Write(b[:n])
					b = b[n:]
				}
				if err == nil {
					err = w.Close()
				} else {
					w.Abort()
				}
			}
		case "CAS":
			var g int64
			if g, err = s.WriteFileIfGeneration(ctx, p, data, gen); err == nil {
				if info, serr := srv.Direct.Stat(ctx, p); serr != nil || info.Generation != g {
					t.Fatalf("write %d: CAS returned generation %d, stored %+v (%v)", i, g, info, serr)
				}
			}
		}
		srv.Proxy.Clear()
		got, rerr := srv.Direct.ReadFile(ctx, p)
		switch {
		case errors.Is(rerr, fs.ErrNotExist):
			got = nil
		case rerr != nil:
			t.Fatal(rerr)
		}
		if err == nil {
			ok++
			if !bytes.Equal(got, data) {
				t.Fatalf("write %d (%s, %d bytes) succeeded but %s holds %d other bytes", i, how, size, p, len(got))
			}
		} else {
			failed++
			if !strings.Contains(err.Error(), p) {
				t.Errorf("write %d: error %q does not name %s", i, err, p)
			}
			isOld := (got == nil && current[p] == nil) || (got != nil && current[p] != nil && bytes.Equal(got, current[p]))
			if !isOld && !bytes.Equal(got, data) {
				t.Fatalf("write %d (%s, %d bytes) failed (%v) and left %s with %d bytes that are neither the old (%d) nor the new version",
					i, how, size, err, p, len(got), len(current[p]))
			}
		}
		if got != nil {
			current[p] = got
		} else {
			current[p] = nil
		}
	}
	t.Logf("%d writes succeeded, %d failed; %s", ok, failed, srv.Proxy.Summary())
	if ok == 0 || failed == 0 {
		t.Errorf("%d successes, %d failures: the fault rate should give both", ok, failed)
	}
}

// TestCASAmbiguity: a compare-and-swap whose request was applied but whose
// answer was lost sees its own retry fail the precondition; it must read
// the object back and report success, and must not mistake somebody
// else's write (even of the same bytes) for its own.
func TestCASAmbiguity(t *testing.T) {
	srv := fakeGCS(t)
	s := faultStore(srv)
	ctx := context.Background()
	root := gsRoot(t)
	lost := func(f gcstest.Fault, match func(*http.Request) bool) {
		limit := 1
		if match != nil {
			limit = 0 // match decides, and must see every request
		}
		srv.Proxy.SetRules(5, gcstest.Rule{Kinds: gcstest.Write, Fault: f, After: true, Limit: limit, Match: match})
	}
	for _, f := range []gcstest.Fault{gcstest.Reset, gcstest.ShortRead, gcstest.Unavailable} {
		t.Run("lost/"+f.String(), func(t *testing.T) {
			p := root + "/" + f.String()
			before := srv.Proxy.Injected(gcstest.Write)
			lost(f, nil)
			g1, err := s.WriteFileIfGeneration(ctx, p, []byte("one"), 0)
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			lost(f, nil)
			g2, err := s.WriteFileIfGeneration(ctx, p, []byte("two"), g1)
			if err != nil {
				t.Fatalf("update: %v", err)
			}
			srv.Proxy.Clear()
			if n := srv.Proxy.Injected(gcstest.Write) - before; n != 2 {
				t.Fatalf("%d lost responses, want 2", n)
			}
			info, err := srv.Direct.Stat(ctx, p)
			if err != nil || info.Generation != g2 || g2 == g1 {
				t.Fatalf("generations %d then %d, stored %+v (%v)", g1, g2, info, err)
			}
			want(t, srv.Direct, p, []byte("two"))
		})
	}

	// Between the lost answer and the retry another writer replaces the
	// object: the retry's precondition failure is genuine.
	for _, same := range []bool{false, true} {
		t.Run(fmt.Sprintf("competitor/same-bytes=%v", same), func(t *testing.T) {
			p := fmt.Sprintf("%s/competed-%v", root, same)
			put(t, srv.Direct, p, []byte("base"))
			info, _ := srv.Direct.Stat(ctx, p)
			theirs := []byte("theirs")
			if same {
				theirs = []byte("mine")
			}
			uploads := 0
			lost(gcstest.Reset, func(r *http.Request) bool {
				if r.URL.Query().Get("name") == "" || !strings.HasPrefix(r.URL.Path, "/upload/") {
					return false
				}
				uploads++
				if uploads == 2 { // the retry: let the competitor in first
					if err := srv.Direct.WriteFile(ctx, p, theirs); err != nil {
						t.Error(err)
					}
				}
				return uploads == 1
			})
			_, err := s.WriteFileIfGeneration(ctx, p, []byte("mine"), info.Generation)
			srv.Proxy.Clear()
			if uploads < 2 {
				t.Fatalf("%d uploads: the retry never happened", uploads)
			}
			if !errors.Is(err, storage.ErrPrecondition) || !strings.Contains(err.Error(), p) {
				t.Fatalf("err = %v; want ErrPrecondition naming %s", err, p)
			}
			want(t, srv.Direct, p, theirs)
		})
	}
}

// TestCheckpointUpload streams a checkpoint-sized blob (6 MiB, 24 chunks)
// with Create while connections are reset mid-upload, before and after the
// server took the chunk; then under resets that never stop, the upload
// fails and the previous checkpoint stays intact.
func TestCheckpointUpload(t *testing.T) {
	srv := fakeGCS(t)
	s := faultStore(srv)
	ctx := context.Background()
	p := gsRoot(t) + "/ckpt/model.safetensors"
	ckpt := blob("checkpoint", 6<<20)
	write := func(data []byte) error {
		w, err := s.Create(ctx, p)
		if err != nil {
			return err
		}
		defer w.Abort()
		for b := data; len(b) > 0; {
			n := min(len(b), 100<<10)
			if _, err := w.Write(b[:n]); err != nil {
				return err
			}
			b = b[n:]
		}
		return w.Close()
	}
	srv.Proxy.SetRules(11,
		gcstest.Rule{Kinds: gcstest.Write, Fault: gcstest.Reset, Prob: 0.3},
		gcstest.Rule{Kinds: gcstest.Write, Fault: gcstest.Reset, Prob: 0.2, After: true},
		gcstest.Rule{Kinds: gcstest.Write, Fault: gcstest.Hang, After: true, Skip: 10, Limit: 1})
	if err := write(ckpt); err != nil {
		t.Fatalf("%v (%s)", err, srv.Proxy.Summary())
	}
	srv.Proxy.Clear()
	mid := 0
	for _, e := range srv.Proxy.Events() {
		if strings.Contains(e.Path, "upload_id=") {
			mid++
		}
	}
	if mid < 3 {
		t.Fatalf("only %d faults hit upload chunks: %v", mid, srv.Proxy.Events())
	}
	t.Logf("%d faults mid-upload; %s", mid, srv.Proxy.Summary())
	want(t, srv.Direct, p, ckpt)

	next := blob("checkpoint-2", 6<<20)
	srv.Proxy.SetRules(12, gcstest.Rule{Kinds: gcstest.Write, Fault: gcstest.Reset, Skip: 8})
	err := write(next)
	srv.Proxy.Clear()
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("upload under endless resets: err = %v; want an error naming %s", err, p)
	}
	want(t, srv.Direct, p, ckpt)
}

// TestUploadVerification uses the emulator's own handling of resent chunks
// (it stores them twice; GCS would not) to check what Create does when a
// resumable upload goes wrong on the server's side: an object that does
// not match what was written is deleted and Close fails; and a final chunk
// whose answer was lost, resent to a finished session (404), is recognized
// as stored when the object matches what was written.
func TestUploadVerification(t *testing.T) {
	srv := fakeGCS(t)
	s := faultStore(srv)
	ctx := context.Background()
	srv.Proxy.PassResentChunks(true)
	create := func(p string, data []byte) error {
		w, err := s.Create(ctx, p)
		if err != nil {
			return err
		}
		defer w.Abort()
		w.Write(data)
		return w.Close()
	}
	chunk := func(final bool) func(r *http.Request) bool {
		return func(r *http.Request) bool {
			return r.URL.Query().Get("upload_id") != "" && strings.HasSuffix(r.Header.Get("Content-Range"), "/*") != final
		}
	}

	p := gsRoot(t) + "/doubled"
	put(t, srv.Direct, p, small)
	srv.Proxy.SetRules(1, gcstest.Rule{Kinds: gcstest.Write, Fault: gcstest.Reset, After: true, Limit: 1, Match: chunk(false)})
	err := create(p, large)
	srv.Proxy.Clear()
	if err == nil || !strings.Contains(err.Error(), "does not match") || !strings.Contains(err.Error(), p) {
		t.Fatalf("Close = %v; want a mismatch error naming %s", err, p)
	}
	assertMissing(t, srv.Direct, p) // deleted, not left corrupt

	q := gsRoot(t) + "/lost-final"
	srv.Proxy.SetRules(2, gcstest.Rule{Kinds: gcstest.Write, Fault: gcstest.Reset, After: true, Limit: 1, Match: chunk(true)})
	if err := create(q, large); err != nil {
		t.Fatalf("lost final answer: %v", err)
	}
	srv.Proxy.Clear()
	if srv.Proxy.Injected(gcstest.Write) != 2 {
		t.Fatalf("%d faults injected, want 2", srv.Proxy.Injected(gcstest.Write))
	}
	want(t, srv.Direct, q, large)
}
