package storage

import (
	"context"
	"errors"
	"io/fs"
	"strings"
)

// ---------------------------------------------------------------------------
// Metadata, listing, removal

// Stat describes path. A missing path gives an error satisfying
// errors.Is(err, fs.ErrNotExist).
func (s *Store) Stat(ctx context.Context, p string) (Info, error) {
	loc, err := locate("stat", p)
	if err != nil {
		return Info{}, err
	}
	if loc.gs {
		return s.gcsStat(ctx, loc)
	}
	return localStat(p)
}

// Exists reports whether path exists (a file, object, directory, or gs://
// prefix with objects under it). A missing path is (false, nil); other
// failures (permissions, network) are returned.
func (s *Store) Exists(ctx context.Context, p string) (bool, error) {
	_, err := s.Stat(ctx, p)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// Remove deletes one file, empty local directory or object. A missing path
// gives an error satisfying errors.Is(err, fs.ErrNotExist).
func (s *Store) Remove(ctx context.Context, p string) error {
	loc, err := locateObject("remove", p)
	if err != nil {
		return err
	}
	if loc.gs {
		return s.gcsRemove(ctx, loc)
	}
	return localRemove(p)
}

// RemoveAll deletes path and everything under it: locally like
// os.RemoveAll; on GCS the object named prefix (if any) and every object
// whose name starts with prefix + "/". Missing paths are not an error. It
// refuses to empty a whole bucket (gs://bucket) or a file-system root.
func (s *Store) RemoveAll(ctx context.Context, prefix string) error {
	loc, err := locate("removeall", prefix)
	if err != nil {
		return err
	}
	if loc.gs {
		return s.gcsRemoveAll(ctx, loc)
	}
	return localRemoveAll(prefix)
}

// Glob returns the paths matching pattern, sorted. Locally it is
// filepath.Glob (which also returns matching directories). On GCS the
// bucket must be literal and object names are matched against the object
// part with path.Match semantics ('*' and '?' do not cross '/'), listing
// only from its longest wildcard-free prefix; only objects match, never
// "directory" prefixes. "**" is rejected (no recursive matching). A pattern
// matching nothing (or a missing bucket) gives an empty result and no
// error. Temporary and lock files of this package never appear in local
// results.
func (s *Store) Glob(ctx context.Context, pattern string) ([]string, error) {
	if strings.Contains(pattern, "**") {
		return nil, &fs.PathError{Op: "glob", Path: Redact(pattern), Err: errors.New(`"**" (recursive match) is not supported`)}
	}
	if IsGCS(pattern) {
		return s.gcsGlob(ctx, pattern)
	}
	if _, err := locate("glob", pattern); err != nil {
		return nil, err
	}
	return localGlob(pattern)
}
