package trainer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/storage"
)

// buildModel loads the starting model: Init with the dataset's labels (a
// multi-task run: with a head per task), cut down to StudentLayers when a
// student is asked for, with the trainable set the configuration's tuning
// method leaves. For LoRA it also returns the record of the base model the
// adapter applies to: Init, or the student before adaptation, exported to
// OUTPUT/base.
func buildModel(ctx context.Context, job Job, tasks []*trialTask, dev model.Device) (*model.Bert, model.AdapterBase, error) {
	var base model.AdapterBase
	dir, baseDir, cleanup, err := FetchModel(ctx, job.Init, "", job.Trust)
	if err != nil {
		return nil, base, err
	}
	defer cleanup()
	lora := job.Config.PEFT == model.TuneLoRA
	if lora && baseDir != "" && len(job.StudentLayers) == 0 {
		return nil, base, fmt.Errorf("%s is a LoRA adapter: merge it first (beamtune merge) to train a new adapter on it", job.Init)
	}
	if len(tasks) > 1 || model.IsMultiTask(dir) {
		m, err := buildMultiTask(job, dir, baseDir, tasks, dev)
		if err == nil {
			if err = applyPrecision(m, job, dev); err != nil {
				m.Free()
				m = nil
			}
		}
		return m, base, err
	}
	labels, task := tasks[0].labels, tasks[0].kind
	// What the starting head predicts: the folder's config, or an adapter's
	// record of its own head.
	var headLabels []string
	var headTask string
	if baseDir == "" {
		cfg, err := model.LoadConfig(dir)
		if err != nil {
			return nil, base, err
		}
		headLabels, headTask = cfg.Labels(), cfg.Task()
	} else {
		ref, err := model.ReadAdapterBase(dir)
		if err != nil {
			return nil, base, err
		}
		headLabels, headTask = ref.Labels(), ref.ProblemType
	}
	opts := model.LoadOptions{Labels: labels, Device: dev, BaseDir: baseDir}
	// A head trained for other labels, or for another kind of task, cannot
	// be reused.
	if strings.Join(headLabels, "\x00") != strings.Join(labels, "\x00") || headTask != task {
		opts.HeadFromScratch = true
	}
	var m *model.Bert
	var rep *model.LoadReport
	err = model.WithSeed(job.Config.Seed, func() (err error) { // the fresh head's initial weights
		m, rep, err = model.Load(dir, opts)
		return err
	})
	if err != nil {
		return nil, base, err
	}
	slog.Info("train: " + rep.String())
	m.Config.ProblemType = task // exported, so transformers picks the same loss and outputs
	if len(job.StudentLayers) > 0 {
		s, err := model.NewStudent(m, job.StudentLayers)
		teacherParams := m.NumParams()
		m.Free()
		if err != nil {
			return nil, base, err
		}
		slog.Info("train: student built", "layers", job.StudentLayers, "params", s.NumParams(), "teacher_params", teacherParams)
		m = s
	}
	if lora {
		if base, err = loraBase(ctx, job, m, dir); err != nil {
			m.Free()
			return nil, base, err
		}
	}
	tuning, err := job.Config.Tuning(m.Config.NumHiddenLayers)
	if err == nil {
		err = model.WithSeed(job.Config.Seed, func() error { return m.Tune(tuning) }) // lora_A's draw
	}
	if err == nil {
		err = applyPrecision(m, job, dev)
	}
	if err != nil {
		m.Free()
		return nil, base, err
	}
	return m, base, nil
}

// CheckPrecision validates the precision and save_dtype settings without a
// device (the driver's check, before any worker starts).
func (c Config) CheckPrecision() error {
	if _, err := model.ParsePrecision(c.Precision); err != nil {
		return err
	}
	if c.LossScale < 0 {
		return fmt.Errorf("loss_scale %g is negative", c.LossScale)
	}
	return model.CheckSaveDType(c.SaveDType)
}

// applyPrecision resolves the run's precision for dev (auto: bf16 where the
// hardware has fast bfloat16) and sets it, with the save dtype, on m.
func applyPrecision(m *model.Bert, job Job, dev model.Device) error {
	c := job.Config
	if err := c.CheckPrecision(); err != nil {
		return err
	}
	p, err := model.ResolvePrecision(c.Precision, dev, model.HostCPU(), "")
	if err != nil {
		return err
	}
	if err := m.SetPrecision(p); err != nil {
		return err
	}
	if err := m.SetSaveDType(c.SaveDType); err != nil {
		return err
	}
	if p != model.PrecisionFP32 || c.Precision != "" {
		_, why := model.FastBF16(dev, model.HostCPU())
		slog.Info("train: precision", "trial", job.Trial, "asked", c.Precision, "precision", p, "hardware", why)
	}
	return nil
}

// buildMultiTask loads Init as the shared encoder of a multi-task model
// and gives it a head per task: Init's own when Init is a bundle with
// exactly these heads (training it further), else fresh seeded ones.
func buildMultiTask(job Job, dir, baseDir string, tasks []*trialTask, dev model.Device) (*model.Bert, error) {
	if len(tasks) == 1 {
		return nil, fmt.Errorf("%s is a multi-task bundle: train one of its tasks from its folder %s/%s/<task>", job.Init, job.Init, model.TasksDir)
	}
	if baseDir != "" {
		return nil, fmt.Errorf("%s is a LoRA adapter: merge it first (beamtune merge) to start a multi-task model from it", job.Init)
	}
	if job.Config.PEFT == model.TuneLoRA {
		return nil, fmt.Errorf("peft=lora: LoRA adapters of multi-task models are not supported yet (use bitfit or freeze_layers)")
	}
	heads := make([]model.TaskHead, len(tasks))
	for i, tt := range tasks {
		heads[i] = tt.head()
	}
	keep := false
	if model.IsMultiTask(dir) {
		have, err := model.ReadTasks(dir)
		if err != nil {
			return nil, err
		}
		keep = slices.EqualFunc(have, heads, func(a, b model.TaskHead) bool {
			return a.Name == b.Name && a.ProblemType == b.ProblemType && slices.Equal(a.Labels, b.Labels)
		})
		if len(job.StudentLayers) > 0 {
			return nil, fmt.Errorf("%s is a multi-task bundle: cut a student from a single-task model (a teacher's folder, or %s/<task>)", job.Init, model.TasksDir)
		}
	}
	m, rep, err := model.Load(dir, model.LoadOptions{Device: dev, HeadFromScratch: !keep})
	if err != nil {
		return nil, err
	}
	slog.Info("train: " + rep.String())
	if len(job.StudentLayers) > 0 {
		s, err := model.NewStudent(m, job.StudentLayers)
		m.Free()
		if err != nil {
			return nil, err
		}
		slog.Info("train: student built", "layers", job.StudentLayers, "params", s.NumParams())
		m = s
	}
	if !keep {
		if err := model.WithSeed(job.Config.Seed, func() error { return m.SetHeads(heads) }); err != nil {
			m.Free()
			return nil, err
		}
		slog.Info("train: multi-task model", "tasks", m.TaskNames())
	}
	tuning, err := job.Config.Tuning(m.Config.NumHiddenLayers)
	if err == nil {
		err = m.Tune(tuning)
	}
	if err != nil {
		m.Free()
		return nil, err
	}
	return m, nil
}

// loraBase is the base a LoRA run's adapters point at: Init itself, or for
// a student (which exists only in memory) the student as built, exported
// once to OUTPUT/base so that the adapter has a folder to apply to.
func loraBase(ctx context.Context, job Job, m *model.Bert, initLocal string) (model.AdapterBase, error) {
	if len(job.StudentLayers) == 0 {
		return adapterBase(job.Init, initLocal)
	}
	dir := storage.Join(job.Output, BaseDir)
	if err := exportModel(ctx, m, dir, job.Init, nil); err != nil {
		return model.AdapterBase{}, err
	}
	local, cleanup, err := storage.LocalDir(ctx, dir)
	if err != nil {
		return model.AdapterBase{}, err
	}
	defer cleanup()
	return adapterBase(dir, local)
}

// exportModel writes a HF folder through storage, with the extra files:
// locally in place, or to a local temporary folder then uploaded for gs://.
func exportModel(ctx context.Context, m *model.Bert, dir, tokenizerDir string, extra map[string][]byte) error {
	return exportThrough(ctx, dir, tokenizerDir, func(local, tokLocal string) error { return m.Export(local, tokLocal, extra) })
}

// exportThrough has write make a folder locally, with the tokenizer files
// of tokenizerDir (local or gs://) fetched to tokLocal: in place for a
// local dir, or in a temporary folder then uploaded for gs://.
func exportThrough(ctx context.Context, dir, tokenizerDir string, write func(local, tokLocal string) error) error {
	tokLocal, cleanupTok, err := storage.LocalDir(ctx, tokenizerDir)
	if err != nil {
		return err
	}
	defer cleanupTok()
	if !storage.IsGCS(dir) {
		return write(dir, tokLocal)
	}
	tmp, err := os.MkdirTemp("", "beamtune-export-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := write(filepath.Join(tmp, "model"), tokLocal); err != nil {
		return err
	}
	return storage.UploadDir(ctx, filepath.Join(tmp, "model"), dir)
}

// exportAdapter writes m's LoRA adapter as a PEFT folder at dir (local or
// gs://) over base, with the tokenizer files of tokenizerDir.
func exportAdapter(ctx context.Context, m *model.Bert, dir, tokenizerDir string, base model.AdapterBase, extra map[string][]byte) error {
	return exportThrough(ctx, dir, tokenizerDir, func(local, tokLocal string) error { return m.ExportAdapter(local, tokLocal, base, extra) })
}

// ExportModel writes m as a HF folder at dir (local or gs://) with the
// tokenizer files of tokenizerDir and the extra files (which replace
// tokenizer files of the same name).
func ExportModel(ctx context.Context, m *model.Bert, dir, tokenizerDir string, extra map[string][]byte) error {
	return exportModel(ctx, m, dir, tokenizerDir, extra)
}
