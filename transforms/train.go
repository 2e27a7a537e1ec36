package transforms

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/model/safetensors"
	"github.com/beamtune/beamtune/storage"
	"github.com/sugarme/gotch/ts"
)

func init() {
	register.DoFn3x1[context.Context, TrainJob, func(TrialResult), error](&TrainFn{})
	register.Emitter1[TrialResult]()
	beam.RegisterType(reflect.TypeOf((*TrainJob)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*TrialResult)(nil)).Elem())
}

// TrainConfig is one run's hyperparameters: one trial of a sweep.
type TrainConfig struct {
	LR              float64 `json:"lr" yaml:"lr"`
	Seed            int64   `json:"seed" yaml:"seed"`
	BatchSize       int     `json:"batch_size" yaml:"batch_size"`
	GradAccum       int     `json:"grad_accum" yaml:"grad_accum"`             // micro-batches per optimizer step
	Epochs          int     `json:"epochs" yaml:"epochs"`                     // used when MaxSteps is 0
	MaxSteps        int64   `json:"max_steps" yaml:"max_steps"`               // optimizer steps; 0: Epochs decide
	WarmupRatio     float64 `json:"warmup_ratio" yaml:"warmup_ratio"`         // share of the steps spent warming up
	WeightDecay     float64 `json:"weight_decay" yaml:"weight_decay"`         // AdamW, not on biases and LayerNorm
	MaxGradNorm     float64 `json:"max_grad_norm" yaml:"max_grad_norm"`       // global clipping; 0: off
	EvalEvery       int64   `json:"eval_every" yaml:"eval_every"`             // optimizer steps between evaluations; 0: epoch ends only
	Patience        int     `json:"patience" yaml:"patience"`                 // evaluations without improvement before stopping; 0: never
	CheckpointEvery int64   `json:"checkpoint_every" yaml:"checkpoint_every"` // optimizer steps; 0: epoch ends only
	ShuffleBuffer   int     `json:"shuffle_buffer" yaml:"shuffle_buffer"`     // batches mixed by the shuffle buffer
	LogEvery        int64   `json:"log_every" yaml:"log_every"`

	// Distillation (used when the training shards carry teacher logits).
	Temperature float64 `json:"temperature" yaml:"temperature"`
	Alpha       float64 `json:"alpha" yaml:"alpha"`         // weight of the soft-target KL term
	LogitMSE    float64 `json:"logit_mse" yaml:"logit_mse"` // weight of an extra MSE on logits
	// Hidden-state distillation: HiddenMSE weighs the MSE between student and
	// teacher [CLS] vectors of the layer pairs in HiddenLayerMap
	// ("student:teacher,...", hidden states counted as HF's, 0 = embeddings).
	// beamtune distill fills the map from the student's layers when it is empty.
	HiddenMSE      float64 `json:"hidden_mse" yaml:"hidden_mse"`
	HiddenLayerMap string  `json:"hidden_layer_map" yaml:"hidden_layer_map"`
}

// DefaultTrainConfig is a BERT fine-tuning recipe that works for the
// MiniLM-sized models beamtune targets.
func DefaultTrainConfig() TrainConfig {
	return TrainConfig{LR: 5e-5, Seed: 1, BatchSize: 32, GradAccum: 1, Epochs: 3, WarmupRatio: 0.1,
		WeightDecay: 0.01, MaxGradNorm: 1.0, Patience: 0, ShuffleBuffer: 64, LogEvery: 50,
		Temperature: 2.0, Alpha: 0.5}
}

// TrainJob is one trial: what to train, from what, on which data, and where to write.
type TrainJob struct {
	Trial  string      `json:"trial"` // e.g. "lr=2e-05,seed=1"
	Config TrainConfig `json:"config"`
	Data   string      `json:"data"` // prepared dataset folder (train and validation splits)
	Init   string      `json:"init"` // model folder to start from
	// StudentLayers, when set, makes a student of Init keeping these layers.
	StudentLayers []int  `json:"student_layers,omitempty"`
	Output        string `json:"output"` // this trial's folder
	Device        string `json:"device"`
	Threads       int    `json:"threads"`
	Resume        bool   `json:"resume"`
}

// TrialResult is what a trial reports once it has finished.
type TrialResult struct {
	Trial          string      `json:"trial"`
	Config         TrainConfig `json:"config"`
	Output         string      `json:"output"`
	BestDir        string      `json:"best_dir"`  // HF folder of the best evaluation
	FinalDir       string      `json:"final_dir"` // HF folder of the last step
	BestStep       int64       `json:"best_step"`
	BestAccuracy   float64     `json:"best_accuracy"`
	BestLoss       float64     `json:"best_loss"`
	Steps          int64       `json:"steps"`
	Stopped        string      `json:"stopped"` // "max_steps", "epochs" or "early_stopping"
	WallSeconds    float64     `json:"wall_seconds"`
	ExamplesPerSec float64     `json:"train_examples_per_s"`
	Resumed        bool        `json:"resumed"`
}

// LogEntry is one line of a trial's log.jsonl.
type LogEntry struct {
	Kind        string  `json:"kind"` // "train" or "eval"
	Step        int64   `json:"step"`
	Epoch       float64 `json:"epoch"`
	Loss        float64 `json:"loss"`
	LR          float64 `json:"lr,omitempty"`
	GradNorm    float64 `json:"grad_norm,omitempty"`
	Accuracy    float64 `json:"accuracy,omitempty"`
	ExamplesSec float64 `json:"examples_per_s,omitempty"`
	Time        string  `json:"time"`
}

// TrainFn trains one trial per element on a worker. Each element carries its
// own hyperparameters, so a sweep's trials run on parallel trainer instances.
type TrainFn struct{}

// ProcessElement runs the trial on this worker's locked OS thread.
func (fn *TrainFn) ProcessElement(ctx context.Context, job TrainJob, emit func(TrialResult)) error {
	res, err := Train(ctx, job)
	if err != nil {
		return fmt.Errorf("trial %s: %w", job.Trial, err)
	}
	emit(res)
	return nil
}

var (
	trainSteps    = beam.NewCounter("beamtune.train", "optimizer_steps")
	trainExamples = beam.NewCounter("beamtune.train", "examples")
	trainLoss     = beam.NewGauge("beamtune.train", "loss_x1000")
	valAccuracy   = beam.NewGauge("beamtune.train", "validation_accuracy_bp")
)

// LoadSplit reads every shard of a split into memory, in manifest order.
func LoadSplit(ctx context.Context, data string, m *Manifest, split string) (*Rows, error) {
	rows := &Rows{}
	for _, s := range m.ShardsOf(split) {
		b, err := storage.ReadFile(ctx, storage.Join(data, s.Path))
		if err != nil {
			return nil, err
		}
		r, err := ReadShardRows(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Path, err)
		}
		rows.Append(r)
	}
	return rows, nil
}

// tensors builds a padded batch from rows idx, padded to its longest row.
func (r *Rows) tensors(idx []int, padID int64, dev model.Device) (model.Batch, *ts.Tensor, *ts.Tensor, error) {
	maxLen := 0
	pair := false
	for _, i := range idx {
		maxLen = max(maxLen, len(r.IDs[i]))
		pair = pair || r.Types[i] != nil
	}
	n := len(idx)
	ids := make([]int64, n*maxLen)
	mask := make([]int64, n*maxLen)
	var types []int64
	if pair {
		types = make([]int64, n*maxLen)
	}
	labels := make([]int64, n)
	for k, i := range idx {
		row := ids[k*maxLen : (k+1)*maxLen]
		for j := range row {
			row[j] = padID
		}
		for j, v := range r.IDs[i] {
			row[j] = int64(v)
			mask[k*maxLen+j] = 1
		}
		if pair && r.Types[i] != nil {
			for j, v := range r.Types[i] {
				types[k*maxLen+j] = int64(v)
			}
		}
		labels[k] = int64(r.Labels[i])
	}
	var b model.Batch
	var err error
	free := func() {
		for _, t := range []*ts.Tensor{b.InputIDs, b.AttentionMask, b.TokenTypeIDs} {
			if t != nil {
				_ = t.Drop()
			}
		}
	}
	if b.InputIDs, err = model.Int64Tensor(ids, n, maxLen, dev); err != nil {
		return b, nil, nil, err
	}
	if b.AttentionMask, err = model.Int64Tensor(mask, n, maxLen, dev); err != nil {
		free()
		return b, nil, nil, err
	}
	if pair {
		if b.TokenTypeIDs, err = model.Int64Tensor(types, n, maxLen, dev); err != nil {
			free()
			return b, nil, nil, err
		}
	}
	lab, err := model.Int64Tensor(labels, 1, n, dev)
	if err != nil {
		free()
		return b, nil, nil, err
	}
	labFlat, err := lab.Reshape([]int64{int64(n)}, true)
	if err != nil {
		free()
		return b, nil, nil, err
	}
	var teacher *ts.Tensor
	if r.HasTeacher() {
		k := len(r.Teacher[idx[0]])
		vals := make([]float32, 0, n*k)
		for _, i := range idx {
			if len(r.Teacher[i]) != k {
				free()
				_ = labFlat.Drop()
				return b, nil, nil, fmt.Errorf("row %s has %d teacher logits, want %d", r.RowIDs[i], len(r.Teacher[i]), k)
			}
			vals = append(vals, r.Teacher[i]...)
		}
		if teacher, err = model.Float32Tensor(vals, []int64{int64(n), int64(k)}, dev); err != nil {
			free()
			_ = labFlat.Drop()
			return b, nil, nil, err
		}
	}
	return b, labFlat, teacher, nil
}

func freeBatch(b model.Batch, more ...*ts.Tensor) {
	for _, t := range append([]*ts.Tensor{b.InputIDs, b.AttentionMask, b.TokenTypeIDs}, more...) {
		if t != nil {
			_ = t.Drop()
		}
	}
}

// EvalResult is a model's loss, accuracy and logits on a set of rows.
type EvalResult struct {
	Loss     float64
	Accuracy float64
	Logits   [][]float32 // per row, in row order
	// Hidden holds per row the [CLS] vectors of the hidden states asked of
	// EvaluateHidden, concatenated in the order asked; nil otherwise.
	Hidden [][]float32
}

// Evaluate runs the model without dropout or autograd over rows, in batches
// of consecutive rows (they are length-sorted, so padding stays small).
func Evaluate(m *model.Bert, rows *Rows, batchSize int) (EvalResult, error) {
	return EvaluateHidden(m, rows, batchSize, nil)
}

// EvaluateHidden is Evaluate that also keeps the [CLS] vectors of the given
// hidden states (0: embeddings, k: layer k's output), for distillation.
func EvaluateHidden(m *model.Bert, rows *Rows, batchSize int, layers []int) (EvalResult, error) {
	for _, l := range layers {
		if l < 0 || l > m.Config.NumHiddenLayers {
			return EvalResult{}, fmt.Errorf("hidden state %d: the model has 0..%d", l, m.Config.NumHiddenLayers)
		}
	}
	res := EvalResult{Logits: make([][]float32, rows.Len())}
	if len(layers) > 0 {
		res.Hidden = make([][]float32, rows.Len())
	}
	var lossSum float64
	var correct, labelled int
	err := model.NoGrad(func() error {
		for lo := 0; lo < rows.Len(); lo += batchSize {
			idx := make([]int, 0, batchSize)
			for i := lo; i < min(lo+batchSize, rows.Len()); i++ {
				idx = append(idx, i)
			}
			b, _, _, err := rows.tensors(idx, int64(m.Config.PadTokenID), m.Device)
			if err != nil {
				return err
			}
			out, err := m.Forward(b, false, len(layers) > 0)
			freeBatch(b)
			if err != nil {
				return err
			}
			for _, l := range layers {
				cls, err := model.CLSVectors(out.Hidden[l])
				if err != nil {
					out.Free()
					return err
				}
				w := len(cls) / len(idx)
				for j, i := range idx {
					res.Hidden[i] = append(res.Hidden[i], cls[j*w:(j+1)*w]...)
				}
			}
			vals, err := model.Float32s(out.Logits)
			out.Free()
			if err != nil {
				return err
			}
			k := len(vals) / len(idx)
			for j, i := range idx {
				lg := vals[j*k : (j+1)*k]
				res.Logits[i] = lg
				if y := rows.Labels[i]; y >= 0 && int(y) < k {
					labelled++
					lossSum += crossEntropy(lg, int(y))
					if argmax(lg) == int(y) {
						correct++
					}
				}
			}
		}
		return nil
	})
	if labelled > 0 {
		res.Loss = lossSum / float64(labelled)
		res.Accuracy = float64(correct) / float64(labelled)
	}
	return res, err
}

func argmax(v []float32) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}

// crossEntropy is -log softmax(logits)[y], computed stably in float64.
func crossEntropy(logits []float32, y int) float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	return mx + math.Log(sum) - float64(logits[y])
}

// trainState is what a checkpoint restores besides weights and optimizer moments.
type trainState struct {
	Step         int64       `json:"step"`       // optimizer steps done
	Epoch        int         `json:"epoch"`      // epoch in progress
	Batch        int         `json:"batch"`      // next batch index in that epoch's plan
	MicroStep    int64       `json:"micro_step"` // micro-batches done (seeds dropout)
	BestAccuracy float64     `json:"best_accuracy"`
	BestLoss     float64     `json:"best_loss"`
	BestStep     int64       `json:"best_step"`
	BadEvals     int         `json:"bad_evals"` // evaluations since the last improvement
	Log          []LogEntry  `json:"log"`
	Config       TrainConfig `json:"config"`
	// RNG: libtorch's generator is reseeded before every micro-batch with
	// seed*1_000_003+micro_step, and batch order is a function of (seed,
	// epoch), so (config, micro_step, epoch, batch) is the whole random state.
	RNG string `json:"rng"`
}

const checkpointState = "state.json" // written last: a checkpoint without it is incomplete

// Train runs one trial to the end, resuming from its latest checkpoint when
// job.Resume is set. Torch work runs on this goroutine's locked OS thread.
func Train(ctx context.Context, job TrainJob) (TrialResult, error) {
	defer model.LockThread()()
	cfg := job.Config
	if cfg.BatchSize <= 0 || cfg.GradAccum <= 0 {
		return TrialResult{}, fmt.Errorf("batch_size and grad_accum must be positive")
	}
	dev, err := model.ParseDevice(job.Device)
	if err != nil {
		return TrialResult{}, err
	}
	model.SetThreads(job.Threads)
	start := time.Now()

	man, err := ReadManifest(ctx, job.Data)
	if err != nil {
		return TrialResult{}, err
	}
	train, err := LoadSplit(ctx, job.Data, man, SplitTrain)
	if err != nil {
		return TrialResult{}, err
	}
	valid, err := LoadSplit(ctx, job.Data, man, SplitValidation)
	if err != nil {
		return TrialResult{}, err
	}
	if train.Len() == 0 {
		return TrialResult{}, fmt.Errorf("%s has no training rows", job.Data)
	}
	distill := train.HasTeacher()

	m, err := buildModel(ctx, job, man.Labels, dev)
	if err != nil {
		return TrialResult{}, err
	}
	defer m.Free()
	hidden, err := newHiddenLoss(cfg, man, train, m)
	if err != nil {
		return TrialResult{}, err
	}
	defer hidden.free()
	// Everything the optimizer updates: the model, and the hidden-state
	// projections, which checkpoints keep but the exported model does not.
	params := slices.Concat(m.Params(), hidden.params())
	adam := model.DefaultAdamW()
	adam.WeightDecay = cfg.WeightDecay
	opt, err := model.NewAdamW(params, adam)
	if err != nil {
		return TrialResult{}, err
	}
	defer opt.Free()

	batchesPerEpoch := (train.Len() + cfg.BatchSize - 1) / cfg.BatchSize
	stepsPerEpoch := int64((batchesPerEpoch + cfg.GradAccum - 1) / cfg.GradAccum)
	total := cfg.MaxSteps
	if total <= 0 {
		total = int64(cfg.Epochs) * stepsPerEpoch
	}
	sched := model.LinearSchedule{Peak: cfg.LR, Warmup: int64(math.Round(cfg.WarmupRatio * float64(total))), Total: total}

	st := trainState{BestAccuracy: -1, BestLoss: math.MaxFloat64, Config: cfg, RNG: "seed*1000003+micro_step per micro-batch; batch plan from (seed, epoch)"}
	resumed := false
	if job.Resume {
		ok, err := loadCheckpoint(ctx, job.Output, params, opt, &st)
		if err != nil {
			return TrialResult{}, err
		}
		resumed = ok
		if ok {
			slog.Info("train: resumed", "trial", job.Trial, "step", st.Step, "epoch", st.Epoch, "batch", st.Batch)
		}
	}
	bestDir := storage.Join(job.Output, "best")
	tokDir := job.Init

	evaluate := func() (stop bool, err error) {
		ev, err := Evaluate(m, valid, 2*cfg.BatchSize)
		if err != nil {
			return false, fmt.Errorf("evaluate: %w", err)
		}
		st.Log = append(st.Log, LogEntry{Kind: "eval", Step: st.Step, Epoch: float64(st.Step) / float64(stepsPerEpoch), Loss: ev.Loss, Accuracy: ev.Accuracy, Time: now()})
		valAccuracy.Set(ctx, int64(ev.Accuracy*10000))
		improved := ev.Accuracy > st.BestAccuracy || (ev.Accuracy == st.BestAccuracy && ev.Loss < st.BestLoss)
		slog.Info("train: eval", "trial", job.Trial, "step", st.Step, "val_loss", round4(ev.Loss), "val_accuracy", round4(ev.Accuracy), "best", improved)
		if improved {
			st.BestAccuracy, st.BestLoss, st.BestStep, st.BadEvals = ev.Accuracy, ev.Loss, st.Step, 0
			if err := exportModel(ctx, m, bestDir, tokDir); err != nil {
				return false, err
			}
		} else {
			st.BadEvals++
		}
		return cfg.Patience > 0 && st.BadEvals >= cfg.Patience, nil
	}

	stopped := "epochs"
	if cfg.MaxSteps > 0 {
		stopped = "max_steps"
	}
	var examples int64
	firstStep := st.Step
	trainStart := time.Now()
	var lossSum float64
	var lossN int
	padID := int64(m.Config.PadTokenID)
loop:
	for ; st.Step < total; st.Epoch, st.Batch = st.Epoch+1, 0 {
		plan := PlanBatches(train.Length, cfg.BatchSize, cfg.ShuffleBuffer, cfg.Seed, st.Epoch)
		for st.Batch < len(plan) && st.Step < total {
			// One optimizer step: GradAccum micro-batches.
			var gradNorm float64
			for a := 0; a < cfg.GradAccum && st.Batch < len(plan); a++ {
				idx := plan[st.Batch]
				loss, err := microStep(m, train, idx, padID, dev, cfg, distill, hidden, cfg.Seed*1_000_003+st.MicroStep)
				if err != nil {
					return TrialResult{}, fmt.Errorf("step %d: %w", st.Step, err)
				}
				lossSum += loss
				lossN++
				examples += int64(len(idx))
				st.Batch++
				st.MicroStep++
			}
			if cfg.MaxGradNorm > 0 {
				if gradNorm, err = model.ClipGradNorm(params, cfg.MaxGradNorm); err != nil {
					return TrialResult{}, err
				}
			}
			lr := sched.LR(st.Step)
			if err := opt.Step(lr); err != nil {
				return TrialResult{}, err
			}
			if err := model.ZeroGrad(params); err != nil {
				return TrialResult{}, err
			}
			st.Step++
			trainSteps.Inc(ctx, 1)
			if cfg.LogEvery > 0 && st.Step%cfg.LogEvery == 0 || st.Step == total {
				el := time.Since(trainStart).Seconds()
				eps := float64(examples) / el
				// ETA from this process's pace (a resumed run counts from where it started).
				eta := time.Duration(float64(total-st.Step) / (float64(st.Step-firstStep) / el) * float64(time.Second))
				e := LogEntry{Kind: "train", Step: st.Step, Epoch: float64(st.Step) / float64(stepsPerEpoch), Loss: lossSum / float64(max(lossN, 1)), LR: lr, GradNorm: gradNorm, ExamplesSec: eps, Time: now()}
				st.Log = append(st.Log, e)
				trainLoss.Set(ctx, int64(e.Loss*1000))
				slog.Info("train", "trial", job.Trial, "step", st.Step, "of", total, "loss", round4(e.Loss), "lr", lr, "examples_per_s", round4(eps), "eta", eta.Round(time.Second))
				lossSum, lossN = 0, 0
			}
			if cfg.EvalEvery > 0 && st.Step%cfg.EvalEvery == 0 {
				stop, err := evaluate()
				if err != nil {
					return TrialResult{}, err
				}
				if stop {
					stopped = "early_stopping"
					break loop
				}
			}
			if cfg.CheckpointEvery > 0 && st.Step%cfg.CheckpointEvery == 0 && st.Step < total {
				if err := saveCheckpoint(ctx, job.Output, params, opt, st); err != nil {
					return TrialResult{}, err
				}
			}
			if err := ctx.Err(); err != nil {
				return TrialResult{}, err
			}
		}
		if st.Batch >= len(plan) { // epoch end
			if cfg.EvalEvery == 0 || st.Step%cfg.EvalEvery != 0 {
				stop, err := evaluate()
				if err != nil {
					return TrialResult{}, err
				}
				if stop {
					stopped = "early_stopping"
					break loop
				}
			}
			if st.Step < total {
				next := st
				next.Epoch, next.Batch = st.Epoch+1, 0
				if err := saveCheckpoint(ctx, job.Output, params, opt, next); err != nil {
					return TrialResult{}, err
				}
			}
		}
	}
	if st.BestStep != st.Step && (len(st.Log) == 0 || st.Log[len(st.Log)-1].Kind != "eval") {
		if _, err := evaluate(); err != nil {
			return TrialResult{}, err
		}
	}
	trainExamples.Inc(ctx, examples)
	if err := exportModel(ctx, m, storage.Join(job.Output, "final"), tokDir); err != nil {
		return TrialResult{}, err
	}
	if err := writeTrainLog(ctx, job, st); err != nil {
		return TrialResult{}, err
	}
	el := time.Since(trainStart).Seconds()
	return TrialResult{
		Trial: job.Trial, Config: cfg, Output: job.Output, BestDir: bestDir, FinalDir: storage.Join(job.Output, "final"), BestStep: st.BestStep,
		BestAccuracy: st.BestAccuracy, BestLoss: st.BestLoss, Steps: st.Step, Stopped: stopped,
		WallSeconds: time.Since(start).Seconds(), ExamplesPerSec: float64(examples) / el, Resumed: resumed,
	}, nil
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }

// microStep runs forward and backward on one micro-batch and returns its
// loss. Autograd is switched on for it explicitly: the mode is per OS thread,
// and the thread this trial runs on may last have served inference.
func microStep(m *model.Bert, rows *Rows, idx []int, padID int64, dev model.Device, cfg TrainConfig, distill bool, hidden *hiddenLoss, seed int64) (loss float64, err error) {
	err = model.WithGrad(true, func() (err error) {
		loss, err = forwardBackward(m, rows, idx, padID, dev, cfg, distill, hidden, seed)
		return err
	})
	return loss, err
}

func forwardBackward(m *model.Bert, rows *Rows, idx []int, padID int64, dev model.Device, cfg TrainConfig, distill bool, hidden *hiddenLoss, seed int64) (float64, error) {
	b, labels, teacher, err := rows.tensors(idx, padID, dev)
	if err != nil {
		return 0, err
	}
	defer freeBatch(b, labels, teacher)
	// Dropout draws happen in the forward pass only; backward reuses the masks.
	var out *model.Output
	err = model.WithSeed(seed, func() (err error) {
		out, err = m.Forward(b, true, hidden != nil)
		return err
	})
	if err != nil {
		return 0, err
	}
	defer out.Free()
	var loss *ts.Tensor
	if distill {
		loss, err = model.DistillLoss(out.Logits, teacher, labels, cfg.Temperature, cfg.Alpha, cfg.LogitMSE)
	} else {
		loss, err = model.CrossEntropy(out.Logits, labels)
	}
	if err != nil {
		return 0, err
	}
	if hidden != nil {
		hl, err := hidden.loss(out, rows, idx, dev)
		if err != nil {
			_ = loss.Drop()
			return 0, err
		}
		sum, err := model.AddScaled(loss, hl, hidden.weight)
		_, _ = loss.Drop(), hl.Drop()
		if err != nil {
			return 0, err
		}
		loss = sum
	}
	defer loss.Drop()
	v, err := model.Float32Scalar(loss)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
		return 0, fmt.Errorf("loss is %v: lower the learning rate", v)
	}
	if cfg.GradAccum > 1 {
		sc := ts.FloatScalar(float64(cfg.GradAccum))
		defer sc.Drop()
		scaled, err := loss.DivScalar(sc, false)
		if err != nil {
			return 0, err
		}
		defer scaled.Drop()
		return float64(v), scaled.Backward()
	}
	return float64(v), loss.Backward()
}

// buildModel loads the starting model: Init with the dataset's labels, cut
// down to StudentLayers when a student is asked for.
func buildModel(ctx context.Context, job TrainJob, labels []string, dev model.Device) (*model.Bert, error) {
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
	// A head trained for other labels cannot be reused.
	if strings.Join(cfg.Labels(), "\x00") != strings.Join(labels, "\x00") {
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

// exportModel writes a HF folder through storage: locally in place, or to a
// local temporary folder then uploaded for gs://.
func exportModel(ctx context.Context, m *model.Bert, dir, tokenizerDir string) error {
	tokLocal, cleanupTok, err := storage.LocalDir(ctx, tokenizerDir)
	if err != nil {
		return err
	}
	defer cleanupTok()
	if !storage.IsGCS(dir) {
		return m.Export(dir, tokLocal)
	}
	tmp, err := os.MkdirTemp("", "beamtune-export-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := m.Export(filepath.Join(tmp, "model"), tokLocal); err != nil {
		return err
	}
	return storage.UploadDir(ctx, filepath.Join(tmp, "model"), dir)
}

// saveCheckpoint writes every trained tensor (the model's and any
// projections, under their names), the optimizer's moments and the loop state.
func saveCheckpoint(ctx context.Context, out string, params []*model.Param, opt *model.AdamW, st trainState) error {
	dir := storage.Join(out, "checkpoints", fmt.Sprintf("step-%09d", st.Step))
	weights, err := model.ParamTensors(params)
	if err != nil {
		return err
	}
	if err := writeSafetensors(ctx, storage.Join(dir, "model.safetensors"), weights); err != nil {
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
	if err := writeSafetensors(ctx, storage.Join(dir, "optimizer.safetensors"), ot); err != nil {
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
	matches, err := storage.Glob(ctx, storage.Join(out, "checkpoints", "step-*", checkpointState))
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
	matches, err := storage.Glob(ctx, storage.Join(out, "checkpoints", "step-*", checkpointState))
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
	if saved.Config != st.Config {
		return false, fmt.Errorf("checkpoint %s was made with other hyperparameters (%+v); start a fresh output folder or resume with the same flags", dir, saved.Config)
	}
	weights, err := readSafetensors(ctx, storage.Join(dir, "model.safetensors"))
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
	mom, err := readSafetensors(ctx, storage.Join(dir, "optimizer.safetensors"))
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

// writeTrainLog writes the trial's log.jsonl and resolved configuration.
func writeTrainLog(ctx context.Context, job TrainJob, st trainState) error {
	var b strings.Builder
	for _, e := range st.Log {
		line, err := json.Marshal(e)
		if err != nil {
			return err
		}
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := storage.WriteFile(ctx, storage.Join(job.Output, "log.jsonl"), []byte(b.String())); err != nil {
		return err
	}
	cfg, err := json.MarshalIndent(job, "", "  ")
	if err != nil {
		return err
	}
	return storage.WriteFile(ctx, storage.Join(job.Output, "config.json"), cfg)
}
