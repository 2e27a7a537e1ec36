package signing

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/beamtune/beamtune/storage"
)

// Manifest is a folder's files and their sha256 digests, sorted by name.
type Manifest struct {
	Resources []Resource
}

// RootDigest is the subject digest model_signing gives a folder: the
// sha256 of the raw digests of its files, concatenated in name order.
func (m Manifest) RootDigest() string {
	h := sha256.New()
	for _, r := range m.Resources {
		raw, _ := hex.DecodeString(r.Digest) // checked by check or made by Hash
		h.Write(raw)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// check refuses a resource list a verifier cannot compare safely: names
// that leave the folder, are not clean, repeat, or are the signature, and
// digests that are not sha256.
func (m Manifest) check() error {
	seen := map[string]bool{}
	for _, r := range m.Resources {
		switch {
		case r.Algorithm != hashAlgorithm:
			return fmt.Errorf("%s: digest algorithm %q, want %q", r.Name, r.Algorithm, hashAlgorithm)
		case len(r.Digest) != 2*sha256.Size || strings.ToLower(r.Digest) != r.Digest:
			return fmt.Errorf("%s: digest %q is not a lower-case hex sha256", r.Name, r.Digest)
		case !storage.InsideFolder(r.Name):
			return fmt.Errorf("file name %q is not a clean relative path in the folder", r.Name)
		case r.Name == SignatureFile:
			return fmt.Errorf("the signature lists itself (%s)", SignatureFile)
		case seen[r.Name]:
			return fmt.Errorf("%s is listed twice", r.Name)
		}
		if _, err := hex.DecodeString(r.Digest); err != nil {
			return fmt.Errorf("%s: digest %q is not hex", r.Name, r.Digest)
		}
		seen[r.Name] = true
	}
	return nil
}

// NewManifest sorts resources into a manifest.
func NewManifest(resources []Resource) Manifest {
	out := append([]Resource(nil), resources...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return Manifest{Resources: out}
}

// HashReader is the resource for one file's bytes.
func HashReader(name string, r io.Reader) (Resource, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return Resource{}, fmt.Errorf("%s: %w", name, err)
	}
	return Resource{Name: name, Algorithm: hashAlgorithm, Digest: hex.EncodeToString(h.Sum(nil))}, nil
}

// HashDir hashes every file under the local folder dir, at any depth,
// except the signature at its top. A symlink or any other non-regular
// file is an error: a link could point the loader at bytes outside the
// signed set.
func HashDir(dir string) (Manifest, error) {
	var out []Resource
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			return &Error{Dir: dir, File: name, Reason: fmt.Sprintf("not a regular file (%s): signed folders hold plain files only", d.Type())}
		case name == SignatureFile:
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		r, err := HashReader(name, f)
		if err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return Manifest{}, err
	}
	return NewManifest(out), nil
}

// Mismatch is one difference between a folder and its signature.
type Mismatch struct {
	File   string // the file it is about (for a rename or swap, the first of the two)
	Reason string // e.g. "changed bytes", "added after signing", "renamed to x"
}

func (m Mismatch) String() string { return m.File + ": " + m.Reason }

// Diff compares what a folder holds (got) with what was signed (want),
// naming renames and swaps as such, in file order.
func Diff(want, got Manifest) []Mismatch {
	w, g := digests(want), digests(got)
	var out []Mismatch
	removed := map[string]string{} // digest -> name, of files signed but missing
	added := map[string]string{}   // digest -> name, of files present but not signed
	for name, d := range w {
		if _, ok := g[name]; !ok {
			removed[d] = name
		}
	}
	for name, d := range g {
		if _, ok := w[name]; !ok {
			added[d] = name
		}
	}
	swapped := map[string]bool{}
	for _, r := range want.Resources {
		gd, ok := g[r.Name]
		switch {
		case !ok:
			if to, ok := added[r.Digest]; ok {
				out = append(out, Mismatch{r.Name, "renamed to " + to + " after signing"})
				delete(added, r.Digest)
			} else {
				out = append(out, Mismatch{r.Name, "removed after signing"})
			}
		case gd != r.Digest:
			if swapped[r.Name] {
				continue
			}
			if other, ok := swapPartner(want, g, r); ok {
				swapped[other] = true
				out = append(out, Mismatch{r.Name, "swapped with " + other + " after signing"})
				continue
			}
			out = append(out, Mismatch{r.Name, "changed after signing (sha256 " + gd + ", signed " + r.Digest + ")"})
		}
	}
	var extra []string
	for d, name := range added {
		if _, renamed := removed[d]; !renamed {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		out = append(out, Mismatch{name, "added after signing (not in the signature)"})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out
}

// swapPartner finds the signed file whose signed digest r now has, while r
// holds that file's signed digest: the two were exchanged.
func swapPartner(want Manifest, got map[string]string, r Resource) (string, bool) {
	for _, o := range want.Resources {
		if o.Name != r.Name && o.Digest == got[r.Name] && got[o.Name] == r.Digest {
			return o.Name, true
		}
	}
	return "", false
}

func digests(m Manifest) map[string]string {
	out := make(map[string]string, len(m.Resources))
	for _, r := range m.Resources {
		out[r.Name] = r.Digest
	}
	return out
}
