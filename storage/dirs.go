package storage

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// MaxFolderDepth is how deep Files looks into a folder: a model folder's
// files, and those of a multi-task bundle's task folders (tasks/<task>/NAME).
const MaxFolderDepth = 3

// Files lists the files of folder dir and of its sub-folders down to
// MaxFolderDepth, as slash-separated paths relative to dir, sorted.
func Files(ctx context.Context, dir string) ([]string, error) {
	base := strings.TrimSuffix(dir, "/")
	var out []string
	pattern := base
	for depth := 1; depth <= MaxFolderDepth; depth++ {
		pattern += "/*"
		matches, err := Glob(ctx, pattern)
		if err != nil {
			return nil, err
		}
		for _, m := range matches {
			if !IsGCS(m) {
				if fi, err := os.Stat(m); err != nil || fi.IsDir() {
					continue // a folder: its files come at the next depth
				}
			}
			name := strings.TrimPrefix(filepath.ToSlash(strings.TrimPrefix(m, base)), "/")
			if !InsideFolder(name) {
				// gs:// object names may hold "..": copying or removing
				// by such a name would reach outside the folder.
				return nil, fmt.Errorf("%s: %q is not a clean path inside the folder", dir, name)
			}
			out = append(out, name)
		}
	}
	return sortedUnique(out), nil
}

// LocalDir gives a local folder with the contents of dir: dir itself when it
// is local, else a temporary copy of every object under gs://.../dir/ and
// its sub-folders (Files; model folders are small enough to copy whole).
// cleanup removes the copy.
func LocalDir(ctx context.Context, dir string) (local string, cleanup func(), err error) {
	if !IsGCS(dir) {
		return dir, func() {}, nil
	}
	tmp, err := os.MkdirTemp("", "beamtune-dir-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { os.RemoveAll(tmp) }
	names, err := Files(ctx, dir)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	if len(names) == 0 {
		cleanup()
		return "", nil, fmt.Errorf("%s: no such folder (no objects under it)", dir)
	}
	for _, name := range names {
		if err := Copy(ctx, Join(dir, name), filepath.Join(tmp, filepath.FromSlash(name))); err != nil {
			cleanup()
			return "", nil, err
		}
	}
	return tmp, cleanup, nil
}

// UploadDir copies the files of a local folder and its sub-folders (Files)
// to dst, each atomically. On GCS the folder has no single atomic commit;
// callers that publish folders write a marker object last (see the model
// registry).
func UploadDir(ctx context.Context, local, dst string) error {
	names, err := Files(ctx, local)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := Copy(ctx, filepath.Join(local, filepath.FromSlash(name)), Join(dst, name)); err != nil {
			return err
		}
	}
	return nil
}

// InsideFolder reports whether name is a clean relative slash path that
// stays inside its folder: no "..", no empty or "." segments, no
// backslash, no URI. The rule for every name read from outside (object
// names, signed file lists, CHAMPION's model).
func InsideFolder(name string) bool {
	return name != "" && !strings.HasPrefix(name, "/") && !strings.Contains(name, "\\") && !strings.Contains(name, "://") &&
		path.Clean(name) == name && name != ".." && !strings.HasPrefix(name, "../")
}
