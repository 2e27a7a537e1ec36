package trainer

import (
	"context"
	"fmt"
	"log/slog"
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
	man       *dataset.Manifest
	train     *dataset.Rows   // every training row; nil when streamed
	stream    *dataset.Stream // the training rows' stream; nil in memory
	// probe is the first training rows, for what a run checks before it
	// starts (teacher logits, hidden-state widths), streamed or not.
	probe      *dataset.Rows
	trainRows  int64
	valid      *dataset.Rows // the validation rows evaluations score (a sample above EvalRows)
	validTotal int64         // rows in the validation split
	distill    bool          // the training rows carry teacher logits
	hidden     *hiddenLoss   // nil without a hidden-state loss
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
	if tt.stream != nil {
		tt.stream.Close()
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
func loadTask(ctx context.Context, s TaskSpec, cfg Config, tasks int, dev model.Device) (_ *trialTask, _ *dataset.Manifest, err error) {
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
	tt.man = man
	streaming, err := resolveInput(cfg, man, tasks)
	if err != nil {
		return nil, nil, err
	}
	if streaming {
		if err := tt.openStream(ctx, cfg); err != nil {
			return nil, nil, err
		}
	} else {
		if tt.train, err = dataset.LoadSplit(ctx, s.Data, man, dataset.SplitTrain); err != nil {
			return nil, nil, err
		}
		tt.probe, tt.trainRows = tt.train, int64(tt.train.Len())
	}
	if tt.valid, tt.validTotal, err = dataset.SampleSplit(ctx, s.Data, man, dataset.SplitValidation, cfg.EvalRows); err != nil {
		return nil, nil, err
	}
	if int64(tt.valid.Len()) < tt.validTotal {
		slog.Info("train: evaluations score a sample of the validation split", "data", s.Data, "rows", tt.valid.Len(), "of", tt.validTotal, "eval_rows", cfg.EvalRows)
	}
	if tt.trainRows == 0 {
		return nil, nil, fmt.Errorf("%s has no training rows", s.Data)
	}
	tt.distill = tt.probe.HasTeacher()
	tt.kind, tt.labels = man.TaskKind(), man.Labels
	if tt.metric, err = report.CheckMetric(tt.kind, s.Metric); err != nil {
		return nil, nil, err
	}
	if cfg.PosWeight && tt.kind == dataset.MultiLabel {
		if tt.posWeight, err = tt.positiveWeights(ctx, dev); err != nil {
			return nil, nil, err
		}
	}
	return tt, man, nil
}

// openStream opens the training split as a stream and reads its first
// rows as the probe.
func (tt *trialTask) openStream(ctx context.Context, cfg Config) error {
	var err error
	// A window holds at least eight blocks, so that it mixes rows from
	// every open shard and from all of each shard's length range.
	window := cfg.BatchSize * max(cfg.ShuffleBuffer, 1)
	tt.stream, err = dataset.NewStream(tt.data, tt.man, dataset.SplitTrain, dataset.StreamConfig{
		BatchSize: cfg.BatchSize, WindowRows: window, BlockRows: max(1, min(dataset.DefaultBlockRows, window/8)), Seed: cfg.Seed})
	if err != nil {
		return err
	}
	if tt.trainRows = tt.stream.Rows(); tt.trainRows == 0 {
		return nil
	}
	plan := tt.stream.Plan(0)
	if tt.probe, _, err = tt.stream.Window(ctx, plan, 0); err != nil {
		return err
	}
	slog.Info("train: streaming the training split", "data", tt.data, "rows", tt.trainRows, "window_rows", tt.probe.Len())
	return nil
}

// positiveWeights is BCEWithLogitsLoss's pos_weight from every training
// row (counted in a streamed pass when the rows are not in memory).
func (tt *trialTask) positiveWeights(ctx context.Context, dev model.Device) (*ts.Tensor, error) {
	pos := make([]int64, len(tt.labels))
	count := func(r *dataset.Rows) error {
		for _, labels := range r.Multi {
			for _, l := range labels {
				if l >= 0 && int(l) < len(pos) {
					pos[l]++
				}
			}
		}
		return nil
	}
	if tt.train != nil {
		_ = count(tt.train)
	} else if err := dataset.EachRows(ctx, tt.data, tt.man, dataset.SplitTrain, fullEvalChunk, count); err != nil {
		return nil, err
	}
	return positiveWeights(pos, tt.trainRows, dev)
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
