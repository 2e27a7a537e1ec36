package model

import (
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

func TestParsePrecision(t *testing.T) {
	for in, want := range map[string]Precision{
		"": PrecisionFP32, "fp32": PrecisionFP32, "FP32": PrecisionFP32, "float32": PrecisionFP32,
		"bf16": PrecisionBF16, " bfloat16 ": PrecisionBF16, "fp16": PrecisionFP16, "half": PrecisionFP16,
		"auto": PrecisionAuto,
	} {
		got, err := ParsePrecision(in)
		if err != nil || got != want {
			t.Errorf("ParsePrecision(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"bf32", "int8", "fp8", "16", "float"} {
		if _, err := ParsePrecision(bad); err == nil || !strings.Contains(err.Error(), "want fp32, bf16, fp16 or auto") {
			t.Errorf("ParsePrecision(%q): err %v, want a refusal naming the choices", bad, err)
		}
	}
}

func TestResolvePrecision(t *testing.T) {
	cpu := gotch.CPU
	fast := CPUFeatures{AVX2: true, AVX512BF16: true}
	amx := CPUFeatures{AVX2: true, AMXBF16: true}
	slow := CPUFeatures{AVX2: true}
	for _, tc := range []struct {
		spec, quantize string
		f              CPUFeatures
		want           Precision
		err            string
	}{
		{"auto", "", fast, PrecisionBF16, ""},
		{"auto", "", amx, PrecisionBF16, ""},
		{"auto", "", slow, PrecisionFP32, ""},
		{"auto", QuantizeInt8, fast, PrecisionFP32, ""}, // int8 layers take float32 activations
		{"bf16", "", slow, PrecisionBF16, ""},           // asked for explicitly: runs, emulated
		{"bf16", "none", fast, PrecisionBF16, ""},
		{"bf16", QuantizeInt8, fast, "", "pick one"},
		{"fp16", "", fast, "", ErrFP16OnCPU},
		{"fp32", QuantizeInt8PerChannel, fast, PrecisionFP32, ""},
		{"tf32", "", fast, "", "want fp32"},
	} {
		got, err := ResolvePrecision(tc.spec, cpu, tc.f, tc.quantize)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Resolve(%s, %s, %+v) = %q, %v; want error %q", tc.spec, tc.quantize, tc.f, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%s, %s, %+v) = %q, %v; want %q", tc.spec, tc.quantize, tc.f, got, err, tc.want)
		}
	}
	if ok, why := FastBF16(cpu, slow); ok || !strings.Contains(why, "neither") {
		t.Errorf("FastBF16(no bf16) = %v %q", ok, why)
	}
}

func TestSetPrecisionRefusals(t *testing.T) {
	m := loadTiny(t)
	defer m.Free()
	if err := m.SetPrecision(PrecisionFP16); err == nil || err.Error() != ErrFP16OnCPU {
		t.Errorf("fp16 on CPU: %v, want %q", err, ErrFP16OnCPU)
	}
	if err := m.SetPrecision(PrecisionAuto); err == nil {
		t.Error("SetPrecision(auto) accepted: it must be resolved first")
	}
	if m.Precision() != PrecisionFP32 {
		t.Errorf("precision after refusals = %s", m.Precision())
	}
	if err := m.SetPrecision(PrecisionBF16); err != nil {
		t.Fatal(err)
	}
	if f := HostCPU(); f.AVX2 {
		if err := m.QuantizeInt8(Int8Options{}, f); err == nil || !strings.Contains(err.Error(), "bf16") {
			t.Errorf("int8 on a bf16 model: %v", err)
		}
		if err := m.SetPrecision(PrecisionFP32); err != nil {
			t.Fatal(err)
		}
		if err := m.QuantizeInt8(Int8Options{}, f); err != nil {
			t.Fatal(err)
		}
		if err := m.SetPrecision(PrecisionBF16); err == nil || !strings.Contains(err.Error(), "int8") {
			t.Errorf("bf16 on an int8 model: %v", err)
		}
	}
}

// TestBF16Conversions checks each conversion the bf16 path relies on, in
// gotch and libtorch: float32 → bfloat16 rounds to nearest (8 significant
// bits), the tensor reports BFloat16 (gotch maps scalar type 15), reading it
// back through Float32s is exact, a bf16 matrix product read back is right,
// and the mask constant survives the cast where -MaxFloat32 does not.
func TestBF16Conversions(t *testing.T) {
	defer LockThread()()
	vals := []float32{1, 1.5, -0.375, 3.14159265, 1e-3, -2.5e5, 123456.789, 7e-30, 0}
	x, err := Float32Tensor(vals, []int64{int64(len(vals))}, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer drop(x)
	var s scope
	defer s.release()
	b := s.cast(x, gotch.BFloat16)
	if !s.ok() {
		t.Fatal(s.err)
	}
	if b.DType() != gotch.BFloat16 {
		t.Fatalf("cast tensor has dtype %v, want BFloat16", b.DType())
	}
	if s.cast(b, gotch.BFloat16) != b {
		t.Error("casting a bf16 tensor to bf16 made a copy")
	}
	back, err := Float32s(b)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if want := bf16Round(v); back[i] != want {
			t.Errorf("%g: bf16 round trip %g, want %g", v, back[i], want)
		}
		if rel := math.Abs(float64(back[i]-v)) / math.Max(math.Abs(float64(v)), 1e-38); rel > 1.0/256 {
			t.Errorf("%g: round trip %g off by %.2g relative, beyond bf16's 2^-8", v, back[i], rel)
		}
	}
	// The mask constant is exact in bf16; -MaxFloat32 overflows to -inf.
	mk, err := Float32Tensor([]float32{float32(PrecisionBF16.lowMin()), -math.MaxFloat32}, []int64{2}, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer drop(mk)
	mb, err := Float32s(s.cast(mk, gotch.BFloat16))
	if err != nil {
		t.Fatal(err)
	}
	if float64(mb[0]) != PrecisionBF16.lowMin() || !math.IsInf(float64(mb[1]), -1) {
		t.Errorf("mask constants through bf16: %v", mb)
	}
	// A bf16 product, read back as float32: [1.5 -0.375]·[[2],[4]] = 1.5.
	a2 := s.cast(s.view(s.take(x, mustIdx(t, 1, 2)), 1, 2), gotch.BFloat16)
	w, err := Float32Tensor([]float32{2, 4}, []int64{2, 1}, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer drop(w)
	p := s.matmul(a2, s.cast(w, gotch.BFloat16))
	if !s.ok() {
		t.Fatal(s.err)
	}
	if p.DType() != gotch.BFloat16 {
		t.Errorf("bf16 matmul gave %v", p.DType())
	}
	if v, err := Float32s(p); err != nil || len(v) != 1 || v[0] != 1.5 {
		t.Errorf("bf16 matmul read back %v, %v; want [1.5]", v, err)
	}
}

func mustIdx(t *testing.T, idx ...int64) *ts.Tensor {
	t.Helper()
	x, err := ts.OfSlice(idx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drop(x) })
	return x
}

// bf16Round is float32 → bfloat16 with round-to-nearest-even, in Go.
func bf16Round(v float32) float32 {
	u := math.Float32bits(v)
	u += 0x7fff + (u>>16)&1
	return math.Float32frombits(u &^ 0xffff)
}

// diffScale is max|a-b| and max|a|.
func diffScale(t *testing.T, a, b []float32) (diff, scale float64) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("lengths %d and %d", len(a), len(b))
	}
	for i := range a {
		diff = math.Max(diff, math.Abs(float64(a[i]-b[i])))
		scale = math.Max(scale, math.Abs(float64(a[i])))
	}
	return diff, scale
}

// forwardBoth runs one eval-mode batch in fp32 and in bf16 and returns the
// logits and the last hidden state of each.
func forwardBoth(t *testing.T, m *Bert, b Batch) (l32, l16, h32, h16 []float32) {
	t.Helper()
	run := func(p Precision) (logits, hidden []float32) {
		if err := m.SetPrecision(p); err != nil {
			t.Fatal(err)
		}
		if err := NoGrad(func() error {
			o, err := m.Forward(b, false, true)
			if err != nil {
				return err
			}
			defer o.Free()
			for _, x := range append([]*ts.Tensor{o.Logits}, o.Hidden...) {
				if x.DType() != gotch.Float {
					t.Errorf("%s: an output is %v, want float32", p, x.DType())
				}
			}
			if logits, err = Float32s(o.Logits); err != nil {
				return err
			}
			hidden, err = Float32s(o.Hidden[len(o.Hidden)-1])
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return logits, hidden
	}
	l32, h32 = run(PrecisionFP32)
	l16, h16 = run(PrecisionBF16)
	return
}

// Tolerances of bf16 against fp32 in eval mode. bf16 keeps 8 significant
// bits (relative rounding 2^-9 per value); six layers of products of length
// 384-1536 accumulate in float32 inside oneDNN, so the error stays near a
// few bf16 ulps of each output. Measured on this machine: tiny model max
// |Δlogit| 2e-4 (logits ~0.1), MiniLM hidden 1-2% of its scale, fine-tuned
// SST-2 teacher |Δlogit| ≤ 0.05 on logits of magnitude ~4.
const (
	bf16LogitTol  = 0.02 // of max(1, max|logit|)
	bf16HiddenTol = 0.05 // of max|hidden|
)

func TestBF16ForwardTiny(t *testing.T) {
	defer LockThread()()
	m := loadTiny(t)
	defer m.Free()
	b := tinyBatch(t, m)
	defer drop(b.InputIDs, b.AttentionMask)
	l32, l16, h32, h16 := forwardBoth(t, m, b)
	d, sc := diffScale(t, l32, l16)
	t.Logf("tiny: max |Δlogit| %.3g (max |logit| %.3g)", d, sc)
	if d > bf16LogitTol*math.Max(1, sc) {
		t.Errorf("bf16 logits off by %.3g, tolerance %.3g", d, bf16LogitTol*math.Max(1, sc))
	}
	if d == 0 {
		t.Error("bf16 logits equal fp32 exactly: the bf16 path did not run")
	}
	dh, sh := diffScale(t, h32, h16)
	if dh > bf16HiddenTol*sh || dh == 0 {
		t.Errorf("bf16 last hidden off by %.3g (scale %.3g)", dh, sh)
	}
	if n := m.CachedCasts(); n != 2*6 {
		t.Errorf("%d cached bf16 layers after an eval pass, want 12 (2 layers x 6 linears)", n)
	}
}

// TestBF16CacheFollowsWeights: the cached bf16 weights are remade when the
// weights change, and freed with the model (and on a precision change).
func TestBF16CacheFollowsWeights(t *testing.T) {
	defer LockThread()()
	live := func() int { return len(ts.ExistingTensors) }
	labels := mustIdx(t, 0, 2)
	before := live()
	m := loadTiny(t)
	b := tinyBatch(t, m)
	defer drop(b.InputIDs, b.AttentionMask)
	logits := func() []float32 { return evalLogits(t, m, b) }
	if err := m.SetPrecision(PrecisionBF16); err != nil {
		t.Fatal(err)
	}
	first := logits()
	held := []*ts.Tensor{}
	for _, l := range m.casts.layers {
		held = append(held, l.w, l.b)
	}
	if len(held) != 24 {
		t.Fatalf("%d cached tensors, want 24", len(held))
	}
	if again := logits(); !slices.Equal(first, again) {
		t.Errorf("a second pass over the same weights changed the logits: %v vs %v", first, again)
	}
	// Change a cached layer's weight through Param.Set: the bf16 pass must
	// see it, and agree with fp32 on the new weights.
	p := m.Param("bert.encoder.layer.1.output.dense.weight")
	v, err := Float32s(p.T)
	if err != nil {
		t.Fatal(err)
	}
	for i := range v {
		v[i] *= 3
	}
	if err := p.Set(v); err != nil {
		t.Fatal(err)
	}
	changed := logits()
	for _, x := range held {
		if x.Ctensor() != nil {
			t.Fatal("a stale cached bf16 weight was not freed once the weights changed")
		}
	}
	if slices.Equal(first, changed) {
		t.Error("bf16 logits did not change with the weights: a stale cache was used")
	}
	if err := m.SetPrecision(PrecisionFP32); err != nil {
		t.Fatal(err)
	}
	if m.CachedCasts() != 0 {
		t.Error("switching to fp32 kept the bf16 copies")
	}
	ref := logits()
	if d, sc := diffScale(t, ref, changed); d > bf16LogitTol*math.Max(1, sc) {
		t.Errorf("bf16 after a weight change differs from fp32 by %.3g", d)
	}
	// An optimizer step also invalidates.
	if err := m.SetPrecision(PrecisionBF16); err != nil {
		t.Fatal(err)
	}
	logits()
	held = held[:0]
	for _, l := range m.casts.layers {
		held = append(held, l.w)
	}
	opt, err := NewAdamW(m.Params(), DefaultAdamW())
	if err != nil {
		t.Fatal(err)
	}
	if err := WithGrad(true, func() error { // one real step: forward, backward, AdamW
		o, err := m.Forward(b, true, false)
		if err != nil {
			return err
		}
		defer o.Free()
		loss, err := CrossEntropy(o.Logits, labels)
		if err != nil {
			return err
		}
		defer drop(loss)
		if err := loss.Backward(); err != nil {
			return err
		}
		return opt.Step(1e-2, 1)
	}); err != nil {
		t.Fatal(err)
	}
	opt.Free()
	stepped := logits()
	if slices.Equal(stepped, changed) {
		t.Error("logits unchanged after an optimizer step: stale bf16 cache")
	}
	for _, x := range held {
		if x.Ctensor() != nil {
			t.Fatal("stale cached weight alive after an optimizer step and a new eval pass")
		}
	}
	m.Free()
	if m.casts != nil {
		t.Error("Free left the cache")
	}
	if after := live() - 2; after != before { // the batch is still alive
		t.Errorf("%d tensors alive before, %d after the model was freed: the bf16 cache leaks", before, after)
	}
}

// gradsOf runs one training forward (dropout off) and backward in p and
// returns every parameter's gradient.
func gradsOf(t *testing.T, m *Bert, b Batch, labels *ts.Tensor, p Precision) map[string][]float32 {
	t.Helper()
	if err := m.SetPrecision(p); err != nil {
		t.Fatal(err)
	}
	if err := ZeroGrad(m.Trainable()); err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	if err := WithGrad(true, func() error {
		o, err := m.Forward(b, true, false)
		if err != nil {
			return err
		}
		defer o.Free()
		if o.Logits.DType() != gotch.Float {
			t.Errorf("%s training logits are %v", p, o.Logits.DType())
		}
		loss, err := CrossEntropy(o.Logits, labels)
		if err != nil {
			return err
		}
		defer drop(loss)
		if err := loss.Backward(); err != nil {
			return err
		}
		for _, prm := range m.Trainable() {
			g, err := prm.T.Grad(false)
			if err != nil {
				return err
			}
			if ok, _ := g.Defined(); !ok {
				t.Errorf("%s: %s has no gradient", p, prm.Name)
				continue
			}
			if g.DType() != gotch.Float {
				t.Errorf("%s: %s gradient is %v, want float32", p, prm.Name, g.DType())
			}
			v, err := Float32s(g)
			drop(g)
			if err != nil {
				return err
			}
			out[prm.Name] = v
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// compareGrads asserts bf16 gradients point where fp32's do: cosine ≥ 0.99
// and norms within 5% for every tensor whose gradient is not negligible.
func compareGrads(t *testing.T, g32, g16 map[string][]float32, minCount int) {
	t.Helper()
	var checked int
	for name, a := range g32 {
		bv := g16[name]
		var dot, na, nb float64
		for i := range a {
			dot += float64(a[i]) * float64(bv[i])
			na += float64(a[i]) * float64(a[i])
			nb += float64(bv[i]) * float64(bv[i])
		}
		na, nb = math.Sqrt(na), math.Sqrt(nb)
		if na < 1e-6 {
			continue
		}
		checked++
		if cos := dot / (na * nb); cos < 0.99 || math.Abs(nb/na-1) > 0.05 {
			t.Errorf("%s: bf16 gradient cosine %.4f, norm ratio %.4f vs fp32", name, cos, nb/na)
		}
	}
	if checked < minCount {
		t.Errorf("only %d gradients compared, want at least %d", checked, minCount)
	}
}

func TestBF16TrainingGrads(t *testing.T) {
	defer LockThread()()
	m := loadTiny(t)
	defer m.Free()
	m.Config.HiddenDropoutProb, m.Config.AttentionProbsDropoutProb = 0, 0 // same graph both times
	b := tinyBatch(t, m)
	defer drop(b.InputIDs, b.AttentionMask)
	labels := mustIdx(t, 2, 0)
	g32 := gradsOf(t, m, b, labels, PrecisionFP32)
	g16 := gradsOf(t, m, b, labels, PrecisionBF16)
	if len(g32) != len(m.Params()) || len(g16) != len(m.Params()) {
		t.Fatalf("%d fp32 and %d bf16 gradients for %d parameters", len(g32), len(g16), len(m.Params()))
	}
	compareGrads(t, g32, g16, len(m.Params())/2)
	if m.CachedCasts() != 0 {
		t.Error("a training pass cached bf16 weights (they must be cast in the autograd graph)")
	}
	same := 0
	for name, a := range g32 {
		if slices.Equal(a, g16[name]) {
			same++
		}
	}
	if same == len(g32) {
		t.Error("bf16 gradients equal fp32's exactly: the bf16 path did not run")
	}
}

func TestBF16LoRAGrads(t *testing.T) {
	defer LockThread()()
	m := loadTiny(t)
	defer m.Free()
	m.Config.HiddenDropoutProb, m.Config.AttentionProbsDropoutProb = 0, 0
	if err := WithSeed(1, func() error {
		return m.Tune(Tuning{Method: TuneLoRA, LoRA: LoRAConfig{R: 4, Alpha: 8, Targets: DefaultLoRATargets}})
	}); err != nil {
		t.Fatal(err)
	}
	// lora_B starts at zero, which gives lora_A no gradient: draw it.
	if err := NoGrad(func() error {
		for _, p := range m.AdapterParams() {
			if strings.Contains(p.Name, "lora_B") {
				if err := p.T.Normal_(0, 0.05); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	b := tinyBatch(t, m)
	defer drop(b.InputIDs, b.AttentionMask)
	labels := mustIdx(t, 1, 2)
	g32 := gradsOf(t, m, b, labels, PrecisionFP32)
	g16 := gradsOf(t, m, b, labels, PrecisionBF16)
	var adapters int
	for name := range g16 {
		if strings.Contains(name, "lora_") {
			adapters++
		}
	}
	if adapters == 0 {
		t.Fatal("no LoRA gradients")
	}
	compareGrads(t, g32, g16, adapters)
}

// TestBF16ForwardFineTuned compares fp32 and bf16 logits of a fine-tuned
// MiniLM-L6 (BEAMTUNE_BF16_MODEL, else the SST-2 teacher bench/compress.sh
// leaves, else the pretrained all-MiniLM-L6-v2 with a seeded head) on
// random 32-token rows: within bf16LogitTol of the logit scale, the same
// predicted class on at least 97% of rows, and [CLS] vectors within
// bf16HiddenTol.
func TestBF16ForwardFineTuned(t *testing.T) {
	dir := os.Getenv("BEAMTUNE_BF16_MODEL")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "beamtune", "bench", "compress", "sst2", "teacher")
		if _, err := os.Stat(filepath.Join(dir, SafetensorsFile)); err != nil {
			dir = DefaultModelDir()
		}
	}
	if _, err := os.Stat(filepath.Join(dir, SafetensorsFile)); err != nil {
		t.Skipf("no MiniLM folder: %v", err)
	}
	defer LockThread()()
	SetThreads(2)
	var m *Bert
	if err := WithSeed(1, func() (err error) {
		m, _, err = Load(dir, LoadOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	rng := rand.New(rand.NewSource(3))
	batch, labels := randomBatch(t, rng, 32, 32, m.Config.VocabSize, 2)
	defer drop(batch.InputIDs, batch.AttentionMask, labels)
	// Pad the tail of half the rows, so the bf16 mask is exercised.
	mask := make([]int64, 32*32)
	for i := range mask {
		if r, c := i/32, i%32; r%2 == 0 || c < 12 {
			mask[i] = 1
		}
	}
	mk, err := Int64Tensor(mask, 32, 32, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	drop(batch.AttentionMask)
	batch.AttentionMask = mk
	l32, l16, h32, h16 := forwardBoth(t, m, batch)
	d, sc := diffScale(t, l32, l16)
	dh, sh := diffScale(t, h32, h16)
	k := m.Config.NumLabels()
	agree := 0
	for r := 0; r < 32; r++ {
		if argmax(l32[r*k:(r+1)*k]) == argmax(l16[r*k:(r+1)*k]) {
			agree++
		}
	}
	t.Logf("%s: max |Δlogit| %.3g (max |logit| %.3g), max |Δhidden| %.3g (scale %.3g), %d/32 same class", dir, d, sc, dh, sh, agree)
	if d > bf16LogitTol*math.Max(1, sc) || d == 0 {
		t.Errorf("bf16 logits off by %.3g, tolerance %.3g", d, bf16LogitTol*math.Max(1, sc))
	}
	if dh > bf16HiddenTol*sh {
		t.Errorf("bf16 last hidden state off by %.3g, tolerance %.3g", dh, bf16HiddenTol*sh)
	}
	if agree < 31 {
		t.Errorf("bf16 and fp32 predict the same class on %d of 32 rows", agree)
	}
}

// TestExportBF16: --save_dtype=bf16 writes BF16 weights (each the float32
// value rounded to nearest even) and torch_dtype, at about half the size,
// and loads back as float32; the default stays float32.
func TestExportBF16(t *testing.T) {
	defer LockThread()()
	m := loadTiny(t)
	defer m.Free()
	if err := m.SetSaveDType("fp8"); err == nil {
		t.Error("save dtype fp8 accepted")
	}
	dir32, dir16 := filepath.Join(t.TempDir(), "f32"), filepath.Join(t.TempDir(), "bf16")
	if err := m.Export(dir32, "", nil); err != nil {
		t.Fatal(err)
	}
	if err := m.SetSaveDType(SaveBF16); err != nil {
		t.Fatal(err)
	}
	if err := m.Export(dir16, "", nil); err != nil {
		t.Fatal(err)
	}
	size := func(dir string) int64 {
		st, err := os.Stat(filepath.Join(dir, SafetensorsFile))
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	if s32, s16 := size(dir32), size(dir16); float64(s16) > 0.55*float64(s32) {
		t.Errorf("bf16 folder %d bytes, fp32 %d: not about half", s16, s32)
	}
	cj, err := os.ReadFile(filepath.Join(dir16, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cj), `"torch_dtype": "bfloat16"`) {
		t.Errorf("bf16 config.json lacks torch_dtype: %s", cj)
	}
	if cj32, _ := os.ReadFile(filepath.Join(dir32, ConfigFile)); strings.Contains(string(cj32), "bfloat16") {
		t.Error("fp32 config.json says bfloat16")
	}
	back, _, err := Load(dir16, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer back.Free()
	for _, p := range m.Params() {
		want, err := Float32s(p.T)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Float32s(back.Param(p.Name).T)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if got[i] != bf16Round(want[i]) {
				t.Fatalf("%s[%d]: %g loaded from bf16, want %g (from %g)", p.Name, i, got[i], bf16Round(want[i]), want[i])
			}
		}
	}
}
