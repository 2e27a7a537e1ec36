"""PEFT interop fixtures for model/adapter_test.go (issue #17).

Two directions, both on the tiny random BERT of testdata/parity/tiny-bert:

  --make DIR      PEFT writes LoRA adapters beamtune must load: DIR/peft-adapter
                  (r=4, alpha=8, query/value/intermediate.dense) and
                  DIR/peft-adapter-rslora (r=2, alpha=4, use_rslora, every "dense"),
                  each with lora_B and the classifier drawn at random so the
                  adapter changes the outputs, and DIR/peft_ref.safetensors with
                  the inputs and each adapter's eval-mode logits.
  --check ADAPTER GO_LOGITS OUT
                  PEFT loads an adapter beamtune wrote (PeftModel.from_pretrained
                  on the same base), computes logits for the same inputs and
                  compares them with beamtune's; writes OUT (JSON) and exits
                  non-zero over 1e-4.
"""
import argparse
import json
import os
import sys

import numpy as np
import peft
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification

BASE = os.path.join(os.path.dirname(__file__), "..", "testdata", "parity", "tiny-bert")


def inputs():
    rng = np.random.default_rng(17)
    n, seq = 24, 20
    ids = rng.integers(1, 1000, size=(n, seq))
    mask = np.ones((n, seq), dtype=np.int64)
    for i in range(n):
        real = int(rng.integers(3, seq + 1))
        ids[i, real:] = 0
        mask[i, real:] = 0
    types = (rng.random((n, seq)) < 0.3).astype(np.int64) * mask
    return {k: torch.from_numpy(v.astype(np.int64)) for k, v in
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}.items()}


def base_model():
    return AutoModelForSequenceClassification.from_pretrained(os.path.abspath(BASE)).eval()


def make(out):
    os.makedirs(out, exist_ok=True)
    x = inputs()
    ref = dict(x)
    for name, cfg in {
        "peft-adapter": LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.1,
                                   target_modules=["query", "value", "intermediate.dense"]),
        "peft-adapter-rslora": LoraConfig(task_type="SEQ_CLS", r=2, lora_alpha=4, use_rslora=True,
                                          target_modules=["dense"]),
    }.items():
        torch.manual_seed(1)
        model = get_peft_model(base_model(), cfg)
        with torch.no_grad():  # a trained-looking adapter: lora_B and the head away from their init
            for n, p in model.named_parameters():
                if "lora_B" in n or "modules_to_save" in n:
                    p.normal_(0, 0.3)
        model.eval()
        with torch.no_grad():
            ref["logits." + name] = model(**x).logits.contiguous()
        model.save_pretrained(os.path.join(out, name))
        os.remove(os.path.join(out, name, "README.md"))  # PEFT's model-card template; not part of the format
    save_file(ref, os.path.join(out, "peft_ref.safetensors"))
    print(f"peft {peft.__version__}: wrote {out}")


def check(adapter, go_logits, out):
    model = PeftModel.from_pretrained(base_model(), adapter).eval()
    with torch.no_grad():
        logits = model(**inputs()).logits
    go = load_file(go_logits)["logits"]
    diff = (logits - go).abs().max().item()
    cfg = json.load(open(os.path.join(adapter, "adapter_config.json")))
    res = {"peft": peft.__version__, "torch": torch.__version__, "adapter": os.path.basename(adapter),
           "r": cfg["r"], "lora_alpha": cfg["lora_alpha"], "target_modules": cfg["target_modules"],
           "modules_to_save": cfg["modules_to_save"], "rows": int(logits.shape[0]),
           "max_abs_diff": diff, "bound": 1e-4, "ok": diff <= 1e-4}
    save_file({"logits": logits.contiguous()}, os.path.join(os.path.dirname(out), "peft_logits_of_beamtune_adapter.safetensors"))
    with open(out, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    print(json.dumps(res))
    if not res["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--make")
    ap.add_argument("--check", nargs=3, metavar=("ADAPTER", "GO_LOGITS", "OUT"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    if a.make:
        make(a.make)
    if a.check:
        check(*a.check)
