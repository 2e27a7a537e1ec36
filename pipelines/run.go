package pipelines

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/runners"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"
)

// ErrNotExecuted is returned by run, and so by every Run* function, when the
// Dataflow runner only described the job instead of running it: --dry_run
// prints the job, --template_location stages it as a template (which is what a
// Flex Template launch asks for). The pipeline's outputs do not exist yet, so
// nothing after the run may read them; a command should report this and exit 0.
var ErrNotExecuted = errors.New("the job was described, not run (Dataflow --dry_run or --template_location)")

// run executes p on the named runner, or on the one --runner names (prism by
// default) when runner is "".
func run(ctx context.Context, runner string, p *beam.Pipeline) (beam.PipelineResult, error) {
	var res beam.PipelineResult
	var err error
	name := runner
	if name == "" {
		name = *runners.Runner
	}
	if name == "" {
		name = "prism"
	}
	// The checks before a pipeline are over: from here on, work runs on
	// Beam's workers.
	slog.Info("pipeline starts", "runner", name)
	if runner == "" {
		res, err = beamx.RunWithMetrics(ctx, p)
	} else {
		res, err = beam.Run(ctx, runner, p)
	}
	if err != nil {
		return nil, fmt.Errorf("pipeline failed: %w", err)
	}
	if describedOnly(runner) {
		return nil, ErrNotExecuted
	}
	return res, nil
}

// describedOnly reports whether the Dataflow runner was told to stop after
// writing the job down. Its return value cannot tell: a dry run gives a nil
// result, a template a non-nil interface around a nil pointer.
func describedOnly(runner string) bool {
	if runner == "" {
		runner = *runners.Runner
	}
	if runner != "dataflow" && runner != "DataflowRunner" {
		return false
	}
	return flagValue("dry_run") == "true" || flagValue("template_location") != ""
}

func flagValue(name string) string {
	if f := flag.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// SetBeamFlags sets Beam's command-line flags (--project, --region,
// --sdk_container_image, --dataflow_service_options, ...) from code, for runner
// options that come from a config file rather than the command line, and for
// tests. Beam reads these flags as process-wide globals, and the runners copy
// set flags into beam.PipelineOptions only where no value is there yet, so
// restore puts both back as they were. Flags that accumulate values
// (--resource_hints, --sdk_harness_container_image_override) are refused:
// setting them again would append, not restore.
func SetBeamFlags(values map[string]string) (restore func(), err error) {
	names := make([]string, 0, len(values))
	for n := range values {
		names = append(names, n)
	}
	sort.Strings(names) // deterministic: the first bad name is always the same one
	type saved struct{ name, flagVal, optVal string }
	var done []saved
	restore = func() {
		for i := len(done) - 1; i >= 0; i-- {
			s := done[i]
			_ = flag.Set(s.name, s.flagVal) // it held this value before, so it parses
			beam.PipelineOptions.Set(s.name, s.optVal)
		}
		done = nil
	}
	for _, n := range names {
		f := flag.Lookup(n)
		if f == nil {
			restore()
			return nil, fmt.Errorf("no Beam flag --%s (misspelt, or its runner is not linked in)", n)
		}
		if g, ok := f.Value.(flag.Getter); !ok || !scalar(g.Get()) {
			restore()
			return nil, fmt.Errorf("--%s takes a list that cannot be restored; give it on the command line", n)
		}
		s := saved{n, f.Value.String(), beam.PipelineOptions.Get(n)}
		if err := flag.Set(n, values[n]); err != nil {
			restore()
			return nil, fmt.Errorf("--%s=%s: %w", n, values[n], err)
		}
		done = append(done, s)
	}
	return restore, nil
}

func scalar(v any) bool {
	switch v.(type) {
	case string, bool, int, int64, uint, uint64, float64, time.Duration:
		return true
	}
	return false
}
