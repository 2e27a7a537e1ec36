package storage_test

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/storage/gcstest"
)

// TestPublishDirSealsTheFinalSet: a publication's seal sees every file the
// folder will hold (written content and the marker included) with its
// final bytes; dropped files are left out; a folder republished in place
// (src = dst) holds exactly the new set, locally and on gs://.
func TestPublishDirSealsTheFinalSet(t *testing.T) {
	ctx := context.Background()
	gcstest.Start(t, "bt-publish")
	src := t.TempDir()
	for name, data := range map[string]string{"config.json": "{}", "tasks/a/config.json": "{\"a\":1}", "model.sig": "stale", "old.txt": "old"} {
		if err := storage.WriteFile(ctx, filepath.Join(src, filepath.FromSlash(name)), []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	for _, dst := range []string{filepath.Join(t.TempDir(), "teacher"), "gs://bt-publish/models/teacher"} {
		if err := storage.PublishDir(ctx, src, dst, storage.Publication{}); err != nil {
			t.Fatal(err)
		}
		var sealed map[string]string
		p := storage.Publication{
			Content: map[string][]byte{"README.md": []byte("# card\n")},
			Drop:    []string{"model.sig", "old.txt"},
			Seal: func(_ context.Context, names []string, open func(string) (io.ReadCloser, error)) (map[string][]byte, error) {
				sealed = map[string]string{}
				for _, n := range names {
					r, err := open(n)
					if err != nil {
						return nil, err
					}
					data, err := io.ReadAll(r)
					r.Close()
					if err != nil {
						return nil, err
					}
					sealed[n] = string(data)
				}
				return map[string][]byte{"model.sig": []byte("sig over " + strings.Join(names, ","))}, nil
			},
		}
		// Republished in place: the folder is both source and destination.
		if err := storage.PublishDir(ctx, dst, dst, p); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"config.json": "{}", "tasks/a/config.json": "{\"a\":1}", "README.md": "# card\n", storage.CompleteMarker: storage.CompleteContent}
		if len(sealed) != len(want) {
			t.Errorf("%s: sealed %v, want %v", dst, sealed, want)
		}
		for n, data := range want {
			if sealed[n] != data {
				t.Errorf("%s: sealed %s = %q, want %q", dst, n, sealed[n], data)
			}
		}
		names, err := storage.Files(ctx, dst)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(names, ","); got != "README.md,_COMPLETE,config.json,model.sig,tasks/a/config.json" {
			t.Errorf("%s holds %s", dst, got)
		}
		sig, err := storage.ReadFile(ctx, storage.Join(dst, "model.sig"))
		if err != nil || !strings.HasPrefix(string(sig), "sig over README.md,_COMPLETE,config.json,tasks/a/config.json") {
			t.Errorf("%s: model.sig %q, %v", dst, sig, err)
		}
		if !storage.Published(ctx, dst) {
			t.Errorf("%s: no marker", dst)
		}
	}
}

// TestFilesRefusesNamesLeavingTheFolder: a gs:// object named
// "m/student/../x" lists under the folder as "../x"; copying it (LocalDir)
// would write outside the local copy, and removing stale objects by it
// (PublishDir) would reach outside the folder. Both refuse instead.
func TestFilesRefusesNamesLeavingTheFolder(t *testing.T) {
	ctx := context.Background()
	gcstest.Start(t, "bt-dotdot")
	for name, data := range map[string]string{"m/student/config.json": "{}", "m/student/../x": "x"} {
		if err := storage.WriteFile(ctx, "gs://bt-dotdot/"+name, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	dir := "gs://bt-dotdot/m/student"
	if _, err := storage.Files(ctx, dir); err == nil || !strings.Contains(err.Error(), `"../x" is not a clean path inside the folder`) {
		t.Errorf("Files: %v", err)
	}
	if _, _, err := storage.LocalDir(ctx, dir); err == nil {
		t.Error("LocalDir copied a folder with an object name leaving it")
	}
	if err := storage.PublishDir(ctx, t.TempDir(), dir, storage.Publication{Content: map[string][]byte{"a": []byte("a")}}); err == nil {
		t.Error("PublishDir republished over a folder with an object name leaving it")
	}
}
