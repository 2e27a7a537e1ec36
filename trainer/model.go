package trainer

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/storage"
)

// buildModel loads the starting model: Init with the dataset's labels, cut
// down to StudentLayers when a student is asked for.
func buildModel(ctx context.Context, job Job, labels []string, task string, dev model.Device) (*model.Bert, error) {
	dir, cleanup, err := storage.LocalDir(ctx, job.Init)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	cfg, err := model.LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	opts := model.LoadOptions{Labels: labels, Device: dev}
	// A head trained for other labels, or for another kind of task, cannot
	// be reused.
	if strings.Join(cfg.Labels(), "\x00") != strings.Join(labels, "\x00") || cfg.Task() != task {
		opts.HeadFromScratch = true
	}
	var m *model.Bert
	var rep *model.LoadReport
	err = model.WithSeed(job.Config.Seed, func() (err error) { // the fresh head's initial weights
		m, rep, err = model.Load(dir, opts)
		return err
	})
	if err != nil {
		return nil, err
	}
	slog.Info("train: " + rep.String())
	m.Config.ProblemType = task // exported, so transformers picks the same loss and outputs
	if len(job.StudentLayers) == 0 {
		return m, nil
	}
	defer m.Free()
	s, err := model.NewStudent(m, job.StudentLayers)
	if err != nil {
		return nil, err
	}
	slog.Info("train: student built", "layers", job.StudentLayers, "params", s.NumParams(), "teacher_params", m.NumParams())
	return s, nil
}

// exportModel writes a HF folder through storage, with the extra files:
// locally in place, or to a local temporary folder then uploaded for gs://.
func exportModel(ctx context.Context, m *model.Bert, dir, tokenizerDir string, extra map[string][]byte) error {
	tokLocal, cleanupTok, err := storage.LocalDir(ctx, tokenizerDir)
	if err != nil {
		return err
	}
	defer cleanupTok()
	if !storage.IsGCS(dir) {
		return m.Export(dir, tokLocal, extra)
	}
	tmp, err := os.MkdirTemp("", "beamtune-export-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := m.Export(filepath.Join(tmp, "model"), tokLocal, extra); err != nil {
		return err
	}
	return storage.UploadDir(ctx, filepath.Join(tmp, "model"), dir)
}

// ExportModel writes m as a HF folder at dir (local or gs://) with the
// tokenizer files of tokenizerDir and the extra files (which replace
// tokenizer files of the same name).
func ExportModel(ctx context.Context, m *model.Bert, dir, tokenizerDir string, extra map[string][]byte) error {
	return exportModel(ctx, m, dir, tokenizerDir, extra)
}
