package transforms

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/register"
	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/beamtune/beamtune/storage"
	"github.com/beamtune/beamtune/trainer"
)

func init() {
	register.DoFn3x1[context.Context, dataset.ShardInfo, func(trainer.Importance), error](&ImportanceFn{})
	register.Emitter1[trainer.Importance]()
	register.Combiner3[trainer.Importance, trainer.Importance, trainer.Importance](&importanceSumFn{})
	register.DoFn2x1[context.Context, trainer.Importance, error](&writeImportanceFn{})
	beam.RegisterType(reflect.TypeOf((*trainer.Importance)(nil)).Elem())
}

// ImportanceFn scores the heads and FFN neurons of a model on each shard it
// is given (up to MaxBatches batches per shard), on the worker that reads
// the shard; SumImportance adds the shards' scores.
type ImportanceFn struct {
	inferModel
	Root       string // the dataset folder the shard paths are relative to
	MaxBatches int
}

func (fn *ImportanceFn) Setup(ctx context.Context) error { return fn.setup(ctx) }
func (fn *ImportanceFn) Teardown()                       { fn.teardown() }

func (fn *ImportanceFn) ProcessElement(ctx context.Context, s dataset.ShardInfo, emit func(trainer.Importance)) error {
	rows, err := dataset.ReadShard(ctx, fn.Root, s)
	if err != nil {
		return err
	}
	var r dataset.Rows
	r.Append(rows)
	var imp trainer.Importance
	err = fn.m.WithBert(func(m *model.Bert) error {
		imp, err = trainer.RowsImportance(m, &r, fn.MaxBatchSize, fn.MaxBatches)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", s.Path, err)
	}
	inferRows.Inc(ctx, int64(r.Len()))
	emit(imp)
	return nil
}

// importanceSumFn adds importance sums (a Beam CombineFn).
type importanceSumFn struct{}

func (importanceSumFn) CreateAccumulator() trainer.Importance { return trainer.Importance{} }
func (importanceSumFn) AddInput(a, x trainer.Importance) (trainer.Importance, error) {
	err := a.Merge(x)
	return a, err
}
func (importanceSumFn) MergeAccumulators(a, b trainer.Importance) (trainer.Importance, error) {
	err := a.Merge(b)
	return a, err
}

// SumImportance scores every shard of shards with fn and writes the summed
// importance as JSON to path (read back with ReadImportance).
func SumImportance(s beam.Scope, fn *ImportanceFn, shards beam.PCollection, path string) {
	s = s.Scope("Importance")
	per := beam.ParDo(s, fn, shards)
	sum := beam.Combine(s, &importanceSumFn{}, per)
	beam.ParDo0(s, &writeImportanceFn{Path: path}, sum)
}

type writeImportanceFn struct{ Path string }

func (fn *writeImportanceFn) ProcessElement(ctx context.Context, imp trainer.Importance) error {
	data, err := json.Marshal(imp)
	if err != nil {
		return err
	}
	return storage.WriteFile(ctx, fn.Path, data)
}

// ReadImportance reads what SumImportance wrote.
func ReadImportance(ctx context.Context, path string) (trainer.Importance, error) {
	var imp trainer.Importance
	data, err := storage.ReadFile(ctx, path)
	if err != nil {
		return imp, err
	}
	if err := json.Unmarshal(data, &imp); err != nil {
		return imp, fmt.Errorf("%s: %w", path, err)
	}
	return imp, nil
}
