package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// CompleteMarker is written last into a published model folder on GCS, where
// a folder cannot be renamed into place: readers check it before trusting the
// folder. Local folders are published by rename and carry it too.
const CompleteMarker = "_COMPLETE"

// CompleteContent is what the marker holds.
const CompleteContent = "ok\n"

// Publication is what PublishDir adds to the files of the folder it copies.
type Publication struct {
	Extra   map[string]string // name -> source path: the publisher's metadata
	Content map[string][]byte // name -> bytes written as they are: a model card
	Drop    []string          // names of src's files left out (a signature the new content voids)
	// Seal, when set, is given every name the published folder will hold
	// (the marker included) with a way to read each, and returns files to
	// add beside them: a signature over all the others.
	Seal func(ctx context.Context, names []string, open func(name string) (io.ReadCloser, error)) (map[string][]byte, error)
}

// PublishDir copies the files of folder src and of its sub-folders (Files),
// and the files of p, to dst so that dst appears complete or not at all:
// locally by copying into a temporary sibling and renaming it over dst; on
// GCS by copying every file and then the marker. src may be dst (a folder
// republished with a new model card and signature).
func PublishDir(ctx context.Context, src, dst string, p Publication) error {
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
	for _, name := range p.Drop {
		delete(files, name)
	}
	for name, f := range p.Extra {
		files[name] = f
	}
	content := map[string][]byte{}
	for name, data := range p.Content {
		delete(files, name)
		content[name] = data
	}
	if p.Seal != nil {
		all := []string{CompleteMarker}
		for name := range files {
			all = append(all, name)
		}
		for name := range content {
			all = append(all, name)
		}
		sort.Strings(all)
		open := func(name string) (io.ReadCloser, error) {
			if name == CompleteMarker {
				return io.NopCloser(strings.NewReader(CompleteContent)), nil
			}
			if data, ok := content[name]; ok {
				return io.NopCloser(bytes.NewReader(data)), nil
			}
			return Open(ctx, files[name])
		}
		sealed, err := p.Seal(ctx, all, open)
		if err != nil {
			return fmt.Errorf("publish %s: %w", dst, err)
		}
		for name, data := range sealed {
			delete(files, name)
			content[name] = data
		}
	}
	if IsGCS(dst) {
		return publishGCS(ctx, dst, files, content, p.Extra)
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
	for name, data := range content {
		if err := WriteFile(ctx, filepath.Join(tmp, filepath.FromSlash(name)), data); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, CompleteMarker), []byte(CompleteContent), 0o644); err != nil {
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

// publishGCS writes a folder's objects, then its marker. The publisher's
// metadata and the written content (card, signature) go first: a folder
// left half-copied by a crash then already says who published it, and
// readers that find that metadata without the marker refuse it. A file
// copied onto itself (a folder republished in place) is left as it is;
// objects of an earlier publication not in this one are removed.
func publishGCS(ctx context.Context, dst string, files map[string]string, content map[string][]byte, extra map[string]string) error {
	if err := Remove(ctx, Join(dst, CompleteMarker)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// Objects of an earlier publication that this one does not have go
	// first, as a local publish replaces the whole folder: a verifier
	// expects exactly the signed set.
	old, err := Files(ctx, dst)
	if err != nil {
		return err
	}
	for _, name := range old {
		_, isFile := files[name]
		_, isContent := content[name]
		if !isFile && !isContent && name != CompleteMarker {
			if err := Remove(ctx, Join(dst, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	var names []string
	for name := range content {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := WriteFile(ctx, Join(dst, name), content[name]); err != nil {
			return err
		}
	}
	for _, name := range publishOrder(files, extra) {
		if files[name] == Join(dst, name) {
			continue
		}
		if err := Copy(ctx, files[name], Join(dst, name)); err != nil {
			return err
		}
	}
	return WriteFile(ctx, Join(dst, CompleteMarker), []byte(CompleteContent))
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
