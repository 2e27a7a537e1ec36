package trainer

import (
	"context"

	"github.com/beamtune/beamtune/report"
)

// Progress is told how a trial advances, so that whoever runs it can show
// it: transforms.TrainFn turns it into Beam metrics. The trainer itself does
// not know Beam. Methods run on the training goroutine and must return
// quickly.
type Progress interface {
	// Stepped follows each optimizer step, with the examples it trained on.
	Stepped(ctx context.Context, examples int)
	// Logged follows each training-log entry: a train entry (mean loss)
	// every LogEvery steps and an eval entry (validation accuracy) at each
	// evaluation.
	Logged(ctx context.Context, e report.LogEntry)
}

// noProgress is the Progress of a caller that watches nothing.
type noProgress struct{}

func (noProgress) Stepped(context.Context, int)            {}
func (noProgress) Logged(context.Context, report.LogEntry) {}
