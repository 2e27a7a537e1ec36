package trainer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/storage"
)

// Scorer runs a model over rows: EvaluateHidden with the model, batch size
// and hidden states bound, and whatever locking the caller's model needs.
type Scorer func(rows *dataset.Rows) (EvalResult, error)

// ScoreShard reads shard s of the dataset at root and scores its rows.
func ScoreShard(ctx context.Context, score Scorer, root string, s dataset.ShardInfo) ([]dataset.ShardRow, EvalResult, error) {
	rows, err := dataset.ReadShard(ctx, root, s)
	if err != nil {
		return nil, EvalResult{}, err
	}
	var r dataset.Rows
	r.Append(rows)
	ev, err := score(&r)
	if err != nil {
		return nil, EvalResult{}, fmt.Errorf("%s: %w", s.Path, err)
	}
	return rows, ev, nil
}

// TeacherShard writes shard s of the dataset at inRoot again, under
// outRoot/outDir/<split>/<name>, with the teacher's logits in every row's
// teacher_logits (and, when score keeps hidden states, their [CLS] vectors
// in teacher_hidden), so a student reads them instead of running the
// teacher every epoch. It returns the new shard's manifest entry.
func TeacherShard(ctx context.Context, score Scorer, inRoot, outRoot, outDir string, s dataset.ShardInfo) (dataset.ShardInfo, error) {
	rows, ev, err := ScoreShard(ctx, score, inRoot, s)
	if err != nil {
		return dataset.ShardInfo{}, err
	}
	for i := range rows {
		rows[i].TeacherLogits = ev.Logits[i]
		if ev.Hidden != nil {
			rows[i].TeacherHidden = ev.Hidden[i]
		}
	}
	var buf bytes.Buffer
	if err := dataset.WriteShardRows(&buf, rows); err != nil {
		return dataset.ShardInfo{}, err
	}
	out := s
	out.Path = fmt.Sprintf("%s/%s/%s", outDir, s.Split, path.Base(s.Path))
	if err := storage.WriteFile(ctx, storage.Join(outRoot, out.Path), buf.Bytes()); err != nil {
		return dataset.ShardInfo{}, err
	}
	sum := sha256.Sum256(buf.Bytes())
	out.Bytes, out.SHA256 = int64(buf.Len()), hex.EncodeToString(sum[:])
	return out, nil
}
