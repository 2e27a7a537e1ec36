package inference

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/model"
)

// TestHandlerPrecision: a handler's Precision is part of its model's key,
// a bf16 model scores within tolerance of the fp32 one (Score is the one
// inference forward), and fp16 on CPU and bf16 with int8 are refused with
// their reasons.
func TestHandlerPrecision(t *testing.T) {
	dir := classifier(t, "neg", "pos")
	fp32 := ModelHandler{ModelDir: dir, Device: "cpu"}
	bf16 := fp32
	bf16.Precision = "bf16"
	if fp32.key() == bf16.key() {
		t.Fatal("fp32 and bf16 handlers share a model key")
	}
	score := func(h ModelHandler) ([][]float32, model.Precision) {
		m, err := Acquire(context.Background(), h)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Release()
		var rows []pending
		for _, s := range texts(12) {
			p, reason := m.encode(Example{Text: s})
			if reason != "" {
				t.Fatal(reason)
			}
			rows = append(rows, p)
		}
		ev, err := m.Score(rowsOf(rows), 4, nil)
		if err != nil {
			t.Fatal(err)
		}
		return ev.Logits, m.bert.Precision()
	}
	l32, p32 := score(fp32)
	l16, p16 := score(bf16)
	if p32 != model.PrecisionFP32 || p16 != model.PrecisionBF16 {
		t.Fatalf("models run in %s and %s", p32, p16)
	}
	var diff, scale float64
	for i := range l32 {
		for j := range l32[i] {
			diff = math.Max(diff, math.Abs(float64(l32[i][j]-l16[i][j])))
			scale = math.Max(scale, math.Abs(float64(l32[i][j])))
		}
	}
	t.Logf("bf16 vs fp32: max |Δlogit| %.3g of max |logit| %.3g", diff, scale)
	if diff == 0 || diff > 0.02*math.Max(1, scale) {
		t.Errorf("bf16 logits differ from fp32 by %.3g (scale %.3g): want 0 < diff ≤ 2%%", diff, scale)
	}
	for _, tc := range []struct {
		h    ModelHandler
		want string
	}{
		{ModelHandler{ModelDir: dir, Device: "cpu", Precision: "fp16"}, model.ErrFP16OnCPU},
		{ModelHandler{ModelDir: dir, Device: "cpu", Precision: "bf16", Quantize: model.QuantizeInt8}, "pick one"},
		{ModelHandler{ModelDir: dir, Device: "cpu", Precision: "bf8"}, "want fp32, bf16, fp16 or auto"},
	} {
		if m, err := Acquire(context.Background(), tc.h); err == nil || !strings.Contains(err.Error(), tc.want) {
			if m != nil {
				m.Release()
			}
			t.Errorf("%+v: %v, want an error with %q", tc.h, err, tc.want)
		}
	}
	// auto with int8 is fp32, int8 layers.
	if model.HostCPU().AVX2 {
		m, err := Acquire(context.Background(), ModelHandler{ModelDir: dir, Device: "cpu", Precision: "auto", Quantize: model.QuantizeInt8})
		if err != nil {
			t.Fatal(err)
		}
		if m.bert.Precision() != model.PrecisionFP32 || !m.bert.Quantized() {
			t.Errorf("auto+int8: precision %s, quantized %v", m.bert.Precision(), m.bert.Quantized())
		}
		m.Release()
	}
}
