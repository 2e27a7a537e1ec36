package signing_test

import (
	"crypto/ecdsa"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/signing"
)

// modelSigningCLI is the model_signing command of the Python reference
// environment (scripts/pyenv.sh, which pins model-signing 1.1.1 and
// installs it when missing).
func modelSigningCLI(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../scripts/pyenv.sh").Output()
	if err != nil {
		t.Fatalf("scripts/pyenv.sh: %v", err)
	}
	cli := filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "model_signing")
	if _, err := os.Stat(cli); err != nil {
		t.Fatalf("model_signing CLI: %v", err)
	}
	return cli
}

func testKey(t *testing.T) (*ecdsa.PrivateKey, []*ecdsa.PublicKey) {
	t.Helper()
	data, err := os.ReadFile("testdata/key.pem")
	if err != nil {
		t.Fatal(err)
	}
	key, err := signing.ParsePrivateKey(data, "testdata/key.pem")
	if err != nil {
		t.Fatal(err)
	}
	return key, []*ecdsa.PublicKey{&key.PublicKey}
}

// TestModelSigningInterop: model_signing's CLI verifies a folder beamtune
// signed (and refuses it once a file is added), and beamtune verifies a
// folder the CLI signed with the same key (and refuses it once a file
// changes).
func TestModelSigningInterop(t *testing.T) {
	cli := modelSigningCLI(t)
	key, pubs := testKey(t)
	pub, err := filepath.Abs("testdata/key.pub")
	if err != nil {
		t.Fatal(err)
	}
	pyVerify := func(dir string) (string, error) {
		out, err := exec.Command(cli, "verify", "key", dir, "--signature", filepath.Join(dir, signing.SignatureFile), "--public_key", pub).CombinedOutput()
		return string(out), err
	}

	goSigned := filepath.Join(t.TempDir(), "teacher")
	writeFolder(t, goSigned)
	signDir(t, goSigned, key, &signing.Provenance{Schema: signing.ProvenanceSchema, Stage: "train", Beamtune: signing.Build()})
	if out, err := pyVerify(goSigned); err != nil || !strings.Contains(out, "Verification succeeded") {
		t.Fatalf("model_signing verify of beamtune's signature: %v\n%s", err, out)
	}
	write(t, filepath.Join(goSigned, "tasks", "a", "extra.bin"), "x")
	if out, err := pyVerify(goSigned); err == nil {
		t.Errorf("model_signing accepted a beamtune-signed folder with a file added:\n%s", out)
	}

	pySigned := filepath.Join(t.TempDir(), "model")
	writeFolder(t, pySigned)
	keyPath, _ := filepath.Abs("testdata/key.pem")
	if out, err := exec.Command(cli, "sign", "key", pySigned, "--private_key", keyPath, "--signature", filepath.Join(pySigned, signing.SignatureFile)).CombinedOutput(); err != nil {
		t.Fatalf("model_signing sign: %v\n%s", err, out)
	}
	st, err := signing.Verify(pySigned, pubs)
	if err != nil {
		t.Fatalf("beamtune verify of model_signing's signature: %v", err)
	}
	if st.Predicate.Provenance != nil || len(st.Predicate.Resources) != 6 {
		t.Errorf("model_signing's statement read as %d files, provenance %v", len(st.Predicate.Resources), st.Predicate.Provenance)
	}
	write(t, filepath.Join(pySigned, "config.json"), `{"model_type":"evil"}`)
	if _, err := signing.Verify(pySigned, pubs); err == nil || !strings.Contains(err.Error(), "config.json: changed after signing") {
		t.Errorf("a changed file in a model_signing-signed folder: %v", err)
	}
}
