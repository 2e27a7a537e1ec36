package storage

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Reserved name prefixes of the package's hidden helper files. Local Glob
// never reports files whose names start with them.
const (
	tmpPrefix  = ".beamtune-tmp-"
	lockPrefix = ".beamtune-lock-"
)

// isHelperFile reports whether base is a temporary or lock file of this package.
func isHelperFile(base string) bool {
	return strings.HasPrefix(base, tmpPrefix) || strings.HasPrefix(base, lockPrefix)
}

func localOpen(p string) (io.ReadCloser, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, -1, err
	}
	size := int64(-1)
	if fi, err := f.Stat(); err == nil {
		if fi.IsDir() {
			f.Close()
			return nil, -1, &fs.PathError{Op: "open", Path: p, Err: errors.New("is a directory")}
		}
		if fi.Mode().IsRegular() {
			size = fi.Size()
		}
	}
	return f, size, nil
}

func readLocalFile(p string) ([]byte, error) {
	rc, size, err := localOpen(p)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readAll(rc, p, size, -1)
}

// contentGeneration is the local "generation" of a file's content: 63 bits
// of its SHA-256, never 0 (0 means "does not exist").
func contentGeneration(data []byte) int64 {
	sum := sha256.Sum256(data)
	g := int64(binary.BigEndian.Uint64(sum[:8]) >> 1)
	if g == 0 {
		g = 1
	}
	return g
}

// localWriter writes to a temporary file next to the destination and renames
// it into place on Close.
type localWriter struct {
	ctx  context.Context
	f    *os.File
	path string
	tmp  string

	mu   sync.Mutex
	err  error // first Write failure; Close returns it and publishes nothing
	done bool  // Close or Abort has run
}

func localCreate(ctx context.Context, p string) (*localWriter, error) {
	if err := ctx.Err(); err != nil {
		return nil, &fs.PathError{Op: "create", Path: p, Err: err}
	}
	dir, base := filepath.Split(p)
	if base == "" || base == "." || base == ".." {
		return nil, &fs.PathError{Op: "create", Path: p, Err: errors.New("path names a directory, not a file")}
	}
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, &fs.PathError{Op: "create", Path: p, Err: err}
	}
	stem := base
	if len(stem) > 100 { // keep the temp name within NAME_MAX
		stem = stem[:100]
	}
	f, err := os.CreateTemp(dir, tmpPrefix+stem+"-*")
	if err != nil {
		return nil, &fs.PathError{Op: "create", Path: p, Err: err}
	}
	return &localWriter{ctx: ctx, f: f, path: p, tmp: f.Name()}, nil
}

func (w *localWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return 0, &fs.PathError{Op: "write", Path: w.path, Err: os.ErrClosed}
	}
	if w.err != nil {
		return 0, w.err
	}
	if err := w.ctx.Err(); err != nil {
		w.err = &fs.PathError{Op: "write", Path: w.path, Err: err}
		return 0, w.err
	}
	n, err := w.f.Write(b)
	if err != nil {
		w.err = &fs.PathError{Op: "write", Path: w.path, Err: err}
	}
	return n, w.err
}

// Close publishes the file: fsync, rename over the destination, fsync the
// directory. After a failed Write or with a cancelled context it discards
// the temporary file and returns the error instead.
func (w *localWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		if w.err != nil {
			return w.err
		}
		return &fs.PathError{Op: "close", Path: w.path, Err: os.ErrClosed}
	}
	w.done = true
	fail := func(err error) error {
		w.f.Close()
		os.Remove(w.tmp)
		if w.err == nil {
			w.err = pathErr("close", w.path, err)
		}
		return w.err
	}
	if w.err != nil {
		return fail(w.err)
	}
	if err := w.ctx.Err(); err != nil {
		return fail(err)
	}
	if err := w.f.Chmod(0o644); err != nil {
		return fail(err)
	}
	if err := w.f.Sync(); err != nil {
		return fail(err)
	}
	if err := w.f.Close(); err != nil {
		os.Remove(w.tmp)
		w.err = &fs.PathError{Op: "close", Path: w.path, Err: err}
		return w.err
	}
	if err := os.Rename(w.tmp, w.path); err != nil {
		os.Remove(w.tmp)
		w.err = &fs.PathError{Op: "rename", Path: w.path, Err: err}
		return w.err
	}
	syncDir(filepath.Dir(w.path))
	return nil
}

// Abort discards the temporary file. No-op after Close.
func (w *localWriter) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil
	}
	w.done = true
	w.err = &fs.PathError{Op: "write", Path: w.path, Err: errors.New("aborted")}
	w.f.Close()
	if err := os.Remove(w.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &fs.PathError{Op: "abort", Path: w.path, Err: err}
	}
	return nil
}

// syncDir makes a rename in dir durable; best effort (not every platform or
// file system supports fsync on directories).
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}

func localWriteIfGeneration(ctx context.Context, p string, data []byte, gen int64) (int64, error) {
	dir, base := filepath.Split(p)
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, &fs.PathError{Op: "write", Path: p, Err: err}
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, lockPrefix+base))
	if err != nil {
		return 0, &fs.PathError{Op: "lock", Path: p, Err: err}
	}
	defer unlock()

	var cur int64
	old, err := readLocalFile(p)
	switch {
	case err == nil:
		cur = contentGeneration(old)
	case errors.Is(err, fs.ErrNotExist):
		cur = 0
	default:
		return 0, err
	}
	if cur != gen {
		return 0, &fs.PathError{Op: "write", Path: p, Err: fmt.Errorf("%w: expected generation %d, current %d", ErrPrecondition, gen, cur)}
	}
	w, err := localCreate(ctx, p)
	if err != nil {
		return 0, err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort()
		return 0, err
	}
	if err := w.Close(); err != nil {
		return 0, err
	}
	return contentGeneration(data), nil
}

func localStat(p string) (Info, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return Info{}, err
	}
	info := Info{ModTime: fi.ModTime(), IsDir: fi.IsDir()}
	if !fi.IsDir() {
		info.Size = fi.Size()
	}
	return info, nil
}

func localRemove(p string) error { return os.Remove(p) }

func localRemoveAll(p string) error {
	clean := filepath.Clean(p)
	if abs, err := filepath.Abs(clean); err == nil && filepath.Dir(abs) == abs {
		return &fs.PathError{Op: "removeall", Path: p, Err: errors.New("refusing to remove a file-system root")}
	}
	if err := os.RemoveAll(p); err != nil {
		return pathErr("removeall", p, err)
	}
	return nil
}

func localGlob(pattern string) ([]string, error) {
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return nil, &fs.PathError{Op: "glob", Path: pattern, Err: err}
	}
	out := matches[:0]
	for _, m := range matches {
		if !isHelperFile(filepath.Base(m)) {
			out = append(out, m)
		}
	}
	return sortedUnique(out), nil
}
