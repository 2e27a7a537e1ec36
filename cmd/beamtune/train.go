package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/pipelines"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/trainer"
)

// recipeFlags declares the hyperparameter flags train and distill share,
// bound to the trainer.Config the command runs with (its values, from
// trainer.DefaultConfig(), are the defaults), and the raw --sweep values
// (parsed by pipelines.ParseSweep when the command runs). lossTitle heads
// the distillation-loss flags.
func recipeFlags(f *flagSet, c *trainer.Config, sweep *[]string, lossTitle string) {
	f.section("Recipe")
	f.float64Var(&c.LR, "lr", c.LR, "peak learning rate")
	f.int64Var(&c.Seed, "seed", c.Seed, "seed of initialisation, dropout and batch order")
	f.intVar(&c.Epochs, "epochs", c.Epochs, "passes over the training split (when --max_steps is 0)")
	f.int64Var(&c.MaxSteps, "max_steps", c.MaxSteps, "optimizer steps (0: --epochs decide)")
	f.intVar(&c.BatchSize, "batch_size", c.BatchSize, "examples per micro-batch")
	f.intVar(&c.GradAccum, "grad_accum", c.GradAccum, "micro-batches per optimizer step")
	f.float64Var(&c.WarmupRatio, "warmup_ratio", c.WarmupRatio, "share of steps with linear warmup; linear decay follows")
	f.float64Var(&c.WeightDecay, "weight_decay", c.WeightDecay, "AdamW decoupled weight decay (not on biases and LayerNorm)")
	f.float64Var(&c.MaxGradNorm, "max_grad_norm", c.MaxGradNorm, "global gradient-norm clipping (0: off)")
	f.intVar(&c.ShuffleBuffer, "shuffle_buffer", c.ShuffleBuffer, "batches mixed by the seeded shuffle buffer")
	f.int64Var(&c.EvalEvery, "eval_every", c.EvalEvery, "evaluate on validation every N steps (0: at epoch ends)")
	f.intVar(&c.EvalRows, "eval_rows", c.EvalRows, "rows each evaluation during training scores: a larger validation split is sampled deterministically (0: all of it)")
	f.boolVar(&c.EvalFull, "eval_full", c.EvalFull, "score the final model on the whole validation split at the end, streamed, when --eval_rows sampled it")
	f.stringVar(&c.Input, "train_input", c.Input, "how training rows are read: stream (a window at a time: memory bounded whatever the corpus; single-task), memory (all rows loaded), or auto (default: stream above 256 MiB of training shards)")
	f.intVar(&c.Patience, "patience", c.Patience, "stop after N evaluations without improvement (0: never)")
	f.stringVar(&c.MetricForBest, "metric_for_best", c.MetricForBest, "validation metric that picks the best checkpoint and early stopping (default: the task's main one): accuracy, macro_f1 or f1 (binary, class 1) for single-label; macro_f1 or micro_f1 for multi-label; pearson or spearman for regression")
	f.boolVar(&c.PosWeight, "pos_weight", c.PosWeight, "multi-label: weigh each label's positive term by negatives/positives of that label in the training split")
	f.stringVar(&c.TaskSampling, "task_sampling", c.TaskSampling, "multi-task: how each batch's task is picked: proportional (to its training rows; default), uniform, temperature:τ (∝ rows^τ) or round_robin")
	f.repeatVar(sweep, "sweep", "name=v1,v2: train one trial per value (repeat for a grid), e.g. --sweep lr=2e-5,5e-5 --sweep seed=1,2")

	f.section(lossTitle)
	f.float64Var(&c.Temperature, "temperature", c.Temperature, "distillation temperature T")
	f.float64Var(&c.Alpha, "alpha", c.Alpha, "weight of the soft-target loss (1-alpha on the labels)")
	f.float64Var(&c.LogitMSE, "logit_mse", c.LogitMSE, "weight of an extra MSE between student and teacher logits")
	f.float64Var(&c.HiddenMSE, "hidden_mse", c.HiddenMSE, "weight of an MSE between student and teacher [CLS] hidden states (distill; 0: off)")
	f.stringVar(&c.HiddenLayerMap, "hidden_layer_map", c.HiddenLayerMap, "student:teacher hidden-state pairs for --hidden_mse, e.g. 1:2,2:4,3:6 (0 = embeddings; empty: from --student_layers, or spread evenly)")
}

// peftFlags declares the fine-tuning method flags train and distill share.
func peftFlags(f *flagSet, c *trainer.Config) {
	f.section("Parameter-efficient fine-tuning")
	f.stringVar(&c.PEFT, "peft", c.PEFT, "lora (low-rank adapters, the base frozen; the run publishes a PEFT adapter folder), bitfit (biases only) or none (all weights); the classifier head always trains")
	f.intVar(&c.LoRAR, "lora_r", c.LoRAR, "LoRA rank (0: 8, PEFT's default)")
	f.float64Var(&c.LoRAAlpha, "lora_alpha", c.LoRAAlpha, "LoRA scale numerator: the update is lora_alpha/lora_r·B·A (0: 8, PEFT's default)")
	f.float64Var(&c.LoRADropout, "lora_dropout", c.LoRADropout, "dropout on the LoRA branch's input")
	f.stringVar(&c.LoRATargets, "lora_targets", c.LoRATargets, "linear layers LoRA adapts, by HF name or its last parts, comma-separated: query, key, value, attention.output.dense, intermediate.dense, output.dense, dense (empty: query,value)")
	f.stringVar(&c.FreezeLayers, "freeze_layers", c.FreezeLayers, "hold these fixed in full fine-tuning or BitFit: embeddings and/or encoder layers, e.g. embeddings,0-2")
}

// outputFlags declares the run-folder flags train and distill share.
func outputFlags(f *flagSet, c *trainer.Config, output *string, outputUsage string, resume *bool) {
	f.section("Output")
	f.stringVar(output, "output", "", outputUsage)
	f.boolVar(resume, "resume", true, "continue each trial from its latest checkpoint in --output")
	f.int64Var(&c.CheckpointEvery, "checkpoint_every", c.CheckpointEvery, "checkpoint every N steps (0: at epoch ends)")
	f.int64Var(&c.LogEvery, "log_every", c.LogEvery, "log progress every N steps")
}

// computeFlags declares where train and distill run libtorch.
func computeFlags(f *flagSet, device *string, threads *int) {
	f.section("Compute")
	f.stringVar(device, "device", "auto", "auto, cpu, cuda or cuda:N")
	f.intVar(threads, "threads", 0, "libtorch threads per trainer (0: libtorch's default)")
}

// taskUsage is --task's help, for train and distill.
const taskUsage = "NAME=DATA[,kind=K][,weight=W][,metric=M]: a task of a multi-task model (repeat, instead of --data): one encoder, a head per task, each trained on its prepared dataset; weight scales its loss, metric picks its validation metric (the best checkpoint has the best mean over tasks)"

// trainCmd: beamtune train.
type trainCmd struct {
	o     pipelines.TrainOptions
	sweep []string // --sweep as given; parsed into o.Sweep
	tasks []string // --task as given; parsed into o.Tasks
	prot  protection
}

func (c *trainCmd) register(f *flagSet) {
	o := &c.o
	o.Config = trainer.DefaultConfig()
	f.section("Data")
	f.stringVar(&o.Data, "data", "", "prepared dataset folder (from beamtune prepare)")
	f.repeatVar(&c.tasks, "task", taskUsage)
	f.section("Model")
	f.stringVar(&o.Init, "init", model.DefaultModelDir(), "pretrained model folder to fine-tune")
	recipeFlags(f, &o.Config, &c.sweep, "Distillation loss (used by distill)")
	peftFlags(f, &o.Config)
	precisionFlags(f, &o.Config)
	outputFlags(f, &o.Config, &o.Output, "run folder; the model is published as OUTPUT/teacher", &o.Resume)
	computeFlags(f, &o.Device, &o.Threads)
	c.prot.register(f, &o.Security, true)
}

func (c *trainCmd) run(ctx context.Context) error {
	sweep, err := pipelines.ParseSweep(c.sweep)
	if err != nil {
		return err
	}
	if err := c.prot.resolve(ctx); err != nil {
		return err
	}
	o := c.o
	o.Name, o.Sweep = "teacher", sweep
	if o.Tasks, err = pipelines.ParseTaskOptions(c.tasks); err != nil {
		return err
	}
	res, err := pipelines.RunTrain(ctx, o)
	if err != nil {
		return err
	}
	return printTrials(res)
}

// distillCmd: beamtune distill.
type distillCmd struct {
	o      pipelines.DistillOptions
	sweep  []string // --sweep as given; parsed into o.Sweep
	tasks  []string // --task as given; parsed into o.Tasks
	layers []string // --student_layers as given; parsed into o.StudentLayers
	prot   protection
}

func (c *distillCmd) register(f *flagSet) {
	o := &c.o
	o.Config = trainer.DefaultConfig()
	f.section("Data")
	f.stringVar(&o.Data, "data", "", "prepared dataset folder")
	f.repeatVar(&c.tasks, "task", "NAME=DATA,teacher=DIR[,kind=K][,weight=W][,metric=M]: a task of a multi-task student and its single-task teacher (repeat, instead of --data and --teacher); --student_layers then cuts the first task's teacher")
	f.section("Model")
	f.stringVar(&o.Teacher, "teacher", "", "fine-tuned teacher folder (e.g. RUN/teacher)")
	f.listVar(&c.layers, "student_layers", "teacher layers the student keeps, e.g. 0,2,4")
	f.stringVar(&o.StudentInit, "student_init", "", "start the student from this (smaller) checkpoint instead")
	recipeFlags(f, &o.Config, &c.sweep, "Distillation loss")
	peftFlags(f, &o.Config)
	precisionFlags(f, &o.Config)
	outputFlags(f, &o.Config, &o.Output, "run folder; the student is published as OUTPUT/student", &o.Resume)
	computeFlags(f, &o.Device, &o.Threads)
	f.intVar(&o.InferBatch, "infer_batch", 64, "batch size of the teacher-logit pass")
	c.prot.register(f, &o.Security, true)
}

func (c *distillCmd) run(ctx context.Context) error {
	if err := c.prot.resolve(ctx); err != nil {
		return err
	}
	sweep, err := pipelines.ParseSweep(c.sweep)
	if err != nil {
		return err
	}
	o := c.o
	o.Sweep = sweep
	if o.Tasks, err = pipelines.ParseTaskOptions(c.tasks); err != nil {
		return err
	}
	for _, l := range c.layers {
		n, err := strconv.Atoi(l)
		if err != nil {
			return fmt.Errorf("--student_layers: %q is not a layer number", l)
		}
		o.StudentLayers = append(o.StudentLayers, n)
	}
	res, err := pipelines.RunDistill(ctx, o)
	if err != nil {
		return err
	}
	return printTrials(res.Student)
}

// printTrials prints one line per trial, the chosen one marked with a star,
// and where the chosen model was published.
func printTrials(res *pipelines.TrainResult) error {
	for _, t := range res.Trials {
		mark := " "
		if t.Trial == res.Best.Trial {
			mark = "*"
		}
		metric := t.Metric
		if metric == "" { // a result from before task kinds
			metric, t.BestMetric = report.MetricAccuracy, t.BestAccuracy
		}
		fmt.Printf("%s %-30s val_%s %.4f  val_loss %.4f  best_step %d/%d  %.1f ex/s  %.0fs  (%s)\n",
			mark, t.Trial, metric, t.BestMetric, t.BestLoss, t.BestStep, t.Steps, t.ExamplesPerSec, t.WallSeconds, t.Stopped)
	}
	b, err := json.Marshal(res.Best.Config)
	if err != nil {
		return fmt.Errorf("best trial's config: %w", err)
	}
	fmt.Printf("published %s (trial %s, config %s)\n", res.ModelDir, res.Best.Trial, b)
	return nil
}
