package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LocalDir gives a local folder with the contents of dir: dir itself when it
// is local, else a temporary copy of every object under gs://.../dir/ (model
// folders are small enough to copy whole). cleanup removes the copy.
func LocalDir(ctx context.Context, dir string) (local string, cleanup func(), err error) {
	if !IsGCS(dir) {
		return dir, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "beamtune-dir-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(tmp) }
	prefix := strings.TrimSuffix(dir, "/") + "/"
	objs, err := Glob(ctx, prefix+"*")
	if err != nil {
		cleanup()
		return "", nil, err
	}
	if len(objs) == 0 {
		cleanup()
		return "", nil, fmt.Errorf("%s: no such folder (no objects under it)", dir)
	}
	for _, o := range objs {
		name := strings.TrimPrefix(o, prefix)
		if strings.Contains(name, "/") {
			continue // sub-folders are not part of a model folder
		}
		if err := Copy(ctx, o, filepath.Join(tmp, name)); err != nil {
			cleanup()
			return "", nil, err
		}
	}
	return tmp, cleanup, nil
}

// UploadDir copies the files of a local folder (not sub-folders) to dst,
// each atomically. On GCS the folder has no single atomic commit; callers
// that publish folders write a marker object last (see the model registry).
func UploadDir(ctx context.Context, local, dst string) error {
	entries, err := os.ReadDir(local)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if err := Copy(ctx, filepath.Join(local, e.Name()), Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
