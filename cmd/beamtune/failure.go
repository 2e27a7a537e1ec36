package main

import (
	"context"
	"errors"
	"log"
	"log/slog"
	"runtime"
	"strings"

	"github.com/beamtune/beamtune/pipelines"
)

// exitStatus is the process status for a command's error: 2 for bad input
// (pipelines.ErrBadInput: a model folder, dataset, input or output that
// cannot be used), 1 for a failure while running, or what the command says
// (retrain's 3 and 4).
func exitStatus(cmd command, err error) int {
	if ec, ok := cmd.(interface{ exitCode(error) int }); ok {
		return ec.exitCode(err)
	}
	if errors.Is(err, pipelines.ErrBadInput) {
		return 2
	}
	return 1
}

// rootCause is the one line a person needs from an error: for a pipeline
// that failed on a worker, the innermost error a DoFn returned, without the
// job's and bundle's wrapping, the execution plan Beam prints, or libtorch's
// C++ stack; for any other error, its first line.
func rootCause(err error) string {
	msg := err.Error()
	// Beam nests a failed bundle as "...plan...\n\tcaused by:\n<inner>";
	// the last cause is the innermost.
	if i := strings.LastIndex(msg, "caused by:"); i >= 0 {
		msg = msg[i+len("caused by:"):]
	}
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		// "DoFn[UID:6, PID:e9, Name: .../transforms.PredictExamplesFn] failed:"
		// heads the DoFn's own error, on the lines after it.
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "DoFn[") && strings.HasSuffix(t, "failed:") {
			lines = lines[i+1:]
			break
		}
	}
	for _, l := range lines {
		if t := strings.TrimSpace(l); t != "" {
			return t
		}
	}
	return strings.TrimSpace(err.Error())
}

// quietHandler keeps Beam's own log lines out of a command's output unless
// --verbose is given: its job-service chatter at INFO, and its reports of a
// failed bundle, which print the whole execution plan and repeat the error
// that the command's last line states in one line. Records from beamtune's
// packages (progress of prepare, train, evaluate...), Beam's other warnings
// and the lines that say where a submitted job runs (isJobLink) pass.
type quietHandler struct{ inner slog.Handler }

// quietLogging puts a quietHandler in front of the default handler.
//
// Beam also logs through the standard log package: the in-process worker
// harness sends its log lines to the runner over a stream, and when that
// stream has closed (a failed job shutting down) it writes what is left
// with log.Output. slog's bridge for the standard logger records the
// caller only when the logger's flags ask for a file name, so they are set
// first: then those lines carry a PC in the Beam SDK and are kept out too.
// (Without it they came through, but only when the stream closed before
// the harness flushed: a test failed that way on a busy machine.)
func quietLogging() {
	log.SetFlags(log.Lshortfile)
	slog.SetDefault(slog.New(quietHandler{slog.Default().Handler()}))
}

func (h quietHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if fromBeam(r.PC) && !isJobLink(r.Message) && (r.Level < slog.LevelWarn || isFailureReport(r.Message)) {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

// isJobLink matches Beam's lines that tell where a submitted job can be
// followed: its id on a job server (Flink, Spark), and Dataflow's console
// and log links. A person needs those, verbose or not.
func isJobLink(msg string) bool {
	return strings.HasPrefix(msg, "Submitted job:") || strings.HasPrefix(msg, "Console: ") || strings.HasPrefix(msg, "Logs: ")
}

func (h quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return quietHandler{h.inner.WithAttrs(as)}
}

func (h quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{h.inner.WithGroup(name)}
}

// fromBeam reports whether a log record was made by the Beam SDK (prism,
// the harness, the runners).
func fromBeam(pc uintptr) bool {
	if pc == 0 {
		return false
	}
	f, _ := runtime.CallersFrames([]uintptr{pc}).Next()
	return strings.HasPrefix(f.Function, "github.com/apache/beam/")
}

// isFailureReport matches Beam's log records about a failed bundle or job.
func isFailureReport(msg string) bool {
	for _, s := range []string{"bundle failed", "bundle error", "Bundle Failed", "job failed", "failed:process bundle", "aborting due to bundle error"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return strings.Contains(msg, "\n") // a plan dump, whatever its heading
}
