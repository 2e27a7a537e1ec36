package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// ---------------------------------------------------------------------------
// Paths

const gsScheme = "gs://"

// IsGCS reports whether p is a gs:// URI.
func IsGCS(p string) bool { return strings.HasPrefix(p, gsScheme) }

// ParseGCS splits "gs://bucket/object" into bucket and object. The object
// may be empty ("gs://bucket" or "gs://bucket/"); it is returned as written
// (no cleaning, a trailing "/" is kept). The bucket must be a valid GCS
// bucket name and the object a valid object name (UTF-8, no CR/LF, at most
// 1024 bytes, not "." or "..").
func ParseGCS(uri string) (bucket, object string, err error) {
	if !IsGCS(uri) {
		return "", "", fmt.Errorf("storage: %q is not a gs:// URI (want gs://bucket/object)", Redact(uri))
	}
	rest := uri[len(gsScheme):]
	bucket, object, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("storage: %q has no bucket name (want gs://bucket/object)", uri)
	}
	if strings.Contains(bucket, "@") {
		// Never echoed: what precedes '@' is a password or token.
		return "", "", fmt.Errorf("storage: %q: credentials in a gs:// URI are not supported; beamtune authenticates with GOOGLE_APPLICATION_CREDENTIALS or Application Default Credentials (beamtune doctor shows which)", Redact(uri))
	}
	if err := checkBucketName(bucket); err != nil {
		return "", "", fmt.Errorf("storage: %q: %w", uri, err)
	}
	if err := checkObjectName(object); err != nil {
		return "", "", fmt.Errorf("storage: %q: %w", uri, err)
	}
	return bucket, object, nil
}

// checkBucketName applies GCS's bucket naming rules: 3-63 characters (up to
// 222 when dotted, each dot-separated part at most 63) of lowercase letters,
// digits, '-', '_' and '.', starting and ending with a letter or digit.
func checkBucketName(b string) error {
	if strings.ContainsAny(b, "*?[") {
		return fmt.Errorf("bucket name %q contains a wildcard (only object names may)", b)
	}
	max := 63
	if strings.Contains(b, ".") {
		max = 222
	}
	if len(b) < 3 || len(b) > max {
		return fmt.Errorf("bucket name %q must be 3 to %d characters long", b, max)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("bucket name %q has invalid character %q (allowed: a-z 0-9 - _ .)", b, c)
		}
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	if !alnum(b[0]) || !alnum(b[len(b)-1]) {
		return fmt.Errorf("bucket name %q must start and end with a letter or digit", b)
	}
	for _, part := range strings.Split(b, ".") {
		if len(part) == 0 || len(part) > 63 {
			return fmt.Errorf("bucket name %q has an empty or over-long (>63) dot-separated part", b)
		}
	}
	return nil
}

func checkObjectName(o string) error {
	switch {
	case len(o) > 1024:
		return fmt.Errorf("object name is %d bytes long (max 1024)", len(o))
	case !utf8.ValidString(o):
		return errors.New("object name is not valid UTF-8")
	case strings.ContainsAny(o, "\r\n"):
		return errors.New("object name contains a carriage return or line feed")
	case o == "." || o == "..":
		return fmt.Errorf("object name %q is not allowed", o)
	}
	return nil
}

// Join joins path elements. For gs:// URIs it joins the object name with
// slash semantics (path.Join) and never touches the scheme or bucket (".."
// cannot climb out of the bucket); other paths use filepath.Join.
func Join(base string, elem ...string) string {
	if !IsGCS(base) {
		return filepath.Join(append([]string{base}, elem...)...)
	}
	rest := base[len(gsScheme):]
	bucket, object, _ := strings.Cut(rest, "/")
	parts := append([]string{"/", object}, elem...)
	joined := strings.TrimPrefix(path.Join(parts...), "/")
	if joined == "" {
		return gsScheme + bucket
	}
	return gsScheme + bucket + "/" + joined
}

// location is a routed path: local, or a parsed gs:// URI.
type location struct {
	path   string // as given, for error messages
	gs     bool
	bucket string
	object string
}

// locate routes p. It rejects empty paths and near-miss URIs such as
// "gs:/b/o" or "GS://b/o" that would otherwise become odd local paths.
func locate(op, p string) (location, error) {
	if p == "" {
		return location{}, &fs.PathError{Op: op, Path: p, Err: errors.New("empty path")}
	}
	if IsGCS(p) {
		b, o, err := ParseGCS(p)
		if err != nil {
			return location{}, &fs.PathError{Op: op, Path: Redact(p), Err: err}
		}
		return location{path: p, gs: true, bucket: b, object: o}, nil
	}
	if len(p) >= 4 && strings.EqualFold(p[:4], "gs:/") {
		return location{}, &fs.PathError{Op: op, Path: Redact(p), Err: errors.New("malformed gs:// URI (want gs://bucket/object)")}
	}
	return location{path: p}, nil
}

// locateObject is locate for operations that need an object, not a bucket.
func locateObject(op, p string) (location, error) {
	loc, err := locate(op, p)
	if err == nil && loc.gs && (loc.object == "" || strings.HasSuffix(loc.object, "/")) {
		return location{}, &fs.PathError{Op: op, Path: p, Err: errors.New("URI names a bucket or directory, not an object")}
	}
	return loc, err
}
