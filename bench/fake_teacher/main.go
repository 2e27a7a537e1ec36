// Command fake_teacher copies a prepared dataset and gives every row of its
// shards seeded random teacher logits, making a distillation dataset of any
// size without running a teacher: bench/train_scale.sh uses it to measure
// the memory of distillation on corpora a teacher would take hours to score.
// The logits are noise; only their shape matters there.
//
//	go run ./bench/fake_teacher SRC DST
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"

	"github.com/beamtune/beamtune/dataset"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: fake_teacher SRC DST")
		os.Exit(2)
	}
	if err := run(context.Background(), os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "fake_teacher:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, src, dst string) error {
	m, err := dataset.ReadManifest(ctx, src)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewSource(1))
	for _, split := range []string{dataset.SplitTrain, dataset.SplitValidation, dataset.SplitTest} {
		for _, s := range m.ShardsOf(split) {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, s.Path)), 0o755); err != nil {
				return err
			}
			f, err := os.Create(filepath.Join(dst, s.Path))
			if err != nil {
				return err
			}
			w := dataset.NewShardWriter(f)
			one := &dataset.Manifest{Shards: []dataset.ShardInfo{s}}
			err = dataset.EachRows(ctx, src, one, split, 1024, func(r *dataset.Rows) error {
				rows := make([]dataset.ShardRow, r.Len())
				for i := range rows {
					rows[i] = dataset.ShardRow{ID: r.RowIDs[i], Label: r.Labels[i], InputIDs: r.IDs[i], TokenTypeIDs: r.Types[i],
						Length: r.Length[i], Score: r.Scores[i], Labels: r.Multi[i],
						TeacherLogits: []float32{float32(rng.NormFloat64()), float32(rng.NormFloat64())}}
				}
				_, err := w.Write(rows)
				return err
			})
			if err == nil {
				err = w.Close()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", s.Path, err)
			}
		}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dst, dataset.ManifestFile), data, 0o644)
}
