package pipelines

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/registry"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/signing"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/trainer"
)

// writeKeyPair writes a fresh P-256 key pair as PEM files (private, public).
func writeKeyPair(t *testing.T, dir, name string) (string, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	pubPEM, err := signing.PublicPEM(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// linkTree copies folder src to dst with hard links (model weights are
// large); tampering must then replace files, never write into them.
func linkTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		return os.Link(p, filepath.Join(dst, rel))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// replaceFile gives p new content as a new file (it may be a hard link).
func replaceFile(t *testing.T, p, content string) {
	t.Helper()
	os.Remove(p)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyBeforeLoad: a model folder published with a signing key is
// accepted by every loader under a trust policy naming its key, and every
// way of tampering with it is refused by the driver's check (train --init,
// distill --teacher, evaluate, predict, compress), by the loader the
// workers use (trainer.FetchModel: the inference DoFn, the trainer's init,
// evaluate's speed run, compress, merge) and by verify, before any weights
// are read, with an error that names the file.
func TestVerifyBeforeLoad(t *testing.T) {
	ctx := context.Background()
	base := needModel(t)
	tmp := t.TempDir()
	keyPath, pubPath := writeKeyPair(t, tmp, "team")
	_, otherPub := writeKeyPair(t, tmp, "other")
	trust, err := signing.LoadTrust(ctx, []string{pubPath})
	if err != nil {
		t.Fatal(err)
	}
	wrongTrust, err := signing.LoadTrust(ctx, []string{otherPub})
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(tmp, "src")
	linkTree(t, base, src)
	signed := filepath.Join(tmp, "signed")
	card := report.RenderCard(report.Card{Name: "signed"})
	if err := publishModel(ctx, src, signed, nil, card, keyPath, provenance("train", "")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		trust  signing.Trust
		do     func(dir string)
		reason string
	}{
		{"clean", trust, func(string) {}, ""},
		{"config changed", trust, func(d string) { replaceFile(t, filepath.Join(d, model.ConfigFile), `{"model_type":"bert"}`) }, "config.json: changed after signing"},
		{"weights replaced", trust, func(d string) { replaceFile(t, filepath.Join(d, model.SafetensorsFile), "evil") }, "model.safetensors: changed after signing"},
		{"pickle added", trust, func(d string) { replaceFile(t, filepath.Join(d, model.PytorchFile), "pickle") }, "pytorch_model.bin: added after signing"},
		{"tokenizer removed", trust, func(d string) { os.Remove(filepath.Join(d, model.TokenizerFile)) }, "tokenizer.json: removed after signing"},
		{"card renamed", trust, func(d string) {
			os.Rename(filepath.Join(d, report.CardFile), filepath.Join(d, "CARD.md"))
		}, "README.md: renamed to CARD.md"},
		{"two files swapped", trust, func(d string) {
			a, b := filepath.Join(d, "vocab.txt"), filepath.Join(d, "special_tokens_map.json")
			os.Rename(a, a+".x")
			os.Rename(b, a)
			os.Rename(a+".x", b)
		}, "swapped with"},
		{"wrong key", wrongTrust, func(string) {}, "model.sig: signed by a key the trust policy does not hold"},
		{"unsigned", trust, func(d string) { os.Remove(filepath.Join(d, signing.SignatureFile)) }, "model.sig: no signature"},
		{"signature truncated", trust, func(d string) {
			data, _ := os.ReadFile(filepath.Join(d, signing.SignatureFile))
			replaceFile(t, filepath.Join(d, signing.SignatureFile), string(data[:100]))
		}, "model.sig: malformed signature"},
		{"signature of another folder", trust, func(d string) {
			other := filepath.Join(tmp, "other-src")
			os.MkdirAll(other, 0o755)
			os.WriteFile(filepath.Join(other, "config.json"), []byte("{}"), 0o644)
			if _, err := SignModel(ctx, other, keyPath); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(filepath.Join(other, signing.SignatureFile))
			replaceFile(t, filepath.Join(d, signing.SignatureFile), string(data))
		}, "after signing"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(tmp, "case", string(rune('a'+i)))
			linkTree(t, signed, dir)
			c.do(dir)
			loaders := map[string]func() error{
				"driver check": func() error {
					_, err := CheckModelDir(ctx, dir, ModelUse{Role: "--init", Tokenizer: true, Trust: c.trust})
					return err
				},
				"worker fetch": func() error {
					_, _, cleanup, err := trainer.FetchModel(ctx, dir, "", c.trust)
					if err == nil {
						cleanup()
					}
					return err
				},
				"verify": func() error { _, err := VerifyModel(ctx, dir, c.trust); return err },
				"predict": func() error {
					_, err := RunPredict(ctx, PredictOptions{Model: dir, Inputs: []string{"../testdata/retrain/dev.tsv"}, Format: "tsv", Header: true,
						Output: filepath.Join(tmp, "predict-"+c.name), Security: Security{Trust: c.trust}, Device: "cpu", Threads: 1})
					return err
				},
			}
			for name, load := range loaders {
				if c.reason == "" && name == "predict" {
					continue // the clean folder's full predict run is not the point
				}
				err := load()
				switch {
				case c.reason == "" && err != nil:
					t.Errorf("%s refused the clean folder: %v", name, err)
				case c.reason != "" && (err == nil || !strings.Contains(err.Error(), c.reason)):
					t.Errorf("%s: %v; want a refusal naming %q", name, err, c.reason)
				}
			}
		})
	}
}

// TestSignedRetrain: a retrain with signing_key and trust signs every
// folder it publishes, writes model cards whose numbers are report.json's,
// promotes only the verified challenger, and records CHAMPION relative to
// the registry with the digest that loading the champion checks.
func TestSignedRetrain(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model: skipped with -short")
	}
	ctx := context.Background()
	tmp := t.TempDir()
	keyPath, pubPath := writeKeyPair(t, tmp, "team")
	root := filepath.Join(tmp, "registry")
	cfg := tinyRetrain(t, root, 3, false)
	// The pretrained base is signed too: under a trust policy every model
	// loaded must be.
	base := filepath.Join(tmp, "base")
	linkTree(t, cfg.Model, base)
	if _, err := SignModel(ctx, base, keyPath); err != nil {
		t.Fatal(err)
	}
	cfg.Model, cfg.SigningKey, cfg.Trust = base, keyPath, []string{pubPath}

	res, err := RunRetrain(ctx, RetrainOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Promoted {
		t.Fatalf("not promoted: %+v", res)
	}
	teacher := filepath.Join(res.RunDir, TeacherModel)
	trust, err := signing.LoadTrust(ctx, []string{pubPath})
	if err != nil {
		t.Fatal(err)
	}
	v, err := VerifyModel(ctx, teacher, trust)
	if err != nil {
		t.Fatalf("the promoted teacher does not verify: %v", err)
	}
	rep, err := report.Read(ctx, filepath.Join(res.RunDir, "report"))
	if err != nil {
		t.Fatal(err)
	}
	m := rep.Models[0].Metrics
	p := v.Provenance
	if p == nil || p.Stage != "retrain" || len(p.Datasets) != 1 || len(p.Datasets[0].ManifestSHA256) != 64 ||
		len(p.Models) != 1 || !p.Models[0].Signed || len(p.Config) == 0 || p.Runner == "" {
		t.Fatalf("provenance: %+v", p)
	}
	if p.Results[0].Metric != report.MetricAccuracy || p.Results[0].Value != m.Accuracy || p.Results[0].Low != m.AccuracyCI.Low {
		t.Errorf("provenance results %+v, report accuracy %v %v", p.Results[0], m.Accuracy, m.AccuracyCI)
	}

	// The card parses as a HF model card, and its numbers are the report's.
	py, err := exec.Command("../scripts/pyenv.sh").Output()
	if err != nil {
		t.Fatal(err)
	}
	script := `import json,sys
from huggingface_hub import ModelCard
c = ModelCard.load(sys.argv[1])
d = c.data
print(json.dumps({"base_model": d.base_model, "license": d.license, "datasets": d.datasets,
  "results": [[r.dataset_split, r.metric_type, r.metric_value] for r in d.eval_results]}))`
	out, err := exec.Command(strings.TrimSpace(string(py)), "-c", script, filepath.Join(teacher, report.CardFile)).CombinedOutput()
	if err != nil {
		t.Fatalf("huggingface_hub ModelCard.load: %v\n%s", err, out)
	}
	var parsed struct {
		BaseModel string   `json:"base_model"`
		License   string   `json:"license"`
		Datasets  []string `json:"datasets"`
		Results   [][3]any `json:"results"`
	}
	if err := json.Unmarshal(out, &parsed); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if parsed.License == "" || len(parsed.Datasets) != 1 || parsed.BaseModel == "" || len(parsed.Results) < 3 {
		t.Fatalf("card header: %+v", parsed)
	}
	for _, r := range parsed.Results {
		want, _, ok := m.Value(r[1].(string))
		if !ok || r[0] != rep.Split || r[2].(float64) != want {
			t.Errorf("card result %v; report %s = %v", r, r[1], want)
		}
	}
	if math.IsNaN(m.Accuracy) {
		t.Fatal("no accuracy")
	}

	// CHAMPION names its model inside the registry and records its digest;
	// the registry still resolves after it moves.
	data, err := os.ReadFile(filepath.Join(root, "sst2", registry.ChampionFile))
	if err != nil {
		t.Fatal(err)
	}
	var raw Champion
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Model != "runs/"+res.RunID+"/"+TeacherModel || len(raw.Digest) != 64 {
		t.Fatalf("CHAMPION model %q digest %q", raw.Model, raw.Digest)
	}
	moved := filepath.Join(tmp, "mounted-elsewhere")
	if err := os.Rename(root, moved); err != nil {
		t.Fatal(err)
	}
	champ, _, err := Registry{Root: moved, Name: "sst2"}.ReadChampion(ctx)
	if err != nil || champ.Model != storage.Join(moved, "sst2", "runs", res.RunID, TeacherModel) {
		t.Fatalf("champion after the move: %+v, %v", champ, err)
	}
	if err := CheckChampion(ctx, champ); err != nil {
		t.Fatalf("the untouched champion: %v", err)
	}
	// A champion changed after promotion is refused on load.
	replaceFile(t, filepath.Join(champ.Model, report.CardFile), "# edited\n")
	if err := CheckChampion(ctx, champ); err == nil || !strings.Contains(err.Error(), "changed after it was promoted") {
		t.Errorf("an edited champion: %v", err)
	}
	if _, err := VerifyModel(ctx, champ.Model, trust); err == nil || !strings.Contains(err.Error(), "README.md: changed after signing") {
		t.Errorf("verify of the edited champion: %v", err)
	}
	var e *signing.Error
	if _, err := VerifyModel(ctx, champ.Model, trust); !errors.As(err, &e) {
		t.Errorf("not a signing.Error: %v", err)
	}
}

// TestSignedRetrainRefusesASwapAfterEvaluation: a file of the challenger
// replaced after the evaluation (a bucket writer racing the run) is caught
// before the folder is re-signed with the evaluated card: the run fails and
// nothing is promoted.
func TestSignedRetrainRefusesASwapAfterEvaluation(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model: skipped with -short")
	}
	ctx := context.Background()
	tmp := t.TempDir()
	keyPath, _ := writeKeyPair(t, tmp, "team")
	cfg := tinyRetrain(t, filepath.Join(tmp, "registry"), 5, false)
	cfg.SigningKey = keyPath
	id, err := RetrainRunID(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	teacher := filepath.Join(Registry{Root: cfg.Registry, Name: cfg.Name}.RunDir(id), TeacherModel)
	res, err := RunRetrain(ctx, RetrainOptions{Config: cfg, afterStage: func(stage string) error {
		if stage == "evaluate" {
			replaceFile(t, filepath.Join(teacher, model.ConfigFile), `{"model_type":"bert","swapped":true}`)
		}
		return nil
	}, beforePromote: func() { t.Error("promotion reached after a swap") }})
	if err == nil || !strings.Contains(err.Error(), "before recording the evaluation in its card") || !strings.Contains(err.Error(), "config.json: changed after signing") {
		t.Fatalf("retrain after a swap: %v", err)
	}
	if res != nil && res.Promoted {
		t.Error("promoted")
	}
}
