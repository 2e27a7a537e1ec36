package report

// The evaluation report's data model. report.json is this structure, under
// Schema; report.md and report.html are rendered from it. Fields are
// documented in docs/report.md.

import "fmt"

// Schema names the report format; readers refuse other versions.
const Schema = "beamtune.report/v1"

// Interval is a two-sided confidence interval.
type Interval struct {
	Low  float64 `json:"low"`
	High float64 `json:"high"`
}

// ClassMetrics are one class's scores (one-vs-rest).
type ClassMetrics struct {
	Label     string  `json:"label"`
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	Support   int64   `json:"support"` // true examples of the class
	// AveragePrecision is the area under the class's precision-recall
	// curve (multi-label reports).
	AveragePrecision float64 `json:"average_precision,omitempty"`
	// Threshold is the probability above which a multi-label class is
	// predicted.
	Threshold float64 `json:"threshold,omitempty"`
}

// ReliabilityBin is one bin of the reliability diagram: predictions whose
// top probability falls in [Lower, Upper).
type ReliabilityBin struct {
	Lower      float64 `json:"lower"`
	Upper      float64 `json:"upper"`
	Count      int64   `json:"count"`
	Confidence float64 `json:"confidence"` // mean top probability
	Accuracy   float64 `json:"accuracy"`   // share correct
}

// TopK is top-k accuracy for one k.
type TopK struct {
	K        int     `json:"k"`
	Accuracy float64 `json:"accuracy"`
}

// Metrics are a model's scores on a set of labelled predictions. Task says
// which fields are filled:
//   - single-label classification (Task "" in reports written before task
//     kinds existed): everything at the top level but Regression and
//     MultiLabel; MCC always, PositiveF1 for two classes;
//   - multi-label: Accuracy is subset accuracy, the F1s and PerClass are over
//     the labels as decided at their thresholds, MultiLabel holds the rest;
//     no confusion matrix, calibration or top-k;
//   - regression: Regression only.
type Metrics struct {
	Task        string           `json:"task,omitempty"` // the dataset's task kind
	Examples    int64            `json:"examples"`
	Accuracy    float64          `json:"accuracy"`
	AccuracyCI  Interval         `json:"accuracy_ci95"` // seeded Poisson bootstrap
	MacroF1     float64          `json:"macro_f1"`
	MacroF1CI   Interval         `json:"macro_f1_ci95"`
	MicroF1     float64          `json:"micro_f1"`
	WeightedF1  float64          `json:"weighted_f1"`
	LogLoss     float64          `json:"log_loss"`
	ECE         float64          `json:"ece"` // expected calibration error, 15 equal-width bins
	Reliability []ReliabilityBin `json:"reliability"`
	TopK        []TopK           `json:"top_k,omitempty"` // k = 2..min(5, classes-1), when classes > 2
	PerClass    []ClassMetrics   `json:"per_class"`
	// Confusion[i][j] counts examples of true class i predicted as j.
	Confusion [][]int64 `json:"confusion"`
	Labels    []string  `json:"labels"`

	// MCC is the Matthews correlation coefficient (single-label; the
	// multi-class generalization above two classes).
	MCC float64 `json:"mcc,omitempty"`
	// PositiveF1 is the F1 of class 1 of a two-class task (GLUE's F1 for
	// MRPC), with its interval.
	PositiveF1   float64            `json:"positive_f1,omitempty"`
	PositiveF1CI Interval           `json:"positive_f1_ci95,omitzero"`
	MultiLabel   *MultiLabelMetrics `json:"multi_label,omitempty"`
	Regression   *RegressionMetrics `json:"regression,omitempty"`
}

// MultiLabelMetrics are what a multi-label report adds to the F1s and the
// per-label table.
type MultiLabelMetrics struct {
	MicroF1CI   Interval `json:"micro_f1_ci95"`
	SamplesF1   float64  `json:"samples_f1"`   // F1 per example, averaged (an example with no true and no predicted label scores 0)
	HammingLoss float64  `json:"hamming_loss"` // share of wrong (example, label) decisions
	// MacroAveragePrecision averages the labels' PR-AUC.
	MacroAveragePrecision float64 `json:"macro_average_precision"`
	// LabelCardinality and PredictedCardinality are the mean number of
	// true and of predicted labels per example.
	LabelCardinality     float64 `json:"label_cardinality"`
	PredictedCardinality float64 `json:"predicted_cardinality"`
	// Thresholds names how labels were decided: "per_label" or "global"
	// (tuned on the validation split when the model was trained), or
	// "fixed" (one given probability).
	Thresholds string `json:"thresholds"`
}

// RegressionMetrics are a regression model's scores.
type RegressionMetrics struct {
	Pearson    float64  `json:"pearson"`
	PearsonCI  Interval `json:"pearson_ci95"`
	Spearman   float64  `json:"spearman"`
	SpearmanCI Interval `json:"spearman_ci95"`
	MSE        float64  `json:"mse"`
	MAE        float64  `json:"mae"`
	// MeanResidual is mean(prediction − truth): positive when the model
	// scores too high.
	MeanResidual float64 `json:"mean_residual"`
	// Points are up to ScatterPoints (truth, prediction) pairs for the
	// scatter plot, a fixed pseudo-random sample of the examples.
	Points [][2]float32 `json:"points,omitempty"`
}

// ScatterPoints caps RegressionMetrics.Points.
const ScatterPoints = 1000

// SliceMetrics are the metrics of one slice of the evaluation set.
type SliceMetrics struct {
	Column  string  `json:"column"` // "length" (token-length bucket) or a user column
	Value   string  `json:"value"`
	Metrics Metrics `json:"metrics"`
}

// Speed is a model's measured inference cost.
type Speed struct {
	Threads        int     `json:"threads"`
	LatencyP50Ms   float64 `json:"latency_p50_ms"` // batch 1
	LatencyP95Ms   float64 `json:"latency_p95_ms"`
	ExamplesPerSec float64 `json:"examples_per_s"` // batch 32
	SeqLen         int     `json:"seq_len"`        // tokens per example in the speed runs
}

// ModelReport is one evaluated model.
type ModelReport struct {
	Name      string `json:"name"` // teacher, student, champion, ...
	Dir       string `json:"dir"`
	Params    int64  `json:"params"`
	Layers    int    `json:"layers"`
	SizeBytes int64  `json:"size_bytes"` // model.safetensors (a LoRA adapter's: adapter_model.safetensors)
	// TrainableParams is how many of Params its training updated, when
	// that was a subset (LoRA, BitFit, frozen layers); 0 otherwise.
	TrainableParams int64 `json:"trainable_params,omitempty"`
	// Adapter describes a LoRA adapter folder evaluated over its base
	// ("LoRA r=8"); empty for a plain model folder.
	Adapter string `json:"adapter,omitempty"`
	// Quantize is how the model ran: "none" (float32), "int8" or "int8_per_channel" (linear
	// layers quantized at load; the folder stays float32).
	Quantize string         `json:"quantize,omitempty"`
	Speed    Speed          `json:"speed"`
	Metrics  Metrics        `json:"metrics"`
	Slices   []SliceMetrics `json:"slices,omitempty"`
	// TrainingLog is the model's training_log.jsonl, when the folder has one.
	TrainingLog []LogEntry `json:"training_log,omitempty"`
}

// ParamsCell is the Params column: the count, and the trained part when
// training updated only some of the weights.
func (m ModelReport) ParamsCell() string {
	if m.TrainableParams > 0 && m.TrainableParams < m.Params {
		return fmt.Sprintf("%s (%s trained)", human(m.Params), human(m.TrainableParams))
	}
	return human(m.Params)
}

// Comparison relates two models (student vs teacher, challenger vs champion).
type Comparison struct {
	Base  string `json:"base"` // the reference model
	Other string `json:"other"`
	// Metric is the task's main metric (accuracy, macro_f1 or pearson);
	// MetricKept is other ÷ base on it and MetricDelta other − base.
	Metric        string  `json:"metric,omitempty"`
	MetricKept    float64 `json:"metric_kept,omitempty"`
	MetricDelta   float64 `json:"metric_delta,omitempty"`
	AccuracyKept  float64 `json:"accuracy_kept"` // other.accuracy / base.accuracy
	AccuracyDelta float64 `json:"accuracy_delta"`
	MacroF1Delta  float64 `json:"macro_f1_delta"`
	Speedup       float64 `json:"speedup"`    // other / base examples per second at batch 32
	SizeRatio     float64 `json:"size_ratio"` // other / base bytes
}

// GateCheck is one rule of the promotion gate.
type GateCheck struct {
	Name      string  `json:"name"`
	Value     float64 `json:"value"`     // what was measured (e.g. accuracy delta in points)
	Threshold float64 `json:"threshold"` // the limit
	Passed    bool    `json:"passed"`
	Detail    string  `json:"detail"`
}

// Gate verdicts.
const (
	VerdictBlessed  = "blessed"  // the challenger may replace the champion
	VerdictRejected = "rejected" // a check failed; GateResult.Reasons says which
)

// GateResult is the promotion verdict for a challenger against the champion.
type GateResult struct {
	Challenger string      `json:"challenger"`
	Champion   string      `json:"champion"` // "" when there is no champion yet
	Verdict    string      `json:"verdict"`  // VerdictBlessed or VerdictRejected
	Reasons    []string    `json:"reasons"`  // one per failed check (the check's Detail), or why it passed
	Checks     []GateCheck `json:"checks"`
}

// Report is what evaluate writes as report.json.
type Report struct {
	Schema      string        `json:"schema"`
	CreatedAt   string        `json:"created_at"`
	Dataset     string        `json:"dataset"` // the prepared dataset folder
	Split       string        `json:"split"`
	Examples    int64         `json:"examples"`
	Models      []ModelReport `json:"models"`
	Comparisons []Comparison  `json:"comparisons"`
	Gate        *GateResult   `json:"gate,omitempty"`
}
