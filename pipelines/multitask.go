package pipelines

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/trainer"
)

// TaskOption is one task of a multi-task train or distill run, as --task
// gives it: NAME=DATA[,kind=K][,weight=W][,metric=M][,teacher=DIR].
type TaskOption struct {
	trainer.TaskSpec
	// Kind, when set, is the task kind the dataset must have (its manifest
	// says which it is; this only checks it).
	Kind string
	// Teacher is the task's teacher (distill): a published single-task model.
	Teacher string
}

// ParseTaskOption reads one --task value.
func ParseTaskOption(s string) (TaskOption, error) {
	var o TaskOption
	head, rest, _ := strings.Cut(s, ",")
	name, data, ok := strings.Cut(head, "=")
	if !ok || strings.TrimSpace(data) == "" {
		return o, fmt.Errorf("--task %q: want NAME=DATA[,kind=K][,weight=W][,metric=M][,teacher=DIR]", s)
	}
	o.Name, o.Data = strings.TrimSpace(name), strings.TrimSpace(data)
	if err := model.CheckTaskName(o.Name); err != nil {
		return o, fmt.Errorf("--task %q: %w", s, err)
	}
	for _, kv := range strings.Split(rest, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if v == "" {
			return o, fmt.Errorf("--task %q: %s has no value", s, k)
		}
		switch k {
		case "kind":
			kind, err := dataset.ParseTask(v)
			if err != nil {
				return o, fmt.Errorf("--task %q: %w", s, err)
			}
			o.Kind = kind
		case "weight":
			w, err := strconv.ParseFloat(v, 64)
			if err != nil || w <= 0 || w > 1000 {
				return o, fmt.Errorf("--task %q: weight %q is not a number in (0, 1000]", s, v)
			}
			o.Weight = w
		case "metric":
			o.Metric = v
		case "teacher":
			o.Teacher = v
		default:
			return o, fmt.Errorf("--task %q: unknown setting %q (kind, weight, metric, teacher)", s, k)
		}
	}
	return o, nil
}

// ParseTaskOptions reads every --task value.
func ParseTaskOptions(specs []string) ([]TaskOption, error) {
	var out []TaskOption
	for _, s := range specs {
		o, err := ParseTaskOption(s)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// taskSpecs is what the trainer needs of the options.
func taskSpecs(tasks []TaskOption) []trainer.TaskSpec {
	var out []trainer.TaskSpec
	for _, t := range tasks {
		out = append(out, t.TaskSpec)
	}
	return out
}

// checkTasks checks a multi-task run's tasks in the driver: two or more,
// each named once, each dataset sound and of the kind asked, each metric
// one its kind has, the run-wide settings that only one task can have left
// unset. It returns each task's manifest.
func checkTasks(ctx context.Context, tasks []TaskOption, data string, cfg trainer.Config) ([]*dataset.Manifest, error) {
	if data != "" {
		return nil, badInputf("give either --data or --task, not both")
	}
	if len(tasks) < 2 {
		return nil, badInputf("--task: a multi-task run needs two tasks or more (one task: --data)")
	}
	if cfg.MetricForBest != "" {
		return nil, badInputf("--metric_for_best: a multi-task run picks its best checkpoint by the mean of its tasks' metrics; give a task's metric with its --task (metric=...)")
	}
	if _, err := dataset.ParseTaskSampling(cfg.TaskSampling); err != nil {
		return nil, badInput(err)
	}
	if cfg.PEFT == model.TuneLoRA {
		return nil, badInputf("--peft=lora: LoRA adapters of multi-task models are not supported yet (use --peft=bitfit or --freeze_layers)")
	}
	seen := map[string]bool{}
	var mans []*dataset.Manifest
	multiLabel := false
	for _, t := range tasks {
		if seen[t.Name] {
			return nil, badInputf("--task %s given twice", t.Name)
		}
		seen[t.Name] = true
		man, err := CheckDataset(ctx, t.Data)
		if err != nil {
			return nil, fmt.Errorf("--task %s: %w", t.Name, err)
		}
		kind := man.TaskKind()
		if t.Kind != "" && t.Kind != kind {
			return nil, badInputf("--task %s: %s is a %s dataset, not %s", t.Name, t.Data, kind, t.Kind)
		}
		if _, err := report.CheckMetric(kind, t.Metric); err != nil {
			return nil, badInputf("--task %s: %w", t.Name, err)
		}
		multiLabel = multiLabel || kind == dataset.MultiLabel
		mans = append(mans, man)
	}
	if cfg.PosWeight && !multiLabel {
		return nil, badInputf("--pos_weight is for %s datasets; no task is one", dataset.MultiLabel)
	}
	return mans, nil
}

// distillDataDir is the folder of a distillation run's teacher-logit
// datasets (a multi-teacher run has one per task under it).
const distillDataDir = "distill-data"

// runMultiTeacher distills one multi-task student from a teacher per task:
// each teacher scores its own task's dataset on the workers (cached as for
// one teacher, in distill-data/<task>), then the student trains on every
// task's soft targets at once.
func runMultiTeacher(ctx context.Context, o DistillOptions) (*DistillResult, error) {
	if o.Data != "" || o.Teacher != "" {
		return nil, badInputf("distill: give either --data and --teacher, or a --task with teacher=DIR per task")
	}
	if _, err := checkTasks(ctx, o.Tasks, "", o.Config); err != nil {
		return nil, err
	}
	teachers := make([]*model.Config, len(o.Tasks))
	for i, t := range o.Tasks {
		if t.Teacher == "" {
			return nil, badInputf("--task %s: no teacher (teacher=DIR)", t.Name)
		}
		var err error
		if _, teachers[i], err = CheckTrainedModel(ctx, t.Teacher, "--task "+t.Name+" teacher", t.Data, o.Trust); err != nil {
			return nil, err
		}
	}
	init, layers, initCfg := o.Tasks[0].Teacher, o.StudentLayers, teachers[0]
	var studentInit *model.Config
	if o.StudentInit != "" {
		var err error
		if studentInit, err = CheckModelDir(ctx, o.StudentInit, ModelUse{Role: "--student_init", Tokenizer: true, Trust: o.studentInitTrust()}); err != nil {
			return nil, err
		}
		init, layers, initCfg = o.StudentInit, nil, studentInit
	}
	if err := CheckOutput(ctx, o.Output); err != nil {
		return nil, err
	}
	if err := checkTuning(ctx, TrainOptions{Init: init, Config: o.Config, Sweep: o.Sweep, StudentLayers: layers, Tasks: o.Tasks}, initCfg); err != nil {
		return nil, err
	}
	// One hidden-state map for every task: each teacher must have the
	// layers it names.
	var hidden []int
	for i := range o.Tasks {
		h, err := resolveHiddenLayers(&o, teachers[i], studentInit)
		if err != nil {
			return nil, badInputf("--task %s teacher: %w", o.Tasks[i].Name, err)
		}
		if i == 0 {
			hidden = h
		}
	}
	root := storage.Join(o.Output, distillDataDir)
	tasks := make([]TaskOption, len(o.Tasks))
	for i, t := range o.Tasks {
		one := o
		one.Data, one.Teacher, one.Tasks = t.Data, t.Teacher, nil
		data := storage.Join(root, t.Name)
		if err := teacherLogits(ctx, one, data, hidden); err != nil {
			return nil, fmt.Errorf("--task %s: %w", t.Name, err)
		}
		tasks[i] = t
		tasks[i].Data = data
	}
	res, err := RunTrain(ctx, TrainOptions{
		Tasks: tasks, Init: init, Output: o.Output, Name: StudentModel, Config: o.Config, Sweep: o.Sweep,
		StudentLayers: layers, Device: o.Device, Threads: o.Threads, Resume: o.Resume, Runner: o.Runner,
		Security: Security{SigningKey: o.SigningKey, Trust: o.studentInitTrust()}, Stage: "distill",
	})
	if err != nil {
		return nil, err
	}
	return &DistillResult{Data: root, Student: res}, nil
}
