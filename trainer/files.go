package trainer

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/storage"
)

// Artifact names inside a trial's output folder.
const (
	// BestDir is the HF model folder of the best evaluation so far (with
	// LoRA, the adapter folder; see model.ExportAdapter).
	BestDir = "best"
	// FinalDir is the HF model folder of the last step.
	FinalDir = "final"
	// BaseDir is the base model of a LoRA student's adapters: the student
	// as cut from its teacher, before training (LoRA distillation only).
	BaseDir = "base"
	// CheckpointsDir holds one step-NNNNNNNNN folder per kept checkpoint.
	CheckpointsDir = "checkpoints"
	// JobFile is the trial's resolved Job, as JSON. It is not a model
	// config: a trial folder is not a model folder.
	JobFile = "config.json"
	// PublishedJobFile is the job's name in a published model folder,
	// where config.json is the model's.
	PublishedJobFile = "train_config.json"
)

// writeTrainLog writes the trial's training log and its resolved job.
func writeTrainLog(ctx context.Context, job Job, st trainState) error {
	var b strings.Builder
	for _, e := range st.Log {
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := storage.WriteFile(ctx, storage.Join(job.Output, report.TrainLogFile), []byte(b.String())); err != nil {
		return err
	}
	cfg, err := json.MarshalIndent(job, "", "  ")
	if err != nil {
		return err
	}
	return storage.WriteFile(ctx, storage.Join(job.Output, JobFile), cfg)
}
