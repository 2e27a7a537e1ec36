package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/pipelines"
)

// prepareCmd: beamtune prepare.
type prepareCmd struct {
	o pipelines.PrepareOptions
}

func (c *prepareCmd) register(f *flagSet) {
	c.o = pipelines.DefaultPrepareOptions()
	o := &c.o
	f.section("Data")
	f.listVar(&o.Inputs, "input", "corpus files or globs (local or gs://), split by hash; repeat or comma-separate")
	f.listVar(&o.Train, "train", "training split files or globs")
	f.listVar(&o.Validation, "validation", "validation split files or globs")
	f.listVar(&o.Test, "test", "test split files or globs")
	f.stringVar(&o.Format, "format", o.Format, "csv, tsv, tsv_quoted (tabs with CSV quoting), jsonl, text, or auto (from the file name; .gz is read transparently)")
	f.boolVar(&o.Header, "header", o.Header, "CSV/TSV files start with a header line")
	f.listVar(&o.Fields.Text, "text_field", "text field(s): header names, JSON keys, or 1-based columns; several are joined with a space")
	f.stringVar(&o.Fields.Pair, "pair_field", "", "second text of a pair task")
	f.stringVar(&o.Fields.Label, "label_field", "", "label field")
	f.stringVar(&o.Fields.ID, "id_field", "", "id field (default: file:line)")
	f.listVar(&o.Labels, "label_vocab", "the label vocabulary in class order (default: inferred, numeric labels in numeric order)")
	// The defaults are empty so that options, and so the dataset's
	// fingerprint, stay as they were for single-label data.
	f.stringVar(&o.Task, "task", "", "single_label_classification (empty: the default), multi_label_classification (several labels a text) or regression (a score a text); later stages take it from the manifest")
	f.stringVar(&o.LabelSeparator, "label_separator", "", "multi-label: what separates a text's labels in the label field (empty: a comma; JSONL may also give an array)")
	f.stringVar(&o.LabelNames, "label_names", "", "file naming the labels, one a line: line i names the label written i in the data (e.g. GoEmotions' emotions.txt); the names become the label vocabulary and appear in every later output")
	f.intVar(&o.LabelNamesFrom, "label_names_from", 0, "the id of the --label_names file's first line (1 for AG News' classes.txt)")
	f.stringVar(&o.LabelRange, "label_range", "", "regression: min:max of a valid score (e.g. 0:5); scores outside go to the dead letter")
	f.intVar(&o.MaxRecordBytes, "max_record_bytes", o.MaxRecordBytes, "records larger than this go to the dead letter")
	f.float64Var(&o.MaxBadFraction, "max_bad_fraction", o.MaxBadFraction, "fail when more than this share of records is rejected")

	f.section("Splits")
	f.float64Var(&o.Fractions.Train, "train_fraction", o.Fractions.Train, "share of a single corpus for training")
	f.float64Var(&o.Fractions.Validation, "validation_fraction", o.Fractions.Validation, "share for validation")
	f.float64Var(&o.Fractions.Test, "test_fraction", o.Fractions.Test, "share for test")
	f.stringVar(&o.Salt, "split_salt", o.Salt, "salt of the split hash: change it to draw other splits")
	f.float64Var(&o.ValidationFromTrain, "validation_from_train", 0, "with --train files and no --validation: move this share of training texts (by hash) to validation")

	f.section("Model")
	f.stringVar(&o.ModelDir, "model", model.DefaultModelDir(), "model folder whose tokenizer.json is used")
	f.intVar(&o.MaxLength, "max_length", o.MaxLength, "tokens per example, special tokens included; longer texts are truncated")

	f.section("Output")
	f.stringVar(&o.Output, "output", "", "output folder (local or gs://)")
	f.int64Var(&o.ShardBytes, "shard_bytes", o.ShardBytes, "target uncompressed size of a shard")
	f.boolVar(&o.KeepText, "keep_text", false, "store the text in the shards (needed for reports that show examples)")
}

func (c *prepareCmd) run(ctx context.Context) error {
	res, err := pipelines.RunPrepare(ctx, c.o)
	if err != nil {
		return err
	}
	printManifest(res.Manifest, res.Skipped)
	return nil
}

func printManifest(m *dataset.Manifest, skipped bool) {
	if skipped {
		fmt.Println("prepare: unchanged inputs; kept the existing dataset")
	}
	splits := make([]string, 0, len(m.Splits))
	for s := range m.Splits {
		splits = append(splits, s)
	}
	sort.Strings(splits)
	fmt.Printf("prepare: %d records read, %d rejected (%.2f%%), %d duplicates removed, %d label conflicts, leakage %v\n",
		m.RecordsRead, m.Rejected.Total, 100*m.Rejected.Fraction, m.Dedupe.Duplicates,
		m.Dedupe.ConflictsResolved+m.Dedupe.ConflictsDropped, m.Dedupe.Leakage)
	for _, s := range splits {
		sp := m.Splits[s]
		fmt.Printf("  %-10s %7d rows  labels %v  truncated %.2f%%  shards %d\n", s, sp.Rows, sp.Labels, 100*sp.TruncationRate, len(m.ShardsOf(s)))
	}
}
