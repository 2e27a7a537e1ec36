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
ap.add_argument("--seq", type=int, default=128)
ap.add_argument("--phases", action="store_true", help="time forward, backward, clip, AdamW and zero_grad apart")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(1)
m = BertForSequenceClassification.from_pretrained(a.model, num_labels=2)
m.train()
decay = [p for n, p in m.named_parameters() if not (n.endswith(".bias") or "LayerNorm" in n)]
no_decay = [p for n, p in m.named_parameters() if n.endswith(".bias") or "LayerNorm" in n]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=2e-5)
g = torch.Generator().manual_seed(1)
ids = torch.randint(1000, m.config.vocab_size, (32, a.seq), generator=g)
mask = torch.ones_like(ids)
labels = torch.randint(0, 2, (32,), generator=g)

PHASES = ("forward", "backward", "clip", "adamw", "zero_grad")

def step(acc=None):
    """One training step; with acc, adds each phase's seconds to it (as the Go
    benchmark's trainStep does)."""
    marks = [time.perf_counter()]
    out = m(input_ids=ids, attention_mask=mask, labels=labels)
    marks.append(time.perf_counter())
    out.loss.backward()
    marks.append(time.perf_counter())
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
    marks.append(time.perf_counter())
    opt.step()
    marks.append(time.perf_counter())
    opt.zero_grad(set_to_none=True)
    marks.append(time.perf_counter())
    if acc is not None:
        for k, a0, a1 in zip(PHASES, marks, marks[1:]):
            acc[k] = acc.get(k, 0.0) + a1 - a0
    return out.loss.item()

step()  # warm-up
if a.phases:
    acc = {}
    for _ in range(a.steps):
        step(acc)
    total = sum(acc.values())
    print(json.dumps({"peer": "pytorch-eager", "torch": torch.__version__, "threads": a.threads, "steps": a.steps, "seq": a.seq,
                      **{k + "_ms": round(v / a.steps * 1e3, 2) for k, v in acc.items()}, "examples_per_s": 32 * a.steps / total}))
    raise SystemExit
t = time.perf_counter()
for _ in range(a.steps):
    step()
el = time.perf_counter() - t
print(json.dumps({"peer": "pytorch-eager", "torch": torch.__version__, "threads": a.threads, "steps": a.steps,
                  "examples_per_s": 32 * a.steps / el}))
