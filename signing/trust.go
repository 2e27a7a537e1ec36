package signing

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"

	"github.com/beamtune/beamtune/storage"
)

// maxKeyBytes bounds a PEM key file.
const maxKeyBytes = 64 << 10

// Trust is a verification policy that travels to Beam workers: the PEM
// public keys a model folder must be signed by. The zero Trust verifies
// nothing.
type Trust struct {
	Keys []string `json:"keys,omitempty"`
}

// Enabled reports whether a policy is set.
func (t Trust) Enabled() bool { return len(t.Keys) > 0 }

// LoadTrust reads public key files (local or gs://) into a policy.
func LoadTrust(ctx context.Context, paths []string) (Trust, error) {
	var t Trust
	for _, p := range paths {
		data, err := storage.ReadFileLimit(ctx, p, maxKeyBytes)
		if err != nil {
			return Trust{}, fmt.Errorf("trusted key %s: %w", p, err)
		}
		keys, err := ParsePublicKeys(data, p)
		if err != nil {
			return Trust{}, err
		}
		for _, k := range keys {
			pemKey, err := PublicPEM(k)
			if err != nil {
				return Trust{}, err
			}
			t.Keys = append(t.Keys, string(pemKey))
		}
	}
	return t, nil
}

func (t Trust) keys() ([]*ecdsa.PublicKey, error) {
	var out []*ecdsa.PublicKey
	for _, k := range t.Keys {
		ks, err := ParsePublicKeys([]byte(k), "trust policy")
		if err != nil {
			return nil, err
		}
		out = append(out, ks...)
	}
	return out, nil
}

// Check verifies the local folder local under the policy: nil when no
// policy is set, else Verify's answer, naming the folder as name (the
// gs:// path local was copied from).
func (t Trust) Check(local, name string) (*Statement, error) {
	if !t.Enabled() {
		return nil, nil
	}
	keys, err := t.keys()
	if err != nil {
		return nil, err
	}
	st, err := Verify(local, keys)
	var e *Error
	if errors.As(err, &e) && name != "" {
		e.Dir = name
	}
	return st, err
}

// LoadPrivateKey reads a signing key file (local or gs://).
func LoadPrivateKey(ctx context.Context, path string) (*ecdsa.PrivateKey, error) {
	if path == "" {
		return nil, errors.New("no signing key given")
	}
	data, err := storage.ReadFileLimit(ctx, path, maxKeyBytes)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return ParsePrivateKey(data, path)
}
