package trainer

import (
	"fmt"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/sugarme/gotch/ts"
)

// batchTensors builds the inputs of rows idx, padded to the longest row,
// and their cached teacher logits (nil outside distillation).
func batchTensors(r *dataset.Rows, idx []int, padID int64, dev model.Device) (model.Batch, *ts.Tensor, error) {
	maxLen := 0
	pair := false
	for _, i := range idx {
		maxLen = max(maxLen, len(r.IDs[i]))
		pair = pair || r.Types[i] != nil
	}
	n := len(idx)
	ids := make([]int64, n*maxLen)
	mask := make([]int64, n*maxLen)
	var types []int64
	if pair {
		types = make([]int64, n*maxLen)
	}
	for k, i := range idx {
		row := ids[k*maxLen : (k+1)*maxLen]
		for j := range row {
			row[j] = padID
		}
		for j, v := range r.IDs[i] {
			row[j] = int64(v)
			mask[k*maxLen+j] = 1
		}
		if pair && r.Types[i] != nil {
			for j, v := range r.Types[i] {
				types[k*maxLen+j] = int64(v)
			}
		}
	}
	var b model.Batch
	var err error
	free := func() {
		for _, t := range []*ts.Tensor{b.InputIDs, b.AttentionMask, b.TokenTypeIDs} {
			if t != nil {
				_ = t.Drop()
			}
		}
	}
	if b.InputIDs, err = model.Int64Tensor(ids, n, maxLen, dev); err != nil {
		return b, nil, err
	}
	if b.AttentionMask, err = model.Int64Tensor(mask, n, maxLen, dev); err != nil {
		free()
		return b, nil, err
	}
	if pair {
		if b.TokenTypeIDs, err = model.Int64Tensor(types, n, maxLen, dev); err != nil {
			free()
			return b, nil, err
		}
	}
	var teacher *ts.Tensor
	if r.HasTeacher() {
		k := len(r.Teacher[idx[0]])
		vals := make([]float32, 0, n*k)
		for _, i := range idx {
			if len(r.Teacher[i]) != k {
				free()
				return b, nil, fmt.Errorf("row %s has %d teacher logits, want %d", r.RowIDs[i], len(r.Teacher[i]), k)
			}
			vals = append(vals, r.Teacher[i]...)
		}
		if teacher, err = model.Float32Tensor(vals, []int64{int64(n), int64(k)}, dev); err != nil {
			free()
			return b, nil, err
		}
	}
	return b, teacher, nil
}

// targetTensor is the training target of rows idx for the task: class
// indices (int64 [n]), multi-hot labels (float32 [n, numLabels]) or scores
// (float32 [n]).
func targetTensor(r *dataset.Rows, idx []int, task string, numLabels int, dev model.Device) (*ts.Tensor, error) {
	n := len(idx)
	switch task {
	case dataset.MultiLabel:
		vals := make([]float32, n*numLabels)
		for k, i := range idx {
			for _, l := range r.Multi[i] {
				if l < 0 || int(l) >= numLabels {
					return nil, fmt.Errorf("row %s has label %d, the head has %d", r.RowIDs[i], l, numLabels)
				}
				vals[k*numLabels+int(l)] = 1
			}
		}
		return model.Float32Tensor(vals, []int64{int64(n), int64(numLabels)}, dev)
	case dataset.Regression:
		vals := make([]float32, n)
		for k, i := range idx {
			vals[k] = r.Scores[i]
		}
		return model.Float32Tensor(vals, []int64{int64(n)}, dev)
	}
	labels := make([]int64, n)
	for k, i := range idx {
		labels[k] = int64(r.Labels[i])
	}
	lab, err := model.Int64Tensor(labels, 1, n, dev)
	if err != nil {
		return nil, err
	}
	return lab.Reshape([]int64{int64(n)}, true)
}

func freeBatch(b model.Batch, more ...*ts.Tensor) {
	for _, t := range append([]*ts.Tensor{b.InputIDs, b.AttentionMask, b.TokenTypeIDs}, more...) {
		if t != nil {
			_ = t.Drop()
		}
	}
}

// positiveWeights is BCEWithLogitsLoss's pos_weight from the training
// rows' label counts (pos, of rows): for each label, rows without it over rows with it (1 for a label no row
// has, which then has no positive term to weigh).
func positiveWeights(pos []int64, rows int64, dev model.Device) (*ts.Tensor, error) {
	w := make([]float32, len(pos))
	for j, p := range pos {
		w[j] = 1
		if p > 0 {
			w[j] = float32(rows-p) / float32(p)
		}
	}
	return model.Float32Tensor(w, []int64{int64(len(pos))}, dev)
}
