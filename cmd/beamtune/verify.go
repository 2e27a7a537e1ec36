package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/beamtune/beamtune/pipelines"
	"github.com/beamtune/beamtune/signing"
)

// verifyCmd: beamtune verify MODEL --public_key=KEY.
type verifyCmd struct {
	model string
	keys  []string // --public_key as given
}

func (c *verifyCmd) register(f *flagSet) {
	f.section("Model")
	f.stringVar(&c.model, "model", "", "the model folder to verify (local or gs://; or give it as the first argument)")
	f.listVar(&c.keys, "public_key", "PEM public keys (local or gs://, comma-separated or repeated): the folder must be signed by one of them")
}

func (c *verifyCmd) run(ctx context.Context) error {
	// The flag package stops at the first argument that is not a flag:
	// `verify MODEL --public_key=K` leaves the key flag after MODEL.
	if args := flag.Args(); len(args) > 0 {
		if c.model != "" {
			return fmt.Errorf("verify: the model is given twice (%s and --model %s)", args[0], c.model)
		}
		c.model = args[0]
		if err := flag.CommandLine.Parse(args[1:]); err != nil {
			return err
		}
		if flag.NArg() > 0 {
			return fmt.Errorf("verify takes one model folder; also got %v", flag.Args())
		}
	}
	if c.model == "" {
		return fmt.Errorf("verify needs a model folder: beamtune verify MODEL --public_key=KEY.pub")
	}
	trust, err := signing.LoadTrust(ctx, c.keys)
	if err != nil {
		return err
	}
	v, err := pipelines.VerifyModel(ctx, c.model, trust)
	if err != nil {
		return err
	}
	fmt.Printf("verified %s: %d files signed as %q, digest sha256:%s\n", v.Dir, v.Files, v.Name, v.Digest)
	if v.Provenance == nil {
		fmt.Println("provenance: none recorded (not signed by beamtune)")
		return nil
	}
	data, err := json.MarshalIndent(v.Provenance, "", "  ")
	if err != nil {
		return err
	}
	fmt.Printf("provenance:\n%s\n", data)
	return nil
}

// signCmd: beamtune sign MODEL --signing_key=KEY, for folders beamtune did
// not publish (a pretrained base a trust policy must accept).
type signCmd struct {
	model, key string
}

func (c *signCmd) register(f *flagSet) {
	f.section("Model")
	f.stringVar(&c.model, "model", "", "the model folder to sign in place (local; or give it as the first argument)")
	f.stringVar(&c.key, "signing_key", "", "ECDSA private key (PEM, local or gs://)")
}

func (c *signCmd) run(ctx context.Context) error {
	if args := flag.Args(); len(args) > 0 {
		c.model = args[0]
		if err := flag.CommandLine.Parse(args[1:]); err != nil {
			return err
		}
	}
	if c.model == "" || c.key == "" {
		return fmt.Errorf("sign needs a model folder and --signing_key: beamtune sign MODEL --signing_key=KEY.pem")
	}
	v, err := pipelines.SignModel(ctx, c.model, c.key)
	if err != nil {
		return err
	}
	fmt.Printf("signed %s: %d files, digest sha256:%s\n", v.Dir, v.Files, v.Digest)
	return nil
}
