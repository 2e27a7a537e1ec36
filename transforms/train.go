package transforms

import (
	"context"
	"fmt"
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/report"
	"github.com/beamtune/beamtune/trainer"
)

func init() {
	register.DoFn3x1[context.Context, trainer.Job, func(trainer.TrialResult), error](&TrainFn{})
	register.Emitter1[trainer.TrialResult]()
	beam.RegisterType(reflect.TypeOf((*trainer.Job)(nil)).Elem())
	beam.RegisterType(reflect.TypeOf((*trainer.TrialResult)(nil)).Elem())
}

// TrainFn trains one trial per element on a worker. Each element carries its
// own hyperparameters, so a sweep's trials run on parallel trainer instances.
type TrainFn struct{}

// ProcessElement runs the trial on this worker's locked OS thread.
func (fn *TrainFn) ProcessElement(ctx context.Context, job trainer.Job, emit func(trainer.TrialResult)) error {
	res, err := trainer.Train(ctx, job, trainMetrics{})
	if err != nil {
		return fmt.Errorf("trial %s: %w", job.Trial, err)
	}
	emit(res)
	return nil
}

var (
	trainSteps    = beam.NewCounter("beamtune.train", "optimizer_steps")
	trainExamples = beam.NewCounter("beamtune.train", "examples")
	trainLoss     = beam.NewGauge("beamtune.train", "loss_x1000")
	valAccuracy   = beam.NewGauge("beamtune.train", "validation_accuracy_bp")
)

// trainMetrics shows a trial's progress as Beam metrics.
type trainMetrics struct{}

func (trainMetrics) Stepped(ctx context.Context, examples int) {
	trainSteps.Inc(ctx, 1)
	trainExamples.Inc(ctx, int64(examples))
}

func (trainMetrics) Logged(ctx context.Context, e report.LogEntry) {
	switch e.Kind {
	case report.LogTrain:
		trainLoss.Set(ctx, int64(e.Loss*1000))
	case report.LogEval:
		if e.Task != "" { // a multi-task run's gauge shows the tasks' mean
			return
		}
		v := e.Accuracy
		if e.MetricName != "" { // the task's main metric is not accuracy
			v = e.Metric
		}
		valAccuracy.Set(ctx, int64(v*10000))
	}
}
