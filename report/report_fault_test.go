package report

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/storage/gcstest"
)

// TestReportWriteGCSFaults writes reports to gs:// through gcstest's fault
// proxy: transient faults of every kind are retried away and the files are
// byte for byte what a local write gives; when writes keep failing,
// Write fails naming the object, and what is stored is still a
// readable report (report.json, written last, is the old one or the new one,
// whole).
func TestReportWriteGCSFaults(t *testing.T) {
	ctx := context.Background()
	srv := gcstest.Start(t, "bt-reports")
	r := fixtureAGNews()
	local := t.TempDir()
	if err := Write(ctx, local, r); err != nil {
		t.Fatal(err)
	}
	names := []string{JSONFile, MarkdownFile, HTMLFile}
	localFile := func(dir, name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// stored reads what really is in GCS, bypassing the proxy.
	stored := func(dir, name string) []byte {
		b, err := srv.Direct.ReadFile(ctx, storage.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return b
	}

	for i, f := range gcstest.Faults {
		t.Run("transient/"+f.String(), func(t *testing.T) {
			dir := "gs://bt-reports/faults/" + f.String()
			before := srv.Proxy.Injected(gcstest.AnyKind)
			srv.Proxy.SetRules(uint64(i+1),
				gcstest.Rule{Kinds: gcstest.Write, Fault: f, After: true, Limit: 1}, // a lost answer
				gcstest.Rule{Fault: f, Limit: 2})
			err := Write(ctx, dir, r)
			srv.Proxy.Clear()
			if err != nil {
				t.Fatalf("Write: %v (%s)", err, srv.Proxy.Summary())
			}
			for _, name := range names {
				if !bytes.Equal(stored(dir, name), localFile(local, name)) {
					t.Errorf("%s differs from the local write", name)
				}
			}
			// Reading it back through faults too.
			srv.Proxy.SetRules(uint64(i+100), gcstest.Rule{Fault: f, Limit: 2})
			back, err := Read(ctx, dir)
			srv.Proxy.Clear()
			if err != nil || !reflect.DeepEqual(back, r) {
				t.Fatalf("Read: %v", err)
			}
			if srv.Proxy.Injected(gcstest.AnyKind)-before < 3 {
				t.Fatalf("only %d faults injected", srv.Proxy.Injected(gcstest.AnyKind)-before)
			}
		})
	}

	t.Run("random", func(t *testing.T) {
		dir := "gs://bt-reports/faults/random"
		var rules []gcstest.Rule
		for _, f := range gcstest.Faults {
			if f != gcstest.Hang {
				rules = append(rules, gcstest.Rule{Fault: f, Prob: 0.05}, gcstest.Rule{Kinds: gcstest.Write, Fault: f, Prob: 0.05, After: true})
			}
		}
		before := srv.Proxy.Injected(gcstest.AnyKind)
		for round := range 5 {
			srv.Proxy.SetRules(uint64(round), rules...)
			err := Write(ctx, dir, r)
			srv.Proxy.Clear()
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			for _, name := range names {
				if !bytes.Equal(stored(dir, name), localFile(local, name)) {
					t.Fatalf("round %d: %s differs from the local write", round, name)
				}
			}
		}
		if srv.Proxy.Injected(gcstest.AnyKind) == before {
			t.Fatal("no fault injected")
		}
	})

	t.Run("persistent", func(t *testing.T) {
		dir := "gs://bt-reports/faults/persistent"
		old := fixtureBinary()
		oldLocal := t.TempDir()
		if err := Write(ctx, oldLocal, old); err != nil {
			t.Fatal(err)
		}
		// As read back (writing fills in defaults such as the schema).
		oldBack, err := Read(ctx, oldLocal)
		if err != nil {
			t.Fatal(err)
		}
		newBack, err := Read(ctx, local)
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range gcstest.Faults {
			// Back to the old report, then: the first file gets through,
			// every later upload fails.
			if err := Write(ctx, dir, old); err != nil {
				t.Fatal(err)
			}
			srv.Proxy.SetRules(uint64(i), gcstest.Rule{Kinds: gcstest.Write, Fault: f, Skip: 1})
			err := Write(ctx, dir, r)
			srv.Proxy.Clear()
			// ShortRead and Truncate cut answers, not requests: every upload
			// lands, and the client may recognize its bytes in GCS (success).
			landed := err == nil && (f == gcstest.ShortRead || f == gcstest.Truncate)
			if !landed && (err == nil || !strings.Contains(err.Error(), dir+"/")) {
				t.Fatalf("%s: err = %v; want a failure naming an object under %s", f, err, dir)
			}
			if landed {
				for _, name := range names {
					if !bytes.Equal(stored(dir, name), localFile(local, name)) {
						t.Fatalf("%s: Write succeeded but %s is not the new file", f, name)
					}
				}
			}
			for _, name := range names {
				got := stored(dir, name)
				if !bytes.Equal(got, localFile(oldLocal, name)) && !bytes.Equal(got, localFile(local, name)) {
					t.Fatalf("%s: %s is neither the old nor the new file (%d bytes)", f, name, len(got))
				}
			}
			// A lost answer (short-read, truncate) means the upload itself
			// went through: the new report may be complete already.
			if back, err := Read(ctx, dir); err != nil || !reflect.DeepEqual(back, oldBack) && !reflect.DeepEqual(back, newBack) {
				t.Fatalf("%s: the report read back is neither the old nor the new one (%v)", f, err)
			}
		}
	})
}
