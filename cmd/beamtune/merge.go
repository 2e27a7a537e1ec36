package main

import (
	"context"
	"fmt"

	"github.com/beamtune/beamtune/pipelines"
)

// mergeCmd: beamtune merge.
type mergeCmd struct {
	o    pipelines.MergeOptions
	prot protection
}

func (c *mergeCmd) register(f *flagSet) {
	f.section("Model")
	f.stringVar(&c.o.Adapter, "adapter", "", "LoRA adapter folder (a train or distill run's published model with --peft=lora, or one PEFT saved)")
	f.stringVar(&c.o.Base, "base", "", "base model folder (default: the one the adapter names in adapter_base.json or adapter_config.json)")
	f.section("Output")
	f.stringVar(&c.o.Output, "output", "", "folder for the merged HF model (config.json, model.safetensors, tokenizer, model card)")
	c.prot.register(f, &c.o.Security, true)
}

func (c *mergeCmd) run(ctx context.Context) error {
	if err := c.prot.resolve(ctx); err != nil {
		return err
	}
	if err := pipelines.RunMerge(ctx, c.o); err != nil {
		return err
	}
	fmt.Printf("merged %s → %s\n", c.o.Adapter, c.o.Output)
	return nil
}
