package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/pipelines"
	"github.com/beamtune/beamtune/transforms"
)

// demoCmd runs the whole job on the bundled sample corpus with the defaults.
type demoCmd struct {
	out, sample, modelDir *string
}

func (c *demoCmd) register(fs *flag.FlagSet) {
	c.out = fs.String("output", "out/demo", "folder for everything the demo writes")
	c.sample = fs.String("sample", "testdata/sample", "folder of the bundled SST-2 sample")
	c.modelDir = fs.String("model", model.DefaultModelDir(), "pretrained model folder")
}

func (c *demoCmd) run(ctx context.Context) error {
	start := time.Now()
	o := pipelines.DefaultPrepareOptions()
	o.Train = []string{filepath.Join(*c.sample, "sst2_train.tsv")}
	o.Validation = []string{filepath.Join(*c.sample, "sst2_dev.tsv")}
	o.Fields = transforms.Fields{Text: []string{"sentence"}, Label: "label"}
	o.ModelDir = *c.modelDir
	o.MaxLength = 64
	o.KeepText = true
	o.Output = filepath.Join(*c.out, "data")
	fmt.Printf("demo: 1/1 prepare %s -> %s (prism)\n", *c.sample, o.Output)
	res, err := pipelines.RunPrepare(ctx, o)
	if err != nil {
		return err
	}
	printManifest(res.Manifest, res.Skipped)
	fmt.Printf("demo: done in %s; manifest %s\n", time.Since(start).Round(time.Second), filepath.Join(o.Output, transforms.ManifestFile))
	return nil
}
