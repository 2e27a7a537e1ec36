#!/usr/bin/env python3
"""Make testdata/hf-saved/: a folder written by HF transformers' save_pretrained.

A small random BertForSequenceClassification (2 labels, "0" and "1", as the
bundled SST-2 sample) and its tokenizer (BertTokenizerFast over a 3,000-token
slice of all-MiniLM-L6-v2's vocabulary), both saved with save_pretrained.
The CLI tests check that every command that reads a model folder takes such a
folder as it is (no beamtune publish metadata, no _COMPLETE).

Usage (from the repo root, after scripts/setup.sh):
    $(scripts/pyenv.sh) scripts/hf_saved_fixture.py [--model DIR]
"""
import argparse
import os
import tempfile

import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "testdata", "hf-saved")
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def vocabulary(model_dir, words=2000):
    with open(os.path.join(model_dir, "vocab.txt"), encoding="utf-8") as f:
        full = [line.rstrip("\n") for line in f]
    # Single characters (and their ## forms) keep every word encodable;
    # then the most frequent whole words and pieces, in the source's order.
    chars = [t for t in full if len(t.replace("##", "")) == 1 and not t.startswith("[")]
    common = [t for t in full[1996:] if not t.startswith("[")][:words]
    seen, out = set(), []
    for t in SPECIAL + chars + common:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def main():
    ap = argparse.ArgumentParser()
    default = os.path.join(os.environ.get("BEAMTUNE_CACHE", os.path.expanduser("~/.cache/beamtune")), "models", "all-MiniLM-L6-v2")
    ap.add_argument("--model", default=default)
    args = ap.parse_args()
    vocab = vocabulary(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        vf = os.path.join(tmp, "vocab.txt")
        with open(vf, "w", encoding="utf-8") as f:
            f.write("\n".join(vocab) + "\n")
        tok = BertTokenizerFast(vocab_file=vf, do_lower_case=True)
        tok.save_pretrained(OUT)
    torch.manual_seed(7)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=128, num_labels=2,
                     id2label={0: "0", 1: "1"}, label2id={"0": 0, "1": 1})
    BertForSequenceClassification(cfg).save_pretrained(OUT)
    print(OUT, len(vocab), "tokens")


if __name__ == "__main__":
    main()
