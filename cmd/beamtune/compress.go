package main

import (
	"context"
	"fmt"

	"github.com/beamtune/beamtune/pipelines"
	"github.com/beamtune/beamtune/trainer"
)

// compressCmd: beamtune compress.
type compressCmd struct {
	o    pipelines.CompressOptions
	prot protection
}

func (c *compressCmd) register(f *flagSet) {
	o := &c.o
	o.Recovery = trainer.DefaultConfig()
	o.Recovery.Epochs = 1
	f.section("Data")
	f.stringVar(&o.Data, "data", "", "prepared dataset the model was trained on (importance, recovery and the vocabulary come from its training split)")
	f.section("Model")
	f.stringVar(&o.Model, "model", "", "published model folder to compress (teacher or student)")
	f.section("Pruning")
	f.float64Var(&o.HeadKeep, "head_keep", 1, "share of attention heads to keep, over all layers (heads may differ per layer; 1: no head pruning)")
	f.float64Var(&o.FFNKeep, "ffn_keep", 1, "share of FFN width to keep, the same in every layer (1: no FFN pruning)")
	f.float64Var(&o.ParamKeep, "param_keep", 0, "share of the encoder layers' weights to keep instead of the two shares above (sets both)")
	f.intVar(&o.PruneSteps, "prune_steps", 2, "prune in this many rounds, re-measuring importance before each")
	f.intVar(&o.ImportanceBatches, "importance_batches", 16, "batches per training shard scored for importance in each round")
	f.boolVar(&o.PruneVocab, "prune_vocab", false, "keep only the tokens the training split uses (plus special tokens and --keep_tokens)")
	f.intVar(&o.VocabMinCount, "vocab_min_count", 1, "with --prune_vocab, also drop tokens the training split uses fewer times than this (they read as [UNK])")
	f.stringVar(&o.KeepTokens, "keep_tokens", "", "file of extra tokens to keep with --prune_vocab, one per line")
	recipeFlags(f, &o.Recovery, new([]string), "Recovery distillation from --model (after pruning; --epochs=0 skips it)")
	outputFlags(f, &o.Recovery, &o.Output, "run folder; the result is published as OUTPUT/compressed", &o.Resume)
	computeFlags(f, &o.Device, &o.Threads)
	f.intVar(&o.InferBatch, "infer_batch", 32, "batch size of the importance and teacher-logit passes")
	c.prot.register(f, &c.o.Security, true)
}

func (c *compressCmd) run(ctx context.Context) error {
	if err := c.prot.resolve(ctx); err != nil {
		return err
	}
	res, err := pipelines.RunCompress(ctx, c.o)
	if err != nil {
		return err
	}
	s := res.Stats
	fmt.Printf("compress: %s → %s\n", s.Source, res.Dir)
	fmt.Printf("  parameters %d → %d (%.1f%%), heads per layer %v, FFN width %d, vocabulary %d → %d, recovered: %v\n",
		s.SourceParams, s.Params, 100*float64(s.Params)/float64(s.SourceParams), s.Heads, s.FFNWidth, s.SourceVocab, s.VocabSize, s.Recovered)
	return nil
}
