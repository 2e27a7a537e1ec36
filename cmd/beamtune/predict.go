package main

import (
	"context"
	"fmt"

	"github.com/beamtune/beamtune/pipelines"
)

// predictCmd: beamtune predict.
type predictCmd struct {
	o    pipelines.PredictOptions
	prot protection
}

func (c *predictCmd) register(f *flagSet) {
	o := &c.o
	f.section("Model")
	f.stringVar(&o.Model, "model", "", "published model folder (e.g. RUN/student), or a multi-task bundle")
	f.listVar(&o.Tasks, "tasks", "multi-task bundles: the tasks to predict, all on one encoder pass (default: every task); each line then holds tasks.<task>.label, ...")
	f.intVar(&o.MaxLength, "max_length", 128, "tokens per example")

	f.section("Data")
	f.listVar(&o.Inputs, "input", "files or globs to score (local or gs://, gzip read transparently)")
	f.stringVar(&o.Format, "format", "auto", "csv, tsv, tsv_quoted, jsonl, text, or auto")
	f.boolVar(&o.Header, "header", true, "CSV/TSV files start with a header line")
	f.listVar(&o.Fields.Text, "text_field", "text field(s)")
	f.stringVar(&o.Fields.Pair, "pair_field", "", "second text of a pair task")
	f.stringVar(&o.Fields.Label, "label_field", "", "optional true label, copied to the output")
	f.stringVar(&o.Fields.ID, "id_field", "", "id field (default: file:line)")
	f.intVar(&o.MaxRecordBytes, "max_record_bytes", 1<<20, "larger records go to the dead letter")

	f.section("Output")
	f.stringVar(&o.Output, "output", "", "output folder for predictions-*.jsonl and rejects.jsonl")
	f.intVar(&o.Shards, "shards", 1, "output files")
	f.stringVar(&o.Quantize, "quantize", "", "none (float32), int8 (linear layers quantized at load, one weight scale per matrix as PyTorch's quantize_dynamic; CPU; falls back to float32 where int8 cannot run) or int8_per_channel (a scale per output row)")
	f.stringVar(&o.Precision, "precision", "fp32", precisionUsage)
	f.stringVar(&o.Threshold, "threshold", "", "multi-label models: per_label (default: the thresholds tuned on validation), global, or a probability")

	f.section("Compute")
	f.intVar(&o.BatchSize, "batch_size", 64, "inference batch size")
	f.stringVar(&o.Device, "device", "auto", "auto, cpu, cuda or cuda:N")
	f.intVar(&o.Threads, "threads", 0, "libtorch threads")
	c.prot.register(f, &c.o.Security, false)
}

func (c *predictCmd) run(ctx context.Context) error {
	if err := c.prot.resolve(ctx); err != nil {
		return err
	}
	res, err := pipelines.RunPredict(ctx, c.o)
	if err != nil {
		return err
	}
	for _, f := range res.Files {
		fmt.Println("predictions:", f)
	}
	if res.DeadLetter != "" {
		fmt.Println("rejected records:", res.DeadLetter)
	}
	return nil
}
