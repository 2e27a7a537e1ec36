package signing_test

import (
	"crypto/ecdsa"
	"os"
	"path/filepath"
	"testing"

	"github.com/beamtune/beamtune/signing"
)

// FuzzVerifySignature feeds arbitrary bytes as a folder's model.sig: the
// parser and the verifier must refuse them with an error (or, for a valid
// signature by the trusted key, accept), never panic or hang.
// The 10-minute run is listed in RELIABILITY.md.
func FuzzVerifySignature(f *testing.F) {
	for _, p := range []string{"testdata/python-signed/model.sig"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","dsseEnvelope":{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"AA=="}]}}`))
	f.Add([]byte(`{}`))
	data, err := os.ReadFile("testdata/key.pub")
	if err != nil {
		f.Fatal(err)
	}
	pubs, err := signing.ParsePublicKeys(data, "key.pub")
	if err != nil {
		f.Fatal(err)
	}
	dir := f.TempDir()
	for _, name := range []string{"config.json", "model.safetensors", "sub/head.bin"} {
		src, err := os.ReadFile(filepath.Join("testdata/python-signed", name))
		if err != nil {
			f.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, sig []byte) {
		b, st, err := signing.ParseBundle(sig)
		if err == nil && (b == nil || st == nil || len(st.Subject) != 1) {
			t.Fatalf("parsed without a bundle or a subject")
		}
		if err := os.WriteFile(filepath.Join(dir, signing.SignatureFile), sig, 0o644); err != nil {
			t.Fatal(err)
		}
		_, _ = signing.Verify(dir, []*ecdsa.PublicKey{pubs[0]})
	})
}
