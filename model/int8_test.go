package model

import (
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sugarme/gotch"
	"github.com/sugarme/gotch/ts"
)

// TestQuantizeWeightByHand checks the symmetric int8 rule on values worked out
// by hand: scale = max|w| / 127.5, ties round to even, the extreme clamps.
func TestQuantizeWeightByHand(t *testing.T) {
	// Powers of two keep every quotient exact, so the ties are real ties.
	w := []float32{
		0.99609375, -0.99609375, 0.00390625, 0.01171875, // row 0: max 127.5/128 -> scale 1/128
		0.498046875, 0.0048828125, -0.009765625, 0, // row 1: max 127.5/256 -> scale 1/256
	}
	q, scales, err := QuantizeWeight(w, 2, 4, true)
	if err != nil {
		t.Fatal(err)
	}
	wantScales := []float64{1.0 / 128, 1.0 / 256}
	// 127.5 clamps to 127; -127.5 rounds to even, -128; 0.5 -> 0 and 1.5 -> 2
	// (even); 1.25 -> 1; -2.5 -> -2 (even).
	want := []int8{127, -128, 0, 2, 127, 1, -2, 0}
	for i, s := range scales {
		if s != wantScales[i] {
			t.Errorf("row %d scale %v, want %v", i, s, wantScales[i])
		}
	}
	for i := range want {
		if q[i] != want[i] {
			t.Errorf("q[%d] = %d, want %d (w %v)", i, q[i], want[i], w[i])
		}
	}
	// One scale for the whole matrix: 1/128 everywhere, so row 1's 63.75 -> 64.
	q, scales, err = QuantizeWeight(w, 2, 4, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(scales) != 1 || scales[0] != 1.0/128 || q[4] != 64 {
		t.Errorf("per tensor: scales %v, q[4] %d, want [0.0078125] and 64", scales, q[4])
	}
	// An all-zero row gets float32 epsilon as its scale, as the observers' floor.
	if _, s, _ := QuantizeWeight([]float32{0, 0}, 1, 2, true); s[0] != 1.1920928955078125e-07 {
		t.Errorf("zero row scale %v", s[0])
	}
	if _, _, err := QuantizeWeight([]float32{float32(math.NaN())}, 1, 1, false); err == nil {
		t.Error("a NaN weight quantized without error")
	}
	if _, _, err := QuantizeWeight(w, 3, 4, false); err == nil {
		t.Error("a wrong shape quantized without error")
	}
}

type int8Reference struct {
	Out, In           int
	Weight            []float32
	Bias              []float32
	InputShape        []int64 `json:"input_shape"`
	Input             []float32
	Float             []float32
	TiesShape         []int64 `json:"ties_shape"`
	Ties              []float32
	OneDNNLargeOutput []float32    `json:"onednn_large_output"`
	PerTensor         int8RefEntry `json:"per_tensor"`
	PerChannel        int8RefEntry `json:"per_channel"`
}

type int8RefEntry struct {
	Scales            []float64
	Int8              []int8
	Output            []float32
	OutputReduceRange []float32 `json:"output_reduce_range"`
	TiesOutput        []float32 `json:"ties_output"`
}

// readInt8Reference reads testdata/int8/reference.json (scripts/int8_fixture.sh).
func readInt8Reference(t *testing.T) int8Reference {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "int8", "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref int8Reference
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestInt8LinearAgainstTorch compares beamtune's weight quantization and int8
// linear with what PyTorch's quantize_dynamic machinery gives on the same
// random layer (testdata/int8/reference.json, scripts/int8_fixture.sh), and
// bounds the int8 error against the float32 layer.
func TestInt8LinearAgainstTorch(t *testing.T) {
	f := HostCPU()
	if why := Int8Unsupported(gotch.CPU, f); why != "" {
		t.Skipf("int8 not supported on this machine: %s", why)
	}
	ref := readInt8Reference(t)
	defer LockThread()()
	w, err := Float32Tensor(ref.Weight, []int64{int64(ref.Out), int64(ref.In)}, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer drop(w)
	b, err := Float32Tensor(ref.Bias, []int64{int64(ref.Out)}, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer drop(b)
	x, err := Float32Tensor(ref.Input, ref.InputShape, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer drop(x)
	ties, err := Float32Tensor(ref.Ties, ref.TiesShape, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer drop(ties)
	var yMax float64
	for _, v := range ref.Float {
		yMax = math.Max(yMax, math.Abs(float64(v)))
	}
	for _, c := range []struct {
		name string
		opts Int8Options
		want int8RefEntry
	}{{"per_tensor", Int8Options{}, ref.PerTensor}, {"per_channel", Int8Options{PerChannel: true}, ref.PerChannel}} {
		q, scales, err := QuantizeWeight(ref.Weight, ref.Out, ref.In, c.opts.PerChannel)
		if err != nil {
			t.Fatal(err)
		}
		if len(scales) != len(c.want.Scales) {
			t.Fatalf("%s: %d scales, torch %d", c.name, len(scales), len(c.want.Scales))
		}
		for i := range scales {
			if math.Abs(scales[i]-c.want.Scales[i]) > 1e-6*c.want.Scales[i] {
				t.Errorf("%s: scale %d = %v, torch %v", c.name, i, scales[i], c.want.Scales[i])
			}
		}
		mismatches := 0
		for i := range q {
			if q[i] != c.want.Int8[i] {
				mismatches++
			}
		}
		if mismatches > 0 {
			t.Errorf("%s: %d of %d int8 weights differ from torch's", c.name, mismatches, len(q))
		}
		// With VNNI the layer is packed for oneDNN, without it for fbgemm
		// with 7-bit activations: both against torch's (fbgemm) output.
		for _, rr := range []bool{false, true} {
			feats := CPUFeatures{AVX2: true, VNNI: !rr}
			l, err := newFusedInt8Linear([]*ts.Tensor{w}, []*ts.Tensor{b}, c.opts, feats)
			if err != nil {
				t.Fatal(err)
			}
			got := runInt8(t, l, x)
			want := c.want.Output
			if rr {
				want = c.want.OutputReduceRange
			}
			var dTorch, dFloat float64
			for i := range got {
				dTorch = math.Max(dTorch, math.Abs(float64(got[i]-want[i])))
				dFloat = math.Max(dFloat, math.Abs(float64(got[i]-ref.Float[i])))
			}
			t.Logf("%s reduce_range=%v: max |int8 - torch int8| %.2e, max |int8 - float32| %.2e (max |y| %.2f)", c.name, rr, dTorch, dFloat, yMax)
			// The same int8 weights and activations: equal up to float summation.
			if dTorch > 1e-5 {
				t.Errorf("%s reduce_range=%v: differs from torch's quantized linear by %.2e (limit 1e-5)", c.name, rr, dTorch)
			}
			// Against float32: 8-bit weights and activations (7-bit with reduce_range)
			// keep every output within 3% (6%) of the output range.
			limit := 0.03 * yMax
			if rr {
				limit *= 2
			}
			if dFloat > limit {
				t.Errorf("%s reduce_range=%v: differs from float32 by %.3f (limit %.3f)", c.name, rr, dFloat, limit)
			}
			if !rr {
				// Half of these activations quantize to exactly k + 0.5: rounding
				// them other than to even moves outputs by about 1e-3.
				l, err := newFusedInt8Linear([]*ts.Tensor{w}, []*ts.Tensor{b}, c.opts, feats)
				if err != nil {
					t.Fatal(err)
				}
				var dTies float64
				for i, v := range runInt8(t, l, ties) {
					dTies = math.Max(dTies, math.Abs(float64(v-c.want.TiesOutput[i])))
				}
				if dTies > 1e-5 {
					t.Errorf("%s: on rounding ties differs from torch's quantized linear by %.2e (limit 1e-5)", c.name, dTies)
				}
			}
		}
	}
}

// TestInt8LinearOneDNNLargeInput runs the oneDNN path on an input large
// enough that its minimum and maximum are found by several threads (the
// fixture puts both in the second half) against the oneDNN engine's
// linear_dynamic on the same layer.
func TestInt8LinearOneDNNLargeInput(t *testing.T) {
	f := HostCPU()
	if why := Int8Unsupported(gotch.CPU, f); why != "" {
		t.Skipf("int8 not supported on this machine: %s", why)
	}
	if !f.VNNI {
		t.Skip("this CPU lacks VNNI: int8 layers run fbgemm's kernels here, not oneDNN's")
	}
	ref := readInt8Reference(t)
	const rows, outs = 1000, 4
	in := ref.In
	big := make([]float32, rows*in)
	for i := range big {
		big[i] = float32(float64((i*7919)%4001-2000) / 500.0)
	}
	big[30001], big[39000] = -6.5, 7.25
	defer LockThread()()
	SetThreads(2)
	x, err := Float32Tensor(big, []int64{rows, int64(in)}, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer drop(x)
	w, err := Float32Tensor(ref.Weight[:outs*in], []int64{outs, int64(in)}, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer drop(w)
	b, err := Float32Tensor(ref.Bias[:outs], []int64{outs}, gotch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer drop(b)
	l, err := newFusedInt8Linear([]*ts.Tensor{w}, []*ts.Tensor{b}, Int8Options{}, f)
	if err != nil {
		t.Fatal(err)
	}
	got := runInt8(t, l, x)
	if len(got) != len(ref.OneDNNLargeOutput) {
		t.Fatalf("%d outputs, torch %d", len(got), len(ref.OneDNNLargeOutput))
	}
	var d float64
	for i := range got {
		d = math.Max(d, math.Abs(float64(got[i]-ref.OneDNNLargeOutput[i])))
	}
	t.Logf("max |int8 - torch oneDNN int8| %.2e over %d outputs", d, len(got))
	// A wrong minimum or maximum changes the scale, and every output with it.
	if d > 1e-5 {
		t.Errorf("differs from torch's oneDNN quantized linear by %.2e (limit 1e-5)", d)
	}
}

// TestQuantizedModelKeepsPredictions runs the tiny parity model in float32 and
// int8 on the same batch: logits close, the same argmax, and the float32
// weights still in use in train mode.
func TestQuantizedModelKeepsPredictions(t *testing.T) {
	f := HostCPU()
	if why := Int8Unsupported(gotch.CPU, f); why != "" {
		t.Skipf("int8 not supported on this machine: %s", why)
	}
	defer LockThread()()
	m := loadTiny(t)
	defer m.Free()
	b := tinyBatch(t, m)
	defer drop(b.InputIDs, b.AttentionMask)
	logits := func() []float32 { return evalLogits(t, m, b) }
	fp := logits()
	applied, fallback, err := Quantize(m, QuantizeInt8, f)
	if err != nil || applied != QuantizeInt8 || fallback != "" {
		t.Fatalf("Quantize: %q %q %v", applied, fallback, err)
	}
	if !m.Quantized() {
		t.Fatal("model not quantized")
	}
	q := logits()
	var d, spread float64
	for i := range fp {
		d = math.Max(d, math.Abs(float64(fp[i]-q[i])))
		spread = math.Max(spread, math.Abs(float64(fp[i])))
	}
	t.Logf("logits fp32 %v int8 %v: max diff %.4f", fp, q, d)
	if d == 0 {
		t.Error("int8 logits equal float32 bit for bit: the int8 path did not run")
	}
	if d > 0.05*spread+0.02 {
		t.Errorf("int8 logits differ by %.4f (limit %.4f)", d, 0.05*spread+0.02)
	}
	n := m.Config.NumLabels()
	for r := 0; r < 2; r++ {
		if argmax(fp[r*n:(r+1)*n]) != argmax(q[r*n:(r+1)*n]) {
			t.Errorf("row %d: int8 changes the predicted label", r)
		}
	}
}

func argmax(v []float32) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}

// TestQuantizeFallback: without AVX2, or on a GPU, int8 falls back to float32
// with a reason, and bad modes are refused.
func TestQuantizeFallback(t *testing.T) {
	defer LockThread()()
	m := loadTiny(t)
	defer m.Free()
	applied, fallback, err := Quantize(m, QuantizeInt8, CPUFeatures{AVX2: false, VNNI: false})
	if err != nil || applied != QuantizeNone || !strings.Contains(fallback, "AVX2") || !strings.Contains(fallback, "float32") {
		t.Errorf("no AVX2: got %q, %q, %v; want none with a reason naming AVX2", applied, fallback, err)
	}
	if m.Quantized() {
		t.Error("model quantized although the CPU lacks AVX2")
	}
	if why := Int8Unsupported(gotch.CudaBuilder(0), CPUFeatures{AVX2: true, VNNI: true}); !strings.Contains(why, "CPU only") {
		t.Errorf("cuda: %q", why)
	}
	if _, _, err := Quantize(m, "int4", HostCPU()); err == nil || !strings.Contains(err.Error(), "int4") {
		t.Errorf("int4: %v", err)
	}
	if applied, _, err := Quantize(m, "", HostCPU()); err != nil || applied != QuantizeNone {
		t.Errorf("empty mode: %q %v", applied, err)
	}
	if Int8Unsupported(m.Device, HostCPU()) == "" {
		if applied, _, err := Quantize(m, QuantizeInt8PerChannel, HostCPU()); err != nil || applied != QuantizeInt8PerChannel || !m.Quantized() {
			t.Errorf("per channel: %q %v, quantized %v", applied, err, m.Quantized())
		}
	}
}

// TestFusedInt8LinearEqualsParts packs three layers that read one input (as
// query, key and value are) into one int8 layer and checks that its output
// columns equal each layer packed alone, per tensor (where the fused weight
// carries each part's scale on its rows) and per channel.
func TestFusedInt8LinearEqualsParts(t *testing.T) {
	f := HostCPU()
	if why := Int8Unsupported(gotch.CPU, f); why != "" {
		t.Skipf("int8 not supported on this machine: %s", why)
	}
	defer LockThread()()
	rng := rand.New(rand.NewSource(3))
	const in, out = 48, 24
	tensor := func(scale float32, shape ...int64) *ts.Tensor {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		for i := range v {
			v[i] = scale * float32(rng.NormFloat64())
		}
		x, err := Float32Tensor(v, shape, gotch.CPU)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	var ws, bs []*ts.Tensor
	for i := 0; i < 3; i++ { // parts of different magnitudes, so their per-tensor scales differ
		ws = append(ws, tensor(0.05*float32(i+1), out, in))
		bs = append(bs, tensor(0.1, out))
	}
	x := tensor(1, 2, 5, in)
	defer drop(append(append(ws, bs...), x)...)
	for _, opts := range []Int8Options{{}, {PerChannel: true}} {
		fl, err := newFusedInt8Linear(ws, bs, opts, f)
		if err != nil {
			t.Fatal(err)
		}
		fused := runInt8(t, fl, x) // [10, 3·out]
		for part := range ws {
			l, err := newFusedInt8Linear(ws[part:part+1], bs[part:part+1], opts, f)
			if err != nil {
				t.Fatal(err)
			}
			alone := runInt8(t, l, x) // [10, out]
			var d float64
			for r := 0; r < 10; r++ {
				for c := 0; c < out; c++ {
					d = math.Max(d, math.Abs(float64(fused[r*3*out+part*out+c]-alone[r*out+c])))
				}
			}
			if d > 1e-6 {
				t.Errorf("per channel %v, part %d: fused output differs from the layer alone by %.2e", opts.PerChannel, part, d)
			}
		}
	}
}

// runInt8 applies l to x without autograd, frees l and returns the output.
func runInt8(t *testing.T, l *int8Linear, x *ts.Tensor) []float32 {
	t.Helper()
	defer l.free()
	var got []float32
	if err := NoGrad(func() error {
		y, err := l.forward(x)
		if err != nil {
			return err
		}
		defer drop(y)
		got, err = Float32s(y)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return got
}
