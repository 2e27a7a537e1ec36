package report

// TrainLogFile is the training log's name in a trial's folder: one LogEntry
// per line, as JSON. The trainer writes it; evaluate reads it back (from the
// published model folder, under PublishedTrainLogFile) to chart the loss.
const TrainLogFile = "log.jsonl"

// PublishedTrainLogFile is the training log's name in a published model
// folder, next to the model's own files.
const PublishedTrainLogFile = "training_log.jsonl"

// LogEntry kinds.
const (
	LogTrain = "train" // a training entry: mean loss since the last one, learning rate, pace
	LogEval  = "eval"  // an evaluation on the validation split
)

// LogEntry is one line of a trial's training log.
type LogEntry struct {
	Kind     string  `json:"kind"` // LogTrain or LogEval
	Step     int64   `json:"step"`
	Epoch    float64 `json:"epoch"`
	Loss     float64 `json:"loss"`
	LR       float64 `json:"lr,omitempty"`
	GradNorm float64 `json:"grad_norm,omitempty"`
	Accuracy float64 `json:"accuracy,omitempty"`
	// Metric is an eval entry's main metric when the task's is not
	// accuracy (multi-label macro-F1, regression Pearson), named by MetricName.
	Metric      float64 `json:"metric,omitempty"`
	MetricName  string  `json:"metric_name,omitempty"`
	ExamplesSec float64 `json:"examples_per_s,omitempty"`
	// Task names the task of a multi-task run's per-task eval entry; its
	// entry without a task holds the tasks' mean (MetricName MetricMean).
	Task string `json:"task,omitempty"`
	Time string `json:"time"`
}
