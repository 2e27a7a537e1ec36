package storage

import (
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// AuthMode says how gs:// requests built from the environment (a zero
// Store, NewGCSClient with no endpoint) would authenticate, in words: the
// mode only. It never returns a credential, a key file's path or anything
// read from it but its kind, so it is safe to print (beamtune doctor does).
// The error, also safe to print, says why credentials that are configured
// cannot be used.
func AuthMode() (string, error) {
	if h := os.Getenv("STORAGE_EMULATOR_HOST"); h != "" {
		return "no credentials: emulator at " + emulatorHostOnly(h) + " (STORAGE_EMULATOR_HOST)", nil
	}
	if p := os.Getenv("GOOGLE_APPLICATION_CREDENTIALS"); p != "" {
		kind, err := credentialsKind(p)
		if err != nil {
			return "", errors.New("GOOGLE_APPLICATION_CREDENTIALS names a file that " + err.Error())
		}
		return kind + " (GOOGLE_APPLICATION_CREDENTIALS)", nil
	}
	if p := wellKnownADC(); p != "" {
		if _, err := os.Stat(p); err == nil {
			kind, err := credentialsKind(p)
			if err != nil {
				return "", errors.New("the gcloud application-default credentials file " + err.Error())
			}
			return kind + " (gcloud application-default credentials)", nil
		}
	}
	return "the metadata server's service account (GCE, GKE, Cloud Run); elsewhere gs:// fails for lack of credentials", nil
}

// wellKnownADC is where `gcloud auth application-default login` writes.
func wellKnownADC() string {
	if d := os.Getenv("CLOUDSDK_CONFIG"); d != "" {
		return filepath.Join(d, "application_default_credentials.json")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".config", "gcloud", "application_default_credentials.json")
}

// credentialsKind names the kind of a Google credentials JSON file from its
// "type" field. Errors say what is wrong without the path or any content.
func credentialsKind(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", errors.New("cannot be read")
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return "", errors.New("cannot be read")
	}
	var head struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(data, &head) != nil {
		return "", errors.New("is not a credentials JSON file")
	}
	switch head.Type {
	case "service_account":
		return "service account key file", nil
	case "authorized_user":
		return "user credentials file", nil
	case "external_account", "external_account_authorized_user":
		return "workload identity federation file", nil
	case "impersonated_service_account":
		return "service account impersonation file", nil
	case "gdch_service_account":
		return "GDC-H service account file", nil
	}
	// The unknown type itself is not echoed: the file is not ours to print.
	return "", errors.New("holds credentials of a kind beamtune does not recognise")
}

// emulatorHostOnly is host[:port] of an emulator address, without any
// user:password@ or path.
func emulatorHostOnly(h string) string {
	raw := h
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		return u.Host
	}
	return "(an address that does not parse)"
}

// Redact returns p with the user information of a URI ("scheme://user:password@host/...")
// replaced by "REDACTED", for error messages and logs. Anything else,
// local paths included, is returned unchanged. GCS bucket names cannot hold
// '@', so a gs:// URI with one carries credentials.
func Redact(p string) string {
	scheme, rest, ok := strings.Cut(p, "://")
	if !ok || scheme == "" || strings.IndexFunc(scheme, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')
	}) >= 0 {
		return p
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return p
	}
	return scheme + "://REDACTED@" + rest[at+1:]
}
