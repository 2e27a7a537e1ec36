package pipelines

import (
	"fmt"
	"strings"

	"github.com/beamtune/beamtune/model"
)

// checkPrecision refuses, on the driver, a --precision no worker could run:
// an unknown value, fp16 on --device=cpu, or bf16/fp16 with int8 layers.
// auto and the hardware checks are resolved on the workers, which may have
// other CPUs or GPUs than the driver.
func checkPrecision(spec, device, quantize string) error {
	p, err := model.ParsePrecision(spec)
	if err != nil {
		return badInput(fmt.Errorf("--precision: %w", err))
	}
	if p == model.PrecisionFP16 && strings.EqualFold(strings.TrimSpace(device), "cpu") {
		return badInputf("--precision=fp16: %s", model.ErrFP16OnCPU)
	}
	if (p == model.PrecisionBF16 || p == model.PrecisionFP16) && quantize != "" && quantize != model.QuantizeNone {
		return badInputf("--precision=%s with --quantize=%s: int8 layers run with float32 activations; pick one", p, quantize)
	}
	return nil
}
