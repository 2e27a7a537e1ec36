#!/usr/bin/env python3
"""Peer for BenchmarkTrainStepMiniLM: PyTorch eager (torch 2.1.0, the libtorch
beamtune links) doing the same step: all-MiniLM-L6-v2 + a 2-class head, batch 32,
sequence 128, dropout on, cross-entropy, clip 1.0, AdamW (no-decay groups).
Prints one JSON line."""
import argparse, json, time
import torch
from transformers import BertForSequenceClassification

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--steps", type=int, default=5)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1)
m = BertForSequenceClassification.from_pretrained(a.model, num_labels=2)
m.train()
decay = [p for n, p in m.named_parameters() if not (n.endswith(".bias") or "LayerNorm" in n)]
no_decay = [p for n, p in m.named_parameters() if n.endswith(".bias") or "LayerNorm" in n]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=2e-5)
g = torch.Generator().manual_seed(1)
ids = torch.randint(1000, m.config.vocab_size, (32, 128), generator=g)
mask = torch.ones_like(ids)
labels = torch.randint(0, 2, (32,), generator=g)

def step():
    out = m(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return out.loss.item()

step()  # warm-up
t = time.perf_counter()
for _ in range(a.steps):
    step()
el = time.perf_counter() - t
print(json.dumps({"peer": "pytorch-eager", "torch": torch.__version__, "threads": a.threads, "steps": a.steps,
                  "examples_per_s": 32 * a.steps / el}))
