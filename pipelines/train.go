package pipelines

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/trainer"
	"github.com/beamtune/beamtune/transforms"
)

func init() {
	register.DoFn3x1[context.Context, []byte, func(*trainer.TrialResult) bool, error](&selectBestFn{})
	register.Iter1[trainer.TrialResult]()
	beam.RegisterType(reflect.TypeOf((*selectBestFn)(nil)).Elem())
}

// TrainOptions configures the train pipeline (and the student half of distill).
type TrainOptions struct {
	Data string // prepared dataset folder (manifest.json)
	// Tasks, instead of Data, train one model with a head per task (at
	// least two), each on its own prepared dataset.
	Tasks  []TaskOption
	Init   string // model folder to start from
	Output string // run folder: NAME-trials/<trial>/..., the published model NAME/, NAME-trials.json
	Name   string // published model folder under Output ("teacher", "student")

	Config trainer.Config
	// Sweep maps a hyperparameter to the values to try; every combination is
	// a trial, trained in parallel on its own worker.
	Sweep         map[string][]string
	StudentLayers []int
	Device        string
	Threads       int
	Resume        bool
	Runner        string
	Security
	// Stage names the run in the published folder's provenance ("train";
	// distill sets "distill").
	Stage string
}

// TrainResult is the chosen trial and every trial's record.
type TrainResult struct {
	Best     trainer.TrialResult   `json:"best"`
	Trials   []trainer.TrialResult `json:"trials"`
	ModelDir string                `json:"model_dir"` // the published HF folder
}

// sweepable lists the hyperparameters --sweep may vary, with how to set each.
var sweepable = map[string]func(*trainer.Config, string) error{
	"lr": func(c *trainer.Config, v string) (err error) { c.LR, err = strconv.ParseFloat(v, 64); return },
	"seed": func(c *trainer.Config, v string) (err error) {
		c.Seed, err = strconv.ParseInt(v, 10, 64)
		return
	},
	"batch_size": func(c *trainer.Config, v string) (err error) { c.BatchSize, err = strconv.Atoi(v); return },
	"epochs":     func(c *trainer.Config, v string) (err error) { c.Epochs, err = strconv.Atoi(v); return },
	"max_steps": func(c *trainer.Config, v string) (err error) {
		c.MaxSteps, err = strconv.ParseInt(v, 10, 64)
		return
	},
	"warmup_ratio": func(c *trainer.Config, v string) (err error) {
		c.WarmupRatio, err = strconv.ParseFloat(v, 64)
		return
	},
	"weight_decay": func(c *trainer.Config, v string) (err error) {
		c.WeightDecay, err = strconv.ParseFloat(v, 64)
		return
	},
	"grad_accum": func(c *trainer.Config, v string) (err error) { c.GradAccum, err = strconv.Atoi(v); return },
	"temperature": func(c *trainer.Config, v string) (err error) {
		c.Temperature, err = strconv.ParseFloat(v, 64)
		return
	},
	"alpha": func(c *trainer.Config, v string) (err error) {
		c.Alpha, err = strconv.ParseFloat(v, 64)
		return
	},
	"max_grad_norm": func(c *trainer.Config, v string) (err error) {
		c.MaxGradNorm, err = strconv.ParseFloat(v, 64)
		return
	},
	"hidden_mse": func(c *trainer.Config, v string) (err error) {
		c.HiddenMSE, err = strconv.ParseFloat(v, 64)
		return
	},
	"peft":          func(c *trainer.Config, v string) error { c.PEFT = v; return nil },
	"task_sampling": func(c *trainer.Config, v string) error { c.TaskSampling = v; return nil },
	"lora_r":        func(c *trainer.Config, v string) (err error) { c.LoRAR, err = strconv.Atoi(v); return },
	"lora_alpha": func(c *trainer.Config, v string) (err error) {
		c.LoRAAlpha, err = strconv.ParseFloat(v, 64)
		return
	},
	"lora_dropout": func(c *trainer.Config, v string) (err error) {
		c.LoRADropout, err = strconv.ParseFloat(v, 64)
		return
	},
}

// ParseSweep reads "--sweep lr=2e-5,5e-5" values into a sweep map.
func ParseSweep(specs []string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, s := range specs {
		k, v, ok := strings.Cut(s, "=")
		k = strings.TrimSpace(k)
		if !ok || v == "" {
			return nil, fmt.Errorf("--sweep %q: want name=v1,v2,...", s)
		}
		if _, known := sweepable[k]; !known {
			names := make([]string, 0, len(sweepable))
			for n := range sweepable {
				names = append(names, n)
			}
			sort.Strings(names)
			return nil, fmt.Errorf("--sweep %q: %s cannot be swept (one of %s)", s, k, strings.Join(names, ", "))
		}
		for _, x := range strings.Split(v, ",") {
			out[k] = append(out[k], strings.TrimSpace(x))
		}
	}
	return out, nil
}

// trials expands the sweep into one job per combination, in a fixed order.
func trials(o TrainOptions) ([]trainer.Job, error) {
	keys := make([]string, 0, len(o.Sweep))
	for k := range o.Sweep {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	jobs := []trainer.Job{{Config: o.Config}}
	names := []string{""}
	for _, k := range keys {
		var nj []trainer.Job
		var nn []string
		for i, j := range jobs {
			for _, v := range o.Sweep[k] {
				c := j
				if err := sweepable[k](&c.Config, v); err != nil {
					return nil, fmt.Errorf("--sweep %s=%s: %w", k, v, err)
				}
				nj = append(nj, c)
				nn = append(nn, strings.TrimPrefix(names[i]+","+k+"="+v, ","))
			}
		}
		jobs, names = nj, nn
	}
	for i := range jobs {
		name := names[i]
		if name == "" {
			name = "default"
		}
		jobs[i].Trial = name
		jobs[i].Data, jobs[i].Tasks, jobs[i].Init = o.Data, taskSpecs(o.Tasks), o.Init
		jobs[i].StudentLayers = o.StudentLayers
		jobs[i].Output = storage.Join(o.Output, o.Name+"-trials", strings.NewReplacer("=", "-", ",", "_").Replace(name))
		jobs[i].Device, jobs[i].Threads, jobs[i].Resume = o.Device, o.Threads, o.Resume
		jobs[i].Trust = o.Trust
	}
	return jobs, nil
}

// RunTrain trains every trial of the sweep in parallel (one element each),
// picks the best by the task's main validation metric (then loss), records every trial in
// trials.json and publishes the winner's best checkpoint, its training log
// and configuration as Output/Name, atomically.
func RunTrain(ctx context.Context, o TrainOptions) (*TrainResult, error) {
	if (o.Data == "" && len(o.Tasks) == 0) || o.Init == "" || o.Output == "" {
		return nil, badInputf("train needs --data (or --task per task), --init and --output")
	}
	if o.Name == "" {
		o.Name = TeacherModel
	}
	jobs, err := trials(o)
	if err != nil {
		return nil, badInput(err)
	}
	if err := checkTrainInputs(ctx, o); err != nil {
		return nil, err
	}
	p, s := beam.NewPipelineWithRoot()
	col := beam.Reshuffle(s, beam.CreateList(s.Scope("Trials"), jobs))
	results := beam.ParDo(s.Scope("Train"), &transforms.TrainFn{}, col)
	beam.ParDo0(s.Scope("SelectAndPublish"), &selectBestFn{Output: o.Output, Name: o.Name, Trials: len(jobs), Stage: orDefault(o.Stage, "train"), Runner: o.Runner, SigningKey: o.SigningKey}, beam.Impulse(s), beam.SideInput{Input: results})
	if _, err := run(ctx, o.Runner, p); err != nil {
		return nil, err
	}
	data, err := storage.ReadFile(ctx, storage.Join(o.Output, o.Name+"-trials.json"))
	if err != nil {
		return nil, err
	}
	var res TrainResult
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// selectBestFn chooses the winning trial and publishes it, once every trial
// has reported: prism can run this step after a trial's bundle failed, and a
// winner picked from part of the sweep must not be published.
type selectBestFn struct {
	Output, Name string
	Trials       int    // how many trials the sweep has
	Stage        string // train or distill, for the provenance record
	Runner       string
	SigningKey   string // Security.SigningKey
}

func (fn *selectBestFn) ProcessElement(ctx context.Context, _ []byte, results func(*trainer.TrialResult) bool) error {
	var all []trainer.TrialResult
	var r trainer.TrialResult
	for results(&r) {
		all = append(all, r)
	}
	if len(all) != fn.Trials {
		return fmt.Errorf("%d of %d trials finished; publishing nothing", len(all), fn.Trials)
	}
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.BestMetric != b.BestMetric {
			return a.BestMetric > b.BestMetric
		}
		if a.BestLoss != b.BestLoss {
			return a.BestLoss < b.BestLoss
		}
		return a.Trial < b.Trial
	})
	best := all[0]
	dst := storage.Join(fn.Output, fn.Name)
	res := TrainResult{Best: best, Trials: all, ModelDir: dst}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	trialsPath := storage.Join(fn.Output, fn.Name+"-trials.json")
	card, prov, err := trialRecord(ctx, best, fn.Name, fn.Stage, fn.Runner)
	if err != nil {
		return fmt.Errorf("publish %s: %w", dst, err)
	}
	err = publishModel(ctx, best.BestDir, dst, map[string]string{
		report.PublishedTrainLogFile: storage.Join(best.Output, report.TrainLogFile),
		trainer.PublishedJobFile:     storage.Join(best.Output, trainer.JobFile),
	}, card, fn.SigningKey, prov)
	if err != nil {
		return fmt.Errorf("publish %s: %w", dst, err)
	}
	return storage.WriteFile(ctx, trialsPath, data)
}

// checkTrainInputs checks the dataset, the starting model and the output in
// the driver. A Dataflow dry run (or template staging) only writes the job
// down, from wherever it is made: it reads and writes nothing, so nothing is
// checked on storage.
func checkTrainInputs(ctx context.Context, o TrainOptions) error {
	if describedOnly(o.Runner) {
		return nil
	}
	if len(o.Tasks) > 0 {
		if _, err := checkTasks(ctx, o.Tasks, o.Data, o.Config); err != nil {
			return err
		}
	} else {
		man, err := CheckDataset(ctx, o.Data)
		if err != nil {
			return err
		}
		if _, err := report.CheckMetric(man.TaskKind(), o.Config.MetricForBest); err != nil {
			return badInput(err)
		}
		if o.Config.PosWeight && man.TaskKind() != dataset.MultiLabel {
			return badInputf("--pos_weight is for %s datasets; %s is %s", dataset.MultiLabel, o.Data, man.TaskKind())
		}
	}
	cfg, err := CheckModelDir(ctx, o.Init, ModelUse{Role: "--init", Tokenizer: true, Bundle: true, Trust: o.Trust})
	if err != nil {
		return err
	}
	heads, err := BundleTasks(ctx, o.Init)
	if err != nil {
		return err
	}
	if heads != nil && (len(o.Tasks) == 0 || len(o.StudentLayers) > 0) {
		return badInputf("--init: %s is a multi-task bundle: start from one task's folder, %s", o.Init, storage.Join(o.Init, model.TasksDir, heads[0].Name))
	}
	if err := checkTuning(ctx, o, cfg); err != nil {
		return err
	}
	return CheckOutput(ctx, o.Output)
}

// checkTuning checks every trial's fine-tuning settings against the model
// they apply to (o.Init's config cfg, or the student's layers), in the
// driver.
func checkTuning(ctx context.Context, o TrainOptions, cfg *model.Config) error {
	jobs, err := trials(o)
	if err != nil {
		return badInput(err)
	}
	for _, j := range jobs {
		err := checkTrialTuning(ctx, j.Config, o.Init, cfg, len(o.StudentLayers))
		if err == nil {
			err = checkTrialInput(j.Config, max(1, len(o.Tasks)))
		}
		if err != nil {
			if len(jobs) > 1 {
				err = fmt.Errorf("trial %s: %w", j.Trial, err)
			}
			return err
		}
	}
	return nil
}

// checkTrialInput refuses, in the driver, an input mode or evaluation
// sample no worker could use.
func checkTrialInput(c trainer.Config, tasks int) error {
	if err := c.CheckInput(tasks); err != nil {
		return badInput(err)
	}
	return nil
}

func checkTrialTuning(ctx context.Context, c trainer.Config, init string, cfg *model.Config, studentLayers int) error {
	layers := cfg.NumHiddenLayers
	if studentLayers > 0 {
		layers = studentLayers
	}
	t, err := c.Tuning(layers)
	if err != nil {
		return badInput(err)
	}
	if err := c.CheckPrecision(); err != nil {
		return badInput(err)
	}
	if t.Method != model.TuneLoRA {
		return nil
	}
	// A student is cut from its (merged) teacher and exported as its own base.
	if ok, err := storage.Exists(ctx, storage.Join(init, model.AdapterConfigFile)); err == nil && ok && studentLayers == 0 {
		return badInputf("%s is a LoRA adapter: merge it first (beamtune merge) to train a new adapter on it", init)
	}
	if _, err := model.LoRATargets(cfg, t.LoRA.Targets); err != nil {
		return badInput(err)
	}
	return nil
}
