package model

import (
	"bytes"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestRowSparseEmbeddingsMatchDense trains three copies of the tiny model
// with dropout, clipping, weight decay, warmup from lr 0 and two
// micro-batches on some steps: the dense table, the row-sparse table synced
// only at the end, and the row-sparse table synced after every step (as a
// run that evaluates or checkpoints often). Batches draw most tokens from a
// few hundred ids and a few from the rest, so rows go unused for several
// steps, and ids 900-999 are never used (their moments stay zero: the fast
// path). Each copy must end with the dense copy's bits: the table, its
// moments and every other weight.
func TestRowSparseEmbeddingsMatchDense(t *testing.T) {
	defer LockThread()()
	type run struct {
		m      *Bert
		opt    *AdamW
		sparse bool
		sync   bool
		losses []float32
	}
	var runs []*run
	for _, r := range []struct{ sparse, sync bool }{{false, false}, {true, false}, {true, true}} {
		m := loadTiny(t)
		defer m.Free()
		if r.sparse && !m.UseRowSparseEmbeddings() {
			t.Fatal("UseRowSparseEmbeddings refused a float32 CPU table")
		}
		cfg := DefaultAdamW()
		cfg.WeightDecay = 0.1
		opt, err := NewAdamW(m.Trainable(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer opt.Free()
		runs = append(runs, &run{m: m, opt: opt, sparse: r.sparse, sync: r.sync})
	}
	rng := rand.New(rand.NewSource(3))
	batch := func(rows, seq int) (Batch, *ts.Tensor) {
		ids := make([]int64, rows*seq)
		for i := range ids {
			ids[i] = int64(1 + rng.Intn(300))
			if rng.Intn(10) == 0 {
				ids[i] = int64(300 + rng.Intn(600))
			}
		}
		x, err := Int64Tensor(ids, rows, seq, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		labels := make([]int64, rows)
		for i := range labels {
			labels[i] = int64(rng.Intn(3))
		}
		l, err := ts.OfSlice(labels)
		if err != nil {
			t.Fatal(err)
		}
		return Batch{InputIDs: x}, l
	}
	sched := LinearSchedule{Peak: 5e-3, Warmup: 2, Total: 12}
	for step := int64(0); step < 12; step++ {
		micro := 1 + int(step%3)/2 // two micro-batches on every third step
		type mb struct {
			b Batch
			l *ts.Tensor
		}
		var mbs []mb
		for range micro {
			b, l := batch(4+int(step%3), 5+int(step%4))
			mbs = append(mbs, mb{b, l})
		}
		for _, r := range runs {
			err := WithGrad(true, func() error {
				for i, x := range mbs {
					Seed(100*step + int64(i)) // the same dropout for every copy
					out, err := r.m.Forward(x.b, true, false)
					if err != nil {
						return err
					}
					loss, err := CrossEntropy(out.Logits, x.l)
					out.Free()
					if err != nil {
						return err
					}
					v, err := Float32Scalar(loss)
					if err != nil {
						return err
					}
					r.losses = append(r.losses, v)
					if err := loss.Backward(); err != nil {
						return err
					}
					drop(loss)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			_, scale, err := ClipScale(r.opt.params, 0.5)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.opt.Step(sched.LR(step), scale); err != nil {
				t.Fatal(err)
			}
			if err := ZeroGrad(r.opt.params); err != nil {
				t.Fatal(err)
			}
			if r.sync {
				if err := r.opt.Sync(); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, x := range mbs {
			drop(x.b.InputIDs, x.l)
		}
	}
	// Not vacuous: before the final sync, the lazy copy has rows that
	// missed steps with moments to replay (the full path, not only the
	// fast one for untouched rows).
	lazy := runs[1].opt.lazy[slices.IndexFunc(runs[1].opt.lazy, func(l *lazyRows) bool { return l != nil })]
	moments := values(t, lazy.m)
	width := runs[1].m.Config.HiddenSize
	behind := 0
	for r, at := range lazy.last {
		if at < lazy.steps && slices.ContainsFunc(moments[r*width:(r+1)*width], func(x float32) bool { return x != 0 }) {
			behind++
		}
	}
	if behind < 50 {
		t.Errorf("only %d rows were behind with moments to replay", behind)
	}
	t.Logf("%d rows behind with moments before the final sync", behind)
	dense := runs[0]
	// Exporting syncs by itself: the lazy copy's state dict, taken before
	// anything else synced it, holds the dense table.
	tableBytes := func(m *Bert) []byte {
		sd, err := m.StateDict()
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range sd {
			if x.Name == wordEmbeddings {
				return x.Data
			}
		}
		t.Fatal("no word embeddings in the state dict")
		return nil
	}
	if !bytes.Equal(tableBytes(runs[1].m), tableBytes(dense.m)) {
		t.Error("the state dict of the lazily synced copy differs from the dense table")
	}
	want, _, err := dense.opt.State()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs[1:] {
		for i, l := range r.losses {
			if l != dense.losses[i] {
				t.Errorf("sync=%v: loss %d is %v, dense %v", r.sync, i, l, dense.losses[i])
				break
			}
		}
		got, _, err := r.opt.State() // syncs
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range r.opt.params {
			a, b := values(t, p.T), values(t, dense.opt.params[i].T)
			if d := bitDiffs(a, b); d > 0 {
				t.Errorf("sync=%v: %s differs from the dense run in %d of %d values (max |diff| %.3g)", r.sync, p.Name, d, len(a), maxAbsDiff(a, b))
			}
			for _, k := range []string{"m." + p.Name, "v." + p.Name} {
				if d := bitDiffs(got[k], want[k]); d > 0 {
					t.Errorf("sync=%v: %s differs from the dense run in %d values", r.sync, k, d)
				}
			}
		}
	}
	// The never-used rows took weight decay only; the dense run's copy
	// says the same, but check it is not vacuous: they moved.
	table := values(t, dense.m.byName[wordEmbeddings].T)
	before := loadTable(t)
	moved := 0
	for i := 900 * width; i < 1000*width; i++ {
		if table[i] != before[i] {
			moved++
		}
	}
	if moved == 0 {
		t.Error("the never-used rows did not change: weight decay did not reach them")
	}
}

// bitDiffs counts positions where a and b differ bit for bit (or in length).
func bitDiffs(a, b []float32) int {
	if len(a) != len(b) {
		return max(len(a), len(b))
	}
	n := 0
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			n++
		}
	}
	return n
}

func loadTable(t *testing.T) []float32 {
	m := loadTiny(t)
	defer m.Free()
	return values(t, m.byName[wordEmbeddings].T)
}

// TestRowSparseEmbeddingsRefuseMisuse: a token id outside the table is an
// error naming it (the optimizer's per-row record is indexed by ids before
// libtorch sees them), and a table made row-sparse after its optimizer was
// created makes Step fail instead of silently not training it.
func TestRowSparseEmbeddingsRefuseMisuse(t *testing.T) {
	defer LockThread()()
	m := loadTiny(t)
	defer m.Free()
	late, err := NewAdamW(m.Trainable(), DefaultAdamW())
	if err != nil {
		t.Fatal(err)
	}
	m.UseRowSparseEmbeddings()
	if err := late.Step(1e-3, 1); err == nil || !strings.Contains(err.Error(), "no record in this optimizer") {
		t.Errorf("Step with a table made row-sparse after the optimizer: %v", err)
	}
	late.Free()
	opt, err := NewAdamW(m.Trainable(), DefaultAdamW())
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Free()
	forward := func(ids []int64) error {
		x, err := Int64Tensor(ids, 1, len(ids), gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		defer drop(x)
		return WithGrad(true, func() error {
			out, err := m.Forward(Batch{InputIDs: x}, true, false)
			if err == nil {
				out.Free()
			}
			return err
		})
	}
	if err := forward([]int64{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := opt.Step(1e-3, 1); err != nil {
		t.Fatal(err)
	}
	if err := ZeroGrad(opt.params); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []int64{1000, 5000, -1} {
		err := forward([]int64{1, bad, 3})
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("token id out of range [0, 1000): %d", bad)) {
			t.Errorf("id %d: %v", bad, err)
		}
	}
}
