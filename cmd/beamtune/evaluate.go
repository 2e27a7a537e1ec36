package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/beamtune/beamtune/pipelines"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/storage"
)

// evaluateCmd: beamtune evaluate.
type evaluateCmd struct {
	o      pipelines.EvaluateOptions
	prot   protection
	models []string // --model as given; parsed into o.Models
	edges  []string // --length_slices as given; parsed into o.LengthEdges
}

func (c *evaluateCmd) register(f *flagSet) {
	c.o.Gate = report.DefaultGate()
	o := &c.o
	f.section("Data")
	f.stringVar(&o.Data, "data", "", "prepared dataset folder")
	f.stringVar(&o.Split, "split", "", "split to score (default: test if present, else validation)")

	f.section("Models")
	f.repeatVar(&c.models, "model", "name=folder of a model to evaluate; repeat (the first is the reference, e.g. teacher=RUN/teacher)")
	f.stringVar(&o.Champion, "champion", "", "folder of the current champion, scored as \"champion\"")
	f.stringVar(&o.Challenger, "challenger", "", "name of the model gated against the champion")

	f.section("Gate")
	f.float64Var(&o.Gate.MaxAccuracyDrop, "gate_max_accuracy_drop", o.Gate.MaxAccuracyDrop, "points of accuracy the challenger may lose")
	f.float64Var(&o.Gate.MaxMacroF1Drop, "gate_max_macro_f1_drop", o.Gate.MaxMacroF1Drop, "points of macro-F1 the challenger may lose")
	f.float64Var(&o.Gate.MaxClassRecallDrop, "gate_max_class_recall_drop", o.Gate.MaxClassRecallDrop, "points of any class's recall the challenger may lose")
	f.float64Var(&o.Gate.MinAccuracy, "gate_min_accuracy", 0, "accuracy floor in percent, also without a champion")
	f.stringVar(&o.Gate.Metric, "gate_metric", "", "metric the gate compares (default: accuracy; macro_f1 for multi-label; pearson for regression; also f1, mcc, micro_f1, samples_f1, spearman)")
	f.float64Var(&o.Gate.MaxMetricDrop, "gate_max_metric_drop", o.Gate.MaxMetricDrop, "points (×100) of --gate_metric the challenger may lose, when it is not accuracy or macro-F1")
	f.float64Var(&o.Gate.MinMetric, "gate_min_metric", 0, "floor on --gate_metric in points (×100), also without a champion")

	f.section("Report")
	f.stringVar(&o.Output, "output", "", "report folder (local or gs://)")
	f.listVar(&c.edges, "length_slices", "token-length slice bounds (default 16,32,64,128)")
	f.int64Var(&o.Seed, "seed", 1, "bootstrap seed")
	f.stringVar(&o.Threshold, "threshold", "", "multi-label models: per_label (default: each model's thresholds tuned on validation), global, or a probability")
	f.stringVar(&o.Quantize, "quantize", "", "none (float32), int8 (linear layers quantized at load, one weight scale per matrix as PyTorch's quantize_dynamic; CPU; falls back to float32 where int8 cannot run) or int8_per_channel (a scale per output row); per model: --model name=folder,quantize=int8")
	f.stringVar(&o.Precision, "precision", "fp32", precisionUsage+"; also the speed runs'")
	f.intVar(&o.SpeedSeqLen, "speed_seq_len", 0, "tokens per example in the speed runs (0: the split's median)")

	f.section("Compute")
	f.intVar(&o.InferBatch, "infer_batch", 64, "inference batch size")
	f.stringVar(&o.Device, "device", "auto", "auto, cpu, cuda or cuda:N")
	f.intVar(&o.Threads, "threads", 0, "libtorch threads (0: libtorch's default)")
	c.prot.register(f, &c.o.Security, false)
}

func (c *evaluateCmd) run(ctx context.Context) error {
	if err := c.prot.resolve(ctx); err != nil {
		return err
	}
	for _, m := range c.models {
		nm, err := pipelines.ParseNamedModel(m)
		if err != nil {
			return err
		}
		c.o.Models = append(c.o.Models, nm)
	}
	for _, e := range c.edges {
		n, err := strconv.Atoi(e)
		if err != nil {
			return fmt.Errorf("--length_slices: %q is not a number", e)
		}
		c.o.LengthEdges = append(c.o.LengthEdges, int32(n))
	}
	res, err := pipelines.RunEvaluate(ctx, c.o)
	if err != nil {
		return err
	}
	printReport(res)
	return nil
}

func printReport(res *pipelines.EvaluateResult) {
	r := res.Report
	fmt.Printf("evaluate: %d examples of %s/%s\n", r.Examples, r.Dataset, r.Split)
	for _, m := range r.Models {
		fmt.Printf("  %-10s %s\n  %-10s %d layers  %.1fM params  p50 %.1f ms  %.0f ex/s (batch 32, %d threads)\n",
			m.Name, report.QualityLine(r, m.Metrics), "", m.Layers, float64(m.Params)/1e6, m.Speed.LatencyP50Ms, m.Speed.ExamplesPerSec, m.Speed.Threads)
	}
	for _, c := range r.Comparisons {
		fmt.Printf("  %s vs %s: %s kept %.1f%%, speedup %.2fx, size %.2fx\n", c.Other, c.Base, c.Metric, 100*c.MetricKept, c.Speedup, c.SizeRatio)
	}
	if g := r.Gate; g != nil {
		fmt.Printf("  gate: %s %s (%v)\n", g.Challenger, g.Verdict, g.Reasons)
	}
	fmt.Printf("report: %s\n", storage.Join(res.Dir, report.HTMLFile))
}
