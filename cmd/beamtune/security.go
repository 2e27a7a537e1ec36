package main

import (
	"context"
	"log/slog"

	"github.com/beamtune/beamtune/pipelines"
	"github.com/beamtune/beamtune/signing"
)

// protection binds --signing_key and --trusted_keys to the
// pipelines.Security of a command's options.
type protection struct {
	sec     *pipelines.Security
	trusted []string // --trusted_keys as given
	signs   bool     // the command publishes model folders
}

// register declares the flags: --trusted_keys for every command that loads
// models, --signing_key for those that publish them.
func (p *protection) register(f *flagSet, sec *pipelines.Security, signs bool) {
	p.sec, p.signs = sec, signs
	f.section("Model protection")
	if signs {
		f.stringVar(&sec.SigningKey, "signing_key", "", "ECDSA P-256 private key (PEM, local or gs://) that signs every published model folder (model.sig, OpenSSF model_signing's format); empty: published unsigned")
	}
	f.listVar(&p.trusted, "trusted_keys", "PEM public keys (local or gs://, comma-separated): every model folder loaded must carry a signature by one of them over exactly its files, checked before any weights are read")
}

// resolve reads the trusted keys and says, once, when published folders go
// unsigned.
func (p *protection) resolve(ctx context.Context) error {
	t, err := signing.LoadTrust(ctx, p.trusted)
	if err != nil {
		return err
	}
	p.sec.Trust = t
	if p.signs && p.sec.SigningKey == "" {
		slog.Info("published model folders are not signed (no --signing_key)")
	}
	return nil
}
