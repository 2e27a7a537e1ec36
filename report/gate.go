package report

import (
	"fmt"

	"github.com/beamtune/beamtune/dataset"
)

// GateConfig is the promotion gate: how much worse than the champion a
// challenger may be and still be promoted. Values are in points (0.2 = 0.2
// percentage points).
type GateConfig struct {
	MaxAccuracyDrop    float64 `json:"max_accuracy_drop" yaml:"max_accuracy_drop"`         // challenger accuracy >= champion - this
	MaxMacroF1Drop     float64 `json:"max_macro_f1_drop" yaml:"max_macro_f1_drop"`         // challenger macro-F1 >= champion - this
	MaxClassRecallDrop float64 `json:"max_class_recall_drop" yaml:"max_class_recall_drop"` // no class's recall lower by more than this
	MinAccuracy        float64 `json:"min_accuracy" yaml:"min_accuracy"`                   // absolute floor, also without a champion (0: none)
	// Metric is the metric the gate compares ("" for the task's main one:
	// accuracy, macro-F1 for multi-label, Pearson for regression; see
	// GateMetrics). Single-label gates always check accuracy, macro-F1 and
	// class recalls; another Metric adds its own check.
	Metric        string  `json:"metric,omitempty" yaml:"metric"`
	MaxMetricDrop float64 `json:"max_metric_drop" yaml:"max_metric_drop"` // points of Metric (×100: Pearson 0.5 points = 0.005) the challenger may lose, when no check above covers it
	MinMetric     float64 `json:"min_metric,omitempty" yaml:"min_metric"` // floor on Metric in points, also without a champion (0: none)
}

// DefaultGate blesses a challenger that is no worse than the champion beyond
// noise: 0.2 points of accuracy, 0.5 of macro-F1 or of the gate's metric, 2
// of any class's recall.
func DefaultGate() GateConfig {
	return GateConfig{MaxAccuracyDrop: 0.2, MaxMacroF1Drop: 0.5, MaxClassRecallDrop: 2.0, MaxMetricDrop: 0.5}
}

// Gate decides whether challenger may replace champion (nil: no champion yet).
func Gate(cfg GateConfig, challenger ModelReport, champion *ModelReport) GateResult {
	res := GateResult{Challenger: challenger.Name}
	add := func(c GateCheck) {
		res.Checks = append(res.Checks, c)
		if !c.Passed {
			res.Reasons = append(res.Reasons, c.Detail)
		}
	}
	ch := challenger.Metrics
	task := ch.Task
	if task == "" {
		task = dataset.SingleLabel // reports from before task kinds
	}
	metric, err := CheckGateMetric(task, cfg.Metric)
	if err != nil {
		add(GateCheck{Name: "gate_metric", Detail: err.Error()})
		res.Verdict = verdict(res.Checks)
		return res
	}
	single := task == dataset.SingleLabel
	if cfg.MinMetric > 0 {
		v, ci, _ := ch.Value(metric)
		add(GateCheck{Name: "min_" + metric, Value: 100 * v, Threshold: cfg.MinMetric, Passed: 100*v >= cfg.MinMetric,
			Detail: fmt.Sprintf("%s %s against a floor of %.2f", metric, pointsWithCI(v, ci), cfg.MinMetric)})
	}
	if cfg.MinAccuracy > 0 && single {
		v := 100 * ch.Accuracy
		add(GateCheck{Name: "min_accuracy", Value: v, Threshold: cfg.MinAccuracy, Passed: v >= cfg.MinAccuracy,
			Detail: fmt.Sprintf("accuracy %.2f%% against a floor of %.2f%%", v, cfg.MinAccuracy)})
	}
	if champion == nil {
		res.Verdict = verdict(res.Checks)
		if res.Verdict == VerdictBlessed {
			res.Reasons = append(res.Reasons, "no champion yet: the first model that passes the floor is promoted")
		}
		return res
	}
	res.Champion = champion.Name
	cp := champion.Metrics
	if !single || (metric != MetricAccuracy && metric != MetricMacroF1) {
		limit := cfg.MaxMetricDrop
		if metric == MetricMacroF1 {
			limit = cfg.MaxMacroF1Drop
		}
		v, ci, _ := ch.Value(metric)
		base, baseCI, _ := cp.Value(metric)
		d := 100 * (v - base)
		add(GateCheck{Name: metric + "_drop", Value: d, Threshold: -limit, Passed: d >= -limit,
			Detail: fmt.Sprintf("%s %s vs champion %s (%+.2f points; allowed -%.2f)", metric, pointsWithCI(v, ci), pointsWithCI(base, baseCI), d, limit)})
	}
	if !single {
		res.Verdict = verdict(res.Checks)
		if res.Verdict == VerdictBlessed {
			res.Reasons = append(res.Reasons, "every check passed")
		}
		return res
	}
	dAcc := 100 * (ch.Accuracy - cp.Accuracy)
	add(GateCheck{Name: "accuracy_drop", Value: dAcc, Threshold: -cfg.MaxAccuracyDrop, Passed: dAcc >= -cfg.MaxAccuracyDrop,
		Detail: fmt.Sprintf("accuracy %.2f%% vs champion %.2f%% (%+.2f points; allowed -%.2f)", 100*ch.Accuracy, 100*cp.Accuracy, dAcc, cfg.MaxAccuracyDrop)})
	dF1 := 100 * (ch.MacroF1 - cp.MacroF1)
	add(GateCheck{Name: "macro_f1_drop", Value: dF1, Threshold: -cfg.MaxMacroF1Drop, Passed: dF1 >= -cfg.MaxMacroF1Drop,
		Detail: fmt.Sprintf("macro-F1 %.2f vs champion %.2f (%+.2f points; allowed -%.2f)", 100*ch.MacroF1, 100*cp.MacroF1, dF1, cfg.MaxMacroF1Drop)})
	recall := map[string]float64{}
	for _, c := range cp.PerClass {
		recall[c.Label] = c.Recall
	}
	for _, c := range ch.PerClass {
		base, ok := recall[c.Label]
		if !ok {
			continue
		}
		d := 100 * (c.Recall - base)
		add(GateCheck{Name: "recall_drop:" + c.Label, Value: d, Threshold: -cfg.MaxClassRecallDrop, Passed: d >= -cfg.MaxClassRecallDrop,
			Detail: fmt.Sprintf("recall of class %q %.2f%% vs champion %.2f%% (%+.2f points; allowed -%.2f)", c.Label, 100*c.Recall, 100*base, d, cfg.MaxClassRecallDrop)})
	}
	res.Verdict = verdict(res.Checks)
	if res.Verdict == VerdictBlessed {
		res.Reasons = append(res.Reasons, "every check passed")
	}
	return res
}

func verdict(checks []GateCheck) string {
	for _, c := range checks {
		if !c.Passed {
			return VerdictRejected
		}
	}
	return VerdictBlessed
}

// pointsWithCI writes a metric in points (×100) with its interval when it
// has one.
func pointsWithCI(v float64, ci Interval) string {
	if ci == (Interval{}) {
		return fmt.Sprintf("%.2f", 100*v)
	}
	return fmt.Sprintf("%.2f [%.2f, %.2f]", 100*v, 100*ci.Low, 100*ci.High)
}

// Compare relates other to base (e.g. student to teacher) on metric (""
// for the task's main one; the gate's metric, so that "kept" speaks of what
// the gate compares) and, for classification, accuracy and macro-F1.
func Compare(base, other ModelReport, metric string) Comparison {
	task := base.Metrics.Task
	if task == "" {
		task = dataset.SingleLabel
	}
	if metric == "" {
		metric = MainMetric(task)
	}
	c := Comparison{Base: base.Name, Other: other.Name, Metric: metric}
	if task != dataset.Regression {
		c.AccuracyDelta = other.Metrics.Accuracy - base.Metrics.Accuracy
		c.MacroF1Delta = other.Metrics.MacroF1 - base.Metrics.MacroF1
		if base.Metrics.Accuracy > 0 {
			c.AccuracyKept = other.Metrics.Accuracy / base.Metrics.Accuracy
		}
	}
	bv, _, _ := base.Metrics.Value(c.Metric)
	ov, _, _ := other.Metrics.Value(c.Metric)
	c.MetricDelta = ov - bv
	if bv > 0 {
		c.MetricKept = ov / bv
	}
	if base.Speed.ExamplesPerSec > 0 {
		c.Speedup = other.Speed.ExamplesPerSec / base.Speed.ExamplesPerSec
	}
	if base.SizeBytes > 0 {
		c.SizeRatio = float64(other.SizeBytes) / float64(base.SizeBytes)
	}
	return c
}
