package signing

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// The names and media types model_signing 1.1.1 writes and checks.
const (
	// SignatureFile is where a signed folder keeps its signature, the name
	// model_signing's CLI uses by default.
	SignatureFile   = "model.sig"
	BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	PayloadType     = "application/vnd.in-toto+json"
	StatementType   = "https://in-toto.io/Statement/v1"
	PredicateType   = "https://model_signing/signature/v1.0"
	hashAlgorithm   = "sha256"
	serializeFiles  = "files"
)

// maxBundleBytes bounds what is read of a signature file: a bundle lists
// one short entry per file, so a few MB is far more than any model needs.
const maxBundleBytes = 8 << 20

// Bundle is a Sigstore bundle with a DSSE envelope, as model_signing
// writes it when signing with a key (no transparency log entries).
type Bundle struct {
	MediaType            string               `json:"mediaType"`
	VerificationMaterial VerificationMaterial `json:"verificationMaterial"`
	DSSEEnvelope         *Envelope            `json:"dsseEnvelope"`
}

// VerificationMaterial names the signing key by the sha256 (hex) of its
// PEM-encoded public key.
type VerificationMaterial struct {
	PublicKey   *KeyHint          `json:"publicKey,omitempty"`
	TlogEntries []json.RawMessage `json:"tlogEntries"`
	// Certificate and X509CertificateChain are how certificate and
	// Sigstore-identity bundles name their signer; beamtune verifies keys
	// only, and refuses those by name.
	Certificate          json.RawMessage `json:"certificate,omitempty"`
	X509CertificateChain json.RawMessage `json:"x509CertificateChain,omitempty"`
}

// KeyHint identifies a public key.
type KeyHint struct {
	Hint string `json:"hint"`
}

// Envelope is a DSSE envelope; Payload is the in-toto statement's JSON.
type Envelope struct {
	Payload     []byte              `json:"payload"`
	PayloadType string              `json:"payloadType"`
	Signatures  []EnvelopeSignature `json:"signatures"`
}

// EnvelopeSignature is one signature of an envelope: ASN.1 DER ECDSA.
type EnvelopeSignature struct {
	Sig   []byte `json:"sig"`
	KeyID string `json:"keyid"`
}

// Statement is an in-toto Statement v1 over a model folder.
type Statement struct {
	Type          string    `json:"_type"`
	Subject       []Subject `json:"subject"`
	PredicateType string    `json:"predicateType"`
	Predicate     Predicate `json:"predicate"`
}

// Subject names the folder and its root digest.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Predicate lists the folder's files and how they were serialized, and,
// from beamtune, how the model was made.
type Predicate struct {
	Resources     []Resource    `json:"resources"`
	Serialization Serialization `json:"serialization"`
	Provenance    *Provenance   `json:"beamtune_provenance,omitempty"`
}

// Serialization says how the folder was turned into the resource list;
// a verifier repeats it. beamtune signs every file ("files" method,
// sha256), follows no symlinks and leaves out only the signature.
type Serialization struct {
	Method        string   `json:"method"`
	HashType      string   `json:"hash_type"`
	AllowSymlinks bool     `json:"allow_symlinks"`
	IgnorePaths   []string `json:"ignore_paths"`
}

// Resource is one file: its slash-separated path in the folder and the
// hex digest of its bytes.
type Resource struct {
	Name      string `json:"name"`
	Algorithm string `json:"algorithm"`
	Digest    string `json:"digest"`
}

// ParseBundle decodes a signature file and checks its shape: the media
// and payload types, exactly one signature, a statement with one subject
// whose digest matches the resources it lists. It checks no signature.
func ParseBundle(data []byte) (*Bundle, *Statement, error) {
	if len(data) > maxBundleBytes {
		return nil, nil, fmt.Errorf("%d bytes, more than a signature holds (%d)", len(data), maxBundleBytes)
	}
	var b Bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return nil, nil, fmt.Errorf("not a Sigstore bundle: %w", err)
	}
	switch {
	case b.MediaType != BundleMediaType:
		return nil, nil, fmt.Errorf("media type %q, want %q", b.MediaType, BundleMediaType)
	case b.VerificationMaterial.PublicKey == nil && (b.VerificationMaterial.Certificate != nil || b.VerificationMaterial.X509CertificateChain != nil):
		return nil, nil, errors.New("signed with a certificate or a Sigstore identity, not a key: beamtune verifies key signatures (use model_signing verify certificate|sigstore)")
	case b.VerificationMaterial.PublicKey == nil:
		return nil, nil, errors.New("no publicKey in verificationMaterial: not a key signature")
	case b.DSSEEnvelope == nil:
		return nil, nil, errors.New("no dsseEnvelope")
	case b.DSSEEnvelope.PayloadType != PayloadType:
		return nil, nil, fmt.Errorf("payload type %q, want %q", b.DSSEEnvelope.PayloadType, PayloadType)
	case len(b.DSSEEnvelope.Signatures) != 1:
		return nil, nil, fmt.Errorf("%d signatures in the envelope, want 1", len(b.DSSEEnvelope.Signatures))
	case len(b.DSSEEnvelope.Signatures[0].Sig) == 0:
		return nil, nil, errors.New("empty signature")
	}
	st, err := parseStatement(b.DSSEEnvelope.Payload)
	if err != nil {
		return nil, nil, err
	}
	return &b, st, nil
}

func parseStatement(payload []byte) (*Statement, error) {
	var st Statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return nil, fmt.Errorf("payload is not an in-toto statement: %w", err)
	}
	switch {
	case st.Type != StatementType:
		return nil, fmt.Errorf("statement type %q, want %q", st.Type, StatementType)
	case st.PredicateType != PredicateType:
		return nil, fmt.Errorf("predicate type %q, want %q", st.PredicateType, PredicateType)
	case len(st.Subject) != 1:
		return nil, fmt.Errorf("%d subjects, want 1", len(st.Subject))
	case st.Predicate.Serialization.Method != serializeFiles || st.Predicate.Serialization.HashType != hashAlgorithm:
		return nil, fmt.Errorf("serialization %q/%q, beamtune verifies %q/%q", st.Predicate.Serialization.Method,
			st.Predicate.Serialization.HashType, serializeFiles, hashAlgorithm)
	}
	m := Manifest{Resources: st.Predicate.Resources}
	if err := m.check(); err != nil {
		return nil, err
	}
	if got, want := m.RootDigest(), st.Subject[0].Digest[hashAlgorithm]; got != want {
		return nil, fmt.Errorf("subject digest %s does not match the %d files listed (%s)", strconv.Quote(want), len(m.Resources), got)
	}
	return &st, nil
}
