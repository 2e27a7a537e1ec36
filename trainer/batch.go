package trainer

import (
	"fmt"

	"github.com/beamtune/beamtune/dataset"
	"github.com/beamtune/beamtune/model"
	"github.com/sugarme/gotch/ts"
)

// tensors builds a padded batch from rows idx, padded to its longest row.
func batchTensors(r *dataset.Rows, idx []int, padID int64, dev model.Device) (model.Batch, *ts.Tensor, *ts.Tensor, error) {
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
	labels := make([]int64, n)
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
		labels[k] = int64(r.Labels[i])
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
		return b, nil, nil, err
	}
	if b.AttentionMask, err = model.Int64Tensor(mask, n, maxLen, dev); err != nil {
		free()
		return b, nil, nil, err
	}
	if pair {
		if b.TokenTypeIDs, err = model.Int64Tensor(types, n, maxLen, dev); err != nil {
			free()
			return b, nil, nil, err
		}
	}
	lab, err := model.Int64Tensor(labels, 1, n, dev)
	if err != nil {
		free()
		return b, nil, nil, err
	}
	labFlat, err := lab.Reshape([]int64{int64(n)}, true)
	if err != nil {
		free()
		return b, nil, nil, err
	}
	var teacher *ts.Tensor
	if r.HasTeacher() {
		k := len(r.Teacher[idx[0]])
		vals := make([]float32, 0, n*k)
		for _, i := range idx {
			if len(r.Teacher[i]) != k {
				free()
				_ = labFlat.Drop()
				return b, nil, nil, fmt.Errorf("row %s has %d teacher logits, want %d", r.RowIDs[i], len(r.Teacher[i]), k)
			}
			vals = append(vals, r.Teacher[i]...)
		}
		if teacher, err = model.Float32Tensor(vals, []int64{int64(n), int64(k)}, dev); err != nil {
			free()
			_ = labFlat.Drop()
			return b, nil, nil, err
		}
	}
	return b, labFlat, teacher, nil
}

func freeBatch(b model.Batch, more ...*ts.Tensor) {
	for _, t := range append([]*ts.Tensor{b.InputIDs, b.AttentionMask, b.TokenTypeIDs}, more...) {
		if t != nil {
			_ = t.Drop()
		}
	}
}
