#!/usr/bin/env python3
"""Peer for beamtune train: the same recipe in HF transformers' Trainer.

Fine-tunes a BERT folder (default all-MiniLM-L6-v2) as BertForSequenceClassification
on a TSV/CSV training file and evaluates on a dev file; prints one JSON line with
dev accuracy, training examples/s and wall time. Recipe flags mirror beamtune's
(dev evaluation every --eval_every steps; the best and the final accuracy are both reported,
as beamtune keeps the best checkpoint):
AdamW (weight decay off biases/LayerNorm, as Trainer does), linear warmup/decay,
clipping 1.0, dynamic padding, length-grouped batches (beamtune's bucketing)."""
import argparse, csv, json, time
import numpy as np
import torch
from transformers import (AutoTokenizer, BertForSequenceClassification, DataCollatorWithPadding,
                          Trainer, TrainingArguments)

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--train", required=True)
ap.add_argument("--dev", required=True)
ap.add_argument("--format", default="sst2", choices=["sst2", "agnews", "stsb", "mrpc"],
                help="stsb: STS-B pairs scored 0-5 (regression, num_labels 1, Pearson/Spearman)")
ap.add_argument("--epochs", type=float, default=3)
ap.add_argument("--lr", type=float, default=5e-5)
ap.add_argument("--batch_size", type=int, default=32)
ap.add_argument("--max_length", type=int, default=128)
ap.add_argument("--warmup_ratio", type=float, default=0.1)
ap.add_argument("--weight_decay", type=float, default=0.01)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--output", default="/tmp/hf_trainer_out")
ap.add_argument("--eval_every", type=int, default=500, help="dev evaluation every N steps (beamtune: --eval_every)")
ap.add_argument("--max_steps", type=int, default=-1, help="stop after N optimizer steps (throughput runs); -1: --epochs decide")
a = ap.parse_args()
torch.set_num_threads(a.threads)

def read(path):
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        if a.format == "mrpc":
            # Header (after a BOM), no quoting: label, id1, id2, sentence1, sentence2.
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
            for r in rows:
                texts.append((r[3].strip(), r[4].strip())); labels.append(int(r[0]))
        elif a.format == "stsb":
            # No header, no quoting: genre, file, year, id, score, sentence1, sentence2.
            for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                texts.append((r[5].strip(), r[6].strip())); labels.append(float(r[4]))
        elif a.format == "sst2":
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
            for r in rows:
                texts.append(r[0].strip()); labels.append(int(r[1]))
        else:
            for r in csv.reader(f):
                texts.append((r[1] + " " + r[2]).strip()); labels.append(int(r[0]) - 1)
    return texts, labels

tok = AutoTokenizer.from_pretrained(a.model)
class DS(torch.utils.data.Dataset):
    def __init__(self, path):
        t, self.labels = read(path)
        if a.format in ("stsb", "mrpc"):
            self.enc = tok([x[0] for x in t], [x[1] for x in t], truncation=True, max_length=a.max_length)
        else:
            self.enc = tok(t, truncation=True, max_length=a.max_length)
    def __len__(self): return len(self.labels)
    def __getitem__(self, i):
        d = {k: v[i] for k, v in self.enc.items()}
        d["labels"] = self.labels[i]
        return d
train, dev = DS(a.train), DS(a.dev)
regression = a.format == "stsb"
n_labels = 1 if regression else len(set(train.labels))
model = BertForSequenceClassification.from_pretrained(a.model, num_labels=n_labels,
                                                      problem_type="regression" if regression else None)
args = TrainingArguments(output_dir=a.output, num_train_epochs=a.epochs, max_steps=a.max_steps, learning_rate=a.lr,
    per_device_train_batch_size=a.batch_size, per_device_eval_batch_size=64, warmup_ratio=a.warmup_ratio,
    weight_decay=a.weight_decay, max_grad_norm=1.0, lr_scheduler_type="linear", seed=a.seed,
    group_by_length=True, eval_strategy="steps", eval_steps=a.eval_every, save_strategy="no", logging_steps=200, report_to=[],
    use_cpu=True, dataloader_num_workers=0)
def acc(p):
    if regression:
        # The main metric goes under "accuracy" so the rest of the script is one;
        # the JSON names it. Spearman is Pearson of the ranks (ties share their mean rank).
        import pandas as pd
        x, y = p.predictions.reshape(-1), p.label_ids.reshape(-1)
        return {"accuracy": float(np.corrcoef(x, y)[0, 1]),
                "spearman": float(np.corrcoef(pd.Series(x).rank(), pd.Series(y).rank())[0, 1])}
    pred = np.argmax(p.predictions, -1)
    out = {"accuracy": float((pred == p.label_ids).mean())}
    if a.format == "mrpc":  # GLUE reports F1 of the positive class (1: paraphrase)
        tp = int(((pred == 1) & (p.label_ids == 1)).sum())
        fp = int(((pred == 1) & (p.label_ids == 0)).sum())
        fn = int(((pred == 0) & (p.label_ids == 1)).sum())
        out["f1"] = 2 * tp / max(1, 2 * tp + fp + fn)
    return out
tr = Trainer(model=model, args=args, train_dataset=train, eval_dataset=dev,
             data_collator=DataCollatorWithPadding(tok), compute_metrics=acc)
t = time.perf_counter()
out = tr.train()
# Trainer's clock without the periodic dev evaluations, as beamtune's ex/s.
eval_s = sum(h.get("eval_runtime", 0) for h in tr.state.log_history)
train_s = time.perf_counter() - t - eval_s
ev = tr.evaluate()
evals = [(h["step"], h["eval_accuracy"]) for h in tr.state.log_history if "eval_accuracy" in h]
best_step, best_acc = max(evals, key=lambda x: x[1])
print(json.dumps({"peer": "hf-trainer", "metric": "pearson" if regression else "accuracy",
                  "final_spearman": ev.get("eval_spearman"), "final_f1": ev.get("eval_f1"),
                  "evals_f1": [(h["step"], h["eval_f1"]) for h in tr.state.log_history if "eval_f1" in h], "train_rows": len(train), "epochs": a.epochs, "lr": a.lr, "batch_size": a.batch_size,
                  "seed": a.seed, "threads": a.threads, "dev_accuracy": ev["eval_accuracy"],
                  "best_dev_accuracy": best_acc, "best_step": best_step, "evals": evals,
                  "steps": tr.state.global_step, "train_seconds": train_s,
                  "train_examples_per_s": tr.state.global_step * a.batch_size / train_s}))
