package trainer

import (
	"context"
	"fmt"
	"reflect"

	"github.com/beamtune/beamtune/dataset"
)

// How a trial reads its training rows (Config.Input, --train_input).
const (
	InputAuto   = "auto"   // stream when the training shards exceed AutoStreamBytes (the default)
	InputMemory = "memory" // every training row held in memory, one batch plan per epoch
	InputStream = "stream" // rows read a window at a time (dataset.Stream): memory bounded whatever the corpus
)

// AutoStreamBytes is the size of a training split's shards above which
// Input "auto" streams. Below it the whole split fits easily in memory
// (about 0.65 KB a row as Go slices, several times the zstd shards).
const AutoStreamBytes = 256 << 20

// DefaultEvalRows bounds the validation rows scored at each evaluation
// during training (Config.EvalRows): every shipped dataset's validation
// split fits under it, a corpus of millions of rows is sampled.
const DefaultEvalRows = 10_000

// fullEvalChunk is how many rows a streamed pass (EvalFull, pos_weight
// counts) holds at a time.
const fullEvalChunk = dataset.DefaultBlockRows

// CheckInput validates Input and EvalRows for a run of tasks tasks without
// reading the data: the driver's check, before any worker starts.
func (c Config) CheckInput(tasks int) error {
	switch c.Input {
	case "", InputAuto, InputMemory:
	case InputStream:
		if tasks > 1 {
			return fmt.Errorf("train_input=stream reads one task's shards; a multi-task run holds its tasks in memory (train_input=memory or auto)")
		}
	default:
		return fmt.Errorf("train_input %q: want %s, %s or %s", c.Input, InputAuto, InputMemory, InputStream)
	}
	if c.EvalRows < 0 {
		return fmt.Errorf("eval_rows %d is negative (0: the whole validation split)", c.EvalRows)
	}
	return nil
}

// resolveInput is whether a trial streams its training rows.
func resolveInput(cfg Config, man *dataset.Manifest, tasks int) (bool, error) {
	if err := cfg.CheckInput(tasks); err != nil {
		return false, err
	}
	switch cfg.Input {
	case InputMemory:
		return false, nil
	case InputStream:
		return true, nil
	default:
		if tasks > 1 {
			return false, nil
		}
		var size int64
		for _, s := range man.ShardsOf(dataset.SplitTrain) {
			size += s.Bytes
		}
		return size > AutoStreamBytes, nil
	}
}

// trainBatch is one batch of an epoch: a task's rows and which of them.
type trainBatch struct {
	task int
	rows *dataset.Rows
	idx  []int
}

// epochInput yields the batches of one epoch, in order.
type epochInput interface {
	batches() int
	// batch is the epoch's batch i; calls come in increasing order, from
	// the resume point on.
	batch(ctx context.Context, i int) (trainBatch, error)
	// position is what a checkpoint records of batch i (nil in memory,
	// where (seed, epoch, batch) says it all).
	position(i int) *dataset.StreamPosition
	close()
}

// memoryEpoch is an epoch of rows held in memory: the batch plan of every task.
type memoryEpoch struct {
	tasks []*trialTask
	plan  []dataset.TaskBatch
}

func (e *memoryEpoch) batches() int { return len(e.plan) }
func (e *memoryEpoch) batch(_ context.Context, i int) (trainBatch, error) {
	b := e.plan[i]
	return trainBatch{task: b.Task, rows: e.tasks[b.Task].train, idx: b.Rows}, nil
}
func (e *memoryEpoch) position(int) *dataset.StreamPosition { return nil }
func (e *memoryEpoch) close()                               {}

// streamEpoch is an epoch read from the shards a window at a time.
type streamEpoch struct {
	stream *dataset.Stream
	plan   *dataset.StreamPlan
	seed   int64

	window  int // the window loaded, -1 before the first
	rows    *dataset.Rows
	batchOf [][]int
}

func (e *streamEpoch) batches() int { return e.plan.Batches }

func (e *streamEpoch) batch(ctx context.Context, i int) (trainBatch, error) {
	wi := e.plan.WindowOf(i)
	if wi >= len(e.plan.Windows) {
		return trainBatch{}, fmt.Errorf("batch %d past the epoch's %d", i, e.plan.Batches)
	}
	if wi != e.window {
		e.rows, e.batchOf = nil, nil // the old window can go before the next is read
		rows, batches, err := e.stream.Window(ctx, e.plan, wi)
		if err != nil {
			return trainBatch{}, err
		}
		e.window, e.rows, e.batchOf = wi, rows, batches
	}
	return trainBatch{rows: e.rows, idx: e.batchOf[i-e.plan.Windows[wi].FirstBatch]}, nil
}

func (e *streamEpoch) position(i int) *dataset.StreamPosition {
	p := e.plan.Position(i, e.seed)
	return &p
}

func (e *streamEpoch) close() { e.stream.Close() }

// openEpoch is the input of epoch: the trial's stream, or its plan in memory.
func (t *trial) openEpoch(epoch int) epochInput {
	if s := t.tasks[0].stream; s != nil {
		return &streamEpoch{stream: s, plan: s.Plan(epoch), seed: t.cfg.Seed, window: -1}
	}
	return &memoryEpoch{tasks: t.tasks, plan: dataset.PlanTaskBatches(lengths(t.tasks), t.cfg.BatchSize, t.cfg.ShuffleBuffer, t.cfg.Seed, epoch, t.sampling)}
}

// planSteps is the run's optimizer steps and the steps of an epoch (a
// streamed epoch's batch count varies a little with where short blocks
// fall, so the total is the sum over the epochs the run will see).
func (t *trial) planSteps() (total, perEpoch int64) {
	steps := func(batches int) int64 { return int64((batches + t.cfg.GradAccum - 1) / t.cfg.GradAccum) }
	if s := t.tasks[0].stream; s != nil {
		perEpoch = steps(s.Plan(0).Batches)
		if t.cfg.MaxSteps > 0 {
			return t.cfg.MaxSteps, perEpoch
		}
		for e := 0; e < t.cfg.Epochs; e++ {
			total += steps(s.Plan(e).Batches)
		}
		return total, perEpoch
	}
	batches := 0
	for _, tt := range t.tasks {
		batches += (tt.train.Len() + t.cfg.BatchSize - 1) / t.cfg.BatchSize
	}
	perEpoch = steps(batches)
	if t.cfg.MaxSteps > 0 {
		return t.cfg.MaxSteps, perEpoch
	}
	return int64(t.cfg.Epochs) * perEpoch, perEpoch
}

// checkResumePosition refuses a checkpoint whose data position is not the
// one this run's data and seed give for the same (epoch, batch): the shards
// changed, or the checkpoint was made reading the data the other way.
func (t *trial) checkResumePosition(dir string) error {
	streaming := t.tasks[0].stream != nil
	switch {
	case streaming && t.st.Data == nil:
		return fmt.Errorf("checkpoint %s was made with the training rows in memory; resume with --train_input=memory or start a fresh output folder", dir)
	case !streaming && t.st.Data != nil:
		return fmt.Errorf("checkpoint %s was made streaming the training rows; resume with --train_input=stream or start a fresh output folder", dir)
	case !streaming:
		return nil
	}
	e := t.openEpoch(t.st.Epoch)
	defer e.close()
	want := e.position(t.st.Batch)
	if !reflect.DeepEqual(want, t.st.Data) {
		return fmt.Errorf("checkpoint %s was made at another place in the data (epoch %d, window %d, shard order %v) than this dataset and seed give (window %d, shard order %v): the training shards changed since", dir, t.st.Data.Epoch, t.st.Data.Window, t.st.Data.ShardOrder, want.Window, want.ShardOrder)
	}
	return nil
}
