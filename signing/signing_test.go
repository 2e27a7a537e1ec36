package signing_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/signing"
)

// writeFolder makes a small model-like folder with a sub-folder.
func writeFolder(t *testing.T, dir string) {
	t.Helper()
	files := map[string]string{
		"config.json":         `{"model_type":"bert"}`,
		"model.safetensors":   strings.Repeat("w", 4096),
		"tokenizer.json":      `{"model":{}}`,
		"tasks/a/config.json": `{"id2label":{"0":"x"}}`,
		"tasks/b/config.json": `{"id2label":{"0":"y"}}`,
		"training_log.jsonl":  "{}\n",
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signDir signs dir in place, as beamtune's publisher does.
func signDir(t *testing.T, dir string, key *ecdsa.PrivateKey, prov *signing.Provenance) {
	t.Helper()
	m, err := signing.HashDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := signing.Sign(m, filepath.Base(dir), prov, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, signing.SignatureFile), sig, 0o644); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "teacher")
	writeFolder(t, dir)
	key := newKey(t)
	prov := &signing.Provenance{Schema: signing.ProvenanceSchema, Stage: "train", Runner: "prism",
		Datasets: []signing.DatasetRef{{Path: "out/data", ManifestSHA256: strings.Repeat("a", 64)}},
		Results:  []signing.Result{{Split: "validation", Metric: "accuracy", Value: 0.8125}}}
	signDir(t, dir, key, prov)
	st, err := signing.Verify(dir, []*ecdsa.PublicKey{&key.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	if st.Subject[0].Name != "teacher" || len(st.Predicate.Resources) != 6 {
		t.Errorf("subject %q with %d files, want teacher with 6", st.Subject[0].Name, len(st.Predicate.Resources))
	}
	if p := st.Predicate.Provenance; p == nil || p.Stage != "train" || p.Results[0].Value != 0.8125 {
		t.Errorf("provenance did not come back: %+v", p)
	}
	// A second trusted key that did not sign does not get in the way.
	if _, err := signing.Verify(dir, []*ecdsa.PublicKey{&newKey(t).PublicKey, &key.PublicKey}); err != nil {
		t.Errorf("with two trusted keys: %v", err)
	}
}

// tamper is one way a signed folder can be changed, and what the refusal
// must name.
type tamper struct {
	name   string
	do     func(t *testing.T, dir string, other string)
	file   string // the file the error must name
	reason string // and a part of its reason
}

// tamperCases are every way of changing a signed folder that verification
// must catch; other is a second signed folder (for a signature moved
// between folders).
var tamperCases = []tamper{
	{"changed bytes", func(t *testing.T, dir, _ string) {
		write(t, filepath.Join(dir, "model.safetensors"), strings.Repeat("W", 4096))
	}, "model.safetensors", "changed after signing"},
	{"one byte appended", func(t *testing.T, dir, _ string) {
		f, err := os.OpenFile(filepath.Join(dir, "config.json"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte(" "))
		f.Close()
	}, "config.json", "changed after signing"},
	{"file added", func(t *testing.T, dir, _ string) {
		write(t, filepath.Join(dir, "pytorch_model.bin"), "pickle")
	}, "pytorch_model.bin", "added after signing"},
	{"file added in a sub-folder", func(t *testing.T, dir, _ string) {
		os.MkdirAll(filepath.Join(dir, "tasks", "c", "deep"), 0o755)
		write(t, filepath.Join(dir, "tasks", "c", "deep", "x.bin"), "x")
	}, "tasks/c/deep/x.bin", "added after signing"},
	{"file removed", func(t *testing.T, dir, _ string) {
		os.Remove(filepath.Join(dir, "tokenizer.json"))
	}, "tokenizer.json", "removed after signing"},
	{"file renamed", func(t *testing.T, dir, _ string) {
		os.Rename(filepath.Join(dir, "training_log.jsonl"), filepath.Join(dir, "log.jsonl"))
	}, "training_log.jsonl", "renamed to log.jsonl"},
	{"two files swapped", func(t *testing.T, dir, _ string) {
		a, b := filepath.Join(dir, "tasks", "a", "config.json"), filepath.Join(dir, "tasks", "b", "config.json")
		os.Rename(a, a+".tmp")
		os.Rename(b, a)
		os.Rename(a+".tmp", b)
	}, "tasks/a/config.json", "swapped with tasks/b/config.json"},
	{"symlink added", func(t *testing.T, dir, _ string) {
		if err := os.Symlink("/etc/hostname", filepath.Join(dir, "vocab.txt")); err != nil {
			t.Fatal(err)
		}
	}, "vocab.txt", "not a regular file"},
	{"signature removed", func(t *testing.T, dir, _ string) {
		os.Remove(filepath.Join(dir, signing.SignatureFile))
	}, signing.SignatureFile, "not signed"},
	{"signature over another folder", func(t *testing.T, dir, other string) {
		data, err := os.ReadFile(filepath.Join(other, signing.SignatureFile))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, signing.SignatureFile), string(data))
	}, "config.json", "changed after signing"},
	{"truncated signature", func(t *testing.T, dir, _ string) {
		p := filepath.Join(dir, signing.SignatureFile)
		data, _ := os.ReadFile(p)
		write(t, p, string(data[:len(data)/2]))
	}, signing.SignatureFile, "malformed signature"},
	{"signature not JSON", func(t *testing.T, dir, _ string) {
		write(t, filepath.Join(dir, signing.SignatureFile), "-----BEGIN SIGNATURE-----")
	}, signing.SignatureFile, "malformed signature"},
	{"statement edited to match a changed file", func(t *testing.T, dir, _ string) {
		// The attacker changes the weights and rewrites the statement to
		// list their new digest (subject included), keeping the old
		// signature: the envelope no longer verifies.
		write(t, filepath.Join(dir, "model.safetensors"), "evil")
		m, err := signing.HashDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		forged, err := signing.Sign(m, filepath.Base(dir), nil, mustKey(t))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, signing.SignatureFile)
		orig := readBundle(t, p)
		var f map[string]any
		json.Unmarshal(forged, &f)
		env := f["dsseEnvelope"].(map[string]any)
		env["signatures"] = orig["dsseEnvelope"].(map[string]any)["signatures"]
		f["verificationMaterial"] = orig["verificationMaterial"]
		data, _ := json.Marshal(f)
		write(t, p, string(data))
	}, signing.SignatureFile, "bad signature"},
	{"a certificate bundle", func(t *testing.T, dir, _ string) {
		p := filepath.Join(dir, signing.SignatureFile)
		b := readBundle(t, p)
		b["verificationMaterial"] = map[string]any{"certificate": map[string]any{"rawBytes": "MIIB"}, "tlogEntries": []any{}}
		data, _ := json.Marshal(b)
		write(t, p, string(data))
	}, signing.SignatureFile, "signed with a certificate or a Sigstore identity"},
	{"subject digest not matching the files listed", func(t *testing.T, dir, _ string) {
		p := filepath.Join(dir, signing.SignatureFile)
		b := readBundle(t, p)
		env := b["dsseEnvelope"].(map[string]any)
		payload, _ := base64.StdEncoding.DecodeString(env["payload"].(string))
		var st map[string]any
		json.Unmarshal(payload, &st)
		st["subject"].([]any)[0].(map[string]any)["digest"] = map[string]any{"sha256": strings.Repeat("0", 64)}
		payload, _ = json.Marshal(st)
		env["payload"] = base64.StdEncoding.EncodeToString(payload)
		data, _ := json.Marshal(b)
		write(t, p, string(data))
	}, signing.SignatureFile, "does not match the 6 files listed"},
}

func mustKey(t *testing.T) *ecdsa.PrivateKey { return newKey(t) }

func readBundle(t *testing.T, p string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var b map[string]any
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTamperMatrix: every way of changing a signed folder is refused with
// an error that names the file and what happened to it; a wrong key too.
func TestTamperMatrix(t *testing.T) {
	key := newKey(t)
	trusted := []*ecdsa.PublicKey{&key.PublicKey}
	other := filepath.Join(t.TempDir(), "student")
	writeFolder(t, other)
	write(t, filepath.Join(other, "config.json"), `{"model_type":"bert","num_hidden_layers":3}`)
	signDir(t, other, key, nil)
	for _, c := range tamperCases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "teacher")
			writeFolder(t, dir)
			signDir(t, dir, key, nil)
			c.do(t, dir, other)
			_, err := signing.Verify(dir, trusted)
			var e *signing.Error
			if !errors.As(err, &e) {
				t.Fatalf("accepted or failed without naming a file: %v", err)
			}
			if e.File != c.file || !strings.Contains(e.Reason, c.reason) {
				t.Errorf("refused with %v; want file %s and reason containing %q", err, c.file, c.reason)
			}
		})
	}
	t.Run("wrong key", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "teacher")
		writeFolder(t, dir)
		signDir(t, dir, newKey(t), nil)
		_, err := signing.Verify(dir, trusted)
		if err == nil || !strings.Contains(err.Error(), "model.sig: signed by a key the trust policy does not hold") {
			t.Errorf("a folder signed by another key: %v", err)
		}
	})
	t.Run("clean folder", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "teacher")
		writeFolder(t, dir)
		signDir(t, dir, key, nil)
		if _, err := signing.Verify(dir, trusted); err != nil {
			t.Errorf("a clean folder refused: %v", err)
		}
	})
}

// TestKeysAsModelSigningWritesThem: the key hint is the sha256 of the PEM
// public key in the form Python's cryptography writes (checked against
// the hint model_signing wrote for testdata/key.pem in
// testdata/python-signed/model.sig).
func TestKeysAsModelSigningWritesThem(t *testing.T) {
	key, _ := testKey(t)
	id, err := signing.KeyID(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	b := readBundle(t, "testdata/python-signed/model.sig")
	hint := b["verificationMaterial"].(map[string]any)["publicKey"].(map[string]any)["hint"]
	if hint != id {
		t.Errorf("key id %s, model_signing's hint %v", id, hint)
	}
	// And the committed Python-signed folder verifies (offline half of the
	// interop test; the live one is TestModelSigningInterop).
	pubData, err := os.ReadFile("testdata/key.pub")
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := signing.ParsePublicKeys(pubData, "testdata/key.pub")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signing.Verify("testdata/python-signed", pubs); err != nil {
		t.Errorf("the folder model_signing 1.1.1 signed: %v", err)
	}
	for _, bad := range []string{"", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: []byte{1}}))} {
		if _, err := signing.ParsePublicKeys([]byte(bad), "k.pub"); err == nil || !strings.Contains(err.Error(), "k.pub") {
			t.Errorf("bad public key %q: %v", bad, err)
		}
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	if _, err := signing.ParsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), "k8.pem"); err != nil {
		t.Errorf("a PKCS #8 key: %v", err)
	}
}
