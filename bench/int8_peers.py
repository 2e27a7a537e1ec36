"""Inference speed of the Python peers on one HF classification folder (issue #16).

Measures, on the same random token ids beamtune's speed check uses (ids drawn
uniformly from [1, vocab), every token real): PyTorch eager fp32, PyTorch
quantize_dynamic int8 (fbgemm, all nn.Linear), ONNX Runtime fp32 and ONNX
Runtime dynamic int8 (QInt8 weights, per tensor). Prints one JSON line per
engine: examples/s at --batch and p50 latency at batch 1.

Usage: python int8_peers.py MODEL_DIR [--threads 2] [--batch 32] [--seq 32]
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification


def timed(fn, runs):
    for _ in range(3):
        fn()
    lat = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t)
    return lat


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--engines", default="torch_fp32,torch_int8,ort_fp32,ort_int8")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    vocab = model.config.vocab_size
    rng = np.random.default_rng(1)

    def ids(n):
        return rng.integers(1, vocab, size=(n, args.seq), dtype=np.int64)

    big, one = ids(args.batch), ids(1)
    engines = args.engines.split(",")
    runners = {}
    if "torch_fp32" in engines or "torch_int8" in engines:
        def torch_runner(m):
            def run(x):
                t = torch.from_numpy(x)
                with torch.no_grad():
                    return m(input_ids=t, attention_mask=torch.ones_like(t)).logits
            return run
        if "torch_fp32" in engines:
            runners["torch_fp32"] = torch_runner(model)
        if "torch_int8" in engines:
            q = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            runners["torch_int8"] = torch_runner(q)
    if "ort_fp32" in engines or "ort_int8" in engines:
        import onnx_peer
        paths = onnx_peer.export(model, int8="ort_int8" in engines)
        for kind in paths:
            if "ort_" + kind in engines:
                run = onnx_peer.runner(paths[kind], args.threads)
                runners["ort_" + kind] = lambda x, run=run: run(x, np.ones_like(x))
    for name in engines:
        run = runners[name]
        lat1 = timed(lambda: run(one), args.runs * 5)
        latb = timed(lambda: run(big), args.runs)
        print(json.dumps({
            "engine": name, "threads": args.threads, "batch": args.batch, "seq": args.seq,
            "examples_per_sec": round(args.batch * len(latb) / sum(latb), 1),
            "p50_ms_batch1": round(statistics.median(lat1) * 1e3, 3),
        }), flush=True)


if __name__ == "__main__":
    main()
