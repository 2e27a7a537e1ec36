package trainer

import "github.com/beamtune/beamtune/signing"

// Config is one run's hyperparameters: one trial of a sweep.
type Config struct {
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

	// MetricForBest is the validation metric that picks the best checkpoint
	// and drives early stopping ("": the task's main metric; see
	// report.MetricsOf for each task's choices).
	MetricForBest string `json:"metric_for_best,omitempty" yaml:"metric_for_best"`
	// PosWeight, for multi-label training, weighs each label's positive
	// term by negatives/positives of that label in the training split, as
	// BCEWithLogitsLoss's pos_weight: rare labels are then not drowned out.
	PosWeight bool `json:"pos_weight,omitempty" yaml:"pos_weight"`

	// Parameter-efficient fine-tuning. PEFT is "lora", "bitfit" or ""
	// (full fine-tuning); the classifier head always trains. LoRA adapts the
	// linear layers LoRATargets names (comma-separated HF names, as PEFT's
	// target_modules; default query,value) with rank LoRAR (default 8),
	// scale LoRAAlpha/LoRAR (default alpha 8) and LoRADropout on the
	// adapter's input. FreezeLayers holds "embeddings" and encoder layers
	// ("0-2") fixed in full fine-tuning and BitFit.
	PEFT         string  `json:"peft,omitempty" yaml:"peft"`
	LoRAR        int     `json:"lora_r,omitempty" yaml:"lora_r"`
	LoRAAlpha    float64 `json:"lora_alpha,omitempty" yaml:"lora_alpha"`
	LoRADropout  float64 `json:"lora_dropout,omitempty" yaml:"lora_dropout"`
	LoRATargets  string  `json:"lora_targets,omitempty" yaml:"lora_targets"`
	FreezeLayers string  `json:"freeze_layers,omitempty" yaml:"freeze_layers"`

	// Precision is the arithmetic of the matrix products: fp32 (""), bf16
	// (bfloat16 autocast: float32 master weights, optimizer state, loss
	// and logits), fp16 (CUDA only; training scales its loss
	// dynamically, see LossScale) or auto (bf16 where the CPU or GPU has fast
	// bfloat16, else fp32). See model.Precision.
	Precision string `json:"precision,omitempty" yaml:"precision"`
	// SaveDType is the type of the published model folder's weights: fp32
	// ("") or bf16 (half the size; loading converts back to float32).
	// Checkpoints stay float32 whatever it says.
	SaveDType string `json:"save_dtype,omitempty" yaml:"save_dtype"`
	// LossScale is the initial dynamic loss scale (see lossScaler): 0 is
	// DefaultLossScale for fp16 and no scaling otherwise.
	LossScale float64 `json:"loss_scale,omitempty" yaml:"loss_scale"`

	// Input is how the training rows are read: InputAuto (""), InputMemory
	// or InputStream. A streamed run visits rows in another order than an
	// in-memory one (each deterministic for its seed).
	Input string `json:"train_input,omitempty" yaml:"train_input"`
	// EvalRows bounds the validation rows scored at each evaluation during
	// training: a larger split is sampled (the rows whose ids hash lowest,
	// the same sample at every evaluation). 0: the whole split.
	EvalRows int `json:"eval_rows" yaml:"eval_rows"` // always written: a checkpoint without it is from before the field
	// EvalFull scores the final model on the whole validation split at the
	// end, streamed (TrialResult.FullValidation*), when EvalRows sampled it.
	EvalFull bool `json:"eval_full,omitempty" yaml:"eval_full"`

	// TaskSampling picks each batch's task in multi-task training:
	// proportional (default), uniform, temperature:τ or round_robin (see
	// dataset.ParseTaskSampling).
	TaskSampling string `json:"task_sampling,omitempty" yaml:"task_sampling"`
}

// DefaultConfig is a BERT fine-tuning recipe that works for the
// MiniLM-sized models beamtune targets.
func DefaultConfig() Config {
	return Config{LR: 5e-5, Seed: 1, BatchSize: 32, GradAccum: 1, Epochs: 3, WarmupRatio: 0.1,
		WeightDecay: 0.01, MaxGradNorm: 1.0, Patience: 0, ShuffleBuffer: 64, LogEvery: 50,
		Temperature: 2.0, Alpha: 0.5, EvalRows: DefaultEvalRows}
}

// Job is one trial: what to train, from what, on which data, and where to write.
type Job struct {
	Trial  string `json:"trial"` // e.g. "lr=2e-05,seed=1"
	Config Config `json:"config"`
	Data   string `json:"data"` // prepared dataset folder (train and validation splits)
	// Tasks, for multi-task training, replace Data: one prepared dataset
	// per task, and one head per task on a shared encoder.
	Tasks []TaskSpec `json:"tasks,omitempty"`
	Init  string     `json:"init"` // model folder to start from
	// StudentLayers, when set, makes a student of Init keeping these layers.
	StudentLayers []int  `json:"student_layers,omitempty"`
	Output        string `json:"output"` // this trial's folder
	Device        string `json:"device"`
	Threads       int    `json:"threads"`
	Resume        bool   `json:"resume"`
	// Trust, when set, is the policy Init must be signed under.
	Trust signing.Trust `json:"trust,omitempty"`
}

// TrialResult is what a trial reports once it has finished.
type TrialResult struct {
	Trial          string  `json:"trial"`
	Config         Config  `json:"config"`
	Output         string  `json:"output"`
	BestDir        string  `json:"best_dir"`  // HF folder of the best evaluation
	FinalDir       string  `json:"final_dir"` // HF folder of the last step
	BestStep       int64   `json:"best_step"`
	Metric         string  `json:"metric"`      // the task's main metric (MetricAccuracy, ...)
	BestMetric     float64 `json:"best_metric"` // its value at BestStep
	BestAccuracy   float64 `json:"best_accuracy"`
	BestLoss       float64 `json:"best_loss"`
	Steps          int64   `json:"steps"`
	Stopped        string  `json:"stopped"` // "max_steps", "epochs" or "early_stopping"
	WallSeconds    float64 `json:"wall_seconds"`
	ExamplesPerSec float64 `json:"train_examples_per_s"`
	Resumed        bool    `json:"resumed"`
	// TrainableParams of TotalParams scalars took gradients (all of them
	// in full fine-tuning; the adapter and head with LoRA).
	TrainableParams int64 `json:"trainable_params,omitempty"`
	TotalParams     int64 `json:"total_params,omitempty"`
	// Tasks, for a multi-task trial, are each task's scores at BestStep;
	// BestMetric is then their mean (Metric report.MetricMean). Never nil:
	// a TrialResult is a Beam schema row, where a nil slice is encoded as a
	// null that Java runners (Spark, Flink) refuse for a NOT NULL array.
	Tasks []TaskBest `json:"tasks,omitempty"`
	// FullValidationRows and FullValidationMetric are the final model's
	// score on the whole validation split (the run's metric), when
	// Config.EvalFull asked for it; 0 rows when it did not.
	FullValidationRows   int64   `json:"full_validation_rows,omitempty"`
	FullValidationMetric float64 `json:"full_validation_metric,omitempty"`
}
