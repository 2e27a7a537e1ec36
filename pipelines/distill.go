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
	"strconv"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/signing"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/trainer"
	"github.com/beamtune/beamtune/transforms"
)

func init() {
	register.DoFn3x1[context.Context, []byte, func(*dataset.ShardInfo) bool, error](&writeDistillManifestFn{})
	beam.RegisterType(reflect.TypeOf((*writeDistillManifestFn)(nil)).Elem())
}

// DistillOptions configures distillation: teacher logits, then the student.
type DistillOptions struct {
	Data    string // prepared dataset folder
	Teacher string // the fine-tuned teacher (HF folder)
	// Tasks, instead of Data and Teacher, distill one multi-task student
	// from one single-task teacher per task (TaskOption.Teacher), each over
	// its own dataset. --student_layers then cuts the first task's teacher.
	Tasks []TaskOption
	// StudentLayers picks teacher layers for the student (e.g. 0,2,4);
	// StudentInit instead starts from another (smaller) checkpoint.
	StudentLayers []int
	StudentInit   string
	Output        string // run folder: distill-data/, trials, student/
	Config        trainer.Config
	Sweep         map[string][]string
	InferBatch    int
	Device        string
	Threads       int
	Resume        bool
	Runner        string
	Security

	// ownStudentInit: StudentInit is a folder of the calling run (compress's
	// pruned model), not checked against the trust policy.
	ownStudentInit bool
}

// DistillResult is the teacher-logit dataset and the student training result.
type DistillResult struct {
	Data    string // the distillation dataset folder
	Student *TrainResult
}

// studentInitTrust is the policy the student's starting folder is checked
// under: the teacher's, unless it is the calling run's own folder.
func (o DistillOptions) studentInitTrust() signing.Trust {
	if o.ownStudentInit {
		return signing.Trust{}
	}
	return o.Trust
}

// RunDistill computes the teacher's logits for every training and validation
// row in parallel across workers (once: the student reads them every epoch),
// then trains and publishes the student as Output/student.
func RunDistill(ctx context.Context, o DistillOptions) (*DistillResult, error) {
	if (len(o.StudentLayers) == 0) == (o.StudentInit == "") {
		return nil, badInputf("distill: give either --student_layers or --student_init")
	}
	if len(o.Tasks) > 0 {
		return runMultiTeacher(ctx, o)
	}
	_, teacher, err := CheckTrainedModel(ctx, o.Teacher, "--teacher", o.Data, o.Trust)
	if err != nil {
		return nil, err
	}
	var studentInit *model.Config
	if o.StudentInit != "" {
		if studentInit, err = CheckModelDir(ctx, o.StudentInit, ModelUse{Role: "--student_init", Tokenizer: true, Trust: o.studentInitTrust()}); err != nil {
			return nil, err
		}
	}
	if err := CheckOutput(ctx, o.Output); err != nil {
		return nil, err
	}
	// The student's fine-tuning settings, before the teacher-logit pass.
	tuning := TrainOptions{Init: o.Teacher, Config: o.Config, Sweep: o.Sweep, StudentLayers: o.StudentLayers}
	tuneCfg := teacher
	if studentInit != nil {
		tuning.Init, tuning.StudentLayers, tuneCfg = o.StudentInit, nil, studentInit
	}
	if err := checkTuning(ctx, tuning, tuneCfg); err != nil {
		return nil, err
	}
	data := storage.Join(o.Output, distillDataDir)
	hidden, err := resolveHiddenLayers(&o, teacher, studentInit)
	if err != nil {
		return nil, badInput(err)
	}
	if err := teacherLogits(ctx, o, data, hidden); err != nil {
		return nil, err
	}
	init, layers := o.Teacher, o.StudentLayers
	if o.StudentInit != "" {
		init, layers = o.StudentInit, nil
	}
	res, err := RunTrain(ctx, TrainOptions{
		Data: data, Init: init, Output: o.Output, Name: StudentModel, Config: o.Config, Sweep: o.Sweep,
		StudentLayers: layers, Device: o.Device, Threads: o.Threads, Resume: o.Resume, Runner: o.Runner,
		Security: Security{SigningKey: o.SigningKey, Trust: o.studentInitTrust()}, Stage: "distill",
	})
	if err != nil {
		return nil, err
	}
	return &DistillResult{Data: data, Student: res}, nil
}

// resolveHiddenLayers fills o.Config.HiddenLayerMap when a hidden-state loss
// is asked for (by the configuration or a sweep) and returns the teacher
// hidden states the distillation shards must cache; none without that loss.
// teacher and studentInit (nil without --student_init) are the configs the
// driver checked.
func resolveHiddenLayers(o *DistillOptions, teacher, studentInit *model.Config) ([]int, error) {
	wanted := o.Config.HiddenMSE > 0
	for _, v := range o.Sweep["hidden_mse"] {
		if w, err := strconv.ParseFloat(v, 64); err == nil && w > 0 {
			wanted = true
		}
	}
	if !wanted {
		return nil, nil
	}
	var pairs []trainer.LayerPair
	var err error
	if o.Config.HiddenLayerMap != "" {
		if pairs, err = trainer.ParseLayerMap(o.Config.HiddenLayerMap); err != nil {
			return nil, err
		}
	} else {
		depth := len(o.StudentLayers)
		if studentInit != nil {
			depth = studentInit.NumHiddenLayers
		}
		pairs = trainer.DefaultLayerMap(o.StudentLayers, depth, teacher.NumHiddenLayers)
	}
	for _, p := range pairs {
		if p.Teacher > teacher.NumHiddenLayers {
			return nil, fmt.Errorf("hidden_layer_map %s: the teacher has hidden states 0..%d, not %d",
				trainer.FormatLayerMap(pairs), teacher.NumHiddenLayers, p.Teacher)
		}
	}
	o.Config.HiddenLayerMap = trainer.FormatLayerMap(pairs)
	slog.Info("distill: hidden-state loss", "layer_map", o.Config.HiddenLayerMap)
	return trainer.TeacherLayers(pairs), nil
}

// teacherLogits writes the distillation dataset: the source shards with a
// teacher_logits column (and teacher_hidden when hidden states are asked
// for), and a manifest. It is skipped when the folder already holds exactly
// that for this teacher and dataset.
func teacherLogits(ctx context.Context, o DistillOptions, out string, hidden []int) error {
	src, err := dataset.ReadManifest(ctx, o.Data)
	if err != nil {
		return err
	}
	weights, err := storage.ReadFile(ctx, storage.Join(o.Teacher, model.SafetensorsFile))
	if err != nil {
		return fmt.Errorf("teacher: %w", err)
	}
	sum := sha256.Sum256(weights)
	fp := src.Fingerprint + "/teacher-" + hex.EncodeToString(sum[:8])
	if len(hidden) > 0 {
		layers := make([]string, len(hidden))
		for i, l := range hidden {
			layers[i] = strconv.Itoa(l)
		}
		fp += "/hidden-" + strings.Join(layers, ",")
	}
	if old, err := dataset.ReadManifest(ctx, out); err == nil && old.Fingerprint == fp {
		slog.Info("distill: teacher logits already computed", "data", out)
		return nil
	}
	var shards []dataset.ShardInfo
	for _, split := range []string{dataset.SplitTrain, dataset.SplitValidation} {
		shards = append(shards, src.ShardsOf(split)...)
	}
	if len(shards) == 0 {
		return fmt.Errorf("%s has no train or validation shards", o.Data)
	}
	dataDir := "data-" + hex.EncodeToString(sum[:6])
	p, s := beam.NewPipelineWithRoot()
	col := beam.Reshuffle(s, beam.CreateList(s.Scope("Shards"), shards))
	fn := &transforms.TeacherLogitsFn{InRoot: o.Data, OutRoot: out, OutDir: dataDir}
	fn.ModelDir, fn.MaxBatchSize, fn.Device, fn.Threads = o.Teacher, o.InferBatch, o.Device, o.Threads
	fn.Precision = o.Config.Precision // the teacher's logit pass runs in the run's precision
	fn.Trust = o.Trust
	fn.DataTokenizerSHA256 = src.Tokenizer.SHA256
	fn.HiddenLayers = hidden
	written := beam.ParDo(s.Scope("TeacherLogits"), fn, col)
	base := *src
	base.Fingerprint, base.DataDir, base.Shards, base.TeacherHiddenLayers = fp, dataDir, nil, hidden
	base.CreatedAt = ""
	beam.ParDo0(s.Scope("WriteManifest"), &writeDistillManifestFn{Root: out, Base: base, Shards: len(shards)}, beam.Impulse(s), beam.SideInput{Input: written})
	start := time.Now()
	if _, err := run(ctx, o.Runner, p); err != nil {
		return err
	}
	slog.Info("distill: teacher logits written", "shards", len(shards), "seconds", time.Since(start).Seconds())
	return nil
}

// writeDistillManifestFn writes the distillation dataset's manifest last,
// and only when every shard was written: prism can run this step after a
// shard's bundle failed, and a manifest of part of the shards would make the
// next run skip the teacher pass and train the student on part of the data.
type writeDistillManifestFn struct {
	Root   string
	Base   dataset.Manifest
	Shards int // how many shards the teacher pass writes
}

func (fn *writeDistillManifestFn) ProcessElement(ctx context.Context, _ []byte, shards func(*dataset.ShardInfo) bool) error {
	m := fn.Base
	m.CreatedAt = time.Now().UTC().Format(time.RFC3339)
	var s dataset.ShardInfo
	for shards(&s) {
		m.Shards = append(m.Shards, s)
	}
	if len(m.Shards) != fn.Shards {
		return fmt.Errorf("teacher logits: %d of %d shards written; writing no manifest", len(m.Shards), fn.Shards)
	}
	sort.Slice(m.Shards, func(i, j int) bool { return m.Shards[i].Path < m.Shards[j].Path })
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return storage.WriteFile(ctx, storage.Join(fn.Root, dataset.ManifestFile), append(data, '\n'))
}
