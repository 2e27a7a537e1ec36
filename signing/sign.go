package signing

import (
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/json"
	"fmt"
)

// Sign signs manifest m of the folder named name (the subject's name, the
// folder's last path element) with key, with beamtune's provenance record
// when prov is not nil, and returns the signature file's bytes.
func Sign(m Manifest, name string, prov *Provenance, key *ecdsa.PrivateKey) ([]byte, error) {
	m = NewManifest(m.Resources)
	if err := m.check(); err != nil {
		return nil, err
	}
	if m.Resources == nil {
		m.Resources = []Resource{}
	}
	st := Statement{
		Type:          StatementType,
		Subject:       []Subject{{Name: name, Digest: map[string]string{hashAlgorithm: m.RootDigest()}}},
		PredicateType: PredicateType,
		Predicate: Predicate{
			Resources: m.Resources,
			Serialization: Serialization{
				Method: serializeFiles, HashType: hashAlgorithm, AllowSymlinks: false,
				IgnorePaths: []string{SignatureFile},
			},
			Provenance: prov,
		},
	}
	payload, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, err
	}
	h, err := curveHash(key.Curve)
	if err != nil {
		return nil, err
	}
	sig, err := ecdsa.SignASN1(rand.Reader, key, digest(h, pae(payload)))
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	id, err := KeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	b := Bundle{
		MediaType:            BundleMediaType,
		VerificationMaterial: VerificationMaterial{PublicKey: &KeyHint{Hint: id}, TlogEntries: []json.RawMessage{}},
		DSSEEnvelope: &Envelope{
			Payload: payload, PayloadType: PayloadType,
			Signatures: []EnvelopeSignature{{Sig: sig, KeyID: ""}},
		},
	}
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
