package report

// The evaluation report's data model. report.json is this structure, under
// Schema; report.md and report.html are rendered from it. Fields are
// documented in docs/report.md.

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

// Metrics are a model's scores on a set of labelled predictions.
type Metrics struct {
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
}

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
	Name      string         `json:"name"` // teacher, student, champion, ...
	Dir       string         `json:"dir"`
	Params    int64          `json:"params"`
	Layers    int            `json:"layers"`
	SizeBytes int64          `json:"size_bytes"` // model.safetensors
	Speed     Speed          `json:"speed"`
	Metrics   Metrics        `json:"metrics"`
	Slices    []SliceMetrics `json:"slices,omitempty"`
	// TrainingLog is the model's training_log.jsonl, when the folder has one.
	TrainingLog []LogEntry `json:"training_log,omitempty"`
}

// Comparison relates two models (student vs teacher, challenger vs champion).
type Comparison struct {
	Base          string  `json:"base"` // the reference model
	Other         string  `json:"other"`
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
