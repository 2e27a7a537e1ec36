package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// CompleteMarker is written last into a published model folder on GCS, where
// a folder cannot be renamed into place: readers check it before trusting the
// folder. Local folders are published by rename and carry it too.
const CompleteMarker = "_COMPLETE"

// PublishDir copies the files of folder src and of its sub-folders (Files),
// and extra files (name -> source path), to dst so that dst appears
// complete or not at all: locally by copying into a temporary sibling and
// renaming it over dst; on GCS by copying every file and then the marker.
func PublishDir(ctx context.Context, src, dst string, extra map[string]string) error {
	names, err := Files(ctx, src)
	if err != nil {
		return err
	}
	files := map[string]string{}
	for _, name := range names {
		if name != CompleteMarker {
			files[name] = Join(src, name)
		}
	}
	if len(files) == 0 {
		return fmt.Errorf("publish: %s is empty", src)
	}
	for name, f := range extra {
		files[name] = f
	}
	if IsGCS(dst) {
		if err := Remove(ctx, Join(dst, CompleteMarker)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// The extra files (the publisher's metadata) go first: a folder
		// left half-copied by a crash then already says who published it,
		// and readers that find that metadata without the marker refuse it.
		for _, name := range publishOrder(files, extra) {
			if err := Copy(ctx, files[name], Join(dst, name)); err != nil {
				return err
			}
		}
		return WriteFile(ctx, Join(dst, CompleteMarker), []byte("ok\n"))
	}
	parent := filepath.Dir(filepath.Clean(dst))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dst)+".publish-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for name, f := range files {
		if err := Copy(ctx, f, filepath.Join(tmp, filepath.FromSlash(name))); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, CompleteMarker), []byte("ok\n"), 0o644); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	old := tmp + ".old"
	if _, err := os.Stat(dst); err == nil {
		if err := os.Rename(dst, old); err != nil {
			return err
		}
		defer os.RemoveAll(old)
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Rename(old, dst)
		return err
	}
	return nil
}

// Published reports whether dir is a completely published folder.
func Published(ctx context.Context, dir string) bool {
	ok, err := Exists(ctx, Join(dir, CompleteMarker))
	return err == nil && ok
}

// publishOrder lists the names of files with those of extra first, each
// part sorted.
func publishOrder(files, extra map[string]string) []string {
	var first, rest []string
	for name := range files {
		if _, ok := extra[name]; ok {
			first = append(first, name)
		} else {
			rest = append(rest, name)
		}
	}
	sort.Strings(first)
	sort.Strings(rest)
	return append(first, rest...)
}
