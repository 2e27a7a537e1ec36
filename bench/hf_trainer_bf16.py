#!/usr/bin/env python3
"""bench/hf_trainer.py with TrainingArguments(bf16=True): HF Trainer's CPU
bf16 (torch.cpu.amp.autocast around forward and loss, fp32 master weights),
the peer of `beamtune train --precision=bf16`. Same flags as hf_trainer.py."""
import os, runpy, sys
import transformers

_orig = transformers.TrainingArguments.__init__


def _bf16_init(self, *args, **kwargs):
    kwargs["bf16"] = True
    _orig(self, *args, **kwargs)


transformers.TrainingArguments.__init__ = _bf16_init
sys.argv[0] = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hf_trainer.py")
runpy.run_path(sys.argv[0], run_name="__main__")
