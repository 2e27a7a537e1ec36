// Package report is the evaluation report and the promotion gate.
//
// report.json (types.go, Schema) is the source of truth: metrics with
// confidence intervals per model, comparisons, calibration, slices, speed,
// training logs and the gate's verdict. report.md (markdown.go) and the
// self-contained report.html with inline SVG charts (html.go, svg.go) are
// pure functions of it, sharing one number formatting (format.go). Write
// refuses NaN and ±Inf and writes report.json last, atomically; Read and
// Parse check the schema. gate.go decides whether a challenger may replace
// the champion, and why. log.go is the training-log entry the trainer writes
// and the report charts.
//
// It computes no metrics itself (transforms.MetricsFn does, on Beam) and
// knows no Beam or libtorch. docs/report.md documents the format.
//
// Imports: the standard library and beamtune's storage.
package report
