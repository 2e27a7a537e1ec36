package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strconv"

	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/pipelines"
	"github.com/beamtune/beamtune/trainer"
)

// trainFlags are the hyperparameter flags train and distill share.
type trainFlags struct {
	cfg     trainer.Config
	sweep   []string
	device  string
	threads int
	resume  bool
}

func (f *trainFlags) register(fs *flag.FlagSet) {
	f.cfg = trainer.DefaultConfig()
	c := &f.cfg
	fs.Float64Var(&c.LR, "lr", c.LR, "peak learning rate")
	fs.Int64Var(&c.Seed, "seed", c.Seed, "seed of initialisation, dropout and batch order")
	fs.IntVar(&c.BatchSize, "batch_size", c.BatchSize, "examples per micro-batch")
	fs.IntVar(&c.GradAccum, "grad_accum", c.GradAccum, "micro-batches per optimizer step")
	fs.IntVar(&c.Epochs, "epochs", c.Epochs, "passes over the training split (when --max_steps is 0)")
	fs.Int64Var(&c.MaxSteps, "max_steps", c.MaxSteps, "optimizer steps (0: --epochs decide)")
	fs.Float64Var(&c.WarmupRatio, "warmup_ratio", c.WarmupRatio, "share of steps with linear warmup; linear decay follows")
	fs.Float64Var(&c.WeightDecay, "weight_decay", c.WeightDecay, "AdamW decoupled weight decay (not on biases and LayerNorm)")
	fs.Float64Var(&c.MaxGradNorm, "max_grad_norm", c.MaxGradNorm, "global gradient-norm clipping (0: off)")
	fs.Int64Var(&c.EvalEvery, "eval_every", c.EvalEvery, "evaluate on validation every N steps (0: at epoch ends)")
	fs.IntVar(&c.Patience, "patience", c.Patience, "stop after N evaluations without improvement (0: never)")
	fs.Int64Var(&c.CheckpointEvery, "checkpoint_every", c.CheckpointEvery, "checkpoint every N steps (0: at epoch ends)")
	fs.IntVar(&c.ShuffleBuffer, "shuffle_buffer", c.ShuffleBuffer, "batches mixed by the seeded shuffle buffer")
	fs.Int64Var(&c.LogEvery, "log_every", c.LogEvery, "log progress every N steps")
	fs.Float64Var(&c.Temperature, "temperature", c.Temperature, "distillation temperature T")
	fs.Float64Var(&c.Alpha, "alpha", c.Alpha, "weight of the soft-target loss (1-alpha on the labels)")
	fs.Float64Var(&c.LogitMSE, "logit_mse", c.LogitMSE, "weight of an extra MSE between student and teacher logits")
	fs.Float64Var(&c.HiddenMSE, "hidden_mse", c.HiddenMSE, "weight of an MSE between student and teacher [CLS] hidden states (distill; 0: off)")
	fs.StringVar(&c.HiddenLayerMap, "hidden_layer_map", c.HiddenLayerMap, "student:teacher hidden-state pairs for --hidden_mse, e.g. 1:2,2:4,3:6 (0 = embeddings; empty: from --student_layers, or spread evenly)")
	fs.Var((*repeatFlag)(&f.sweep), "sweep", "name=v1,v2: train one trial per value (repeat for a grid), e.g. --sweep lr=2e-5,5e-5 --sweep seed=1,2")
	fs.StringVar(&f.device, "device", "auto", "auto, cpu, cuda or cuda:N")
	fs.IntVar(&f.threads, "threads", 0, "libtorch threads per trainer (0: libtorch's default)")
	fs.BoolVar(&f.resume, "resume", true, "continue each trial from its latest checkpoint in --output")
}

type trainCmd struct {
	f                  trainFlags
	data, init, output string
}

func (c *trainCmd) register(fs *flag.FlagSet) {
	c.f.register(fs)
	fs.StringVar(&c.data, "data", "", "prepared dataset folder (from beamtune prepare)")
	fs.StringVar(&c.init, "init", model.DefaultModelDir(), "pretrained model folder to fine-tune")
	fs.StringVar(&c.output, "output", "", "run folder; the model is published as OUTPUT/teacher")
}

func (c *trainCmd) run(ctx context.Context) error {
	sweep, err := pipelines.ParseSweep(c.f.sweep)
	if err != nil {
		return err
	}
	res, err := pipelines.RunTrain(ctx, pipelines.TrainOptions{
		Data: c.data, Init: c.init, Output: c.output, Name: "teacher", Config: c.f.cfg, Sweep: sweep,
		Device: c.f.device, Threads: c.f.threads, Resume: c.f.resume,
	})
	if err != nil {
		return err
	}
	printTrials(res)
	return nil
}

type distillCmd struct {
	f                                  trainFlags
	data, teacher, studentInit, output string
	layers                             []string
	inferBatch                         int
}

func (c *distillCmd) register(fs *flag.FlagSet) {
	c.f.register(fs)
	fs.StringVar(&c.data, "data", "", "prepared dataset folder")
	fs.StringVar(&c.teacher, "teacher", "", "fine-tuned teacher folder (e.g. RUN/teacher)")
	listVar(fs, &c.layers, "student_layers", "teacher layers the student keeps, e.g. 0,2,4")
	fs.StringVar(&c.studentInit, "student_init", "", "start the student from this (smaller) checkpoint instead")
	fs.StringVar(&c.output, "output", "", "run folder; the student is published as OUTPUT/student")
	fs.IntVar(&c.inferBatch, "infer_batch", 64, "batch size of the teacher-logit pass")
}

func (c *distillCmd) run(ctx context.Context) error {
	sweep, err := pipelines.ParseSweep(c.f.sweep)
	if err != nil {
		return err
	}
	var layers []int
	for _, l := range c.layers {
		n, err := strconv.Atoi(l)
		if err != nil {
			return fmt.Errorf("--student_layers: %q is not a layer number", l)
		}
		layers = append(layers, n)
	}
	res, err := pipelines.RunDistill(ctx, pipelines.DistillOptions{
		Data: c.data, Teacher: c.teacher, StudentLayers: layers, StudentInit: c.studentInit, Output: c.output,
		Config: c.f.cfg, Sweep: sweep, InferBatch: c.inferBatch, Device: c.f.device, Threads: c.f.threads, Resume: c.f.resume,
	})
	if err != nil {
		return err
	}
	printTrials(res.Student)
	return nil
}

func printTrials(res *pipelines.TrainResult) {
	for _, t := range res.Trials {
		mark := " "
		if t.Trial == res.Best.Trial {
			mark = "*"
		}
		fmt.Printf("%s %-30s val_accuracy %.4f  val_loss %.4f  best_step %d/%d  %.1f ex/s  %.0fs  (%s)\n",
			mark, t.Trial, t.BestAccuracy, t.BestLoss, t.BestStep, t.Steps, t.ExamplesPerSec, t.WallSeconds, t.Stopped)
	}
	b, _ := json.Marshal(res.Best.Config)
	fmt.Printf("published %s (trial %s, config %s)\n", res.ModelDir, res.Best.Trial, b)
}
