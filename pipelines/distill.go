package pipelines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"sort"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/transforms"
)

func init() {
	register.DoFn3x1[context.Context, []byte, func(*transforms.ShardInfo) bool, error](&writeDistillManifestFn{})
	beam.RegisterType(reflect.TypeOf((*writeDistillManifestFn)(nil)).Elem())
}

// DistillOptions configures distillation: teacher logits, then the student.
type DistillOptions struct {
	Data    string // prepared dataset folder
	Teacher string // the fine-tuned teacher (HF folder)
	// StudentLayers picks teacher layers for the student (e.g. 0,2,4);
	// StudentInit instead starts from another (smaller) checkpoint.
	StudentLayers []int
	StudentInit   string
	Output        string // run folder: distill-data/, trials, student/
	Config        transforms.TrainConfig
	Sweep         map[string][]string
	InferBatch    int
	Device        string
	Threads       int
	Resume        bool
	Runner        string
}

// DistillResult is the teacher-logit dataset and the student training result.
type DistillResult struct {
	Data    string // the distillation dataset folder
	Student *TrainResult
}

// RunDistill computes the teacher's logits for every training and validation
// row in parallel across workers (once: the student reads them every epoch),
// then trains and publishes the student as Output/student.
func RunDistill(ctx context.Context, o DistillOptions) (*DistillResult, error) {
	if (len(o.StudentLayers) == 0) == (o.StudentInit == "") {
		return nil, fmt.Errorf("distill: give either --student_layers or --student_init")
	}
	data := storage.Join(o.Output, "distill-data")
	if err := teacherLogits(ctx, o, data); err != nil {
		return nil, err
	}
	init, layers := o.Teacher, o.StudentLayers
	if o.StudentInit != "" {
		init, layers = o.StudentInit, nil
	}
	res, err := RunTrain(ctx, TrainOptions{
		Data: data, Init: init, Output: o.Output, Name: "student", Config: o.Config, Sweep: o.Sweep,
		StudentLayers: layers, Device: o.Device, Threads: o.Threads, Resume: o.Resume, Runner: o.Runner,
	})
	if err != nil {
		return nil, err
	}
	return &DistillResult{Data: data, Student: res}, nil
}

// teacherLogits writes the distillation dataset: the source shards with a
// teacher_logits column, and a manifest. It is skipped when the folder
// already holds logits of this teacher for this dataset.
func teacherLogits(ctx context.Context, o DistillOptions, out string) error {
	src, err := transforms.ReadManifest(ctx, o.Data)
	if err != nil {
		return err
	}
	weights, err := storage.ReadFile(ctx, storage.Join(o.Teacher, model.SafetensorsFile))
	if err != nil {
		return fmt.Errorf("teacher: %w", err)
	}
	sum := sha256.Sum256(weights)
	fp := src.Fingerprint + "/teacher-" + hex.EncodeToString(sum[:8])
	if old, err := transforms.ReadManifest(ctx, out); err == nil && old.Fingerprint == fp {
		slog.Info("distill: teacher logits already computed", "data", out)
		return nil
	}
	var shards []transforms.ShardInfo
	for _, split := range []string{transforms.SplitTrain, transforms.SplitValidation} {
		shards = append(shards, src.ShardsOf(split)...)
	}
	if len(shards) == 0 {
		return fmt.Errorf("%s has no train or validation shards", o.Data)
	}
	dataDir := "data-" + hex.EncodeToString(sum[:6])
	p, s := beam.NewPipelineWithRoot()
	col := beam.Reshuffle(s, beam.CreateList(s.Scope("Shards"), shards))
	fn := &transforms.TeacherLogitsFn{InRoot: o.Data, OutRoot: out, OutDir: dataDir}
	fn.ModelDir, fn.BatchSize, fn.Device, fn.Threads = o.Teacher, o.InferBatch, o.Device, o.Threads
	written := beam.ParDo(s.Scope("TeacherLogits"), fn, col)
	base := *src
	base.Fingerprint, base.DataDir, base.Shards = fp, dataDir, nil
	base.CreatedAt = ""
	beam.ParDo0(s.Scope("WriteManifest"), &writeDistillManifestFn{Root: out, Base: base}, beam.Impulse(s), beam.SideInput{Input: written})
	start := time.Now()
	if _, err := run(ctx, o.Runner, p); err != nil {
		return err
	}
	slog.Info("distill: teacher logits written", "shards", len(shards), "seconds", time.Since(start).Seconds())
	return nil
}

// writeDistillManifestFn writes the distillation dataset's manifest last.
type writeDistillManifestFn struct {
	Root string
	Base transforms.Manifest
}

func (fn *writeDistillManifestFn) ProcessElement(ctx context.Context, _ []byte, shards func(*transforms.ShardInfo) bool) error {
	m := fn.Base
	m.CreatedAt = time.Now().UTC().Format(time.RFC3339)
	var s transforms.ShardInfo
	for shards(&s) {
		m.Shards = append(m.Shards, s)
	}
	sort.Slice(m.Shards, func(i, j int) bool { return m.Shards[i].Path < m.Shards[j].Path })
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return storage.WriteFile(ctx, storage.Join(fn.Root, transforms.ManifestFile), append(data, '\n'))
}
