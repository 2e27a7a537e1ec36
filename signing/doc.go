// Package signing signs and verifies model folders in the format of the
// OpenSSF model_signing tool (PyPI model-signing 1.1.1), so that its CLI
// verifies what beamtune signs and beamtune verifies what it signs.
//
// A signed folder holds SignatureFile (model.sig): a Sigstore bundle
// (application/vnd.dev.sigstore.bundle.v0.3+json) whose DSSE envelope
// carries an in-toto Statement v1. The statement's predicate
// (https://model_signing/signature/v1.0) lists every file of the folder
// with its sha256; its single subject is the folder's name and the sha256
// of those digests concatenated in name order. The envelope is signed with
// an ECDSA key (P-256, P-384 or P-521) over the DSSE pre-authentication
// encoding; the bundle names the key by the sha256 of its PEM public key.
//
// beamtune adds its provenance record to the predicate under
// "beamtune_provenance" (model_signing ignores predicate fields it does not
// know), so the one signature covers the files and how they were made.
//
// Verification is closed-world: every file in the folder except the
// signature must be listed, and every listed file must be there with its
// digest. Errors name the file and say what happened to it (changed,
// added, removed, renamed, swapped) or what is wrong with the signature.
package signing
