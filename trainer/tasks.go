package trainer

import (
	"context"
	"fmt"
	"slices"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/report"
	"github.com/sugarme/gotch/ts"
)

// TaskSpec is one task of a multi-task job: a prepared dataset under a
// name, which names the model's head for it.
type TaskSpec struct {
	Name string `json:"name"`
	Data string `json:"data"` // prepared dataset folder (train and validation splits)
	// Weight scales the task's loss (0: 1).
	Weight float64 `json:"weight,omitempty"`
	// Metric is the validation metric of the task ("": its kind's main
	// one); multi-task runs pick the best checkpoint by the tasks' mean.
	Metric string `json:"metric,omitempty"`
}

// TaskBest is one task's validation scores at a trial's best step.
type TaskBest struct {
	Task     string  `json:"task"`
	Metric   string  `json:"metric"`
	Value    float64 `json:"value"`
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"`
}

// trialTask is one task of a trial: its data, kind, metric and loss terms.
// A single-task trial has one, named "" (the model's classifier).
type trialTask struct {
	name      string // head name; "" for a single-task model
	data      string
	weight    float64
	kind      string   // the dataset's kind: loss, targets and metrics
	metric    string   // its validation metric
	labels    []string // class names
	posWeight *ts.Tensor
	train     *dataset.Rows
	valid     *dataset.Rows
	distill   bool        // the training rows carry teacher logits
	hidden    *hiddenLoss // nil without a hidden-state loss
}

// heads is what ForwardTasks needs to run this task's head.
func (tt *trialTask) heads() []string {
	if tt.name == "" {
		return nil
	}
	return []string{tt.name}
}

// head is the model's record of this task's head.
func (tt *trialTask) head() model.TaskHead {
	return model.TaskHead{Name: tt.name, Labels: tt.labels, ProblemType: tt.kind}
}

func (tt *trialTask) free() {
	if tt.posWeight != nil {
		_ = tt.posWeight.Drop()
	}
	tt.hidden.free()
}

// specs is the job's tasks: its Tasks, or one unnamed task of its Data.
func (j Job) specs() ([]TaskSpec, error) {
	if len(j.Tasks) == 0 {
		return []TaskSpec{{Data: j.Data, Metric: j.Config.MetricForBest}}, nil
	}
	if j.Data != "" {
		return nil, fmt.Errorf("give the data as tasks or as one dataset, not both")
	}
	if len(j.Tasks) < 2 {
		return nil, fmt.Errorf("a multi-task job needs two tasks or more; train one task with its dataset alone")
	}
	var names []string
	for _, s := range j.Tasks {
		if err := model.CheckTaskName(s.Name); err != nil {
			return nil, err
		}
		if slices.Contains(names, s.Name) {
			return nil, fmt.Errorf("task %s given twice", s.Name)
		}
		if s.Weight < 0 {
			return nil, fmt.Errorf("task %s: weight %g is negative", s.Name, s.Weight)
		}
		names = append(names, s.Name)
	}
	return j.Tasks, nil
}

// loadTask reads one task's manifest and both splits and checks its metric.
func loadTask(ctx context.Context, s TaskSpec, cfg Config, dev model.Device) (_ *trialTask, _ *dataset.Manifest, err error) {
	tt := &trialTask{name: s.Name, data: s.Data, weight: s.Weight}
	if tt.weight == 0 {
		tt.weight = 1
	}
	defer func() {
		if err != nil {
			tt.free()
			if s.Name != "" {
				err = fmt.Errorf("task %s: %w", s.Name, err)
			}
		}
	}()
	man, err := dataset.ReadManifest(ctx, s.Data)
	if err != nil {
		return nil, nil, err
	}
	if tt.train, err = dataset.LoadSplit(ctx, s.Data, man, dataset.SplitTrain); err != nil {
		return nil, nil, err
	}
	if tt.valid, err = dataset.LoadSplit(ctx, s.Data, man, dataset.SplitValidation); err != nil {
		return nil, nil, err
	}
	if tt.train.Len() == 0 {
		return nil, nil, fmt.Errorf("%s has no training rows", s.Data)
	}
	tt.distill = tt.train.HasTeacher()
	tt.kind, tt.labels = man.TaskKind(), man.Labels
	if tt.metric, err = report.CheckMetric(tt.kind, s.Metric); err != nil {
		return nil, nil, err
	}
	if cfg.PosWeight && tt.kind == dataset.MultiLabel {
		if tt.posWeight, err = positiveWeights(tt.train, len(tt.labels), dev); err != nil {
			return nil, nil, err
		}
	}
	return tt, man, nil
}

// checkPosWeight refuses pos_weight when no task is multi-label.
func checkPosWeight(cfg Config, tasks []*trialTask) error {
	if !cfg.PosWeight {
		return nil
	}
	for _, tt := range tasks {
		if tt.kind == dataset.MultiLabel {
			return nil
		}
	}
	return fmt.Errorf("pos_weight is for %s datasets; %s is %s", dataset.MultiLabel, tasks[0].data, tasks[0].kind)
}

// lengths is each task's training row lengths, for the batch plan.
func lengths(tasks []*trialTask) [][]int32 {
	out := make([][]int32, len(tasks))
	for i, tt := range tasks {
		out[i] = tt.train.Length
	}
	return out
}

// meanScore is the multi-task validation score: the unweighted mean of the
// tasks' metrics and losses (GLUE's average score).
func meanScore(scores []TaskScore) TaskScore {
	m := TaskScore{Metric: report.MetricMean}
	for _, s := range scores {
		m.Value += s.Value
		m.Loss += s.Loss
		m.Accuracy += s.Accuracy
	}
	n := float64(len(scores))
	m.Value, m.Loss, m.Accuracy = m.Value/n, m.Loss/n, m.Accuracy/n
	return m
}
