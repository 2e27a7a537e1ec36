#!/usr/bin/env python3
"""HF tokenizers peer for BenchmarkEncodeSST2 / BenchmarkEncodeAGNews.

Encodes the same text as the Go benchmarks (SST-2 train sentences; AG News
test as title + " " + description) with the same tokenizer.json, truncation
at 128 and no padding, via encode_batch on one thread. Prints one line per
set: "peer SET MB/s BYTES SECONDS".

Needs: pip install tokenizers==0.23.3 (run through bench/tokenizer_bench.sh).
"""

import os

# One thread: set before tokenizers is imported (its rayon pool reads them).
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import csv
import gzip
import io
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_sets(data):
    lines = open(os.path.join(data, "sst2", "train.tsv"), "rb").read().decode("utf-8").split("\n")
    idx = lines[0].split("\t").index("sentence")
    sst2 = [l.split("\t")[idx] for l in lines[1:] if l != ""]
    text = open(os.path.join(data, "ag_news", "test.csv"), "rb").read().decode("utf-8")
    ag = [r[1] + " " + r[2] for r in csv.reader(io.StringIO(text, newline=""))]
    return {"sst2": sst2, "ag_news": ag}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(os.path.dirname(REPO), "shared", "data"))
    ap.add_argument("--tokenizer", default=os.path.join(REPO, "testdata", "tokenizer", "all-MiniLM-L6-v2.tokenizer.json.gz"))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    try:
        import tokenizers
        from tokenizers import Tokenizer
    except ImportError:
        sys.exit("tokenizers is not installed: pip install tokenizers==0.23.3")
    raw = open(args.tokenizer, "rb").read()
    if args.tokenizer.endswith(".gz"):
        raw = gzip.decompress(raw)
    tok = Tokenizer.from_str(raw.decode("utf-8"))
    tok.enable_truncation(128)
    tok.no_padding()
    print("peer tokenizers %s" % tokenizers.__version__)
    for name, texts in load_sets(args.data).items():
        nbytes = sum(len(t.encode("utf-8")) for t in texts)
        tok.encode_batch(texts[:1000])  # warm up
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            tok.encode_batch(texts)
            times.append(time.perf_counter() - t0)
        secs = statistics.median(times)
        print("peer %s %.2f %d %.4f" % (name, nbytes / secs / 1e6, nbytes, secs))


if __name__ == "__main__":
    main()
