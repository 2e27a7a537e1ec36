package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/storage/gcstest"
)

// Canary credentials: recognisable strings that must never appear in an
// error, a log line or doctor's output.
const (
	canaryEmail = "beamtune-canary@canary-project-4711.iam.gserviceaccount.com"
	canaryKeyID = "c0ffee5ecre7c0ffee5ecre7c0ffee5ecre7beef"
	canaryToken = "ya29.CANARY-access-token-a1b2c3d4e5f6"
	canaryPass  = "CANARYuserinfoPassw0rd"
)

// serviceAccount is a fake service-account key file with a real RSA key (so
// the auth library accepts it and signs with it) whose token endpoint is
// tokenURI. It returns the file's path and a piece of the key's PEM body.
func serviceAccount(t *testing.T, dir, tokenURI string) (path, keyPiece string) {
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
	keyPiece = lines[len(lines)/2] // a whole base64 line from the middle of the key
	sa, err := json.Marshal(map[string]string{
		"type": "service_account", "project_id": "canary-project-4711",
		"private_key_id": canaryKeyID, "private_key": pemKey,
		"client_email": canaryEmail, "client_id": "104242424242424242424",
		"auth_uri": tokenURI, "token_uri": tokenURI, "universe_domain": "googleapis.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(dir, "canary-sa-key.json")
	if err := os.WriteFile(path, sa, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, keyPiece
}

// captureLogs sends slog and log output to a buffer until the test ends.
func captureLogs(t *testing.T) *syncBuffer {
	t.Helper()
	buf := &syncBuffer{}
	prevSlog, prevLog := slog.Default(), log.Writer()
	slog.SetDefault(slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	log.SetOutput(buf)
	t.Cleanup(func() { slog.SetDefault(prevSlog); log.SetOutput(prevLog) })
	return buf
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// toFake sends requests meant for the real GCS to a test server instead,
// keeping the headers the auth layer added, and records the Authorization
// values it carried.
type toFake struct {
	target *url.URL
	mu     sync.Mutex
	auth   map[string]bool
}

func (f *toFake) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.auth[r.Header.Get("Authorization")] = true
	f.mu.Unlock()
	r2 := r.Clone(r.Context())
	r2.URL.Scheme, r2.URL.Host, r2.Host = f.target.Scheme, f.target.Host, f.target.Host
	return http.DefaultTransport.RoundTrip(r2)
}

// findSecrets returns the secrets that occur in text.
func findSecrets(text string, secrets []string) []string {
	var found []string
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			found = append(found, s)
		}
	}
	return found
}

// TestCredentialsStayOutOfErrorsAndLogs runs storage operations with a
// service-account key from GOOGLE_APPLICATION_CREDENTIALS, through the real
// auth layer (NewGCSClient with no endpoint, as in production) to the fake
// GCS behind the fault proxy: reads, writes, listings, a missing object, a
// credentials URI, persistent 503s and resets, and then a token endpoint
// that refuses the key. No error and no log line may hold the key, its id,
// the account's email, the access token or the Authorization header sent.
func TestCredentialsStayOutOfErrorsAndLogs(t *testing.T) {
	var tokenRefused bool
	var tokenMu sync.Mutex
	tokenRequests := 0
	tokenSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokenMu.Lock()
		tokenRequests++
		refuse := tokenRefused
		tokenMu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if refuse {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`)
			return
		}
		io.WriteString(w, `{"access_token":"`+canaryToken+`","token_type":"Bearer","expires_in":3600}`)
	}))
	defer tokenSrv.Close()
	keyPath, keyPiece := serviceAccount(t, t.TempDir(), tokenSrv.URL)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", keyPath)
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	os.Unsetenv("STORAGE_EMULATOR_HOST") // set-but-empty is unset to the client library too, but be plain

	srv := gcstest.Start(t, "canary-bucket")
	target, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	logs := captureLogs(t)
	ctx := context.Background()

	var errs []string
	note := func(err error) {
		if err != nil {
			errs = append(errs, err.Error())
		}
	}
	operate := func(store *storage.Store) {
		note(store.WriteFile(ctx, "gs://canary-bucket/a/x.txt", []byte("hello")))
		_, err := store.ReadFile(ctx, "gs://canary-bucket/a/x.txt")
		note(err)
		_, err = store.ReadFile(ctx, "gs://canary-bucket/a/missing.txt")
		note(err)
		_, err = store.Glob(ctx, "gs://canary-bucket/a/*")
		note(err)
		_, err = store.Stat(ctx, "gs://canary-bucket/a/x.txt")
		note(err)
		_, err = store.ReadFile(ctx, "gs://svc:"+canaryPass+"@canary-bucket/a/x.txt")
		note(err)
		_, err = store.Glob(ctx, "gs://svc:"+canaryPass+"@canary-bucket/a/*")
		note(err)
		srv.Proxy.SetRules(2, gcstest.Rule{Fault: gcstest.Unavailable})
		note(store.WriteFile(ctx, "gs://canary-bucket/a/y.txt", []byte("y")))
		_, err = store.ReadFile(ctx, "gs://canary-bucket/a/x.txt")
		note(err)
		srv.Proxy.SetRules(3, gcstest.Rule{Fault: gcstest.Reset})
		_, err = store.Stat(ctx, "gs://canary-bucket/a/x.txt")
		note(err)
		srv.Proxy.Clear()
	}

	// 1. Credentials accepted: every request carries a bearer token.
	fake := &toFake{target: target, auth: map[string]bool{}}
	client, err := storage.NewGCSClient(ctx, "", fake)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	store := storage.NewStore(client)
	store.SetGCSOptions(gcstest.Options())
	operate(store)
	if got, err := srv.Direct.ReadFile(ctx, "gs://canary-bucket/a/x.txt"); err != nil || string(got) != "hello" {
		t.Fatalf("the authenticated write did not land: %q, %v (errors: %v)", got, err, errs)
	}
	var sent []string
	for a := range fake.auth {
		if !strings.HasPrefix(a, "Bearer ") || len(a) < 20 {
			t.Fatalf("a request went out with Authorization %q: the credentials were not used", a)
		}
		sent = append(sent, a, strings.TrimPrefix(a, "Bearer "))
	}
	if len(sent) == 0 {
		t.Fatal("no request reached the fake GCS")
	}
	nOK := len(errs)

	// 2. Credentials refused by the token endpoint.
	tokenMu.Lock()
	tokenRefused = true
	tokenMu.Unlock()
	client2, err := storage.NewGCSClient(ctx, "", &toFake{target: target, auth: map[string]bool{}})
	if err != nil {
		t.Fatal(err)
	}
	defer client2.Close()
	store2 := storage.NewStore(client2)
	store2.SetGCSOptions(gcstest.Options())
	_, err = store2.ReadFile(ctx, "gs://canary-bucket/a/x.txt")
	if err == nil {
		t.Fatal("a read with refused credentials succeeded")
	}
	note(err)

	secrets := append([]string{canaryEmail, canaryKeyID, canaryToken, canaryPass, keyPiece}, sent...)
	all := strings.Join(errs, "\n") + "\n" + logs.String()
	if found := findSecrets(all, secrets); len(found) > 0 {
		t.Fatalf("credentials leaked: %q\nin:\n%s", found, all)
	}
	// The failures the test meant did happen, and say what they are about.
	for _, want := range []string{"object doesn't exist", "credentials in a gs:// URI are not supported", "gs://REDACTED@canary-bucket/a/x.txt", "503", "reset"} {
		if !strings.Contains(strings.Join(errs[:nOK], "\n"), want) {
			t.Errorf("no error says %q; errors:\n%s", want, strings.Join(errs, "\n"))
		}
	}
	if !strings.Contains(errs[len(errs)-1], "invalid_grant") {
		t.Errorf("refused credentials: error %q does not say why", errs[len(errs)-1])
	}
	t.Logf("errors:\n%s", strings.Join(errs, "\n"))
	t.Logf("%d errors and %d bytes of logs scanned for %d secrets; %d token requests, %d distinct Authorization values",
		len(errs), len(logs.String()), len(secrets), tokenRequests, len(fake.auth))
}

// TestAuthModeShowsTheModeOnly: what doctor prints for each way of
// authenticating names the mode and never the key file's path, its content
// or an emulator address's credentials.
func TestAuthModeShowsTheModeOnly(t *testing.T) {
	dir := t.TempDir()
	saPath, keyPiece := serviceAccount(t, dir, "http://127.0.0.1:1/token")
	user := filepath.Join(dir, "canary-user.json")
	if err := os.WriteFile(user, []byte(`{"type":"authorized_user","client_id":"x","client_secret":"`+canaryPass+`","refresh_token":"`+canaryToken+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	notJSON := filepath.Join(dir, "canary-not-json")
	if err := os.WriteFile(notJSON, []byte(canaryToken), 0o600); err != nil {
		t.Fatal(err)
	}
	oddType := filepath.Join(dir, "canary-odd.json")
	if err := os.WriteFile(oddType, []byte(`{"type":"`+canaryToken+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	gcloud := filepath.Join(dir, "gcloud")
	if err := os.MkdirAll(gcloud, 0o755); err != nil {
		t.Fatal(err)
	}
	emptyGcloud := filepath.Join(dir, "empty-gcloud")
	if err := os.MkdirAll(emptyGcloud, 0o755); err != nil {
		t.Fatal(err)
	}
	adc, _ := os.ReadFile(user)
	if err := os.WriteFile(filepath.Join(gcloud, "application_default_credentials.json"), adc, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		emulator, gac, cloudsdk string
		want, wantErr           string
	}{
		{emulator: "svc:" + canaryPass + "@127.0.0.1:4443", want: "no credentials: emulator at 127.0.0.1:4443 (STORAGE_EMULATOR_HOST)"},
		{emulator: "127.0.0.1:4443", gac: saPath, want: "no credentials: emulator at 127.0.0.1:4443 (STORAGE_EMULATOR_HOST)"},
		{gac: saPath, want: "service account key file (GOOGLE_APPLICATION_CREDENTIALS)"},
		{gac: user, want: "user credentials file (GOOGLE_APPLICATION_CREDENTIALS)"},
		{gac: filepath.Join(dir, "canary-missing.json"), wantErr: "GOOGLE_APPLICATION_CREDENTIALS names a file that cannot be read"},
		{gac: notJSON, wantErr: "GOOGLE_APPLICATION_CREDENTIALS names a file that is not a credentials JSON file"},
		{gac: oddType, wantErr: "GOOGLE_APPLICATION_CREDENTIALS names a file that holds credentials of a kind beamtune does not recognise"},
		{cloudsdk: gcloud, want: "user credentials file (gcloud application-default credentials)"},
		{cloudsdk: emptyGcloud, want: "the metadata server's service account"},
	}
	secrets := []string{canaryEmail, canaryKeyID, canaryToken, canaryPass, keyPiece, dir}
	for _, c := range cases {
		t.Setenv("STORAGE_EMULATOR_HOST", c.emulator)
		t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", c.gac)
		t.Setenv("CLOUDSDK_CONFIG", c.cloudsdk)
		if c.cloudsdk == "" {
			t.Setenv("CLOUDSDK_CONFIG", emptyGcloud)
		}
		mode, err := storage.AuthMode()
		got := mode
		if err != nil {
			got = err.Error()
		}
		switch {
		case c.wantErr != "" && (err == nil || got != c.wantErr):
			t.Errorf("%+v: got %q (err %v), want the error %q", c, mode, err, c.wantErr)
		case c.wantErr == "" && (err != nil || !strings.HasPrefix(mode, c.want)):
			t.Errorf("%+v: got %q (err %v), want %q", c, mode, err, c.want)
		}
		if found := findSecrets(got, secrets); len(found) > 0 {
			t.Errorf("%+v: %q shows %q", c, got, found)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"gs://bucket/a@b/c":                        "gs://bucket/a@b/c",
		"gs://user:" + canaryPass + "@bucket/x":    "gs://REDACTED@bucket/x",
		"gs://" + canaryToken + "@bucket":          "gs://REDACTED@bucket",
		"http://u:" + canaryPass + "@host:1/p?q=1": "http://REDACTED@host:1/p?q=1",
		"/local/dir/a@b":                           "/local/dir/a@b",
		"relative@x/y":                             "relative@x/y",
		"":                                         "",
	} {
		if got := storage.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	_, _, err := storage.ParseGCS("gs://user:" + canaryPass + "@bucket/x")
	if err == nil || strings.Contains(err.Error(), canaryPass) || !strings.Contains(err.Error(), "credentials in a gs:// URI are not supported") {
		t.Errorf("ParseGCS of a URI with credentials: %v", err)
	}
}
