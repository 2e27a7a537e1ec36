package main

import "github.com/beamtune/beamtune/trainer"

// precisionUsage is the --precision help train, distill, evaluate and
// predict share.
const precisionUsage = "arithmetic of the matrix products: fp32, bf16 (bfloat16 autocast: float32 weights, optimizer state, loss and logits; fast on CPUs with AVX-512 BF16 or AMX and on Ampere+ GPUs), fp16 (CUDA only) or auto (bf16 where the hardware has fast bfloat16, else fp32; see beamtune doctor)"

// precisionFlags declares --precision and --save_dtype for train and distill.
func precisionFlags(f *flagSet, c *trainer.Config) {
	// Defaults "" (fp32): an empty field keeps the Config of runs made
	// before these flags, so their checkpoints still resume.
	f.stringVar(&c.Precision, "precision", c.Precision, precisionUsage+" (empty: fp32); fp16 training scales its loss dynamically (--loss_scale)")
	f.float64Var(&c.LossScale, "loss_scale", c.LossScale, "initial dynamic loss scale: the loss is multiplied by it before the backward pass and the gradients divided by it, a step with an Inf/NaN gradient is skipped and the scale halved, 2000 good steps double it (0: 65536 with --precision=fp16, off otherwise)")
	f.stringVar(&c.SaveDType, "save_dtype", c.SaveDType, "type of the published model folder's weights: fp32 or bf16 (half the size); empty: fp32; checkpoints stay float32")
}
