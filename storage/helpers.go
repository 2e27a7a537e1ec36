package storage

import (
	"errors"
	"io"
	"io/fs"
	"sort"
	"sync"
)

// ---------------------------------------------------------------------------
// Helpers

// pathErr wraps err as a *fs.PathError unless it already names a path.
func pathErr(op, p string, err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	return &fs.PathError{Op: op, Path: p, Err: err}
}

// readCloser combines a reader and a close function.
type readCloser struct {
	r     io.Reader
	close func() error
	once  sync.Once
	err   error
}

func (rc *readCloser) Read(p []byte) (int, error) { return rc.r.Read(p) }
func (rc *readCloser) Close() error {
	rc.once.Do(func() { rc.err = rc.close() })
	return rc.err
}

// namedReader adds the path to read errors (other than io.EOF).
type namedReader struct {
	r        io.Reader
	op, path string
}

func (n *namedReader) Read(p []byte) (int, error) {
	k, err := n.r.Read(p)
	if err != nil && err != io.EOF {
		err = pathErr(n.op, n.path, err)
	}
	return k, err
}

// sortedUnique sorts names and drops duplicates.
func sortedUnique(names []string) []string {
	sort.Strings(names)
	out := names[:0]
	for i, n := range names {
		if i == 0 || n != names[i-1] {
			out = append(out, n)
		}
	}
	return out
}
