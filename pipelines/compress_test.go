package pipelines

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/beamtune/beamtune/model"
)

// TestCompressBadInput: contradictory or out-of-range shares are refused in
// the driver, before anything is read, with the flag named.
func TestCompressBadInput(t *testing.T) {
	base := CompressOptions{Model: "m", Data: "d", Output: "o", HeadKeep: 1, FFNKeep: 1}
	for _, c := range []struct {
		edit func(*CompressOptions)
		want string
	}{
		{func(o *CompressOptions) { o.HeadKeep = 0 }, "--head_keep 0"},
		{func(o *CompressOptions) { o.FFNKeep = 1.5 }, "--ffn_keep 1.5"},
		{func(o *CompressOptions) { o.ParamKeep, o.HeadKeep = 0.5, 0.5 }, "--param_keep"},
		{func(o *CompressOptions) { o.ParamKeep = 2 }, "--param_keep 2"},
		{func(o *CompressOptions) { o.Model = "" }, "needs --model"},
	} {
		o := base
		c.edit(&o)
		_, err := RunCompress(context.Background(), o)
		if err == nil || !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want a bad-input error naming %q", o, err, c.want)
		}
	}
}

// TestParseNamedModelQuantize reads the per-model quantize option.
func TestParseNamedModelQuantize(t *testing.T) {
	nm, err := ParseNamedModel("fast=gs://b/run/compressed,quantize=int8")
	if err != nil || nm.Name != "fast" || nm.Dir != "gs://b/run/compressed" || nm.Quantize != model.QuantizeInt8 {
		t.Errorf("got %+v, %v", nm, err)
	}
	if nm, err := ParseNamedModel("plain=out/teacher"); err != nil || nm.Quantize != "" {
		t.Errorf("got %+v, %v", nm, err)
	}
	for _, bad := range []string{"x=dir,quantize=int4", "x=dir,threads=2"} {
		if _, err := ParseNamedModel(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	_, err = RunEvaluate(context.Background(), EvaluateOptions{Data: "d", Output: "o", Models: []NamedModel{{Name: "a", Dir: "b"}}, Quantize: "fp8"})
	if err == nil || !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "fp8") {
		t.Errorf("evaluate --quantize=fp8: %v", err)
	}
}
