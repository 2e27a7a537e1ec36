package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/beamtune/beamtune/pipelines"
)

type predictCmd struct{ o pipelines.PredictOptions }

func (c *predictCmd) register(fs *flag.FlagSet) {
	o := &c.o
	fs.StringVar(&o.Model, "model", "", "published model folder (e.g. RUN/student)")
	listVar(fs, &o.Inputs, "input", "files or globs to score (local or gs://, gzip read transparently)")
	fs.StringVar(&o.Format, "format", "auto", "csv, tsv, jsonl, text, or auto")
	fs.BoolVar(&o.Header, "header", true, "CSV/TSV files start with a header line")
	listVar(fs, &o.Fields.Text, "text_field", "text field(s)")
	fs.StringVar(&o.Fields.Pair, "pair_field", "", "second text of a pair task")
	fs.StringVar(&o.Fields.Label, "label_field", "", "optional true label, copied to the output")
	fs.StringVar(&o.Fields.ID, "id_field", "", "id field (default: file:line)")
	fs.IntVar(&o.MaxLength, "max_length", 128, "tokens per example")
	fs.IntVar(&o.MaxRecordBytes, "max_record_bytes", 1<<20, "larger records go to the dead letter")
	fs.StringVar(&o.Output, "output", "", "output folder for predictions-*.jsonl and rejects.jsonl")
	fs.IntVar(&o.Shards, "shards", 1, "output files")
	fs.IntVar(&o.BatchSize, "batch_size", 64, "inference batch size")
	fs.StringVar(&o.Device, "device", "auto", "auto, cpu, cuda or cuda:N")
	fs.IntVar(&o.Threads, "threads", 0, "libtorch threads")
}

func (c *predictCmd) run(ctx context.Context) error {
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
