#!/usr/bin/env python3
"""Writes a synthetic labelled TSV corpus of about SIZE bytes for the prepare
scale benchmark: sentences drawn from the SST-2 training vocabulary, lengths
like SST-2's (4-40 words), labels 0/1, ~2% exact duplicates, a seeded RNG so
the same size always gives the same file.

    python3 bench/gen_corpus.py SIZE_BYTES OUT.tsv [--shared ../shared/data]"""
import argparse, os, random

ap = argparse.ArgumentParser()
ap.add_argument("size", type=int)
ap.add_argument("out")
ap.add_argument("--shared", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
a = ap.parse_args()
words = set()
with open(os.path.join(a.shared, "sst2", "train.tsv"), encoding="utf-8") as f:
    next(f)
    for line in f:
        words.update(line.split("\t")[0].split())
words = sorted(words)
rng = random.Random(42)
recent = []
written = 0
tmp = a.out + ".tmp"
with open(tmp, "w", encoding="utf-8") as f:
    f.write("sentence\tlabel\n")
    while written < a.size:
        if recent and rng.random() < 0.02:
            line = rng.choice(recent)
        else:
            n = rng.randint(4, 40)
            line = " ".join(rng.choice(words) for _ in range(n)) + "\t" + str(rng.randint(0, 1)) + "\n"
            recent.append(line)
            if len(recent) > 1000:
                recent.pop(0)
        f.write(line)
        written += len(line.encode("utf-8"))
os.replace(tmp, a.out)
print(f"{a.out}: {written} bytes")
