#!/usr/bin/env python3
"""Reference outputs from HF transformers for beamtune's parity tests.

Usage (from the repo root, after scripts/setup.sh):
    scripts/parity.sh            # makes the Python env, then runs this file

It writes, under testdata/parity/:
  minilm_ref.safetensors  all-MiniLM-L6-v2 with a seeded 2-class head: input ids,
                          masks, logits, pooled output, the [CLS] hidden state of
                          every layer, and the masked mean of the last layer, for
                          200 sentences padded to one length (so most carry padding).
  minilm_head.safetensors the seeded head (classifier.weight/bias) the Go test loads.
  tiny-bert/              a random 2-layer BERT (config.json, model.safetensors).
  tiny_ref.safetensors    its inputs, logits, every hidden state, and the loss and
                          gradient of every parameter for a cross-entropy step.
Then, with --roundtrip DIR, it loads the folders exported by beamtune (Go) for
each task kind (DIR: single-label, DIR/multi_label_classification,
DIR/regression) with AutoModelForSequenceClassification, checks problem_type,
num_labels and id2label, compares the logits with the ones the Go side wrote
there (go_logits.safetensors), and checks that the loss transformers computes
for a small fake target is the one the problem_type names (cross-entropy,
BCE-with-logits, MSE).
"""
import argparse
import csv
import json
import os
import sys

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file, load_file
from tokenizers import Tokenizer
from transformers import BertConfig, BertForSequenceClassification, AutoModelForSequenceClassification

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "testdata", "parity")


def sentences(shared):
    """200 real sentences of mixed length: SST-2 dev and AG News test."""
    out = []
    with open(os.path.join(shared, "sst2", "dev.tsv"), encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]
    out += [r[0] for r in rows[:150]]
    with open(os.path.join(shared, "ag_news", "test.csv"), encoding="utf-8") as f:
        rows = list(csv.reader(f))
    out += [r[1] + " " + r[2] for r in rows[:40]]
    # Short and edge cases: one word, punctuation only, accents, a long repeat.
    out += ["ok", "!!!", "Café déjà vu", "a", "unbelievable", "the the the the", "x " * 60,
            "Zürich naïve façade", "don't stop", "123 456"]
    assert len(out) == 200
    return out


def encode(tok_path, texts, max_len):
    tok = Tokenizer.from_file(tok_path)
    tok.no_padding()
    tok.enable_truncation(max_len)
    encs = tok.encode_batch(texts)
    L = max(len(e.ids) for e in encs)
    ids = np.zeros((len(texts), L), dtype=np.int64)
    mask = np.zeros((len(texts), L), dtype=np.int64)
    types = np.zeros((len(texts), L), dtype=np.int64)
    for i, e in enumerate(encs):
        n = len(e.ids)
        ids[i, :n] = e.ids
        mask[i, :n] = 1
        types[i, :n] = e.type_ids
    return ids, mask, types


def minilm(model_dir, shared):
    texts = sentences(shared)
    ids, mask, types = encode(os.path.join(model_dir, "tokenizer.json"), texts, 128)
    torch.manual_seed(1234)
    model = BertForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    model.eval()
    head = {k: v.detach().numpy().copy() for k, v in model.state_dict().items() if k.startswith("classifier.")}
    save_file(head, os.path.join(OUT, "minilm_head.safetensors"), metadata={"format": "pt"})
    logits, pooled, cls, mean_last = [], [], [], []
    with torch.no_grad():
        for s in range(0, len(texts), 20):  # batches of 20, as the Go test runs them
            sl = slice(s, s + 20)
            o = model(input_ids=torch.from_numpy(ids[sl]), attention_mask=torch.from_numpy(mask[sl]),
                      token_type_ids=torch.from_numpy(types[sl]), output_hidden_states=True)
            logits.append(o.logits.numpy())
            bo = model.bert(input_ids=torch.from_numpy(ids[sl]), attention_mask=torch.from_numpy(mask[sl]),
                            token_type_ids=torch.from_numpy(types[sl]))
            pooled.append(bo.pooler_output.numpy())
            cls.append(np.stack([h[:, 0, :].numpy() for h in o.hidden_states]))
            m = torch.from_numpy(mask[sl]).unsqueeze(-1).float()
            last = o.hidden_states[-1]
            mean_last.append(((last * m).sum(1) / m.sum(1)).numpy())
    save_file({
        "input_ids": ids, "attention_mask": mask, "token_type_ids": types,
        "logits": np.concatenate(logits).astype(np.float32),
        "pooled": np.concatenate(pooled).astype(np.float32),
        "cls_hidden": np.concatenate(cls, axis=1).astype(np.float32),
        "mean_last": np.concatenate(mean_last).astype(np.float32),
    }, os.path.join(OUT, "minilm_ref.safetensors"), metadata={"batch": "20", "source": "transformers BertForSequenceClassification, eval mode"})
    print(f"minilm: {len(texts)} sentences, padded length {ids.shape[1]}, {int(mask.sum())} real tokens")


def tiny():
    cfg = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
                     hidden_act="gelu", num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"},
                     label2id={"neg": 0, "neu": 1, "pos": 2})
    torch.manual_seed(7)
    model = BertForSequenceClassification(cfg)
    # Random init has std 0.02 everywhere; scale up so the layers do visible work.
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "LayerNorm" not in n:
                p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(os.path.join(OUT, "tiny-bert"), safe_serialization=True)
    rng = np.random.default_rng(11)
    n, L = 200, 48
    lens = rng.integers(1, L + 1, size=n)
    lens[:3] = [1, L, L]
    ids = np.zeros((n, L), dtype=np.int64)
    mask = np.zeros((n, L), dtype=np.int64)
    types = np.zeros((n, L), dtype=np.int64)
    for i, k in enumerate(lens):
        ids[i, :k] = rng.integers(1, 1000, size=k)
        mask[i, :k] = 1
        cut = rng.integers(0, k + 1)  # a sentence pair: type 1 after the cut
        types[i, cut:k] = 1
    labels = rng.integers(0, 3, size=n)
    model.eval()
    o = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
              token_type_ids=torch.from_numpy(types), labels=torch.from_numpy(labels), output_hidden_states=True)
    o.loss.backward()
    ref = {
        "input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels,
        "logits": o.logits.detach().numpy().astype(np.float32),
        "hidden": np.stack([h.detach().numpy()[:64] for h in o.hidden_states]).astype(np.float32),
        "loss": np.array([o.loss.item()], dtype=np.float32),
    }
    for name, p in model.named_parameters():
        ref["grad." + name] = p.grad.numpy().astype(np.float32)
    save_file(ref, os.path.join(OUT, "tiny_ref.safetensors"), metadata={"source": "transformers BertForSequenceClassification, eval mode, CrossEntropy mean"})
    print(f"tiny: {n} sequences of length 1..{L}, loss {o.loss.item():.6f}")


def tiny_adamw():
    """Three AdamW steps on tiny-bert: clipping, no-decay groups, linear warmup/decay."""
    model = BertForSequenceClassification.from_pretrained(os.path.join(OUT, "tiny-bert"))
    model.eval()  # no dropout: the Go side must see the same function
    ref = load_file(os.path.join(OUT, "tiny_ref.safetensors"))
    decay = [p for n, p in model.named_parameters() if not (n.endswith(".bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in model.named_parameters() if n.endswith(".bias") or "LayerNorm" in n]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.999), eps=1e-8, foreach=False)
    from transformers import get_linear_schedule_with_warmup
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=1, num_training_steps=4)
    norms, lrs = [], []
    for step in range(3):
        sl = slice(step * 50, step * 50 + 50)
        out = model(input_ids=torch.from_numpy(ref["input_ids"][sl]), attention_mask=torch.from_numpy(ref["attention_mask"][sl]),
                    token_type_ids=torch.from_numpy(ref["token_type_ids"][sl]), labels=torch.from_numpy(ref["labels"][sl]))
        out.loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)))
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
        opt.zero_grad()
    res = {"param." + n: p.detach().numpy().astype(np.float32) for n, p in model.named_parameters()}
    res["grad_norm"] = np.array(norms, dtype=np.float32)
    res["lr"] = np.array(lrs, dtype=np.float32)
    save_file(res, os.path.join(OUT, "tiny_adamw_ref.safetensors"), metadata={"source": "torch.optim.AdamW foreach=False, lr 1e-2, wd 0.1 (no decay: bias, LayerNorm), clip 1.0, linear warmup 1 of 4 steps, 3 steps of 50 rows"})
    print(f"tiny adamw: grad norms {norms}, lrs {lrs}")


# The folders beamtune exports (TestExportForTransformers): problem_type, the
# folder under the --roundtrip dir ("" is the dir itself, the single-label
# folder as before), and the head's label names. "pruned" is a single-label
# model with heads (a different number per layer, config pruned_heads) and
# FFN neurons removed (issue #16): transformers 4.x re-prunes it on load.
KINDS = [
    ("single_label_classification", "", ["World", "Sports", "Business"]),
    ("multi_label_classification", "multi_label_classification", ["World", "Sports", "Business"]),
    ("regression", "regression", ["score"]),
    ("single_label_classification", "pruned", ["World", "Sports", "Business"]),
    # The task folders of a multi-task bundle (issue #18): each is the shared
    # encoder with one head, and its Go logits are the bundle head's.
    ("single_label_classification", "multitask/tasks/topic", ["World", "Sports", "Business"]),
    ("multi_label_classification", "multitask/tasks/tags", ["World", "Sports", "Business"]),
    ("regression", "multitask/tasks/score", ["score"]),
]


def fake_targets(kind, rows, num_labels):
    """A small fixed target of the dtype and shape transformers expects for kind."""
    i = torch.arange(rows)
    if kind == "single_label_classification":
        return i % num_labels  # long class ids [rows]
    if kind == "multi_label_classification":
        j = torch.arange(num_labels)
        return ((i[:, None] >> j[None, :]) & 1).float()  # multi-hot [rows, labels]: the bits of the row index, 0 to all labels on
    return torch.linspace(-1.0, 1.0, rows)  # float scores [rows]


def direct_loss(kind, logits, targets, num_labels):
    """The loss kind's problem_type stands for, computed on the logits by hand."""
    if kind == "single_label_classification":
        return "CrossEntropyLoss", torch.nn.CrossEntropyLoss()(logits.view(-1, num_labels), targets.view(-1))
    if kind == "multi_label_classification":
        return "BCEWithLogitsLoss", torch.nn.BCEWithLogitsLoss()(logits, targets)
    return "MSELoss", torch.nn.MSELoss()(logits.squeeze(-1), targets)


def roundtrip_kind(folder, kind, labels):
    """Loads one exported folder, checks it is the task it was exported as, and
    compares its logits (and the loss transformers picks) with the Go side's."""
    errors = []
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    model.eval()
    ref = load_file(os.path.join(folder, "go_logits.safetensors"))
    rows = int(ref["logits"].shape[0])
    cfg = model.config
    loaded_type = cfg.problem_type  # as loaded: transformers sets it in forward when the config has none
    if loaded_type != kind:
        errors.append(f"problem_type {loaded_type!r}, want {kind!r}")
    if cfg.num_labels != len(labels) or ref["logits"].shape[1] != len(labels):
        errors.append(f"num_labels {cfg.num_labels}, Go logits width {ref['logits'].shape[1]}, want {len(labels)}")
    if [cfg.id2label[i] for i in range(cfg.num_labels)] != labels:
        errors.append(f"id2label {cfg.id2label}, want {labels}")
    inputs = dict(input_ids=torch.from_numpy(ref["input_ids"]), attention_mask=torch.from_numpy(ref["attention_mask"]),
                  token_type_ids=torch.from_numpy(ref["token_type_ids"]))
    targets = fake_targets(kind, rows, len(labels))
    with torch.no_grad():
        logits = model(**inputs).logits
        fn, direct = direct_loss(kind, logits, targets, len(labels))
        _, on_go = direct_loss(kind, torch.from_numpy(ref["logits"]), targets, len(labels))
        try:
            hf_loss = model(**inputs, labels=targets).loss.item()
        except Exception as e:  # transformers took another loss, one these targets do not fit
            hf_loss = float("nan")
            errors.append(f"transformers' loss failed on {kind} targets: {type(e).__name__}: {e}")
    diff = float(np.abs(logits.numpy() - ref["logits"]).max()) if logits.shape == ref["logits"].shape else float("inf")
    if not diff <= 1e-4:
        errors.append(f"logits differ by {diff:.3g} (bound 1e-4)")
    loss_diff = abs(hf_loss - direct.item())
    if not loss_diff <= 1e-6:
        errors.append(f"transformers' loss {hf_loss:.7g} is not {fn} {direct.item():.7g}")
    return {
        "folder": folder, "class": type(model).__name__, "problem_type": loaded_type,
        "num_labels": cfg.num_labels, "id2label": cfg.id2label, "rows": rows, "max_abs_diff": diff,
        "loss": {"fn": fn, "targets": str(targets.dtype).replace("torch.", "") + str(list(targets.shape)),
                 "transformers": hf_loss, "direct": direct.item(), "abs_diff": loss_diff,
                 "direct_on_go_logits": on_go.item()},
        "ok": not errors, "errors": errors,
    }


def roundtrip(folder):
    """Every task kind under folder; prints one JSON object (the single-label
    fields at the top, as before, and every kind under "kinds"); True if all pass."""
    kinds = {}
    for kind, sub, labels in KINDS:
        try:
            kinds[sub or kind] = roundtrip_kind(os.path.join(folder, sub) if sub else folder, kind, labels)
            if sub == "pruned":
                cfg = json.load(open(os.path.join(folder, sub, "config.json")))
                kinds[sub]["pruned_heads"] = cfg.get("pruned_heads")
                kinds[sub]["intermediate_size"] = cfg.get("intermediate_size")
        except Exception as e:  # a folder that fails to load is a failed kind, reported with the others
            kinds[sub or kind] = {"folder": os.path.join(folder, sub), "ok": False, "errors": [f"{type(e).__name__}: {e}"]}
    single = kinds["single_label_classification"]
    out = {k: single.get(k) for k in ("folder", "class", "id2label", "rows", "max_abs_diff")}
    out["transformers"] = transformers.__version__
    out["torch"] = torch.__version__
    out["bound"] = 1e-4
    out["ok"] = all(k["ok"] for k in kinds.values())
    out["kinds"] = kinds
    print(json.dumps(out, indent=1))
    return out["ok"]


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="all-MiniLM-L6-v2 folder")
    ap.add_argument("--shared", default=os.path.join(REPO, "..", "shared", "data"))
    ap.add_argument("--roundtrip", help="a folder exported by beamtune to load with transformers")
    a = ap.parse_args()
    if a.roundtrip:
        sys.exit(0 if roundtrip(a.roundtrip) else 1)
    os.makedirs(OUT, exist_ok=True)
    minilm(a.model, a.shared)
    tiny()
    tiny_adamw()
