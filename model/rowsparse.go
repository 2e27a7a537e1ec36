package model

// #include "adamw.h"
import "C"

import (
	"fmt"
	"slices"
	"sync"
	"unsafe"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// Row-sparse training of the word-embedding table.
//
// A batch of short texts uses a few hundred of the table's 30,522 rows, but
// the dense form pays for all of them on every step: backward writes a
// 47 MB gradient that is almost all zeros, clipping reads it, AdamW reads
// and writes the table and both moments (11.7 M of MiniLM's 22.7 M
// parameters). In the row-sparse form a training forward gathers the rows
// the batch uses into a small leaf tensor, backward fills only that
// tensor's gradient, and AdamW updates only those rows. A row that no batch
// used still has a zero-gradient step to take each step (its moments decay
// and weight decay shrinks it); those steps are deferred and replayed, with
// the same float32 arithmetic as the dense update, when the row is next
// gathered by a training forward, or when the whole table is read (any other
// forward, and AdamW.Sync before export and checkpoints). The result is the dense run's table bit for bit, given the
// same gradients; only the global gradient norm may differ in its last bits
// (its partial sums are grouped differently), so clipping, and through it
// the run, can drift by float rounding.

// wordEmbeddings is the table the row-sparse form applies to.
const wordEmbeddings = "bert.embeddings.word_embeddings.weight"

// rowGrads is a table's row-sparse gradient for the current step: what
// each training forward since the last ZeroGrad gathered.
type rowGrads struct {
	ids    [][]int64    // per forward: the sorted distinct rows it used
	leaves []*ts.Tensor // per forward: those rows, a leaf backward fills

	merged    *ts.Tensor // after merge: the step's gradient for mergedIDs
	mergedIDs []int64

	lazy *lazyRows // the optimizer's deferred steps, nil before there is one
}

// UseRowSparseEmbeddings makes training forwards (train, with autograd on)
// take the word-embedding table's gradient row-sparse, for an AdamW created
// after this call. It applies to a trainable float32 table on the CPU and
// says whether it applied; elsewhere the dense form stays.
func (m *Bert) UseRowSparseEmbeddings() bool {
	p := m.byName[wordEmbeddings]
	if p == nil || m.frozen[wordEmbeddings] || m.Device.IsCuda() || p.T.DType() != gotch.Float {
		return false
	}
	if p.rows == nil {
		p.rows = &rowGrads{}
	}
	return true
}

// gatherRows is the embedding of ids through a leaf holding only the rows
// ids use; the leaf is kept for the step's update.
func (r *rowGrads) gatherRows(s *scope, table, ids *ts.Tensor) *ts.Tensor {
	if !s.ok() {
		return nil
	}
	vals, err := int64s(ids)
	if err != nil {
		s.err = fmt.Errorf("embedding rows: %w", err)
		return nil
	}
	uniq, inverse := distinct(vals)
	// Checked here, not left to index_select: current indexes the optimizer's
	// per-row record with these ids first.
	if rows := Shape(table)[0]; len(uniq) > 0 && (uniq[0] < 0 || uniq[len(uniq)-1] >= rows) {
		s.err = fmt.Errorf("embedding rows: token id out of range [0, %d): %d", rows, outOfRange(uniq, rows))
		return nil
	}
	if err := r.current(table, uniq); err != nil {
		s.err = fmt.Errorf("embedding rows: %w", err)
		return nil
	}
	idx, err := ts.OfSlice(uniq)
	s.add(idx, err, "embedding rows")
	invFlat, err := ts.OfSlice(inverse)
	inv := s.view(s.add(invFlat, err, "embedding rows"), Shape(ids)...)
	if !s.ok() {
		return nil
	}
	var rows *ts.Tensor
	if err := NoGrad(func() (err error) {
		rows, err = table.IndexSelect(0, idx, false)
		return err
	}); err != nil {
		s.err = fmt.Errorf("embedding rows: %w", err)
		return nil
	}
	if err := rows.RequiresGrad_(true); err != nil {
		drop(rows)
		s.err = fmt.Errorf("embedding rows: %w", err)
		return nil
	}
	r.ids, r.leaves = append(r.ids, uniq), append(r.leaves, rows)
	return s.embedding(rows, inv)
}

// current brings rows (nil: all) up to the optimizer's last step before
// they are read.
func (r *rowGrads) current(table *ts.Tensor, rows []int64) error {
	l := r.lazy
	if l == nil {
		return nil
	}
	if err := l.catchUp(table, rows, l.steps, Threads()); err != nil {
		return err
	}
	if rows == nil {
		l.synced()
	}
	return nil
}

// merge sums the forwards' row gradients into one gradient over their
// distinct rows, in forward order (as autograd accumulates a dense
// gradient over micro-batches), and returns a handle to it for the caller
// to drop; nil when no forward left a gradient.
func (r *rowGrads) merge() (*ts.Tensor, error) {
	if r.merged == nil {
		if err := r.mergeGrads(); err != nil {
			return nil, err
		}
		if r.merged == nil {
			return nil, nil
		}
	}
	return r.merged.ShallowClone()
}

func (r *rowGrads) mergeGrads() error {
	var grads []*ts.Tensor
	var ids [][]int64
	defer func() { drop(grads...) }()
	for i, leaf := range r.leaves {
		g, err := leaf.Grad(false)
		if err != nil {
			return err
		}
		if ok, _ := g.Defined(); !ok {
			drop(g)
			continue
		}
		grads, ids = append(grads, g), append(ids, r.ids[i])
	}
	switch len(grads) {
	case 0:
		return nil
	case 1:
		g, err := grads[0].Contiguous(false)
		if err != nil {
			return err
		}
		r.merged, r.mergedIDs = g, ids[0]
		return nil
	}
	all := slices.Concat(ids...)
	uniq, inverse := distinct(all)
	cat, err := ts.Cat(grads, 0)
	if err != nil {
		return err
	}
	defer drop(cat)
	inv, err := ts.OfSlice(inverse)
	if err != nil {
		return err
	}
	defer drop(inv)
	sum, err := ts.Zeros([]int64{int64(len(uniq)), Shape(cat)[1]}, gotch.Float, gotch.CPU)
	if err != nil {
		return err
	}
	if err := sum.IndexAdd_(0, inv, cat); err != nil {
		drop(sum)
		return err
	}
	r.merged, r.mergedIDs = sum, uniq
	return nil
}

// outOfRange is the first of sorted ids outside [0, rows).
func outOfRange(ids []int64, rows int64) int64 {
	if ids[0] < 0 {
		return ids[0]
	}
	return ids[len(ids)-1]
}

// distinct is the sorted distinct values of ids and, for each id, its
// index among them.
func distinct(ids []int64) (uniq, inverse []int64) {
	uniq = slices.Compact(slices.Sorted(slices.Values(ids)))
	inverse = make([]int64, len(ids))
	for i, id := range ids {
		at, _ := slices.BinarySearch(uniq, id)
		inverse[i] = int64(at)
	}
	return uniq, inverse
}

// clear frees the step's gathered rows and their gradient (ZeroGrad).
func (r *rowGrads) clear() {
	drop(r.leaves...)
	drop(r.merged)
	r.ids, r.leaves, r.merged, r.mergedIDs = nil, nil, nil, nil
}

// lazyRows is AdamW's record of a row-sparse table: its moments, the step
// each row was last brought to, and the constants of the steps since the
// oldest row's.
type lazyRows struct {
	m, v  *ts.Tensor              // the optimizer's moments of the table
	steps int64                   // the optimizer's step count
	last  []int64                 // per row
	past  []C.beamtune_adamw_past // past[k] is step base+k
	base  int64
}

// attachLazyRows starts the record of table p, whose moments m and v are
// at step steps, and hands it to the table's rowGrads. A record already
// there (an earlier optimizer's) is caught up first, so no step is lost.
func attachLazyRows(p *Param, m, v *ts.Tensor, steps int64) (*lazyRows, error) {
	if err := p.rows.current(p.T, nil); err != nil {
		return nil, err
	}
	l := &lazyRows{m: m, v: v, steps: steps, last: make([]int64, Shape(p.T)[0]), base: steps + 1}
	for i := range l.last {
		l.last[i] = steps
	}
	p.rows.lazy = l
	return l, nil
}

// record keeps step's constants for rows that catch up later.
func (l *lazyRows) record(step int64, c C.beamtune_adamw_step, decay float64) error {
	if step != l.steps+1 {
		return fmt.Errorf("row-sparse AdamW: step %d recorded after step %d", step, l.steps)
	}
	l.past = append(l.past, C.beamtune_adamw_past{c: c, decay: C.float(decay)})
	l.steps = step
	return nil
}

// catchUp replays the deferred steps up to upto for rows (nil: every row),
// split across up to threads goroutines (rows are independent).
func (l *lazyRows) catchUp(table *ts.Tensor, rows []int64, upto int64, threads int) error {
	if len(l.past) == 0 || upto < l.base {
		return nil
	}
	if rows == nil {
		for r, at := range l.last {
			if at < upto {
				rows = append(rows, int64(r))
			}
		}
	}
	if len(rows) == 0 {
		return nil
	}
	for _, r := range rows {
		if r < 0 || r >= int64(len(l.last)) {
			return fmt.Errorf("row-sparse AdamW: row %d of a %d-row table", r, len(l.last))
		}
	}
	data, err := cpuFloatData(table, l.m, l.v)
	if err != nil {
		return err
	}
	width := C.int64_t(Shape(table)[1])
	run := func(part []int64) {
		C.beamtune_adamw_catch_up(data[0], data[1], data[2], width, (*C.int64_t)(unsafe.Pointer(&part[0])), C.int64_t(len(part)),
			(*C.int64_t)(unsafe.Pointer(&l.last[0])), &l.past[0], C.int64_t(l.base), C.int64_t(upto))
	}
	workers := max(1, min(threads, len(rows)/64))
	per := (len(rows) + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := per; lo < len(rows); lo += per {
		part := rows[lo:min(lo+per, len(rows))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(part)
		}()
	}
	run(rows[:min(per, len(rows))])
	wg.Wait()
	return nil
}

// synced forgets the recorded steps once every row is at the last one.
func (l *lazyRows) synced() {
	l.past, l.base = l.past[:0], l.steps+1
}
