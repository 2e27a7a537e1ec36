package pipelines

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"go.yaml.in/yaml/v3"

	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/storage/gcstest"
)

// Canary credentials: recognisable strings that must never be written
// anywhere a run writes (logs, reports, manifests, model folders, markers).
const (
	canaryEmail    = "beamtune-canary@canary-project-4711.iam.gserviceaccount.com"
	canaryKeyID    = "c0ffee5ecre7c0ffee5ecre7c0ffee5ecre7beef"
	canaryToken    = "ya29.CANARY-access-token-a1b2c3d4e5f6"
	canaryPass     = "CANARYuserinfoPassw0rd"
	canaryHFToken  = "hf_CANARYhuggingfaceTokenQwErTy0123"
	canaryGcloud   = "ya29.CANARY-gcloud-access-token-zz9"
	canaryOAuthEnv = "ya29.CANARY-oauth-env-token-yy8"
	canaryAWS      = "CANARYawsSecretKey/abcdefghijklmnop"
)

// canaryServiceAccount writes a service-account key file with a real RSA
// key, whose token endpoint is tokenURI, and returns its path and a line of
// the key's PEM body.
func canaryServiceAccount(t *testing.T, dir, tokenURI string) (path, keyPiece string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	lines := strings.Split(pemKey, "\n")
	sa, err := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "canary-project-4711",
		"private_key_id": canaryKeyID, "private_key": pemKey, "client_email": canaryEmail,
		"client_id": "104242424242424242424", "auth_uri": tokenURI, "token_uri": tokenURI,
		"universe_domain": "googleapis.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "canary-sa-key.json")
	if err := os.WriteFile(path, sa, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, lines[len(lines)/2]
}

// canaryTokenServer is an OAuth2 token endpoint that grants canaryToken and
// counts the grants.
func canaryTokenServer(t *testing.T) (*httptest.Server, func() int) {
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"`+canaryToken+`","token_type":"Bearer","expires_in":3600}`)
	}))
	t.Cleanup(srv.Close)
	return srv, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// toTestGCS sends requests meant for the real GCS to a test server, keeping
// the headers the auth layer added; it refuses a request without a bearer
// token, so a run that does not authenticate fails.
type toTestGCS struct{ target *url.URL }

func (f toTestGCS) RoundTrip(r *http.Request) (*http.Response, error) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
		return nil, fmt.Errorf("toTestGCS: %s %s without a bearer token", r.Method, r.URL.Path)
	}
	r2 := r.Clone(r.Context())
	r2.URL.Scheme, r2.URL.Host, r2.Host = f.target.Scheme, f.target.Host, f.target.Host
	return http.DefaultTransport.RoundTrip(r2)
}

// retrainChild runs the retrain.yaml at path for TestProcessFaultChild.
// With BEAMTUNE_CHILD_GCS set, gs:// requests take the production path
// (credentials from the environment, NewGCSClient with no endpoint) and are
// then sent to that test server instead of GCS.
func retrainChild(ctx context.Context, path string) error {
	if target := os.Getenv("BEAMTUNE_CHILD_GCS"); target != "" {
		u, err := url.Parse(target)
		if err != nil {
			return err
		}
		c, err := storage.NewGCSClient(ctx, "", toTestGCS{u})
		if err != nil {
			return err
		}
		defer c.Close()
		storage.SetGCSClient(c)
		// Model folders are tens of MB: the gcstest tuning is for small objects.
		opts := gcstest.Options()
		opts.AttemptTimeout, opts.RetryTime = time.Minute, 5*time.Minute
		storage.SetGCSOptions(opts)
	}
	cfg, err := LoadRetrainConfig(ctx, path)
	if err != nil {
		return err
	}
	res, err := RunRetrain(ctx, RetrainOptions{Config: cfg})
	out, _ := json.Marshal(res)
	fmt.Printf("retrain result: %s\n", out)
	return err
}

// secretsIn returns the secrets that occur in data.
func secretsIn(data []byte, secrets []string) []string {
	var found []string
	for _, s := range secrets {
		if bytes.Contains(data, []byte(s)) {
			found = append(found, s)
		}
	}
	return found
}

// TestRetrainWritesNoSecrets runs a whole retrain (prepare, train, distill,
// evaluate, gate, promote) in a child process whose environment holds
// credentials: a service-account key file in GOOGLE_APPLICATION_CREDENTIALS
// that the run really authenticates with (every gs:// request carries the
// token it earns), and tokens in HF_TOKEN, CLOUDSDK_AUTH_ACCESS_TOKEN,
// GOOGLE_OAUTH_ACCESS_TOKEN and AWS_SECRET_ACCESS_KEY. The registry is in
// (fake) GCS. Everything the run wrote (every object: manifest, shards,
// dead letter, model folders with config.json and training_log.jsonl, the
// report in json, md and html, stage markers, CHAMPION) and everything it
// printed must be free of the key, its id, the account's email and every
// token.
func TestRetrainWritesNoSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("trains models: skipped with -short")
	}
	tokenSrv, grants := canaryTokenServer(t)
	credDir := t.TempDir()
	keyPath, keyPiece := canaryServiceAccount(t, credDir, tokenSrv.URL)
	srv := gcstest.Start(t, "canary-reg")

	work := t.TempDir()
	cfg := tinyRetrain(t, "gs://canary-reg/models", 7, true)
	data, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(work, "retrain.yaml")
	if err := os.WriteFile(cfgPath, data, 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestProcessFaultChild$", "-test.count=1", "-test.v")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STORAGE_EMULATOR_HOST=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env,
		"BEAMTUNE_FAULT_CHILD=retrain:"+cfgPath,
		"BEAMTUNE_CHILD_GCS="+srv.URL(),
		"GOOGLE_APPLICATION_CREDENTIALS="+keyPath,
		"HF_TOKEN="+canaryHFToken,
		"CLOUDSDK_AUTH_ACCESS_TOKEN="+canaryGcloud,
		"GOOGLE_OAUTH_ACCESS_TOKEN="+canaryOAuthEnv,
		"AWS_SECRET_ACCESS_KEY="+canaryAWS,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("retrain child: %v, %d bytes of output", time.Since(start).Round(time.Second), out.Len())
	if runErr != nil || !strings.Contains(out.String(), `"promoted":true`) {
		t.Fatalf("retrain child failed (%v):\n%s", runErr, tail(out.String()))
	}
	if grants() == 0 {
		t.Fatal("the token endpoint was never asked: the run did not authenticate with the key file")
	}

	secrets := []string{canaryEmail, canaryKeyID, canaryToken, canaryPass, canaryHFToken, canaryGcloud, canaryOAuthEnv, canaryAWS, keyPiece}
	if found := secretsIn(out.Bytes(), secrets); len(found) > 0 {
		t.Errorf("the run's output holds %q", found)
	}
	// Every object in the registry bucket.
	objs, _, err := srv.Fake.ListObjectsWithOptions("canary-reg", fakestorage.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	var scanned int64
	for _, o := range objs {
		obj, err := srv.Fake.GetObject("canary-reg", o.Name)
		if err != nil {
			t.Fatal(err)
		}
		scanned += int64(len(obj.Content))
		if found := secretsIn(obj.Content, secrets); len(found) > 0 {
			t.Errorf("gs://canary-reg/%s holds %q", o.Name, found)
		}
		kinds[filepath.Base(o.Name)]++
	}
	// And every local file (the config; nothing else should be here).
	err = filepath.WalkDir(work, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if found := secretsIn(b, secrets); len(found) > 0 {
			t.Errorf("%s holds %q", p, found)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The scan covered what the run writes.
	for _, want := range []string{"manifest.json", "config.json", "training_log.jsonl", "model.safetensors",
		"report.json", "report.md", "report.html", "retrain.json", "evaluate.json", "CHAMPION"} {
		if kinds[want] == 0 {
			names := make([]string, 0, len(kinds))
			for k := range kinds {
				names = append(names, k)
			}
			sort.Strings(names)
			t.Errorf("the run wrote no %s to scan; it wrote %v", want, names)
		}
	}
	t.Logf("scanned %d objects (%d MB) and %d bytes of output for %d secrets; %d token grants",
		len(objs), scanned>>20, out.Len(), len(secrets), grants())
}

// TestCredentialURIsRefusedUnechoed: a gs:// URI carrying credentials
// (gs://user:password@bucket/...) as a prepare input or output, a retrain
// registry or a retrain.yaml location is refused before anything runs, and
// neither the error nor the log names the password.
func TestCredentialURIsRefusedUnechoed(t *testing.T) {
	modelDir := needModel(t)
	gcstest.Start(t, "canary-bucket")
	logs := &bytes.Buffer{}
	var mu sync.Mutex
	prevSlog, prevLog := slog.Default(), log.Writer()
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	slog.SetDefault(slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
	log.SetOutput(w)
	defer func() { slog.SetDefault(prevSlog); log.SetOutput(prevLog) }()

	ctx := context.Background()
	secretURI := "gs://svc:" + canaryPass + "@canary-bucket"
	sample := func(o *PrepareOptions) {
		abs, _ := filepath.Abs("../testdata/sample/sst2_dev.tsv")
		o.Train = []string{abs}
		o.Fields.Text, o.Fields.Label = []string{"sentence"}, "label"
		o.ModelDir, o.Output = modelDir, t.TempDir()
	}
	cases := []struct {
		name string
		run  func() error
	}{
		{"prepare input", func() error {
			o := DefaultPrepareOptions()
			sample(&o)
			o.Train = []string{secretURI + "/in/train.tsv"}
			_, err := RunPrepare(ctx, o)
			return err
		}},
		{"prepare output", func() error {
			o := DefaultPrepareOptions()
			sample(&o)
			o.Output = secretURI + "/out"
			_, err := RunPrepare(ctx, o)
			return err
		}},
		{"retrain registry", func() error {
			_, err := RunRetrain(ctx, RetrainOptions{Config: tinyRetrain(t, secretURI+"/models", 1, false)})
			return err
		}},
		{"retrain.yaml", func() error {
			_, err := LoadRetrainConfig(ctx, secretURI+"/retrain.yaml")
			return err
		}},
	}
	for _, c := range cases {
		start := time.Now()
		err := c.run()
		took := time.Since(start)
		if err == nil {
			t.Errorf("%s: a URI with credentials was accepted", c.name)
			continue
		}
		if strings.Contains(err.Error(), canaryPass) || !strings.Contains(err.Error(), "credentials in a gs:// URI are not supported") {
			t.Errorf("%s: error %q", c.name, err)
		}
		// Refused up front, not after a pipeline ran.
		if took > 10*time.Second {
			t.Errorf("%s: refused only after %v", c.name, took)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logs.String(), canaryPass) {
		t.Errorf("the log names the password:\n%s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
