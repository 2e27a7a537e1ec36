package main

import (
	"flag"
	"reflect"
	"testing"

	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/pipelines"
	"github.com/beamtune/beamtune/trainer"
)

// parse declares a command's flags on a fresh flag set and parses args.
func parse(t *testing.T, c command, args ...string) *flagSet {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	f := newFlagSet(fs)
	c.register(f)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	fs.VisitAll(func(fl *flag.Flag) {
		if !f.own[fl.Name] {
			t.Errorf("--%s is on the flag set but in no help section", fl.Name)
		}
	})
	return f
}

// Flags land in the options the command runs with; unset ones keep the
// defaults they had before flags were declared through flagSet.
func TestFlagsBindToOptions(t *testing.T) {
	train := &trainCmd{}
	parse(t, train, "--data=d", "--epochs=5", "--lr=1e-4", "--resume=false", "--sweep", "seed=1,2", "--threads=3", "--log_every=7")
	want := trainer.DefaultConfig()
	want.Epochs, want.LR, want.LogEvery = 5, 1e-4, 7
	if o := train.o; o.Data != "d" || o.Init != model.DefaultModelDir() || o.Resume || o.Device != "auto" || o.Threads != 3 ||
		o.Config != want || !reflect.DeepEqual(train.sweep, []string{"seed=1,2"}) {
		t.Errorf("train: %+v, sweep %q", o, train.sweep)
	}

	distill := &distillCmd{}
	parse(t, distill, "--teacher=T", "--student_layers=0,2", "--student_layers", "4", "--hidden_mse=0.5")
	want = trainer.DefaultConfig()
	want.HiddenMSE = 0.5
	if o := distill.o; o.Teacher != "T" || o.InferBatch != 64 || !o.Resume || o.Config != want ||
		!reflect.DeepEqual(distill.layers, []string{"0", "2", "4"}) {
		t.Errorf("distill: %+v, layers %q", o, distill.layers)
	}

	prep := &prepareCmd{}
	parse(t, prep, "--input=a.tsv,b.tsv", "--text_field=sentence", "--keep_text", "--output=o")
	wantPrep := pipelines.DefaultPrepareOptions()
	wantPrep.Inputs, wantPrep.Fields.Text, wantPrep.KeepText, wantPrep.Output = []string{"a.tsv", "b.tsv"}, []string{"sentence"}, true, "o"
	wantPrep.ModelDir = model.DefaultModelDir()
	if !reflect.DeepEqual(prep.o, wantPrep) {
		t.Errorf("prepare: %+v\nwant %+v", prep.o, wantPrep)
	}

	eval := &evaluateCmd{}
	parse(t, eval, "--model=teacher=T", "--model", "student=S", "--gate_min_accuracy=80")
	if o := eval.o; o.Seed != 1 || o.InferBatch != 64 || o.Device != "auto" || o.Gate.MinAccuracy != 80 ||
		!reflect.DeepEqual(eval.models, []string{"teacher=T", "student=S"}) {
		t.Errorf("evaluate: %+v, models %q", o, eval.models)
	}

	pred := &predictCmd{}
	parse(t, pred, "--model=M", "--shards=2")
	if o := pred.o; o.Model != "M" || o.Shards != 2 || o.Format != "auto" || !o.Header || o.MaxLength != 128 || o.MaxRecordBytes != 1<<20 || o.BatchSize != 64 {
		t.Errorf("predict: %+v", o)
	}

	re := &retrainCmd{}
	parse(t, re, "--config=c.yaml", "--no_lease", "--result=r.json")
	if re.config != "c.yaml" || !re.o.NoLease || re.resultPath != "r.json" || re.validateOnly {
		t.Errorf("retrain: %+v", re)
	}

	demo := &demoCmd{}
	parse(t, demo, "--threads=2")
	if want := (demoOptions{Output: "out/demo", Sample: "testdata/sample", ModelDir: model.DefaultModelDir(), Threads: 2}); demo.o != want {
		t.Errorf("demo: %+v, want %+v", demo.o, want)
	}

	doc := &doctorRunner{}
	parse(t, doc, "--model=M")
	if want := (doctorOptions{ModelDir: "M"}); doc.o != want {
		t.Errorf("doctor: %+v, want %+v", doc.o, want)
	}
}
