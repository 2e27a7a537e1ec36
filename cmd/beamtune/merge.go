package main

import (
	"context"
	"fmt"

	"github.com/beamtune/beamtune/pipelines"
	"github.com/beamtune/beamtune/trainer"
)

// mergeCmd: beamtune merge.
type mergeCmd struct {
	adapter, base, output string
	sec                   pipelines.Security
	prot                  protection
}

func (c *mergeCmd) register(f *flagSet) {
	f.section("Model")
	f.stringVar(&c.adapter, "adapter", "", "LoRA adapter folder (a train or distill run's published model with --peft=lora, or one PEFT saved)")
	f.stringVar(&c.base, "base", "", "base model folder (default: the one the adapter names in adapter_base.json or adapter_config.json)")
	f.section("Output")
	f.stringVar(&c.output, "output", "", "folder for the merged HF model (config.json, model.safetensors, tokenizer)")
	c.prot.register(f, &c.sec, false)
}

func (c *mergeCmd) run(ctx context.Context) error {
	if c.adapter == "" || c.output == "" {
		return fmt.Errorf("merge needs --adapter and --output")
	}
	if err := c.prot.resolve(ctx); err != nil {
		return err
	}
	if err := trainer.MergeAdapter(ctx, c.adapter, c.base, c.output, c.sec.Trust); err != nil {
		return err
	}
	fmt.Printf("merged %s → %s\n", c.adapter, c.output)
	return nil
}
