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
ap.add_argument("--format", default="sst2", choices=["sst2", "agnews", "stsb", "mrpc", "goemotions"],
                help="stsb: STS-B pairs scored 0-5 (regression, num_labels 1, Pearson/Spearman); "
                     "goemotions: 28 labels, one or several per text (multi-label, BCE; checkpoints by dev macro-F1 "
                     "at 0.5, then per-label thresholds tuned on dev and applied to --test)")
ap.add_argument("--test", help="goemotions: the test file scored at the thresholds tuned on --dev")
ap.add_argument("--test_ids", help="goemotions: also score the test rows whose id is listed in this file "
                "(one per line: the rows a beamtune prepared test split kept after deduplication)")
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
ap.add_argument("--lora_r", type=int, default=0, help="train a PEFT LoRA adapter of this rank instead of every weight (0: full fine-tuning)")
ap.add_argument("--lora_alpha", type=float, default=8)
ap.add_argument("--lora_dropout", type=float, default=0.0)
ap.add_argument("--lora_targets", default="query,value")
a = ap.parse_args()
torch.set_num_threads(a.threads)

ids = {}  # path -> row ids (goemotions)

def read(path):
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        if a.format == "mrpc":
            # Header (after a BOM), no quoting: label, id1, id2, sentence1, sentence2.
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
            for r in rows:
                texts.append((r[3].strip(), r[4].strip())); labels.append(int(r[0]))
        elif a.format == "goemotions":
            # No header; texts with a quote are CSV-quoted: text, label ids ("3,10"), id.
            for r in csv.reader(f, delimiter="\t"):
                texts.append(r[0]); labels.append([int(x) for x in r[1].split(",")]); ids.setdefault(path, []).append(r[2])
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
regression = a.format == "stsb"
multi = a.format == "goemotions"
N_MULTI = 28
if multi:
    _read = read
    def read(path):  # multi-hot float targets, as BCEWithLogitsLoss takes them
        t, ls = _read(path)
        hot = []
        for l in ls:
            v = [0.0] * N_MULTI
            for j in l:
                v[j] = 1.0
            hot.append(v)
        return t, hot
train, dev = DS(a.train), DS(a.dev)
n_labels = 1 if regression else N_MULTI if multi else len(set(train.labels))
model = BertForSequenceClassification.from_pretrained(a.model, num_labels=n_labels,
    problem_type="regression" if regression else "multi_label_classification" if multi else None)
if a.lora_r > 0:
    from peft import LoraConfig, get_peft_model
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=a.lora_r, lora_alpha=a.lora_alpha,
                                             lora_dropout=a.lora_dropout, target_modules=a.lora_targets.split(",")))
trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
args = TrainingArguments(output_dir=a.output, num_train_epochs=a.epochs, max_steps=a.max_steps, learning_rate=a.lr,
    per_device_train_batch_size=a.batch_size, per_device_eval_batch_size=64, warmup_ratio=a.warmup_ratio,
    weight_decay=a.weight_decay, max_grad_norm=1.0, lr_scheduler_type="linear", seed=a.seed,
    group_by_length=True, eval_strategy="steps", eval_steps=a.eval_every, logging_steps=200, report_to=[],
    use_cpu=True, dataloader_num_workers=0,
    # Multi-label keeps the best checkpoint by dev macro-F1, as beamtune does,
    # because the thresholds are tuned on the model that is kept.
    save_strategy="steps" if multi else "no", save_steps=a.eval_every, save_total_limit=2,
    load_best_model_at_end=multi, metric_for_best_model="accuracy" if multi else None)

def f1s(pred, truth):
    """Per-label F1 of boolean [n, k] decisions (0 when a label is neither true nor predicted)."""
    tp = (pred & truth).sum(0); fp = (pred & ~truth).sum(0); fn = (~pred & truth).sum(0)
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.maximum(den, 1), 0.0), tp.sum(), fp.sum(), fn.sum()

def tune(probs, truth):
    """beamtune's rule (trainer/thresholds.go): per label, the grid threshold 0.01..0.99
    with the best F1 on dev, ties to the one nearest 0.5; labels without dev positives and
    the global threshold: the one with the best macro-F1."""
    grid = np.round(np.arange(1, 100) / 100, 2)
    per = np.stack([f1s(probs > g, truth)[0] for g in grid])  # [grid, k]
    def best(vals):
        top = vals.max()
        cands = [i for i, v in enumerate(vals) if v == top]
        return grid[min(cands, key=lambda i: abs(grid[i] - 0.5))]
    glob = best(per.mean(1))
    th = np.array([best(per[:, j]) if truth[:, j].any() else glob for j in range(truth.shape[1])])
    return th, glob

def multi_scores(probs, truth, th):
    f, tp, fp, fn = f1s(probs > th, truth)
    return {"macro_f1": float(f.mean()), "micro_f1": float(2 * tp / max(1, 2 * tp + fp + fn))}

def acc(p):
    if multi:
        # Checkpoints are picked by macro-F1 at 0.5, under "accuracy" so the rest of the script is one.
        probs = 1 / (1 + np.exp(-p.predictions))
        s = multi_scores(probs, p.label_ids > 0.5, 0.5)
        return {"accuracy": s["macro_f1"], "micro_f1": s["micro_f1"]}
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
extra = {}
if multi:
    dev_probs = 1 / (1 + np.exp(-tr.predict(dev).predictions))
    th, glob = tune(dev_probs, np.array(dev.labels) > 0.5)
    test = DS(a.test)
    test_probs = 1 / (1 + np.exp(-tr.predict(test).predictions))
    test_truth = np.array(test.labels) > 0.5
    extra = {"thresholds": th.tolist(), "global_threshold": float(glob), "test_rows": len(test),
             "test_per_label": multi_scores(test_probs, test_truth, th),
             "test_global": multi_scores(test_probs, test_truth, glob),
             "test_at_0.5": multi_scores(test_probs, test_truth, 0.5)}
    if a.test_ids:
        keep = set(open(a.test_ids).read().split())
        mask = np.array([i in keep for i in ids[a.test]])
        extra["kept_test_rows"] = int(mask.sum())
        extra["kept_test_per_label"] = multi_scores(test_probs[mask], test_truth[mask], th)
        extra["kept_test_global"] = multi_scores(test_probs[mask], test_truth[mask], glob)
print(json.dumps({"peer": "hf-trainer", "metric": "pearson" if regression else "macro_f1" if multi else "accuracy", **extra,
                  "final_spearman": ev.get("eval_spearman"), "final_f1": ev.get("eval_f1"),
                  "evals_f1": [(h["step"], h["eval_f1"]) for h in tr.state.log_history if "eval_f1" in h], "train_rows": len(train), "epochs": a.epochs, "lr": a.lr, "batch_size": a.batch_size,
                  "seed": a.seed, "threads": a.threads, "lora_r": a.lora_r, "trainable_params": trainable, "dev_accuracy": ev["eval_accuracy"],
                  "best_dev_accuracy": best_acc, "best_step": best_step, "evals": evals,
                  "steps": tr.state.global_step, "train_seconds": train_s,
                  "train_examples_per_s": tr.state.global_step * a.batch_size / train_s}))
