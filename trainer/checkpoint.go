package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/model/safetensors"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/storage"
)

// trainState is what a checkpoint restores besides weights and optimizer moments.
type trainState struct {
	Step         int64             `json:"step"`          // optimizer steps done
	Epoch        int               `json:"epoch"`         // epoch in progress
	Batch        int               `json:"batch"`         // next batch index in that epoch's plan
	MicroStep    int64             `json:"micro_step"`    // micro-batches done (seeds dropout)
	BestMetric   float64           `json:"best_metric"`   // the task's main metric at BestStep
	BestAccuracy float64           `json:"best_accuracy"` // accuracy at BestStep (single-label; subset accuracy for multi-label)
	BestLoss     float64           `json:"best_loss"`
	BestStep     int64             `json:"best_step"`
	BadEvals     int               `json:"bad_evals"`            // evaluations since the last improvement
	BestTasks    []TaskBest        `json:"best_tasks,omitempty"` // multi-task: each task's scores at BestStep
	Log          []report.LogEntry `json:"log"`
	Config       Config            `json:"config"`
	// RNG: libtorch's generator is reseeded before every micro-batch with
	// seed*1_000_003+micro_step, and batch order is a function of (seed,
	// epoch), so (config, micro_step, epoch, batch) is the whole random state.
	RNG string `json:"rng"`
	// Data is where a streamed run stands in its shards (nil in memory).
	Data *dataset.StreamPosition `json:"data,omitempty"`
	// Scaler is the dynamic loss scaling state (nil without scaling).
	Scaler *lossScaler `json:"loss_scaler,omitempty"`
}

// Files of a checkpoint folder (CheckpointsDir/step-NNNNNNNNN).
const (
	checkpointState     = "state.json" // written last: a checkpoint without it is incomplete
	checkpointOptimizer = "optimizer.safetensors"
	checkpointGlob      = "step-*"
)

// saveCheckpoint writes every trained tensor (the model's and any
// projections, under their names), the optimizer's moments and the loop state.
func saveCheckpoint(ctx context.Context, out string, params []*model.Param, opt *model.AdamW, st trainState) error {
	dir := storage.Join(out, CheckpointsDir, fmt.Sprintf("step-%09d", st.Step))
	if err := opt.Sync(); err != nil { // the weights as a dense update leaves them
		return err
	}
	weights, err := model.ParamTensors(params)
	if err != nil {
		return err
	}
	if err := writeSafetensors(ctx, storage.Join(dir, model.SafetensorsFile), weights); err != nil {
		return err
	}
	mom, steps, err := opt.State()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(mom))
	for k := range mom {
		names = append(names, k)
	}
	sort.Strings(names)
	byName := make(map[string]*model.Param, len(params))
	for _, p := range params {
		byName[p.Name] = p
	}
	var ot []safetensors.Tensor
	for _, k := range names {
		p := byName[strings.TrimPrefix(strings.TrimPrefix(k, "m."), "v.")]
		t, err := safetensors.FromFloat32(k, safetensors.F32, model.Shape(p.T), mom[k])
		if err != nil {
			return err
		}
		ot = append(ot, t)
	}
	if err := writeSafetensors(ctx, storage.Join(dir, checkpointOptimizer), ot); err != nil {
		return err
	}
	state, err := json.MarshalIndent(struct {
		trainState
		OptimizerSteps int64 `json:"optimizer_steps"`
	}{st, steps}, "", "  ")
	if err != nil {
		return err
	}
	if err := storage.WriteFile(ctx, storage.Join(dir, checkpointState), state); err != nil {
		return err
	}
	slog.Info("train: checkpoint", "dir", dir)
	pruneCheckpoints(ctx, out, 2)
	return nil
}

func writeSafetensors(ctx context.Context, path string, tensors []safetensors.Tensor) error {
	w, err := storage.Create(ctx, path)
	if err != nil {
		return err
	}
	if err := safetensors.Write(w, tensors, map[string]string{"format": "pt"}); err != nil {
		_ = w.Abort()
		return fmt.Errorf("%s: %w", path, err)
	}
	return w.Close()
}

// latestCheckpoint finds the newest complete checkpoint folder.
func latestCheckpoint(ctx context.Context, out string) (string, error) {
	matches, err := storage.Glob(ctx, storage.Join(out, CheckpointsDir, checkpointGlob, checkpointState))
	if err != nil {
		return "", err
	}
	if len(matches) == 0 {
		return "", nil
	}
	sort.Strings(matches)
	return strings.TrimSuffix(matches[len(matches)-1], "/"+checkpointState), nil
}

func pruneCheckpoints(ctx context.Context, out string, keep int) {
	matches, err := storage.Glob(ctx, storage.Join(out, CheckpointsDir, checkpointGlob, checkpointState))
	if err != nil || len(matches) <= keep {
		return
	}
	sort.Strings(matches)
	for _, m := range matches[:len(matches)-keep] {
		dir := strings.TrimSuffix(m, "/"+checkpointState)
		// The marker goes first, so a half-deleted checkpoint is never taken as complete.
		if err := storage.Remove(ctx, m); err == nil {
			_ = storage.RemoveAll(ctx, dir)
		}
	}
}

func loadCheckpoint(ctx context.Context, out string, params []*model.Param, opt *model.AdamW, st *trainState) (bool, error) {
	dir, err := latestCheckpoint(ctx, out)
	if err != nil || dir == "" {
		return false, err
	}
	data, err := storage.ReadFile(ctx, storage.Join(dir, checkpointState))
	if err != nil {
		return false, err
	}
	var saved struct {
		trainState
		OptimizerSteps int64 `json:"optimizer_steps"`
	}
	if err := json.Unmarshal(data, &saved); err != nil {
		return false, fmt.Errorf("%s: %w", dir, err)
	}
	// Checkpoints from before task kinds have no best_metric: they were
	// single-label, where the main metric is the accuracy.
	var since struct {
		BestMetric *float64 `json:"best_metric"`
		Config     struct {
			EvalRows *int `json:"eval_rows"`
		} `json:"config"`
	}
	if err := json.Unmarshal(data, &since); err != nil {
		return false, fmt.Errorf("%s: %w", dir, err)
	}
	if since.BestMetric == nil {
		saved.BestMetric = saved.BestAccuracy
	}
	// Checkpoints from before eval_rows scored the whole validation split
	// and recorded no eval_rows: they resume under today's default, which
	// samples only splits larger than every shipped dataset's.
	if since.Config.EvalRows == nil && saved.Config.EvalRows == 0 {
		saved.Config.EvalRows = st.Config.EvalRows
	}
	if saved.Config != st.Config {
		return false, fmt.Errorf("checkpoint %s was made with other hyperparameters (%+v); start a fresh output folder or resume with the same flags", dir, saved.Config)
	}
	weights, err := readSafetensors(ctx, storage.Join(dir, model.SafetensorsFile))
	if err != nil {
		return false, err
	}
	for _, p := range params {
		v, ok := weights[p.Name]
		if !ok {
			return false, fmt.Errorf("checkpoint %s lacks %s", dir, p.Name)
		}
		if err := p.Set(v); err != nil {
			return false, err
		}
	}
	mom, err := readSafetensors(ctx, storage.Join(dir, checkpointOptimizer))
	if err != nil {
		return false, err
	}
	if err := opt.LoadState(mom, saved.OptimizerSteps); err != nil {
		return false, err
	}
	*st = saved.trainState
	return true, nil
}

func readSafetensors(ctx context.Context, path string) (map[string][]float32, error) {
	data, err := storage.ReadFile(ctx, path)
	if err != nil {
		return nil, err
	}
	f, err := safetensors.ReadFrom(bytes.NewReader(data), int64(len(data)), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := map[string][]float32{}
	for _, n := range f.Names() {
		if out[n], err = f.Float32(n); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, n, err)
		}
	}
	return out, nil
}
