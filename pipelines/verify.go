package pipelines

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/beamtune/beamtune/signing"
	"github.com/beamtune/beamtune/storage"
)

// Verified is what verifying a model folder established.
type Verified struct {
	Dir        string              `json:"dir"`
	Name       string              `json:"name"`   // the folder name the signature was made for
	Digest     string              `json:"digest"` // the root digest of its files
	Files      int                 `json:"files"`
	Provenance *signing.Provenance `json:"provenance,omitempty"`
}

// VerifyModel checks the model folder dir (local or gs://) against its
// signature and trust: the signature is by one of trust's keys and the
// folder holds exactly the signed files, with their bytes.
func VerifyModel(ctx context.Context, dir string, trust signing.Trust) (*Verified, error) {
	if !trust.Enabled() {
		return nil, badInputf("verify: no public key to verify with (--public_key)")
	}
	local, cleanup, err := storage.LocalDir(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	st, err := trust.Check(local, dir)
	if err != nil {
		var e *signing.Error
		if errors.As(err, &e) {
			return nil, badInput(err)
		}
		return nil, err
	}
	return &Verified{
		Dir: dir, Name: st.Subject[0].Name, Digest: st.Subject[0].Digest["sha256"],
		Files: len(st.Predicate.Resources), Provenance: st.Predicate.Provenance,
	}, nil
}

// SignModel signs the local model folder dir in place with the key at
// keyPath: model.sig over every other file, written atomically. It is for
// folders beamtune did not publish (a pretrained base); beamtune's own are
// signed as they are published.
func SignModel(ctx context.Context, dir, keyPath string) (*Verified, error) {
	if storage.IsGCS(dir) {
		return nil, badInputf("sign: %s: sign a local folder, then upload it", dir)
	}
	key, err := signing.LoadPrivateKey(ctx, keyPath)
	if err != nil {
		return nil, badInput(err)
	}
	m, err := signing.HashDir(dir)
	if err != nil {
		return nil, err
	}
	name := filepath.Base(filepath.Clean(dir))
	sig, err := signing.Sign(m, name, nil, key)
	if err != nil {
		return nil, err
	}
	if err := storage.WriteFile(ctx, filepath.Join(dir, signing.SignatureFile), sig); err != nil {
		return nil, err
	}
	return &Verified{Dir: dir, Name: name, Digest: m.RootDigest(), Files: len(m.Resources)}, nil
}
