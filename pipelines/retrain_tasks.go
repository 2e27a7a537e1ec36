package pipelines

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/trainer"
)

// Multi-task retrain: retrain.yaml lists tasks, each with its own data (its
// prepare keys over the top-level prepare block), and the run trains one
// bundle (a multi-task teacher, and a student distilled from the teacher's
// task folders), evaluates every task against the champion's same task
// with that task's gate, and promotes the bundle only when every required
// task passes.

// RetrainTask is one task of a multi-task retrain (retrain.yaml tasks:).
type RetrainTask struct {
	Name string `yaml:"name" json:"name"`
	// Prepare is the task's prepare block: the top-level prepare keys with
	// the task's own over them (resolved by ParseRetrainConfig).
	Prepare RetrainPrepare `yaml:"-" json:"prepare"`
	// PrepareYAML holds the task's prepare keys as written.
	PrepareYAML yaml.Node `yaml:"prepare" json:"-"`
	Weight      float64   `yaml:"weight" json:"weight,omitempty"`
	Metric      string    `yaml:"metric" json:"metric,omitempty"`
	// Gate, when set, replaces the top-level gate for this task.
	Gate *report.GateConfig `yaml:"gate" json:"gate,omitempty"`
	// Optional tasks do not block promotion when their gate fails (the
	// bundle is promoted when every other task passes); the default is
	// that every task must pass.
	Optional bool `yaml:"optional" json:"optional,omitempty"`
}

// resolveTaskPrepare gives each task its prepare block: the top-level one
// with the task's keys decoded over it, unknown keys refused.
func (c *RetrainConfig) resolveTaskPrepare() error {
	for i := range c.Tasks {
		t := &c.Tasks[i]
		p := c.Prepare
		// Slices are replaced, not merged: a task's train list is its own.
		if t.PrepareYAML.Kind != 0 {
			var buf bytes.Buffer
			enc := yaml.NewEncoder(&buf)
			if err := enc.Encode(&t.PrepareYAML); err != nil {
				return fmt.Errorf("tasks[%d].prepare: %w", i, err)
			}
			dec := yaml.NewDecoder(&buf)
			dec.KnownFields(true)
			if err := dec.Decode(&p); err != nil {
				return fmt.Errorf("tasks[%d].prepare (line %d): %w", i, t.PrepareYAML.Line, err)
			}
		}
		t.Prepare = p
	}
	return nil
}

// validateTasks checks the tasks of a multi-task config.
func (c RetrainConfig) validateTasks() error {
	if len(c.Tasks) == 1 {
		return errors.New("tasks: a multi-task retrain needs two tasks or more (one task: the top-level prepare block)")
	}
	seen := map[string]bool{}
	for i, t := range c.Tasks {
		if err := model.CheckTaskName(t.Name); err != nil {
			return fmt.Errorf("tasks[%d]: %w", i, err)
		}
		if seen[t.Name] {
			return fmt.Errorf("tasks[%d]: task %s twice", i, t.Name)
		}
		seen[t.Name] = true
		if err := validatePrepare(t.Prepare); err != nil {
			return fmt.Errorf("tasks[%d] (%s): %w", i, t.Name, err)
		}
		if t.Weight < 0 {
			return fmt.Errorf("tasks[%d] (%s): weight %g is negative", i, t.Name, t.Weight)
		}
	}
	if c.Compress.enabled() {
		return errors.New("compress: a multi-task bundle cannot be compressed yet; compress a task folder")
	}
	if c.Train.MetricForBest != "" || c.Distill.MetricForBest != "" {
		return errors.New("metric_for_best: a multi-task run picks its checkpoint by the mean of its tasks' metrics; give each task's metric with the task")
	}
	if c.Evaluate.Challenger == CompressedModel {
		return errors.New("evaluate.challenger: no compress stage in a multi-task retrain")
	}
	return nil
}

// taskPrepareOptions is the prepare run of task i, into output.
func (c RetrainConfig) taskPrepareOptions(i int, output string) PrepareOptions {
	one := c
	one.Prepare = c.Tasks[i].Prepare
	return one.prepareOptions(output)
}

// taskGate is the gate task t is judged by.
func (c RetrainConfig) taskGate(t RetrainTask) report.GateConfig {
	if t.Gate != nil {
		return *t.Gate
	}
	return c.Gate
}

// TaskVerdict is one task's evaluation in a multi-task retrain.
type TaskVerdict struct {
	Task     string   `json:"task"`
	Optional bool     `json:"optional,omitempty"`
	Verdict  string   `json:"verdict"`
	Reasons  []string `json:"reasons,omitempty"`
	Metric   string   `json:"metric,omitempty"`
	Value    float64  `json:"value,omitempty"`
	Report   string   `json:"report"`
}

// bundleVerdict decides a bundle from its tasks' verdicts: blessed when
// every task that is not optional is; the reasons name their task.
func bundleVerdict(tasks []TaskVerdict) (string, []string) {
	verdict := report.VerdictBlessed
	var reasons []string
	for _, t := range tasks {
		if t.Verdict == report.VerdictBlessed {
			continue
		}
		for _, r := range t.Reasons {
			if t.Optional {
				reasons = append(reasons, fmt.Sprintf("%s (optional, not blocking): %s", t.Task, r))
			} else {
				reasons = append(reasons, fmt.Sprintf("%s: %s", t.Task, r))
			}
		}
		if !t.Optional {
			verdict = report.VerdictRejected
		}
	}
	return verdict, reasons
}

// taskPrepareFingerprints fingerprints every task's inputs (for the run id).
func (c RetrainConfig) taskPrepareFingerprints(ctx context.Context) ([]string, error) {
	var out []string
	for i := range c.Tasks {
		fp, err := PrepareFingerprint(ctx, c.taskPrepareOptions(i, "(not used by the fingerprint)"))
		if err != nil {
			return nil, fmt.Errorf("task %s: %w", c.Tasks[i].Name, err)
		}
		out = append(out, fp)
	}
	return out, nil
}

// runTasks is retrainRun.run for a multi-task config.
func (r *retrainRun) runTasks(ctx context.Context) error {
	c := r.c
	var tasks []TaskOption
	for i, t := range c.Tasks {
		po := c.taskPrepareOptions(i, r.path("data-"+t.Name))
		fp, err := hashOf("prepare", r.taskFPs[i])
		if err != nil {
			return err
		}
		if err := r.prepareStage(ctx, "prepare-"+t.Name, fp, po); err != nil {
			return err
		}
		tasks = append(tasks, TaskOption{TaskSpec: trainer.TaskSpec{Name: t.Name, Data: po.Output, Weight: t.Weight, Metric: t.Metric}})
	}

	trainFP, err := hashOf("train", r.taskFPs, c.Model, c.Train, c.Tasks)
	if err != nil {
		return err
	}
	if err := r.trainStage(ctx, trainFP, TrainOptions{Tasks: tasks}); err != nil {
		return err
	}
	teacher := r.path(TeacherModel)
	bundles := []string{TeacherModel}
	lastFP := trainFP
	if c.Distill.enabled() {
		if lastFP, err = hashOf("distill", trainFP, c.Distill); err != nil {
			return err
		}
		// Each task's teacher is the teacher bundle's folder of that task.
		teachers := make([]TaskOption, len(tasks))
		for i, t := range tasks {
			teachers[i] = t
			teachers[i].Teacher = storage.Join(teacher, model.TasksDir, t.Name)
		}
		if err := r.distillStage(ctx, lastFP, DistillOptions{Tasks: teachers}); err != nil {
			return err
		}
		bundles = append(bundles, StudentModel)
	}

	champ, champGen, err := r.reg.ReadChampion(ctx)
	if err != nil {
		return err
	}
	if err := CheckChampion(ctx, champ); err != nil {
		return err
	}
	challenger := c.challenger()
	if champ != nil && champ.RunID == r.res.RunID {
		r.res.Verdict, r.res.Promoted, r.res.Champion = report.VerdictBlessed, true, champ
		r.res.Stages = append(r.res.Stages, StageResult{Stage: "evaluate", Skipped: true}, StageResult{Stage: "promote", Skipped: true})
		return nil
	}
	champRun := ""
	if champ != nil {
		champRun = champ.RunID
	}
	for i, t := range c.Tasks {
		// The champion's folder of this task, when the champion is a
		// bundle that has it; a new task has no champion to beat.
		champDir := ""
		if champ != nil {
			d := storage.Join(champ.Model, model.TasksDir, t.Name)
			if ok, err := storage.Exists(ctx, storage.Join(d, model.ConfigFile)); err != nil {
				return err
			} else if ok {
				champDir = d
			}
		}
		models := make([]NamedModel, len(bundles))
		for k, b := range bundles {
			models[k] = NamedModel{Name: b, Dir: storage.Join(r.path(b), model.TasksDir, t.Name)}
		}
		reportDir := r.path("report-" + t.Name)
		gate := c.taskGate(t)
		evalFP, err := hashOf("evaluate", lastFP, c.Evaluate, gate, t.Optional, champRun, champGen, champDir)
		if err != nil {
			return err
		}
		out, err := runStage(ctx, r, "evaluate-"+t.Name, evalFP, func() (evaluateOutputs, error) {
			return r.evaluate(ctx, EvaluateOptions{Data: tasks[i].Data, Split: c.Evaluate.Split, Models: models,
				Champion: champDir, Challenger: challenger, Gate: gate, Output: reportDir, Seed: c.Evaluate.Seed,
				InferBatch: c.Evaluate.InferBatch, Device: c.Device, Threads: c.Threads, SpeedRuns: c.Evaluate.SpeedRuns,
				Threshold: c.Evaluate.Threshold, Runner: r.o.Runner, Security: Security{Trust: r.sec.Trust}}, champRun, champGen)
		})
		if err != nil {
			return err
		}
		r.res.Tasks = append(r.res.Tasks, TaskVerdict{Task: t.Name, Optional: t.Optional, Verdict: out.Verdict, Reasons: out.Reasons,
			Metric: out.Metric, Value: out.Value, Report: storage.Join(reportDir, report.HTMLFile)})
	}
	r.res.Report = r.res.Tasks[0].Report
	r.res.Verdict, r.res.Reasons = bundleVerdict(r.res.Tasks)
	if r.res.Verdict != report.VerdictBlessed {
		slog.Info("retrain: not promoted: a required task's gate rejected the bundle", "reasons", r.res.Reasons)
		r.res.Champion = champ
		return nil
	}
	next := Champion{RunID: r.res.RunID, Model: r.path(challenger), Metric: report.MetricMean}
	for _, tv := range r.res.Tasks {
		next.Tasks = append(next.Tasks, ChampionTask{Task: tv.Task, Metric: tv.Metric, Value: tv.Value})
		next.Value += tv.Value / float64(len(r.res.Tasks))
	}
	return r.promote(ctx, next, champ, champGen)
}

// taskNames lists the tasks of a multi-task config, for logs.
func (c RetrainConfig) taskNames() string {
	names := make([]string, len(c.Tasks))
	for i, t := range c.Tasks {
		names[i] = t.Name
	}
	return strings.Join(names, ",")
}
