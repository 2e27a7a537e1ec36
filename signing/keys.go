package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// ParsePrivateKey reads an ECDSA private key from PEM ("EC PRIVATE KEY" as
// openssl ecparam writes it, or unencrypted PKCS #8 "PRIVATE KEY"), the
// keys model_signing signs with. from names the file in errors.
func ParsePrivateKey(data []byte, from string) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block: want an ECDSA private key in PEM", from)
	}
	var key any
	var err error
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, fmt.Errorf("%s: the key is encrypted; beamtune reads unencrypted keys (keep the file where only the job can read it, or in a gs:// path with narrow access)", from)
	default:
		return nil, fmt.Errorf("%s: PEM block %q is not a private key", from, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, want an ECDSA key (P-256, P-384 or P-521)", from, key)
	}
	if _, err := curveHash(ec.Curve); err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	return ec, nil
}

// ParsePublicKeys reads every "PUBLIC KEY" block of a PEM file.
func ParsePublicKeys(data []byte, from string) ([]*ecdsa.PublicKey, error) {
	var out []*ecdsa.PublicKey
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("%s: PEM block %q is not a public key", from, block.Type)
		}
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", from, err)
		}
		ec, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%s: a %T, want an ECDSA public key", from, key)
		}
		if _, err := curveHash(ec.Curve); err != nil {
			return nil, fmt.Errorf("%s: %w", from, err)
		}
		out = append(out, ec)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM public key in it", from)
	}
	if len(strings.TrimSpace(string(data))) != 0 {
		return nil, fmt.Errorf("%s: text after the last PEM block", from)
	}
	return out, nil
}

// PublicPEM is the PEM (SubjectPublicKeyInfo) of a public key, byte for
// byte as Python's cryptography writes it.
func PublicPEM(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// KeyID is the hint a bundle names its key by: the hex sha256 of the
// key's PEM.
func KeyID(pub *ecdsa.PublicKey) (string, error) {
	p, err := PublicPEM(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(p)
	return hex.EncodeToString(sum[:]), nil
}

// curveHash is the digest model_signing pairs with each curve.
func curveHash(c elliptic.Curve) (crypto.Hash, error) {
	switch c.Params().BitSize {
	case 256:
		return crypto.SHA256, nil
	case 384:
		return crypto.SHA384, nil
	case 521:
		return crypto.SHA512, nil
	}
	return 0, errors.New("unsupported curve " + c.Params().Name + " (want P-256, P-384 or P-521)")
}

// pae is DSSE's pre-authentication encoding of an in-toto payload: what
// the signature is over.
func pae(payload []byte) []byte {
	head := fmt.Sprintf("DSSEv1 %d %s %d ", len(PayloadType), PayloadType, len(payload))
	return append([]byte(head), payload...)
}

func digest(h crypto.Hash, msg []byte) []byte {
	w := h.New()
	w.Write(msg)
	return w.Sum(nil)
}
