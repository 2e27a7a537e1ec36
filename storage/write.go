package storage

import (
	"context"
	"fmt"
	"io"
	"io/fs"
)

// ---------------------------------------------------------------------------
// Writing

// Create returns an atomic Writer for path (see the package documentation):
// the content becomes visible only when Close succeeds; Abort, a failed
// Write or a cancelled ctx publish nothing. Local parent directories are
// created as needed.
func (s *Store) Create(ctx context.Context, p string) (Writer, error) {
	loc, err := locateObject("create", p)
	if err != nil {
		return nil, err
	}
	if loc.gs {
		return s.gcsCreate(ctx, loc)
	}
	return localCreate(ctx, p)
}

// WriteFile atomically replaces path's content with data (via Create).
func (s *Store) WriteFile(ctx context.Context, p string, data []byte) error {
	loc, err := locateObject("write", p)
	if err != nil {
		return err
	}
	if loc.gs {
		return s.gcsWriteFile(ctx, loc, data)
	}
	w, err := localCreate(ctx, p)
	if err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		w.Abort()
		return err
	}
	return w.Close()
}

// WriteFileIfGeneration atomically replaces path's content with data only
// if its current generation is gen (0: only if it does not exist), and
// returns the new generation. Otherwise it returns an error wrapping
// ErrPrecondition. gen comes from ReadFileWithGeneration (or a GCS Stat);
// treat it as opaque. Meant for small objects (the local backend reads the
// current content to compare).
func (s *Store) WriteFileIfGeneration(ctx context.Context, p string, data []byte, gen int64) (int64, error) {
	loc, err := locateObject("write", p)
	if err != nil {
		return 0, err
	}
	if gen < 0 {
		return 0, &fs.PathError{Op: "write", Path: p, Err: fmt.Errorf("invalid generation %d (want 0 for must-not-exist, or a generation read before)", gen)}
	}
	if loc.gs {
		return s.gcsWriteIfGeneration(ctx, loc, data, gen)
	}
	return localWriteIfGeneration(ctx, p, data, gen)
}

// Copy copies src to dst (any combination of local and gs://), streaming
// and atomically (dst appears complete or not at all). gs->gs uses GCS's
// server-side copy, which does not move the bytes through this process.
func (s *Store) Copy(ctx context.Context, src, dst string) error {
	sl, err := locateObject("copy", src)
	if err != nil {
		return err
	}
	dl, err := locateObject("copy", dst)
	if err != nil {
		return err
	}
	if sl.gs && dl.gs {
		return s.gcsCopy(ctx, sl, dl)
	}
	r, err := s.Open(ctx, src)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := s.Create(ctx, dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, r); err != nil {
		w.Abort()
		return fmt.Errorf("storage: copy %s to %s: %w", src, dst, err)
	}
	return w.Close()
}
