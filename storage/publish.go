package storage

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
)

// CompleteMarker is written last into a published model folder on GCS, where
// a folder cannot be renamed into place: readers check it before trusting the
// folder. Local folders are published by rename and carry it too.
const CompleteMarker = "_COMPLETE"

// PublishDir copies the files of folder src, and extra files (name -> source
// path), to dst so that dst appears complete or not at all: locally by
// copying into a temporary sibling and renaming it over dst; on GCS by
// copying every file and then the marker.
func PublishDir(ctx context.Context, src, dst string, extra map[string]string) error {
	matches, err := Glob(ctx, Join(src, "*"))
	if err != nil {
		return err
	}
	files := map[string]string{}
	for _, f := range matches {
		if name := path.Base(f); name != CompleteMarker {
			files[name] = f
		}
	}
	if len(files) == 0 {
		return fmt.Errorf("publish: %s is empty", src)
	}
	for name, f := range extra {
		files[name] = f
	}
	if IsGCS(dst) {
		_ = Remove(ctx, Join(dst, CompleteMarker))
		for name, f := range files {
			if err := Copy(ctx, f, Join(dst, name)); err != nil {
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
		if err := Copy(ctx, f, filepath.Join(tmp, name)); err != nil {
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
