package storage

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
)

// ---------------------------------------------------------------------------
// Reading

// Open opens path for reading. The caller must Close the reader. It does not
// decompress; see OpenMaybeGzip.
func (s *Store) Open(ctx context.Context, p string) (io.ReadCloser, error) {
	rc, _, err := s.open(ctx, p)
	return rc, err
}

// open returns the reader and the size when known (-1 otherwise).
func (s *Store) open(ctx context.Context, p string) (io.ReadCloser, int64, error) {
	loc, err := locateObject("open", p)
	if err != nil {
		return nil, -1, err
	}
	if loc.gs {
		return s.gcsOpen(ctx, loc)
	}
	return localOpen(p)
}

// OpenMaybeGzip opens path and, when its content starts with the gzip magic
// bytes (0x1f 0x8b), decompresses it (multi-member streams included).
// Detection is by content, not by name. Other content is returned as is.
func (s *Store) OpenMaybeGzip(ctx context.Context, p string) (io.ReadCloser, error) {
	rc, err := s.Open(ctx, p)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReader(rc)
	magic, err := br.Peek(2)
	if err != nil && err != io.EOF {
		rc.Close()
		return nil, pathErr("read", p, err)
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			rc.Close()
			return nil, &fs.PathError{Op: "gunzip", Path: p, Err: err}
		}
		return &readCloser{r: &namedReader{r: zr, op: "gunzip", path: p}, close: func() error {
			zr.Close()
			return rc.Close()
		}}, nil
	}
	return &readCloser{r: br, close: rc.Close}, nil
}

// ReadFile reads the whole file or object.
func (s *Store) ReadFile(ctx context.Context, p string) ([]byte, error) {
	return s.readFile(ctx, p, -1)
}

// ReadFileLimit reads the whole file or object, failing with an error that
// wraps ErrTooLarge (and names the path) when it holds more than max bytes.
func (s *Store) ReadFileLimit(ctx context.Context, p string, max int64) ([]byte, error) {
	if max < 0 {
		return nil, &fs.PathError{Op: "read", Path: p, Err: fmt.Errorf("negative size limit %d", max)}
	}
	return s.readFile(ctx, p, max)
}

func (s *Store) readFile(ctx context.Context, p string, max int64) ([]byte, error) {
	rc, size, err := s.open(ctx, p)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readAll(rc, p, size, max)
}

// readAll reads r to the end; max < 0 means no limit. size is a hint (-1:
// unknown); a known size above max fails before reading.
func readAll(r io.Reader, p string, size, max int64) ([]byte, error) {
	tooLarge := func() error {
		return &fs.PathError{Op: "read", Path: p, Err: fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)}
	}
	if max >= 0 {
		if size > max {
			return nil, tooLarge()
		}
		r = io.LimitReader(r, max+1)
	}
	const maxPrealloc = 64 << 20
	hint := size
	if hint < 0 || hint > maxPrealloc {
		hint = 512
	}
	buf := bytes.NewBuffer(make([]byte, 0, hint+1))
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, pathErr("read", p, err)
	}
	if max >= 0 && int64(buf.Len()) > max {
		return nil, tooLarge()
	}
	return buf.Bytes(), nil
}

// ReadFileWithGeneration reads a (small) file or object and returns its
// current generation, to pass to WriteFileIfGeneration. On GCS this is the
// generation of exactly the bytes returned; locally it is derived from the
// bytes (see the package documentation).
func (s *Store) ReadFileWithGeneration(ctx context.Context, p string) ([]byte, int64, error) {
	loc, err := locateObject("read", p)
	if err != nil {
		return nil, 0, err
	}
	if loc.gs {
		return s.gcsReadWithGeneration(ctx, loc)
	}
	data, err := readLocalFile(p)
	if err != nil {
		return nil, 0, err
	}
	return data, contentGeneration(data), nil
}
