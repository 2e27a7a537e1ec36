package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/pipelines"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/trainer"
)

// demoCmd runs the whole job on the bundled sample corpus with the defaults:
// prepare, fine-tune the teacher, distil a 3-layer student, evaluate both and
// write the report, all on prism.
type demoCmd struct{ o demoOptions }

// demoOptions are demo's flags; everything else is fixed by the demo.
type demoOptions struct {
	Output   string // folder for everything the demo writes
	Sample   string // folder of the bundled SST-2 sample
	ModelDir string // pretrained model folder
	Threads  int    // libtorch threads (0: libtorch's default)
}

func (c *demoCmd) register(f *flagSet) {
	o := &c.o
	f.section("Data")
	f.stringVar(&o.Sample, "sample", "testdata/sample", "folder of the bundled SST-2 sample")
	f.section("Model")
	f.stringVar(&o.ModelDir, "model", model.DefaultModelDir(), "pretrained model folder")
	f.section("Output")
	f.stringVar(&o.Output, "output", "out/demo", "folder for everything the demo writes")
	f.section("Compute")
	f.intVar(&o.Threads, "threads", 0, "libtorch threads (0: libtorch's default)")
}

func (c *demoCmd) run(ctx context.Context) error {
	start := time.Now()
	step := func(n int, what string) {
		fmt.Printf("\ndemo [%d/4, %s]: %s\n", n, time.Since(start).Round(time.Second), what)
	}

	step(1, "prepare the bundled SST-2 sample (4,210 training rows, 872 held-out dev rows)")
	po := pipelines.DefaultPrepareOptions()
	po.Train = []string{filepath.Join(c.o.Sample, "sst2_train.tsv")}
	po.Validation = []string{filepath.Join(c.o.Sample, "sst2_dev.tsv")}
	po.Fields = dataset.Fields{Text: []string{"sentence"}, Label: "label"}
	po.ModelDir = c.o.ModelDir
	po.MaxLength = 64
	po.KeepText = true
	po.Output = filepath.Join(c.o.Output, "data")
	prep, err := pipelines.RunPrepare(ctx, po)
	if err != nil {
		return err
	}
	printManifest(prep.Manifest, prep.Skipped)

	step(2, "fine-tune all-MiniLM-L6-v2 (the teacher), 2 epochs")
	cfg := trainer.DefaultConfig()
	cfg.Epochs = 2
	cfg.LR = 1e-4
	cfg.BatchSize = 16
	cfg.LogEvery = 50
	run := filepath.Join(c.o.Output, "run")
	teacher, err := pipelines.RunTrain(ctx, pipelines.TrainOptions{
		Data: po.Output, Init: c.o.ModelDir, Output: run, Name: "teacher", Config: cfg,
		Device: "auto", Threads: c.o.Threads, Resume: true,
	})
	if err != nil {
		return err
	}
	if err := printTrials(teacher); err != nil {
		return err
	}

	step(3, "distil a 3-layer student (teacher layers 0, 2, 4) from the teacher's logits, 2 epochs")
	dcfg := cfg
	dcfg.LR = 2e-4
	student, err := pipelines.RunDistill(ctx, pipelines.DistillOptions{
		Data: po.Output, Teacher: teacher.ModelDir, StudentLayers: []int{0, 2, 4}, Output: run,
		Config: dcfg, InferBatch: 64, Device: "auto", Threads: c.o.Threads, Resume: true,
	})
	if err != nil {
		return err
	}
	if err := printTrials(student.Student); err != nil {
		return err
	}

	step(4, "evaluate teacher and student on the held-out dev set and write the report")
	res, err := pipelines.RunEvaluate(ctx, pipelines.EvaluateOptions{
		Data: po.Output, Split: dataset.SplitValidation,
		Models: []pipelines.NamedModel{{Name: "teacher", Dir: teacher.ModelDir}, {Name: "student", Dir: student.Student.ModelDir}},
		Output: filepath.Join(c.o.Output, "report"), Seed: 1, InferBatch: 64, Device: "auto", Threads: c.o.Threads,
		Gate: report.DefaultGate(),
	})
	if err != nil {
		return err
	}
	printReport(res)
	fmt.Printf("\ndemo: done in %s\n", time.Since(start).Round(time.Second))
	return nil
}
