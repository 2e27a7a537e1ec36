package model

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/model/safetensors"
	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// The references come from HF transformers (scripts/parity.py); see
// testdata/parity/README.md for how they were made.
const parityTol = 1e-4

type refFile struct {
	t *testing.T
	f *safetensors.File
}

func openRef(t *testing.T, name string) refFile {
	t.Helper()
	f, err := safetensors.Open(filepath.Join("..", "testdata", "parity", name), nil)
	if err != nil {
		t.Fatalf("reference fixture: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return refFile{t, f}
}

func (r refFile) floats(name string) ([]float32, []int64) {
	r.t.Helper()
	v, err := r.f.Float32(name)
	if err != nil {
		r.t.Fatalf("%s: %v", name, err)
	}
	info, _ := r.f.Info(name)
	return v, info.Shape
}

func (r refFile) int64s(name string) ([]int64, []int64) {
	r.t.Helper()
	raw, err := r.f.Raw(name)
	if err != nil {
		r.t.Fatalf("%s: %v", name, err)
	}
	info, _ := r.f.Info(name)
	out := make([]int64, len(raw)/8)
	for i := range out {
		var v uint64
		for b := 7; b >= 0; b-- {
			v = v<<8 | uint64(raw[8*i+b])
		}
		out[i] = int64(v)
	}
	return out, info.Shape
}

// rows returns a [lo,hi) row slice of a row-major [n, cols] int64 matrix as a tensor.
func rowsTensor(t *testing.T, data []int64, cols, lo, hi int) *ts.Tensor {
	t.Helper()
	x, err := Int64Tensor(data[lo*cols:hi*cols], hi-lo, cols, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// maxAbsDiff is the largest |a-b|; a NaN on either side counts as +Inf (a
// plain math.Max would carry the NaN, and every "> bound" check would pass),
// as do slices of different lengths.
func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range a {
		d := math.Abs(float64(a[i]) - float64(b[i]))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		m = math.Max(m, d)
	}
	return m
}

func values(t *testing.T, x *ts.Tensor) []float32 {
	t.Helper()
	v, err := Float32s(x)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParityMiniLM(t *testing.T) {
	dir := DefaultModelDir()
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err != nil {
		t.Skipf("pretrained model not installed (%v): run scripts/setup.sh", err)
	}
	defer LockThread()()
	SetThreads(2)
	m, rep, err := Load(dir, LoadOptions{Labels: []string{"LABEL_0", "LABEL_1"}, Device: gotch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	t.Log(rep)
	if got := strings.Join(rep.NewlyInitialized, ","); got != "classifier.weight,classifier.bias" {
		t.Errorf("newly initialized = %q, want the classifier only", got)
	}
	// Use the head the Python side drew, so logits are comparable.
	head := openRef(t, "minilm_head.safetensors")
	for _, name := range []string{"classifier.weight", "classifier.bias"} {
		v, shape := head.floats(name)
		x, err := tensorOfFloat32(v, shape, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.replaceParam(name, x); err != nil {
			t.Fatal(err)
		}
	}
	ref := openRef(t, "minilm_ref.safetensors")
	ids, shape := ref.int64s("input_ids")
	mask, _ := ref.int64s("attention_mask")
	types, _ := ref.int64s("token_type_ids")
	wantLogits, _ := ref.floats("logits")
	wantCLS, clsShape := ref.floats("cls_hidden") // [layers+1, n, hidden]
	wantMean, _ := ref.floats("mean_last")
	n, L := int(shape[0]), int(shape[1])
	hsz := int(clsShape[2])
	var worstLogit, worstCLS, worstMean float64
	err = NoGrad(func() error {
		for lo := 0; lo < n; lo += 20 {
			hi := min(lo+20, n)
			b := Batch{InputIDs: rowsTensor(t, ids, L, lo, hi), TokenTypeIDs: rowsTensor(t, types, L, lo, hi), AttentionMask: rowsTensor(t, mask, L, lo, hi)}
			out, err := m.Forward(b, false, true)
			if err != nil {
				return err
			}
			got := values(t, out.Logits)
			worstLogit = math.Max(worstLogit, maxAbsDiff(got, wantLogits[lo*2:hi*2]))
			for layer, h := range out.Hidden {
				hv := values(t, h) // [rows, L, hidden]
				for r := 0; r < hi-lo; r++ {
					want := wantCLS[(layer*n+lo+r)*hsz : (layer*n+lo+r+1)*hsz]
					worstCLS = math.Max(worstCLS, maxAbsDiff(hv[r*L*hsz:r*L*hsz+hsz], want))
					if layer == len(out.Hidden)-1 {
						mean := make([]float32, hsz)
						cnt := 0
						for p := 0; p < L; p++ {
							if mask[(lo+r)*L+p] == 0 {
								continue
							}
							cnt++
							for d := 0; d < hsz; d++ {
								mean[d] += hv[(r*L+p)*hsz+d]
							}
						}
						for d := range mean {
							mean[d] /= float32(cnt)
						}
						worstMean = math.Max(worstMean, maxAbsDiff(mean, wantMean[(lo+r)*hsz:(lo+r+1)*hsz]))
					}
				}
			}
			out.Free()
			drop(b.InputIDs, b.TokenTypeIDs, b.AttentionMask)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("all-MiniLM-L6-v2, %d sentences padded to %d: max |Δ| logits %.3g, [CLS] of every layer %.3g, masked mean of last layer %.3g",
		n, L, worstLogit, worstCLS, worstMean)
	for what, d := range map[string]float64{"logits": worstLogit, "cls hidden": worstCLS, "mean last": worstMean} {
		if d > parityTol {
			t.Errorf("%s differ from transformers by %.3g > %g", what, d, parityTol)
		}
	}
}

func TestParityTinyForwardBackward(t *testing.T) {
	defer LockThread()()
	m, rep, err := Load(filepath.Join("..", "testdata", "parity", "tiny-bert"), LoadOptions{Device: gotch.CPU})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if len(rep.NewlyInitialized) > 0 || len(rep.Unused) > 0 {
		t.Fatalf("a complete BertForSequenceClassification checkpoint should load exactly: %s", rep)
	}
	if got := strings.Join(m.Config.Labels(), ","); got != "neg,neu,pos" {
		t.Errorf("labels = %s", got)
	}
	ref := openRef(t, "tiny_ref.safetensors")
	ids, shape := ref.int64s("input_ids")
	mask, _ := ref.int64s("attention_mask")
	types, _ := ref.int64s("token_type_ids")
	labels, _ := ref.int64s("labels")
	n, L := int(shape[0]), int(shape[1])
	b := Batch{InputIDs: rowsTensor(t, ids, L, 0, n), TokenTypeIDs: rowsTensor(t, types, L, 0, n), AttentionMask: rowsTensor(t, mask, L, 0, n)}
	out, err := m.Forward(b, false, true)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Free()
	wantLogits, _ := ref.floats("logits")
	if d := maxAbsDiff(values(t, out.Logits), wantLogits); d > parityTol {
		t.Errorf("logits differ by %.3g", d)
	}
	wantHidden, hs := ref.floats("hidden") // [layers+1, 64, L, hidden]
	per := int(hs[1] * hs[2] * hs[3])
	for layer, h := range out.Hidden {
		got := values(t, h)[:per]
		if d := maxAbsDiff(got, wantHidden[layer*per:(layer+1)*per]); d > parityTol {
			t.Errorf("hidden state %d differs by %.3g", layer, d)
		}
	}
	lab, err := ts.OfSlice(labels)
	if err != nil {
		t.Fatal(err)
	}
	loss, err := CrossEntropy(out.Logits, lab)
	if err != nil {
		t.Fatal(err)
	}
	wantLoss, _ := ref.floats("loss")
	gotLoss := values(t, loss)
	if d := maxAbsDiff(gotLoss, wantLoss); d > 1e-5 {
		t.Errorf("loss %v, transformers %v", gotLoss, wantLoss)
	}
	if err := loss.Backward(); err != nil {
		t.Fatal(err)
	}
	worst, worstName := 0.0, ""
	for _, p := range m.Params() {
		g, err := p.T.Grad(false)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := ref.floats("grad." + p.Name)
		if d := maxAbsDiff(values(t, g), want); d > worst {
			worst, worstName = d, p.Name
		}
		drop(g)
	}
	t.Logf("tiny BERT: loss %.6f (transformers %.6f); max |Δ| over all %d parameter gradients %.3g (%s)",
		gotLoss[0], wantLoss[0], len(m.Params()), worst, worstName)
	if worst > parityTol {
		t.Errorf("gradients differ from transformers by %.3g at %s", worst, worstName)
	}
}
