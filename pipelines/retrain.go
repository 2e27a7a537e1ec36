package pipelines

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/signing"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/trainer"
	"github.com/beamtune/beamtune/transforms"
)

// Retrain is the scheduled job: prepare -> train -> distill -> evaluate ->
// gate -> promote, for one model of the registry (registry.go).
//
// Run ids are deterministic: "r-" and 12 hex digits of a SHA-256 over the
// configuration (without operational fields: registry, lease, device,
// threads) and the fingerprints of the inputs (path, size, modification time
// or GCS generation of every input file, and the tokenizer) and of the
// pretrained model. A rerun with unchanged inputs therefore lands in the same
// run folder, finds every stage's success marker and has nothing to do; a
// run that crashed finds the markers of the stages that finished and goes on
// with the next one (train and distill also resume from their checkpoints).
// New data gives a new run id, so nightly runs never overwrite each other.
//
// Each stage writes <run>/stages/<stage>.json last, holding the stage's
// fingerprint: its configuration and the fingerprints of what it read. A
// marker whose fingerprint no longer matches (the champion changed since the
// evaluation, say) makes the stage run again.

// RetrainConfig is retrain.yaml (docs/retrain.md). Unknown keys are errors.
type RetrainConfig struct {
	Name     string `yaml:"name" json:"name"`         // model name in the registry
	Registry string `yaml:"registry" json:"registry"` // registry root, local or gs://
	Model    string `yaml:"model" json:"model"`       // pretrained folder: tokenizer and teacher initialisation

	Prepare RetrainPrepare `yaml:"prepare" json:"prepare"`
	// Tasks, for a multi-task model, are its tasks, each with its own data
	// (retrain_tasks.go); the top-level prepare keys are then their defaults.
	Tasks    []RetrainTask     `yaml:"tasks" json:"tasks,omitempty"`
	Train    RetrainTrain      `yaml:"train" json:"train"`
	Distill  RetrainDistill    `yaml:"distill" json:"distill"`
	Compress RetrainCompress   `yaml:"compress" json:"compress"`
	Evaluate RetrainEvaluate   `yaml:"evaluate" json:"evaluate"`
	Gate     report.GateConfig `yaml:"gate" json:"gate"`

	// Operational: not part of the run id.
	LeaseTTL string `yaml:"lease_ttl" json:"-"` // e.g. "6h"; a run's lease is renewed every third of it
	Device   string `yaml:"device" json:"-"`
	Threads  int    `yaml:"threads" json:"-"`
	// SigningKey signs every folder the run publishes (as --signing_key);
	// Trust lists the public keys every model it loads must be signed by
	// (as --trusted_keys), and a challenger is promoted only once verified.
	SigningKey string   `yaml:"signing_key" json:"-"`
	Trust      []string `yaml:"trust" json:"-"`
}

// RetrainPrepare mirrors beamtune prepare's flags.
type RetrainPrepare struct {
	Inputs              []string             `yaml:"inputs" json:"inputs,omitempty"`
	Train               []string             `yaml:"train" json:"train,omitempty"`
	Validation          []string             `yaml:"validation" json:"validation,omitempty"`
	Test                []string             `yaml:"test" json:"test,omitempty"`
	ValidationFromTrain float64              `yaml:"validation_from_train" json:"validation_from_train,omitempty"`
	Format              string               `yaml:"format" json:"format"`
	Header              bool                 `yaml:"header" json:"header"`
	TextFields          []string             `yaml:"text_fields" json:"text_fields"`
	PairField           string               `yaml:"pair_field" json:"pair_field,omitempty"`
	LabelField          string               `yaml:"label_field" json:"label_field"`
	IDField             string               `yaml:"id_field" json:"id_field,omitempty"`
	Labels              []string             `yaml:"labels" json:"labels,omitempty"`
	Task                string               `yaml:"task" json:"task,omitempty"` // single_label_classification (default), multi_label_classification, regression
	LabelSeparator      string               `yaml:"label_separator" json:"label_separator,omitempty"`
	LabelRange          string               `yaml:"label_range" json:"label_range,omitempty"`
	LabelNames          string               `yaml:"label_names" json:"label_names,omitempty"`
	LabelNamesFrom      int                  `yaml:"label_names_from" json:"label_names_from,omitempty"`
	Fractions           transforms.Fractions `yaml:"fractions" json:"fractions"`
	Salt                string               `yaml:"salt" json:"salt"`
	MaxLength           int                  `yaml:"max_length" json:"max_length"`
	MaxRecordBytes      int                  `yaml:"max_record_bytes" json:"max_record_bytes"`
	MaxBadFraction      float64              `yaml:"max_bad_fraction" json:"max_bad_fraction"`
	ShardBytes          int64                `yaml:"shard_bytes" json:"shard_bytes"`
	KeepText            bool                 `yaml:"keep_text" json:"keep_text"`
}

// RetrainTrain is the teacher's recipe.
type RetrainTrain struct {
	trainer.Config `yaml:",inline" json:"config"`
	Sweep          map[string][]string `yaml:"sweep" json:"sweep,omitempty"`
}

// RetrainDistill is the student's recipe; distillation is on when
// student_layers or student_init is set.
type RetrainDistill struct {
	trainer.Config `yaml:",inline" json:"config"`
	StudentLayers  []int               `yaml:"student_layers" json:"student_layers,omitempty"`
	StudentInit    string              `yaml:"student_init" json:"student_init,omitempty"`
	Sweep          map[string][]string `yaml:"sweep" json:"sweep,omitempty"`
	InferBatch     int                 `yaml:"infer_batch" json:"infer_batch"`
}

func (d RetrainDistill) enabled() bool { return len(d.StudentLayers) > 0 || d.StudentInit != "" }

// RetrainCompress compresses the student (the teacher without distillation)
// as beamtune compress does; it is on when head_keep or ffn_keep is below 1
// or prune_vocab is set. The result is scored as "compressed" (with
// Quantize, e.g. int8) and is the default challenger.
type RetrainCompress struct {
	trainer.Config    `yaml:",inline" json:"config"` // the recovery distillation's recipe (epochs 0: none)
	HeadKeep          float64                        `yaml:"head_keep" json:"head_keep"`
	FFNKeep           float64                        `yaml:"ffn_keep" json:"ffn_keep"`
	PruneSteps        int                            `yaml:"prune_steps" json:"prune_steps"`
	ImportanceBatches int                            `yaml:"importance_batches" json:"importance_batches"`
	PruneVocab        bool                           `yaml:"prune_vocab" json:"prune_vocab"`
	KeepTokens        string                         `yaml:"keep_tokens" json:"keep_tokens,omitempty"`
	VocabMinCount     int                            `yaml:"vocab_min_count" json:"vocab_min_count,omitempty"`
	InferBatch        int                            `yaml:"infer_batch" json:"infer_batch"`
	// Quantize is how evaluate scores the compressed model: none or int8.
	// The registry keeps the float32 folder; serve it with the same --quantize.
	Quantize string `yaml:"quantize" json:"quantize,omitempty"`
}

func (c RetrainCompress) enabled() bool { return c.HeadKeep < 1 || c.FFNKeep < 1 || c.PruneVocab }

// RetrainEvaluate chooses the split and the challenger.
type RetrainEvaluate struct {
	Split      string `yaml:"split" json:"split,omitempty"`
	Challenger string `yaml:"challenger" json:"challenger"` // "student" (default with distillation) or "teacher"
	InferBatch int    `yaml:"infer_batch" json:"infer_batch"`
	SpeedRuns  int    `yaml:"speed_runs" json:"speed_runs"`
	Seed       int64  `yaml:"seed" json:"seed"`
	// Threshold decides a multi-label model's labels (as evaluate --threshold).
	Threshold string `yaml:"threshold" json:"threshold,omitempty"`
}

// DefaultRetrainConfig is what a retrain.yaml starts from.
func DefaultRetrainConfig() RetrainConfig {
	po := DefaultPrepareOptions()
	return RetrainConfig{
		Model: model.DefaultModelDir(),
		Prepare: RetrainPrepare{Format: po.Format, Header: po.Header, Fractions: po.Fractions, Salt: po.Salt,
			MaxLength: po.MaxLength, MaxRecordBytes: po.MaxRecordBytes, MaxBadFraction: po.MaxBadFraction, ShardBytes: po.ShardBytes},
		Train:    RetrainTrain{Config: trainer.DefaultConfig()},
		Distill:  RetrainDistill{Config: trainer.DefaultConfig(), InferBatch: 64},
		Compress: defaultRetrainCompress(),
		Evaluate: RetrainEvaluate{InferBatch: 64, Seed: 1},
		Gate:     report.DefaultGate(),
		LeaseTTL: "6h",
		Device:   "auto",
	}
}

func defaultRetrainCompress() RetrainCompress {
	rc := RetrainCompress{Config: trainer.DefaultConfig(), HeadKeep: 1, FFNKeep: 1, PruneSteps: 2, ImportanceBatches: 16, InferBatch: 64}
	rc.Epochs = 1
	return rc
}

// ErrConfig marks a bad retrain.yaml (exit code 2).
var ErrConfig = errors.New("bad retrain config")

// ParseRetrainConfig reads retrain.yaml over the defaults. Errors name the
// file, and the line of a bad or unknown key.
func ParseRetrainConfig(name string, data []byte) (RetrainConfig, error) {
	c := DefaultRetrainConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file, caught by validate
		return c, fmt.Errorf("%w: %s: %v", ErrConfig, name, err)
	}
	if err := c.resolveTaskPrepare(); err != nil {
		return c, fmt.Errorf("%w: %s: %v", ErrConfig, name, err)
	}
	if err := c.validate(); err != nil {
		return c, fmt.Errorf("%w: %s: %v", ErrConfig, name, err)
	}
	return c, nil
}

// LoadRetrainConfig reads a retrain.yaml from local storage or gs://.
func LoadRetrainConfig(ctx context.Context, path string) (RetrainConfig, error) {
	data, err := storage.ReadFileLimit(ctx, path, 1<<20)
	if err != nil {
		return RetrainConfig{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return ParseRetrainConfig(path, data)
}

func (c RetrainConfig) validate() error {
	if c.Name == "" || strings.ContainsAny(c.Name, "/\\ ") || c.Name == "." || c.Name == ".." {
		return fmt.Errorf("name %q: want a non-empty name without slashes or spaces", c.Name)
	}
	if c.Registry == "" {
		return errors.New("registry: missing (a folder or gs:// prefix)")
	}
	if c.Model == "" {
		return errors.New("model: missing")
	}
	if len(c.Tasks) > 0 {
		if err := c.validateTasks(); err != nil {
			return err
		}
	} else if err := validatePrepare(c.Prepare); err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	if c.Distill.StudentInit != "" && len(c.Distill.StudentLayers) > 0 {
		return errors.New("distill: give student_layers or student_init, not both")
	}
	switch c.Evaluate.Challenger {
	case "":
	case TeacherModel:
	case StudentModel:
		if !c.Distill.enabled() {
			return errors.New("evaluate.challenger is student but distill has no student_layers or student_init")
		}
	case CompressedModel:
		if !c.Compress.enabled() {
			return errors.New("evaluate.challenger is compressed but compress keeps every head, FFN neuron and token")
		}
	default:
		return fmt.Errorf("evaluate.challenger %q: want student, teacher or compressed", c.Evaluate.Challenger)
	}
	if cc := c.Compress; cc.HeadKeep <= 0 || cc.HeadKeep > 1 || cc.FFNKeep <= 0 || cc.FFNKeep > 1 {
		return fmt.Errorf("compress: head_keep %g and ffn_keep %g must be in (0, 1]", cc.HeadKeep, cc.FFNKeep)
	}
	if err := model.CheckQuantize(c.Compress.Quantize); err != nil {
		return fmt.Errorf("compress: %w", err)
	}
	if _, err := c.leaseTTL(); err != nil {
		return err
	}
	// Fine-tuning settings, as far as they can be checked without the model
	// (layer numbers are checked against it when the stage starts).
	for stage, tc := range map[string]trainer.Config{"train": c.Train.Config, "distill": c.Distill.Config} {
		if _, err := tc.Tuning(math.MaxInt32); err != nil {
			return fmt.Errorf("%s: %w", stage, err)
		}
	}
	if c.Compress.PEFT != "" || c.Compress.FreezeLayers != "" {
		return errors.New("compress: the recovery distillation trains every weight of the pruned model: no peft or freeze_layers")
	}
	for _, sw := range []map[string][]string{c.Train.Sweep, c.Distill.Sweep} {
		for k := range sw {
			if _, ok := sweepable[k]; !ok {
				return fmt.Errorf("sweep: %s cannot be swept", k)
			}
		}
	}
	return nil
}

// validatePrepare checks one prepare block: a task kind, a label range,
// inputs, and the text and label fields.
func validatePrepare(p RetrainPrepare) error {
	if _, err := dataset.ParseTask(p.Task); err != nil {
		return err
	}
	if _, err := dataset.ParseLabelRange(p.LabelRange); err != nil {
		return err
	}
	if len(p.Inputs)+len(p.Train)+len(p.Validation)+len(p.Test) == 0 {
		return errors.New("give inputs, or train/validation/test files")
	}
	if len(p.TextFields) == 0 || p.LabelField == "" {
		return errors.New("text_fields and label_field are required")
	}
	return nil
}

func (c RetrainConfig) leaseTTL() (time.Duration, error) {
	d, err := time.ParseDuration(c.LeaseTTL)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("lease_ttl %q: want a positive duration such as 6h", c.LeaseTTL)
	}
	return d, nil
}

func (c RetrainConfig) challenger() string {
	if c.Evaluate.Challenger != "" {
		return c.Evaluate.Challenger
	}
	if c.Compress.enabled() {
		return CompressedModel
	}
	if c.Distill.enabled() {
		return StudentModel
	}
	return TeacherModel
}

func (c RetrainConfig) prepareOptions(output string) PrepareOptions {
	p := c.Prepare
	o := DefaultPrepareOptions()
	o.Inputs, o.Train, o.Validation, o.Test = p.Inputs, p.Train, p.Validation, p.Test
	o.ValidationFromTrain = p.ValidationFromTrain
	o.Format, o.Header = p.Format, p.Header
	o.Fields = dataset.Fields{Text: p.TextFields, Pair: p.PairField, Label: p.LabelField, ID: p.IDField}
	o.Labels, o.Fractions, o.Salt = p.Labels, p.Fractions, p.Salt
	o.Task, o.LabelSeparator, o.LabelRange = p.Task, p.LabelSeparator, p.LabelRange
	o.LabelNames, o.LabelNamesFrom = p.LabelNames, p.LabelNamesFrom
	o.MaxLength, o.MaxRecordBytes, o.MaxBadFraction, o.ShardBytes, o.KeepText = p.MaxLength, p.MaxRecordBytes, p.MaxBadFraction, p.ShardBytes, p.KeepText
	o.ModelDir = c.Model
	o.Output = output
	return o
}

// RetrainOptions runs one retrain.
type RetrainOptions struct {
	Config RetrainConfig
	Runner string           // "" = --runner flag (prism by default)
	Now    func() time.Time // the lease clock (nil: time.Now)
	// NoLease runs without taking the model's lease (a manual run by an
	// operator who knows no other run is active). Promotion stays safe
	// either way: it is a compare-and-swap on CHAMPION.
	NoLease bool

	// Test hooks: afterStage runs after each stage's marker is written (an
	// error stops the run there, as a crash would); beforePromote runs just
	// before the compare-and-swap of CHAMPION.
	afterStage    func(stage string) error
	beforePromote func()
}

// StageResult is what one stage did.
type StageResult struct {
	Stage   string  `json:"stage"`
	Skipped bool    `json:"skipped"` // its marker matched: finished by an earlier run
	Seconds float64 `json:"seconds"`
}

// RetrainResult is a finished retrain.
type RetrainResult struct {
	RunID    string        `json:"run_id"`
	RunDir   string        `json:"run_dir"`
	Stages   []StageResult `json:"stages"`
	Verdict  string        `json:"verdict"` // blessed or rejected
	Reasons  []string      `json:"reasons,omitempty"`
	Promoted bool          `json:"promoted"`           // this run's model is now the champion
	Champion *Champion     `json:"champion,omitempty"` // the champion after the run
	Report   string        `json:"report"`             // report.html of the evaluation (multi-task: the first task's)
	// Tasks, for a multi-task run, are each task's evaluation; Verdict is
	// the bundle's (blessed when every task that is not optional is).
	Tasks []TaskVerdict `json:"tasks,omitempty"`
}

// StageSchema versions the stage markers. v2 has typed outputs per stage
// (v1 kept a map of strings); a marker of another version is not trusted,
// so its stage runs again.
const StageSchema = "beamtune.stage/v2"

// stageMarker is <run>/stages/<stage>.json: the stage's fingerprint and
// what it hands the later stages (Outputs, one type per stage).
type stageMarker[T any] struct {
	Schema      string  `json:"schema"`
	Stage       string  `json:"stage"`
	RunID       string  `json:"run_id"`
	Fingerprint string  `json:"fingerprint"`
	FinishedAt  string  `json:"finished_at"`
	Seconds     float64 `json:"seconds"`
	Outputs     T       `json:"outputs"`
}

// prepareOutputs is what the prepare stage hands on.
type prepareOutputs struct {
	Data               string `json:"data"` // the prepared dataset folder
	DatasetFingerprint string `json:"dataset_fingerprint"`
}

// modelOutputs is what the train and distill stages hand on.
type modelOutputs struct {
	Model string `json:"model"` // the published model folder
	Trial string `json:"trial"` // the winning trial
}

// evaluateOutputs is what the evaluate stage hands to promotion: the gate's
// verdict on the challenger against the champion of that generation.
type evaluateOutputs struct {
	Report             string   `json:"report"` // the report folder
	ChampionRun        string   `json:"champion_run,omitempty"`
	ChampionGeneration int64    `json:"champion_generation"`
	Accuracy           float64  `json:"accuracy"` // the challenger's (0 for regression)
	MacroF1            float64  `json:"macro_f1"`
	Metric             string   `json:"metric,omitempty"` // the gate's metric and the challenger's value of it
	Value              float64  `json:"value,omitempty"`
	Verdict            string   `json:"verdict"` // report.VerdictBlessed or report.VerdictRejected
	Reasons            []string `json:"reasons,omitempty"`
}

// hashOf fingerprints parts by their JSON encodings.
func hashOf(parts ...any) (string, error) {
	h := sha256.New()
	for _, p := range parts {
		b, err := json.Marshal(p)
		if err != nil {
			return "", fmt.Errorf("fingerprint: %w", err)
		}
		h.Write(b)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// modelFingerprint identifies a model folder by the size and version of its
// config and weights, without reading the weights.
func modelFingerprint(ctx context.Context, dir string) (string, error) {
	var parts []string
	for _, name := range []string{model.ConfigFile, model.SafetensorsFile, model.PytorchFile, model.TokenizerFile, model.AdapterConfigFile, model.AdapterWeightsFile} {
		st, err := storage.Stat(ctx, storage.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		parts = append(parts, fmt.Sprintf("%s|%d|%d|%d", name, st.Size, st.ModTime.UnixNano(), st.Generation))
	}
	if len(parts) == 0 {
		return "", fmt.Errorf("model %s: no config.json or weights", dir)
	}
	return hashOf(parts)
}

// RetrainRunID computes the run id of a configuration against the inputs
// as they are now (see the comment at the top of this file).
func RetrainRunID(ctx context.Context, c RetrainConfig) (string, error) {
	id, _, _, err := retrainRunID(ctx, c)
	return id, err
}

// retrainRunID also returns the prepare fingerprint it used, which the
// prepare stage's marker then records: one look at the inputs per run.
// A multi-task config fingerprints every task's inputs (taskFPs, and
// prepareFP is "").
func retrainRunID(ctx context.Context, c RetrainConfig) (id, prepareFP string, taskFPs []string, err error) {
	var inputs any
	if len(c.Tasks) > 0 {
		if taskFPs, err = c.taskPrepareFingerprints(ctx); err != nil {
			return "", "", nil, err
		}
		inputs = taskFPs
	} else {
		if prepareFP, err = PrepareFingerprint(ctx, c.prepareOptions("(not used by the fingerprint)")); err != nil {
			return "", "", nil, err
		}
		inputs = prepareFP
	}
	mfp, err := modelFingerprint(ctx, c.Model)
	if err != nil {
		return "", "", nil, err
	}
	h, err := hashOf(c, inputs, mfp)
	if err != nil {
		return "", "", nil, err
	}
	return "r-" + h[:12], prepareFP, taskFPs, nil
}

// RunRetrain runs (or resumes, or confirms) one retrain under the model's
// lease. A gate rejection is a normal outcome (Verdict "rejected", nil
// error); ErrLeaseHeld and ErrPromotionConflict are returned wrapped.
func RunRetrain(ctx context.Context, o RetrainOptions) (*RetrainResult, error) {
	c := o.Config
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	ttl, err := c.leaseTTL()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	trust, err := signing.LoadTrust(ctx, c.Trust)
	if err != nil {
		return nil, fmt.Errorf("%w: trust: %v", ErrConfig, err)
	}
	sec := Security{SigningKey: c.SigningKey, Trust: trust}
	if sec.SigningKey != "" {
		if _, err := signing.LoadPrivateKey(ctx, sec.SigningKey); err != nil {
			return nil, fmt.Errorf("%w: signing_key: %v", ErrConfig, err)
		}
	} else {
		slog.Info("retrain: published model folders are not signed (no signing_key)")
	}
	if _, err := CheckModelDir(ctx, c.Model, ModelUse{Role: "model", Tokenizer: true, Trust: trust}); err != nil {
		return nil, err
	}
	runID, prepFP, taskFPs, err := retrainRunID(ctx, c)
	if err != nil {
		return nil, err
	}
	reg := Registry{Root: c.Registry, Name: c.Name}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if !o.NoLease {
		lease, err := reg.AcquireLease(ctx, leaseHolder(runID), ttl, o.Now)
		if err != nil {
			return nil, err
		}
		go lease.KeepRenewed(ctx, func(err error) { cancel(err) })
		defer func() {
			// Release with a fresh context: the run's may be cancelled.
			rctx, rcancel := context.WithTimeout(context.Background(), time.Minute)
			defer rcancel()
			if err := lease.Release(rctx); err != nil {
				slog.Warn("retrain: releasing the lease failed; it expires by itself", "err", err, "expires", lease.Info().Expires)
			}
		}()
	}

	r := &retrainRun{o: o, c: c, sec: sec, reg: reg, prepFP: prepFP, taskFPs: taskFPs, res: &RetrainResult{RunID: runID, RunDir: reg.RunDir(runID)}}
	slog.Info("retrain: run", "name", c.Name, "run_id", runID, "dir", r.res.RunDir)
	if err := r.run(ctx); err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
			return r.res, fmt.Errorf("%w: %w", cause, err) // the lease was lost: say so first
		}
		return r.res, err
	}
	return r.res, nil
}

type retrainRun struct {
	o      RetrainOptions
	c      RetrainConfig
	sec    Security
	reg    Registry
	prepFP string // the prepare fingerprint the run id was computed from
	// taskFPs, for a multi-task config, are each task's prepare fingerprints.
	taskFPs []string
	res     *RetrainResult
}

func (r *retrainRun) path(elem ...string) string { return storage.Join(r.res.RunDir, elem...) }

// runStage runs fn as stage name of run r unless the stage's marker holds
// fingerprint fp; either way it returns the stage's outputs.
func runStage[T any](ctx context.Context, r *retrainRun, name, fp string, fn func() (T, error)) (T, error) {
	var zero T
	markerPath := r.path(stagesDir, name+".json")
	if data, err := storage.ReadFile(ctx, markerPath); err == nil {
		var m stageMarker[T]
		if json.Unmarshal(data, &m) == nil && m.Schema == StageSchema && m.Fingerprint == fp {
			slog.Info("retrain: stage already done", "stage", name, "finished_at", m.FinishedAt)
			r.res.Stages = append(r.res.Stages, StageResult{Stage: name, Skipped: true, Seconds: m.Seconds})
			return m.Outputs, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return zero, err
	}
	slog.Info("retrain: stage starts", "stage", name)
	start := time.Now()
	out, err := fn()
	if err != nil {
		return zero, fmt.Errorf("stage %s: %w", name, err)
	}
	secs := time.Since(start).Seconds()
	m := stageMarker[T]{Schema: StageSchema, Stage: name, RunID: r.res.RunID, Fingerprint: fp,
		FinishedAt: time.Now().UTC().Format(time.RFC3339), Seconds: secs, Outputs: out}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return zero, fmt.Errorf("stage %s: marker: %w", name, err)
	}
	if err := storage.WriteFile(ctx, markerPath, append(data, '\n')); err != nil {
		return zero, err
	}
	r.res.Stages = append(r.res.Stages, StageResult{Stage: name, Seconds: secs})
	if r.o.afterStage != nil {
		if err := r.o.afterStage(name); err != nil {
			return zero, err
		}
	}
	return out, nil
}

func (r *retrainRun) run(ctx context.Context) error {
	c := r.c
	// The resolved configuration, for whoever reads the run folder later.
	cfgJSON, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("retrain.json: %w", err)
	}
	if err := storage.WriteFile(ctx, r.path(retrainConfigFile), append(cfgJSON, '\n')); err != nil {
		return err
	}
	if len(c.Tasks) > 0 {
		slog.Info("retrain: multi-task", "tasks", c.taskNames())
		return r.runTasks(ctx)
	}

	po := c.prepareOptions(r.path("data"))
	prepFP, err := hashOf("prepare", r.prepFP)
	if err != nil {
		return err
	}
	if err := r.prepareStage(ctx, "prepare", prepFP, po); err != nil {
		return err
	}

	trainFP, err := hashOf("train", r.prepFP, c.Model, c.Train)
	if err != nil {
		return err
	}
	if err := r.trainStage(ctx, trainFP, TrainOptions{Data: po.Output}); err != nil {
		return err
	}
	teacher := r.path(TeacherModel)
	models := []NamedModel{{Name: TeacherModel, Dir: teacher}}

	lastFP := trainFP
	if c.Distill.enabled() {
		if lastFP, err = hashOf("distill", trainFP, c.Distill); err != nil {
			return err
		}
		if err := r.distillStage(ctx, lastFP, DistillOptions{Data: po.Output, Teacher: teacher}); err != nil {
			return err
		}
		models = append(models, NamedModel{Name: StudentModel, Dir: r.path(StudentModel)})
	}
	if c.Compress.enabled() {
		source := models[len(models)-1].Dir
		if lastFP, err = hashOf("compress", lastFP, c.Compress); err != nil {
			return err
		}
		if _, err := runStage(ctx, r, "compress", lastFP, func() (modelOutputs, error) {
			res, err := RunCompress(ctx, CompressOptions{Model: source, Data: po.Output, Output: r.res.RunDir,
				HeadKeep: c.Compress.HeadKeep, FFNKeep: c.Compress.FFNKeep, PruneSteps: c.Compress.PruneSteps,
				ImportanceBatches: c.Compress.ImportanceBatches, Recovery: c.Compress.Config, PruneVocab: c.Compress.PruneVocab,
				KeepTokens: c.Compress.KeepTokens, VocabMinCount: c.Compress.VocabMinCount, InferBatch: c.Compress.InferBatch, Device: c.Device, Threads: c.Threads,
				Resume: true, Runner: r.o.Runner, Security: r.sec})
			if err != nil {
				return modelOutputs{}, err
			}
			return modelOutputs{Model: res.Dir}, nil
		}); err != nil {
			return err
		}
		models = append(models, NamedModel{Name: CompressedModel, Dir: r.path(CompressedModel), Quantize: c.Compress.Quantize})
	}

	// Evaluate against the champion as it is now; the marker remembers its
	// generation, which promotion then requires to be unchanged.
	champ, champGen, err := r.reg.ReadChampion(ctx)
	if err != nil {
		return err
	}
	challenger := c.challenger()
	reportDir := r.path("report")
	r.res.Report = storage.Join(reportDir, report.HTMLFile)
	if champ != nil && champ.RunID == r.res.RunID {
		// A rerun after this run's own promotion: its evaluation stands
		// (its fingerprint named the champion it beat, not itself).
		r.res.Verdict, r.res.Promoted, r.res.Champion = report.VerdictBlessed, true, champ
		r.res.Stages = append(r.res.Stages, StageResult{Stage: "evaluate", Skipped: true}, StageResult{Stage: "promote", Skipped: true})
		slog.Info("retrain: this run is the champion already; nothing to do", "run_id", r.res.RunID)
		return nil
	}
	if err := CheckChampion(ctx, champ); err != nil {
		return err
	}
	champDir, champRun := "", ""
	if champ != nil {
		champDir, champRun = champ.Model, champ.RunID
	}
	evalFP, err := hashOf("evaluate", lastFP, c.Evaluate, c.Gate, champRun, champGen)
	if err != nil {
		return err
	}
	verdict, err := runStage(ctx, r, "evaluate", evalFP, func() (evaluateOutputs, error) {
		return r.evaluate(ctx, EvaluateOptions{Data: po.Output, Split: c.Evaluate.Split, Models: models,
			Champion: champDir, Challenger: challenger, Gate: c.Gate, Output: reportDir, Seed: c.Evaluate.Seed,
			InferBatch: c.Evaluate.InferBatch, Device: c.Device, Threads: c.Threads, SpeedRuns: c.Evaluate.SpeedRuns, Threshold: c.Evaluate.Threshold,
			Runner: r.o.Runner, Security: Security{Trust: r.sec.Trust}}, champRun, champGen)
	})
	if err != nil {
		return err
	}
	r.res.Verdict, r.res.Reasons = verdict.Verdict, verdict.Reasons
	if r.res.Verdict != report.VerdictBlessed {
		slog.Info("retrain: not promoted: the gate rejected the challenger", "reasons", r.res.Reasons)
		r.res.Champion = champ
		return nil
	}
	if err := r.recordEvaluation(ctx, challenger, reportDir); err != nil {
		return err
	}
	next := Champion{RunID: r.res.RunID, Model: r.path(challenger), Accuracy: verdict.Accuracy, MacroF1: verdict.MacroF1,
		Metric: verdict.Metric, Value: verdict.Value}
	return r.promote(ctx, next, champ, champGen)
}

// prepareStage runs prepare stage name: po into its output folder.
func (r *retrainRun) prepareStage(ctx context.Context, name, fp string, po PrepareOptions) error {
	_, err := runStage(ctx, r, name, fp, func() (prepareOutputs, error) {
		po.Runner = r.o.Runner
		res, err := RunPrepare(ctx, po)
		if err != nil {
			return prepareOutputs{}, err
		}
		return prepareOutputs{Data: po.Output, DatasetFingerprint: res.Manifest.Fingerprint}, nil
	})
	return err
}

// trainStage runs the train stage: the teacher of o's data (Data, or
// Tasks) with the run's recipe, published as the run's teacher.
func (r *retrainRun) trainStage(ctx context.Context, fp string, o TrainOptions) error {
	c := r.c
	o.Init, o.Output, o.Name, o.Config, o.Sweep = c.Model, r.res.RunDir, TeacherModel, c.Train.Config, c.Train.Sweep
	o.Device, o.Threads, o.Resume, o.Runner, o.Security = c.Device, c.Threads, true, r.o.Runner, r.sec
	_, err := runStage(ctx, r, "train", fp, func() (modelOutputs, error) {
		res, err := RunTrain(ctx, o)
		if err != nil {
			return modelOutputs{}, err
		}
		return modelOutputs{Model: res.ModelDir, Trial: res.Best.Trial}, nil
	})
	return err
}

// distillStage runs the distill stage: a student of o's data and teachers
// (Data and Teacher, or Tasks) with the run's recipe.
func (r *retrainRun) distillStage(ctx context.Context, fp string, o DistillOptions) error {
	c := r.c
	o.StudentLayers, o.StudentInit, o.Output, o.Config, o.Sweep = c.Distill.StudentLayers, c.Distill.StudentInit, r.res.RunDir, c.Distill.Config, c.Distill.Sweep
	o.InferBatch, o.Device, o.Threads, o.Resume, o.Runner, o.Security = c.Distill.InferBatch, c.Device, c.Threads, true, r.o.Runner, r.sec
	_, err := runStage(ctx, r, "distill", fp, func() (modelOutputs, error) {
		res, err := RunDistill(ctx, o)
		if err != nil {
			return modelOutputs{}, err
		}
		return modelOutputs{Model: res.Student.ModelDir, Trial: res.Student.Best.Trial}, nil
	})
	return err
}

// evaluate runs the evaluate stage's pipeline and reads the gate's verdict
// on the challenger (o.Challenger) against the champion of generation champGen.
func (r *retrainRun) evaluate(ctx context.Context, o EvaluateOptions, champRun string, champGen int64) (evaluateOutputs, error) {
	res, err := RunEvaluate(ctx, o)
	if err != nil {
		return evaluateOutputs{}, err
	}
	out := evaluateOutputs{Report: o.Output, ChampionRun: champRun, ChampionGeneration: champGen, Verdict: report.VerdictBlessed}
	for _, m := range res.Report.Models {
		if m.Name == o.Challenger {
			out.Accuracy, out.MacroF1 = m.Metrics.Accuracy, m.Metrics.MacroF1
			out.Metric = res.Metric
			out.Value, _, _ = m.Metrics.Value(res.Metric)
		}
	}
	if g := res.Report.Gate; g != nil {
		out.Verdict, out.Reasons = g.Verdict, g.Reasons
	}
	return out, nil
}

// promote makes next the champion, by compare-and-swap on the champion
// generation the evaluation saw.
func (r *retrainRun) promote(ctx context.Context, next Champion, champ *Champion, champGen int64) error {
	if r.o.beforePromote != nil {
		r.o.beforePromote()
	}
	if champ != nil {
		next.Previous = champ.RunID
	}
	start := time.Now()
	// Only a verified model is promoted under a trust policy; CHAMPION
	// records the digest of exactly what was checked.
	if r.sec.Trust.Enabled() {
		v, err := VerifyModel(ctx, next.Model, r.sec.Trust)
		if err != nil {
			return fmt.Errorf("promote: %w", err)
		}
		next.Digest = v.Digest
	} else {
		digest, err := FolderDigest(ctx, next.Model)
		if err != nil {
			return fmt.Errorf("promote: %w", err)
		}
		next.Digest = digest
	}
	if err := r.reg.Promote(ctx, next, champGen); err != nil {
		return err
	}
	r.res.Stages = append(r.res.Stages, StageResult{Stage: "promote", Seconds: time.Since(start).Seconds()})
	r.res.Promoted, r.res.Champion = true, &next
	slog.Info("retrain: promoted", "run_id", r.res.RunID, "model", next.Model, "accuracy", next.Accuracy, next.Metric, next.Value)
	return nil
}

// RetrainExitCode maps a retrain's outcome to the process exit status
// documented in docs/retrain.md: 0 done (promoted, rejected by the gate, or
// nothing to do), 1 failed, 2 bad configuration, 3 promotion conflict
// (another run promoted first; the next run re-evaluates), 4 another run
// holds the lease (this one did nothing).
func RetrainExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrConfig), errors.Is(err, ErrBadInput):
		return 2
	case errors.Is(err, ErrPromotionConflict):
		return 3
	case errors.Is(err, ErrLeaseHeld):
		return 4
	default:
		return 1
	}
}
