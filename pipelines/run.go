package pipelines

import (
	"context"
	"fmt"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"
)

// run executes p on the named runner, or on the one --runner names (prism by
// default) when runner is "".
func run(ctx context.Context, runner string, p *beam.Pipeline) (beam.PipelineResult, error) {
	var res beam.PipelineResult
	var err error
	if runner == "" {
		res, err = beamx.RunWithMetrics(ctx, p)
	} else {
		res, err = beam.Run(ctx, runner, p)
	}
	if err != nil {
		return nil, fmt.Errorf("pipeline failed: %w", err)
	}
	return res, nil
}
