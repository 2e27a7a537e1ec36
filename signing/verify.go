package signing

import (
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrUnsigned marks a folder without a signature file.
var ErrUnsigned = errors.New("not signed")

// Error is a folder refused by verification: the file at fault and why.
type Error struct {
	Dir    string
	File   string // relative to Dir
	Reason string
	err    error // ErrUnsigned, for errors.Is
}

func (e *Error) Error() string {
	return fmt.Sprintf("verify %s: %s: %s", e.Dir, e.File, e.Reason)
}

func (e *Error) Unwrap() error { return e.err }

// Verify checks the local folder dir against its signature: the signature
// is well formed and made by one of keys, and the folder holds exactly the
// files it lists, with their bytes. It returns the signed statement.
func Verify(dir string, keys []*ecdsa.PublicKey) (*Statement, error) {
	refuse := func(file, format string, args ...any) error {
		return &Error{Dir: dir, File: file, Reason: fmt.Sprintf(format, args...)}
	}
	sigPath := filepath.Join(dir, SignatureFile)
	fi, err := os.Lstat(sigPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &Error{Dir: dir, File: SignatureFile, Reason: "no signature: the folder is not signed", err: ErrUnsigned}
	}
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, refuse(SignatureFile, "not a regular file")
	}
	data, err := readLimit(sigPath, maxBundleBytes)
	if err != nil {
		return nil, refuse(SignatureFile, "%v", err)
	}
	b, st, err := ParseBundle(data)
	if err != nil {
		return nil, refuse(SignatureFile, "malformed signature: %v", err)
	}
	if err := checkSignature(b, keys); err != nil {
		return nil, refuse(SignatureFile, "%v", err)
	}
	got, err := HashDir(dir)
	if err != nil {
		return nil, err
	}
	diff := Diff(Manifest{Resources: st.Predicate.Resources}, got)
	if len(diff) > 0 {
		reason := diff[0].Reason
		if len(diff) > 1 {
			reason += fmt.Sprintf(" (and %d more: %s)", len(diff)-1, mismatchList(diff[1:]))
		}
		return nil, refuse(diff[0].File, "%s", reason)
	}
	return st, nil
}

// checkSignature verifies the envelope with the key the bundle names, or
// any of keys when it names none.
func checkSignature(b *Bundle, keys []*ecdsa.PublicKey) error {
	if len(keys) == 0 {
		return errors.New("no trusted public key to verify with")
	}
	hint := ""
	if b.VerificationMaterial.PublicKey != nil {
		hint = b.VerificationMaterial.PublicKey.Hint
	}
	env := b.DSSEEnvelope
	msg := pae(env.Payload)
	named := false
	for _, k := range keys {
		id, err := KeyID(k)
		if err != nil {
			return err
		}
		if hint != "" && id != hint {
			continue
		}
		named = true
		h, err := curveHash(k.Curve)
		if err != nil {
			return err
		}
		if ecdsa.VerifyASN1(k, digest(h, msg), env.Signatures[0].Sig) {
			return nil
		}
	}
	if !named {
		return fmt.Errorf("signed by a key the trust policy does not hold (key id %s)", hint)
	}
	return errors.New("bad signature: the signed statement was altered, or the signature is not this key's")
}

func mismatchList(ms []Mismatch) string {
	var s []string
	for i, m := range ms {
		if i == 3 {
			s = append(s, "…")
			break
		}
		s = append(s, m.String())
	}
	return strings.Join(s, "; ")
}

func readLimit(p string, max int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("larger than %d bytes, more than a signature holds", max)
	}
	return data, nil
}
