package trainer

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/storage"
	"github.com/sugarme/gotch/ts"
)

// Why a trial stopped (TrialResult.Stopped).
const (
	StoppedMaxSteps = "max_steps"
	StoppedEpochs   = "epochs"
	StoppedEarly    = "early_stopping"
)

// Train runs one trial to the end, resuming from its latest checkpoint when
// job.Resume is set, and reports its progress to progress (nil: to no one).
// Torch work runs on the process's torch thread (model.OnTorchThread).
func Train(ctx context.Context, job Job, progress Progress) (TrialResult, error) {
	var res TrialResult
	err := model.OnTorchThread(func() (err error) {
		res, err = train(ctx, job, progress)
		return err
	})
	return res, err
}

func train(ctx context.Context, job Job, progress Progress) (TrialResult, error) {
	t, err := startTrial(ctx, job, progress)
	if err != nil {
		return TrialResult{}, err
	}
	defer t.free()
	if err := t.resume(ctx); err != nil {
		return TrialResult{}, err
	}
	if err := t.run(ctx); err != nil {
		return TrialResult{}, err
	}
	return t.finish(ctx)
}

// trial is one training run in progress: its data, model and optimizer, the
// state a checkpoint restores (st), and this process's own pace.
type trial struct {
	job      Job
	cfg      Config
	progress Progress

	dev      model.Device
	tasks    []*trialTask // one, unnamed, for a single-task run
	sampling dataset.TaskSampling
	metric   string // the validation metric that picks the best checkpoint (multi-task: the mean)
	padID    int64
	m        *model.Bert
	base     model.AdapterBase // the base model a LoRA run's adapters apply to
	params   []*model.Param
	opt      *model.AdamW
	sched    model.LinearSchedule

	stepsPerEpoch int64
	total         int64 // optimizer steps of the whole run

	st      trainState
	resumed bool
	stopped string

	start      time.Time // the trial's start, data loading included
	trainStart time.Time // the first step of this process
	firstStep  int64     // the step this process started from
	examples   int64     // examples trained on by this process
	lossSum    float64   // training loss since the last log entry
	lossN      int
	// overflow is set when a micro-batch's loss was not finite under loss
	// scaling (an fp16 forward that overflowed): its step is skipped.
	overflow bool
}

// microBatch is one forward and backward pass: the task and rows of a
// batch plan entry and the seed of its dropout masks.
type microBatch struct {
	task int
	rows *dataset.Rows
	idx  []int
	seed int64
}

// startTrial checks the configuration, loads both splits, builds the model
// (and hidden-state projections) and its optimizer, and plans the schedule.
func startTrial(ctx context.Context, job Job, progress Progress) (_ *trial, err error) {
	cfg := job.Config
	if cfg.BatchSize <= 0 || cfg.GradAccum <= 0 {
		return nil, fmt.Errorf("batch_size and grad_accum must be positive")
	}
	if progress == nil {
		progress = noProgress{}
	}
	t := &trial{job: job, cfg: cfg, progress: progress, start: time.Now()}
	defer func() {
		if err != nil {
			t.free()
		}
	}()
	if t.dev, err = model.ParseDevice(job.Device); err != nil {
		return nil, err
	}
	model.SetThreads(job.Threads)

	specs, err := job.specs()
	if err != nil {
		return nil, err
	}
	if t.sampling, err = dataset.ParseTaskSampling(cfg.TaskSampling); err != nil {
		return nil, err
	}
	if len(specs) > 1 && cfg.MetricForBest != "" {
		return nil, fmt.Errorf("metric_for_best: a multi-task run picks its best checkpoint by the mean of its tasks' metrics; give each task's metric with its task")
	}
	var manifests []*dataset.Manifest
	for _, s := range specs {
		tt, man, err := loadTask(ctx, s, cfg, len(specs), t.dev)
		if err != nil {
			return nil, err
		}
		t.tasks = append(t.tasks, tt)
		manifests = append(manifests, man)
	}
	if err := checkPosWeight(cfg, t.tasks); err != nil {
		return nil, err
	}
	t.metric = t.tasks[0].metric
	if len(t.tasks) > 1 {
		t.metric = report.MetricMean
	}

	if t.m, t.base, err = buildModel(ctx, job, t.tasks, t.dev); err != nil {
		return nil, err
	}
	t.padID = int64(t.m.Config.PadTokenID)
	var projections []*model.Param
	for i, tt := range t.tasks {
		if tt.hidden, err = newHiddenLoss(cfg, manifests[i], tt.probe, t.m, tt.name); err != nil {
			return nil, err
		}
		projections = append(projections, tt.hidden.params()...)
		if tt.stream != nil {
			tt.probe = nil // checked: a streamed run holds one window, not two
		}
	}
	// Everything the optimizer updates: the model's trainable set (all of
	// it, or the adapter and head), and the hidden-state projections, which
	// checkpoints keep but the exported model does not. Frozen weights are
	// not checkpointed: a resumed run rebuilds them from Init as they were.
	t.params = slices.Concat(t.m.Trainable(), projections)
	if cfg.PEFT != "" || cfg.FreezeLayers != "" {
		n, all := model.CountParams(t.m.Trainable()), model.CountParams(append(t.m.Params(), t.m.AdapterParams()...))
		slog.Info("train: trainable parameters", "trial", job.Trial, "peft", cfg.PEFT, "freeze_layers", cfg.FreezeLayers, "trainable", n, "of", all, "percent", round4(100*float64(n)/float64(all)))
	}
	// The word-embedding table's gradient row-sparse: the same updates as
	// the dense form, without a pass over all 30 k rows per step.
	t.m.UseRowSparseEmbeddings()
	adam := model.DefaultAdamW()
	adam.WeightDecay = cfg.WeightDecay
	if t.opt, err = model.NewAdamW(t.params, adam); err != nil {
		return nil, err
	}

	t.total, t.stepsPerEpoch = t.planSteps()
	t.sched = model.LinearSchedule{Peak: cfg.LR, Warmup: int64(math.Round(cfg.WarmupRatio * float64(t.total))), Total: t.total}
	t.st = trainState{BestMetric: -math.MaxFloat64, BestAccuracy: -1, BestLoss: math.MaxFloat64, Config: cfg, RNG: "seed*1000003+micro_step per micro-batch; batch plan from (seed, epoch)",
		Scaler: newLossScaler(cfg, t.m.Precision() == model.PrecisionFP16)}
	t.stopped = StoppedEpochs
	if cfg.MaxSteps > 0 {
		t.stopped = StoppedMaxSteps
	}
	return t, nil
}

// free releases the native memory of what startTrial built, in reverse order.
func (t *trial) free() {
	if t.opt != nil {
		t.opt.Free()
	}
	for _, tt := range t.tasks {
		tt.free()
	}
	if t.m != nil {
		t.m.Free()
	}
}

// resume restores the latest checkpoint when the job asks for it.
func (t *trial) resume(ctx context.Context) error {
	if t.job.Resume {
		ok, err := loadCheckpoint(ctx, t.job.Output, t.params, t.opt, &t.st)
		if err != nil {
			return err
		}
		t.resumed = ok
		if ok {
			if err := t.checkResumePosition(t.job.Output); err != nil {
				return err
			}
			slog.Info("train: resumed", "trial", t.job.Trial, "step", t.st.Step, "epoch", t.st.Epoch, "batch", t.st.Batch)
		}
	}
	t.firstStep = t.st.Step
	t.trainStart = time.Now()
	return nil
}

// run trains epoch by epoch until the last step or an early stop. A resumed
// run starts at the saved epoch and batch of its plan.
func (t *trial) run(ctx context.Context) error {
	for ; t.st.Step < t.total; t.st.Epoch, t.st.Batch = t.st.Epoch+1, 0 {
		if stop, err := t.runEpoch(ctx); err != nil || stop {
			return t.stop(stop, err)
		}
	}
	return nil
}

// runEpoch trains the epoch in progress from its next batch; stop is set
// when early stopping ends the run.
func (t *trial) runEpoch(ctx context.Context) (stop bool, err error) {
	in := t.openEpoch(t.st.Epoch)
	defer in.close()
	for t.st.Batch < in.batches() && t.st.Step < t.total {
		if stop, err := t.step(ctx, in); err != nil || stop {
			return stop, err
		}
	}
	if t.st.Batch >= in.batches() {
		return t.endEpoch(ctx)
	}
	return false, nil
}

// stop ends the run: with err, or early (patience ran out) when early is set.
func (t *trial) stop(early bool, err error) error {
	if early {
		t.stopped = StoppedEarly
	}
	return err
}

// step makes one optimizer step, then logs, evaluates and checkpoints when
// they are due. stop is set when early stopping ends the run.
func (t *trial) step(ctx context.Context, in epochInput) (stop bool, err error) {
	lr, gradNorm, err := t.optimizerStep(ctx, in)
	if err != nil {
		return false, err
	}
	if t.cfg.LogEvery > 0 && t.st.Step%t.cfg.LogEvery == 0 || t.st.Step == t.total {
		t.logTrain(ctx, lr, gradNorm)
	}
	if t.cfg.EvalEvery > 0 && t.st.Step%t.cfg.EvalEvery == 0 {
		if stop, err := t.evaluate(ctx); err != nil || stop {
			return stop, err
		}
	}
	if t.cfg.CheckpointEvery > 0 && t.st.Step%t.cfg.CheckpointEvery == 0 && t.st.Step < t.total {
		t.st.Data = in.position(t.st.Batch)
		if err := saveCheckpoint(ctx, t.job.Output, t.params, t.opt, t.st); err != nil {
			return false, err
		}
	}
	return false, ctx.Err()
}

// optimizerStep runs GradAccum micro-batches of the plan, clips, and updates
// the weights at the scheduled learning rate.
func (t *trial) optimizerStep(ctx context.Context, in epochInput) (lr, gradNorm float64, err error) {
	examples := 0
	for a := 0; a < t.cfg.GradAccum && t.st.Batch < in.batches(); a++ {
		b, err := in.batch(ctx, t.st.Batch)
		if err != nil {
			return 0, 0, fmt.Errorf("step %d: %w", t.st.Step, err)
		}
		loss, err := t.microStep(microBatch{task: b.task, rows: b.rows, idx: b.idx, seed: t.cfg.Seed*1_000_003 + t.st.MicroStep})
		if err != nil {
			return 0, 0, fmt.Errorf("step %d: %w", t.st.Step, err)
		}
		if !math.IsNaN(loss) && !math.IsInf(loss, 0) {
			t.lossSum += loss
			t.lossN++
		}
		examples += len(b.idx)
		t.st.Batch++
		t.st.MicroStep++
	}
	lr = t.sched.LR(t.st.Step)
	finite, norm, err := t.unscale()
	if err != nil {
		return 0, 0, err
	}
	if finite {
		gradScale := 1.0 // clipping's factor, applied by the optimizer as it reads the gradients
		switch {
		case t.st.Scaler != nil: // unscale measured the norm and clipped
			gradNorm = norm
		case t.cfg.MaxGradNorm > 0:
			if gradNorm, gradScale, err = model.ClipScale(t.params, t.cfg.MaxGradNorm); err != nil {
				return 0, 0, err
			}
		}
		if err := t.opt.Step(lr, gradScale); err != nil {
			return 0, 0, err
		}
	}
	if err := model.ZeroGrad(t.params); err != nil {
		return 0, 0, err
	}
	t.st.Step++
	t.examples += int64(examples)
	t.progress.Stepped(ctx, examples)
	return lr, gradNorm, nil
}

// unscale divides the gradients by the loss scale, when the run scales its
// loss, clips them (MaxGradNorm) and says whether they are finite (and
// their norm): a step with an Inf or NaN gradient is skipped (the schedule
// still moves on) and the scale halves.
func (t *trial) unscale() (finite bool, norm float64, err error) {
	sc := t.st.Scaler
	if sc == nil {
		return true, 0, nil
	}
	if norm, err = model.ScaleGrads(t.params, 1/sc.Scale, t.cfg.MaxGradNorm); err != nil {
		return false, 0, err
	}
	finite = !math.IsNaN(norm) && !math.IsInf(norm, 0) && !t.overflow
	t.overflow = false
	if !finite {
		slog.Warn("train: non-finite gradients, step skipped", "trial", t.job.Trial, "step", t.st.Step, "loss_scale", sc.Scale, "next_scale", sc.Scale/2)
	}
	sc.update(finite)
	return finite, norm, nil
}

// endEpoch evaluates at an epoch's end (unless the step just did) and
// checkpoints the start of the next epoch.
func (t *trial) endEpoch(ctx context.Context) (stop bool, err error) {
	if t.cfg.EvalEvery == 0 || t.st.Step%t.cfg.EvalEvery != 0 {
		if stop, err := t.evaluate(ctx); err != nil || stop {
			return stop, err
		}
	}
	if t.st.Step < t.total {
		next := t.st
		next.Epoch, next.Batch = t.st.Epoch+1, 0
		if t.tasks[0].stream != nil {
			in := t.openEpoch(next.Epoch)
			next.Data = in.position(0)
			in.close()
		}
		if err := saveCheckpoint(ctx, t.job.Output, t.params, t.opt, next); err != nil {
			return false, err
		}
	}
	return false, nil
}

// logTrain appends a train entry: the mean loss since the last one and this
// process's pace.
func (t *trial) logTrain(ctx context.Context, lr, gradNorm float64) {
	el := time.Since(t.trainStart).Seconds()
	eps := float64(t.examples) / el
	// ETA from this process's pace (a resumed run counts from where it started).
	eta := time.Duration(float64(t.total-t.st.Step) / (float64(t.st.Step-t.firstStep) / el) * float64(time.Second))
	e := report.LogEntry{Kind: report.LogTrain, Step: t.st.Step, Epoch: t.epoch(), Loss: t.lossSum / float64(max(t.lossN, 1)), LR: lr, GradNorm: gradNorm, ExamplesSec: eps, Time: now()}
	t.st.Log = append(t.st.Log, e)
	t.progress.Logged(ctx, e)
	slog.Info("train", "trial", t.job.Trial, "step", t.st.Step, "of", t.total, "loss", round4(e.Loss), "lr", lr, "examples_per_s", round4(eps), "eta", eta.Round(time.Second))
	t.lossSum, t.lossN = 0, 0
}

// evaluate scores the validation split of every task, exports the model as
// the best when its score (a multi-task run's: the tasks' mean) improved,
// and says whether patience has run out.
func (t *trial) evaluate(ctx context.Context) (stop bool, err error) {
	if err := t.opt.Sync(); err != nil { // rows of a row-sparse table catch up
		return false, err
	}
	logits := make([][][]float32, len(t.tasks))
	scores := make([]TaskScore, len(t.tasks))
	for i, tt := range t.tasks {
		out, err := EvaluateTasks(t.m, tt.valid, 2*t.cfg.BatchSize, tt.heads())
		if err != nil {
			return false, fmt.Errorf("evaluate: %w", err)
		}
		logits[i], scores[i] = out.Logits, ScoreTask(tt.kind, tt.metric, tt.valid, out.Logits)
		if len(t.tasks) > 1 {
			t.logEval(ctx, tt.name, scores[i])
		}
	}
	ev := scores[0]
	if len(t.tasks) > 1 {
		ev = meanScore(scores)
	}
	t.logEval(ctx, "", ev)
	improved := ev.Value > t.st.BestMetric || (ev.Value == t.st.BestMetric && ev.Loss < t.st.BestLoss)
	slog.Info("train: eval", "trial", t.job.Trial, "step", t.st.Step, "val_loss", round4(ev.Loss), "val_"+ev.Metric, round4(ev.Value), "best", improved)
	if improved {
		t.st.BestMetric, t.st.BestAccuracy, t.st.BestLoss, t.st.BestStep, t.st.BadEvals = ev.Value, ev.Accuracy, ev.Loss, t.st.Step, 0
		t.st.BestTasks = nil
		if len(t.tasks) > 1 {
			for i, tt := range t.tasks {
				s := scores[i]
				t.st.BestTasks = append(t.st.BestTasks, TaskBest{Task: tt.name, Metric: s.Metric, Value: s.Value, Loss: s.Loss, Accuracy: s.Accuracy})
			}
		}
		extra, err := t.exportExtras(logits)
		if err != nil {
			return false, err
		}
		if err := t.export(ctx, t.bestDir(), extra); err != nil {
			return false, err
		}
	} else {
		t.st.BadEvals++
	}
	return t.cfg.Patience > 0 && t.st.BadEvals >= t.cfg.Patience, nil
}

// logEval appends an eval entry: one task's scores, or with task "" the
// run's (a multi-task run's mean).
func (t *trial) logEval(ctx context.Context, task string, ev TaskScore) {
	e := report.LogEntry{Kind: report.LogEval, Step: t.st.Step, Epoch: t.epoch(), Loss: ev.Loss, Accuracy: ev.Accuracy, Task: task, Time: now()}
	if ev.Metric != report.MetricAccuracy {
		e.Metric, e.MetricName = ev.Value, ev.Metric
	}
	t.st.Log = append(t.st.Log, e)
	t.progress.Logged(ctx, e)
	if task != "" {
		slog.Info("train: eval", "trial", t.job.Trial, "task", task, "step", t.st.Step, "val_loss", round4(ev.Loss), "val_"+ev.Metric, round4(ev.Value))
	}
}

// finish evaluates the last step if no evaluation saw it, exports the final
// model and writes the trial's log and job.
func (t *trial) finish(ctx context.Context) (TrialResult, error) {
	if err := t.opt.Sync(); err != nil {
		return TrialResult{}, err
	}
	if t.st.BestStep != t.st.Step && (len(t.st.Log) == 0 || t.st.Log[len(t.st.Log)-1].Kind != report.LogEval) {
		if _, err := t.evaluate(ctx); err != nil {
			return TrialResult{}, err
		}
	}
	finalDir := storage.Join(t.job.Output, FinalDir)
	// The final model's thresholds need its own validation logits.
	logits := make([][][]float32, len(t.tasks))
	for i, tt := range t.tasks {
		if tt.kind != dataset.MultiLabel {
			continue
		}
		out, err := EvaluateTasks(t.m, tt.valid, 2*t.cfg.BatchSize, tt.heads())
		if err != nil {
			return TrialResult{}, fmt.Errorf("evaluate: %w", err)
		}
		logits[i] = out.Logits
	}
	extra, err := t.exportExtras(logits)
	if err != nil {
		return TrialResult{}, err
	}
	if err := t.export(ctx, finalDir, extra); err != nil {
		return TrialResult{}, err
	}
	if err := writeTrainLog(ctx, t.job, t.st); err != nil {
		return TrialResult{}, err
	}
	var full TaskScore
	var fullRows int64
	if t.cfg.EvalFull {
		if full, fullRows, err = t.fullValidation(ctx); err != nil {
			return TrialResult{}, err
		}
	}
	return TrialResult{
		FullValidationRows: fullRows, FullValidationMetric: full.Value,
		Trial: t.job.Trial, Config: t.cfg, Output: t.job.Output, BestDir: t.bestDir(), FinalDir: finalDir, BestStep: t.st.BestStep,
		Metric: t.metric, BestMetric: t.st.BestMetric,
		BestAccuracy: t.st.BestAccuracy, BestLoss: t.st.BestLoss, Steps: t.st.Step, Stopped: t.stopped,
		WallSeconds: time.Since(t.start).Seconds(), ExamplesPerSec: float64(t.examples) / time.Since(t.trainStart).Seconds(), Resumed: t.resumed,
		TrainableParams: model.CountParams(t.m.Trainable()), TotalParams: model.CountParams(append(t.m.Params(), t.m.AdapterParams()...)),
		Tasks: append([]TaskBest{}, t.st.BestTasks...),
	}, nil
}

// fullValidation scores the model on every task's whole validation split,
// a chunk of rows at a time: only the targets and logits of the rows
// already scored stay in memory.
func (t *trial) fullValidation(ctx context.Context) (TaskScore, int64, error) {
	var scores []TaskScore
	var rows int64
	for _, tt := range t.tasks {
		seen := &dataset.Rows{}
		var logits [][]float32
		err := dataset.EachRows(ctx, tt.data, tt.man, dataset.SplitValidation, fullEvalChunk, func(r *dataset.Rows) error {
			out, err := EvaluateTasks(t.m, r, 2*t.cfg.BatchSize, tt.heads())
			if err != nil {
				return err
			}
			logits = append(logits, out.Logits...)
			seen.Labels = append(seen.Labels, r.Labels...)
			seen.Multi = append(seen.Multi, r.Multi...)
			seen.Scores = append(seen.Scores, r.Scores...)
			return nil
		})
		if err != nil {
			return TaskScore{}, 0, fmt.Errorf("full validation: %w", err)
		}
		s := ScoreTask(tt.kind, tt.metric, seen, logits)
		slog.Info("train: full validation", "trial", t.job.Trial, "task", tt.name, "rows", len(logits), "val_"+s.Metric, round4(s.Value), "val_loss", round4(s.Loss))
		scores = append(scores, s)
		rows += int64(len(logits))
	}
	if len(scores) > 1 {
		return meanScore(scores), rows, nil
	}
	return scores[0], rows, nil
}

// export writes the trained model at dir: a HF folder, or with LoRA the
// adapter folder (PEFT's layout) over the run's base.
func (t *trial) export(ctx context.Context, dir string, extra map[string][]byte) error {
	if t.m.LoRA() == nil {
		return exportModel(ctx, t.m, dir, t.job.Init, extra)
	}
	return exportAdapter(ctx, t.m, dir, t.job.Init, t.base, extra)
}

// exportExtras are the files an exported folder carries beside the model:
// a multi-label model's decision thresholds, tuned on the validation logits
// (validLogits, per task; a multi-task bundle keeps each in its task's folder).
func (t *trial) exportExtras(validLogits [][][]float32) (map[string][]byte, error) {
	extra := map[string][]byte{}
	for i, tt := range t.tasks {
		if tt.kind != dataset.MultiLabel || tt.valid.Len() == 0 {
			continue
		}
		th := TuneThresholds(tt.valid, validLogits[i], tt.labels, dataset.SplitValidation)
		data, err := th.Encode()
		if err != nil {
			return nil, err
		}
		name := model.ThresholdsFile
		if tt.name != "" {
			name = model.TasksDir + "/" + tt.name + "/" + model.ThresholdsFile
		}
		extra[name] = data
	}
	return extra, nil
}

func (t *trial) bestDir() string { return storage.Join(t.job.Output, BestDir) }

// epoch is the training progress in epochs, fractional.
func (t *trial) epoch() float64 { return float64(t.st.Step) / float64(t.stepsPerEpoch) }

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

// microStep runs forward and backward on one micro-batch and returns its
// loss. Autograd is switched on for it explicitly: the mode is per OS thread,
// and the thread this trial runs on may last have served inference.
func (t *trial) microStep(b microBatch) (loss float64, err error) {
	err = model.WithGrad(true, func() (err error) {
		loss, err = t.forwardBackward(b)
		return err
	})
	return loss, err
}

func (t *trial) forwardBackward(mb microBatch) (float64, error) {
	tt := t.tasks[mb.task]
	b, teacher, err := batchTensors(mb.rows, mb.idx, t.padID, t.dev)
	if err != nil {
		return 0, err
	}
	labels, err := targetTensor(mb.rows, mb.idx, tt.kind, len(tt.labels), t.dev)
	if err != nil {
		freeBatch(b, teacher)
		return 0, err
	}
	defer freeBatch(b, labels, teacher)
	// Dropout draws happen in the forward pass only; backward reuses the masks.
	var out *model.Output
	err = model.WithSeed(mb.seed, func() (err error) {
		out, err = t.m.ForwardTasks(b, tt.heads(), true, tt.hidden != nil)
		return err
	})
	if err != nil {
		return 0, err
	}
	defer out.Free()
	var loss *ts.Tensor
	switch {
	case tt.distill && tt.kind == dataset.MultiLabel:
		loss, err = model.DistillMultiLabelLoss(out.Logits, teacher, labels, t.cfg.Temperature, t.cfg.Alpha, t.cfg.LogitMSE)
	case tt.distill && tt.kind == dataset.Regression:
		loss, err = model.DistillRegressionLoss(out.Logits, teacher, labels, t.cfg.Alpha)
	case tt.distill:
		loss, err = model.DistillLoss(out.Logits, teacher, labels, t.cfg.Temperature, t.cfg.Alpha, t.cfg.LogitMSE)
	case tt.kind == dataset.MultiLabel:
		loss, err = model.BCEWithLogits(out.Logits, labels, tt.posWeight)
	case tt.kind == dataset.Regression:
		loss, err = model.MSE(out.Logits, labels)
	default:
		loss, err = model.CrossEntropy(out.Logits, labels)
	}
	if err != nil {
		return 0, err
	}
	if tt.hidden != nil {
		hl, err := tt.hidden.loss(out, mb.rows, mb.idx, t.dev)
		if err != nil {
			_ = loss.Drop()
			return 0, err
		}
		sum, err := model.AddScaled(loss, hl, tt.hidden.weight)
		_, _ = loss.Drop(), hl.Drop()
		if err != nil {
			return 0, err
		}
		loss = sum
	}
	if tt.weight != 1 {
		sc := ts.FloatScalar(tt.weight)
		weighted, err := loss.MulScalar(sc, true)
		sc.Drop()
		if err != nil {
			return 0, err
		}
		loss = weighted
	}
	defer loss.Drop()
	v, err := model.Float32Scalar(loss)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
		if t.st.Scaler == nil {
			return 0, fmt.Errorf("loss is %v: lower the learning rate", v)
		}
		// Under loss scaling (fp16) an overflow in the forward pass skips
		// the step, as an overflow in the gradients does.
		t.overflow = true
		return float64(v), nil
	}
	if t.cfg.GradAccum > 1 {
		sc := ts.FloatScalar(float64(t.cfg.GradAccum))
		defer sc.Drop()
		scaled, err := loss.DivScalar(sc, false)
		if err != nil {
			return 0, err
		}
		defer scaled.Drop()
		loss = scaled
	}
	if s := t.st.Scaler; s != nil {
		sc := ts.FloatScalar(s.Scale)
		defer sc.Drop()
		scaled, err := loss.MulScalar(sc, false)
		if err != nil {
			return 0, err
		}
		defer scaled.Drop()
		loss = scaled
	}
	return float64(v), loss.Backward()
}
