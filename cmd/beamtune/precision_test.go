package main

import "testing"

// --precision and --save_dtype reach the options of train, distill,
// evaluate and predict; unset, train's stay empty (fp32), so configs of
// runs made before the flags still match their checkpoints.
func TestPrecisionFlags(t *testing.T) {
	train := &trainCmd{}
	parse(t, train, "--data=d", "--precision=bf16", "--save_dtype=bf16")
	if c := train.o.Config; c.Precision != "bf16" || c.SaveDType != "bf16" {
		t.Errorf("train: precision %q save_dtype %q", c.Precision, c.SaveDType)
	}
	plain := &trainCmd{}
	parse(t, plain, "--data=d")
	if c := plain.o.Config; c.Precision != "" || c.SaveDType != "" {
		t.Errorf("train defaults: precision %q save_dtype %q, want empty", c.Precision, c.SaveDType)
	}
	distill := &distillCmd{}
	parse(t, distill, "--teacher=T", "--precision=auto")
	if distill.o.Config.Precision != "auto" {
		t.Errorf("distill: precision %q", distill.o.Config.Precision)
	}
	eval := &evaluateCmd{}
	parse(t, eval, "--model=teacher=T", "--precision=bf16")
	if eval.o.Precision != "bf16" {
		t.Errorf("evaluate: precision %q", eval.o.Precision)
	}
	pred := &predictCmd{}
	parse(t, pred, "--model=M", "--precision=auto")
	if pred.o.Precision != "auto" {
		t.Errorf("predict: precision %q", pred.o.Precision)
	}
}
