"""Texts in, labels out, for the Python peers of beamtune's RunInference (issue #20).

For one HF classification folder and a file of texts (one a line), each engine
tokenizes every text (HF tokenizers, fast), sorts by length, runs batches of
--batch with padding to the batch's longest (as RunInference batches), and takes
softmax + argmax: PyTorch eager under torch.inference_mode, and ONNX Runtime fp32
on the model exported with torch.onnx (and its dynamic int8 when asked). One
untimed pass warms each engine. Prints one JSON line per engine with examples/s
and the labels' agreement with PyTorch.

Usage: python runinference_peers.py MODEL_DIR TEXTS [--threads 2] [--batch 32] [--engines torch,ort_fp32]
"""

import argparse
import json
import time

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def batches(enc, batch):
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    for lo in range(0, len(order), batch):
        idx = order[lo:lo + batch]
        width = max(len(enc[i]) for i in idx)
        ids = np.zeros((len(idx), width), dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for r, i in enumerate(idx):
            ids[r, :len(enc[i])] = enc[i]
            mask[r, :len(enc[i])] = 1
        yield idx, ids, mask


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("texts")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--engines", default="torch,ort_fp32")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    texts = open(args.texts, encoding="utf-8").read().rstrip("\n").split("\n")
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    runners = {}

    def torch_run(ids, mask):
        with torch.inference_mode():
            return model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    runners["torch"] = torch_run
    engines = args.engines.split(",")
    if any(e.startswith("ort") for e in engines):
        import onnx_peer
        paths = onnx_peer.export(model, int8="ort_int8" in engines)
        for kind in paths:
            runners["ort_" + kind] = onnx_peer.runner(paths[kind], args.threads)

    def classify(run, xs):
        enc = tok(xs, truncation=True, max_length=512)["input_ids"]
        labels = [0] * len(xs)
        for idx, ids, mask in batches(enc, args.batch):
            logits = run(ids, mask)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = e / e.sum(axis=1, keepdims=True)
            for r, i in enumerate(idx):
                labels[i] = int(probs[r].argmax())
        return labels

    reference = None
    for name in engines:
        run = runners[name]
        classify(run, texts[:64])
        t = time.perf_counter()
        labels = classify(run, texts)
        took = time.perf_counter() - t
        if reference is None:
            reference = labels
        agree = sum(a == b for a, b in zip(labels, reference)) / len(labels)
        print(json.dumps({"engine": name, "threads": args.threads, "batch": args.batch, "texts": len(texts),
                          "examples_per_sec": round(len(texts) / took, 1), "label_agreement_with_first": agree}), flush=True)


if __name__ == "__main__":
    main()
