#!/usr/bin/env python3
"""Reference data for vocabulary pruning (model/tokenizer/prune.go), from HF `tokenizers`.

tokenizer.PruneVocab cuts a tokenizer.json down to the tokens a corpus uses.
This script prunes the same file to the same corpus on its own, with HF
`tokenizers` choosing the ids the corpus uses and plain Python rewriting the
file, then encodes held-out texts with the pruned file through HF. The Go test
(model/tokenizer/prune_test.go) checks that its pruning keeps the same tokens
(SHA-256 of the vocab.txt lines) and that its tokenizer, loaded from the
pruned file it wrote, gives HF's ids for every held-out row.

Run it through the pinned environment (tokenizers 0.19.1):

    $(scripts/pyenv.sh) scripts/vocab_prune_reference.py fixtures
        Writes testdata/tokenizer/vocab_prune/{sst2,ag_news}.jsonl.gz from the
        committed all-MiniLM-L6-v2 tokenizer.json and ../shared/data.

    $(scripts/pyenv.sh) scripts/vocab_prune_reference.py check DIR
        Loads the pruned tokenizer.json files the Go test wrote into DIR
        (BEAMTUNE_PRUNE_OUT=DIR go test ./model/tokenizer/ -run PruneEquality)
        with HF tokenizers and compares their vocab and encodings with the
        fixtures: HF must read the Go output as Go does.

scripts/vocab_prune_fixtures.sh does both.

The sets (the Go test builds the same inputs):
  sst2:    prune to the first 2,000 sentences of sst2/train.tsv (short
           phrases, so dev has words they never use); held out: sst2/dev.tsv.
  ag_news: prune to rows 0-1,999 of ag_news/test.csv as title + " " +
           description; held out: rows 2,000-3,999, the same way.
Used ids: every id of each pruning text encoded alone with the file's
post-processor, no truncation, no padding. Kept as well: added tokens, the
unk token, the post-processor's special tokens, padding.pad_id and pad_token,
[PAD] [UNK] [CLS] [SEP] [MASK]. New ids follow the old ids' order.

Fixture format: as scripts/tokenizer_reference.py (gzip'ed JSONL, header line,
row hash "h" = FNV-1a 64 over ids, type ids and mask; full "ids"/"t"/"m" for
the first ROWS_WITH_IDS rows; the rest packed in one {"first", "hashes",
"truncated"} line). The header adds vocab_size and vocab_sha256 (SHA-256 of
vocab.txt: each kept token and "\\n", in new-id order), and unk_rows (held-out
rows whose pruned encoding holds [UNK] when the unpruned one does not).
Encodings: truncation to 128 tokens, no padding.
"""

import argparse
import gzip
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tokenizer_reference import read_ag_news, read_tsv_column, row_hash, write_jsonl_gz  # noqa: E402

PINNED_TOKENIZERS = "0.19.1"  # scripts/pyenv.sh
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED_TOKENIZER = os.path.join(REPO, "testdata", "tokenizer", "all-MiniLM-L6-v2.tokenizer.json.gz")
OUT_DIR = os.path.join(REPO, "testdata", "tokenizer", "vocab_prune")
ROWS_WITH_IDS = 100
MAX_LEN = 128
PRUNE_ROWS = 2000
ALWAYS_KEPT = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def import_tokenizers():
    try:
        import tokenizers
    except ImportError:
        sys.exit("tokenizers is not installed: run through $(scripts/pyenv.sh)")
    if tokenizers.__version__ != PINNED_TOKENIZERS:
        sys.exit("tokenizers %s found, pinned %s: run through $(scripts/pyenv.sh)" % (tokenizers.__version__, PINNED_TOKENIZERS))
    return tokenizers


def sets(data):
    """name -> (prune source, pruning texts, held-out source, held-out texts)."""
    train = read_tsv_column(os.path.join(data, "sst2", "train.tsv"), "sentence")
    dev = read_tsv_column(os.path.join(data, "sst2", "dev.tsv"), "sentence")
    ag = [t + " " + d for t, d in read_ag_news(os.path.join(data, "ag_news", "test.csv"))]
    return {
        "sst2": ("sst2/train.tsv:sentence[0:2000]", train[:PRUNE_ROWS], "sst2/dev.tsv:sentence", dev),
        "ag_news": ("ag_news/test.csv:title+' '+description[0:2000]", ag[:PRUNE_ROWS],
                    "ag_news/test.csv:title+' '+description[2000:4000]", ag[PRUNE_ROWS:2 * PRUNE_ROWS]),
    }


def used_ids(tok, texts):
    tok.no_truncation()
    tok.no_padding()
    ids = set()
    for e in tok.encode_batch(texts):
        ids.update(e.ids)
    return ids


def prune(tj, keep):
    """Returns the pruned tokenizer.json (a dict) and the vocab.txt lines."""
    model = tj["model"]
    id_token = {i: t for t, i in model["vocab"].items()}
    for a in tj.get("added_tokens") or []:
        id_token[a["id"]] = a["content"]
    kept = set(keep)
    kept.update(a["id"] for a in tj.get("added_tokens") or [])
    kept.add(model["vocab"][model.get("unk_token", "[UNK]")])
    pp = tj.get("post_processor")
    if pp and pp["type"] == "TemplateProcessing":
        for st in pp["special_tokens"].values():
            kept.update(st["ids"])
    elif pp and pp["type"] == "BertProcessing":
        kept.update([pp["sep"][1], pp["cls"][1]])
    names = list(ALWAYS_KEPT)
    if tj.get("padding"):
        kept.add(tj["padding"].get("pad_id", 0))
        if tj["padding"].get("pad_token"):
            names.append(tj["padding"]["pad_token"])
    for name in names:
        if name in model["vocab"]:
            kept.add(model["vocab"][name])
        for a in tj.get("added_tokens") or []:
            if a["content"] == name:
                kept.add(a["id"])
    old_ids = sorted(kept)
    new = {old: i for i, old in enumerate(old_ids)}

    out = json.loads(json.dumps(tj))
    out["model"]["vocab"] = {id_token[old]: new[old] for old in old_ids if model["vocab"].get(id_token[old]) == old}
    for a in out.get("added_tokens") or []:
        a["id"] = new[a["id"]]
    pp = out.get("post_processor")
    if pp and pp["type"] == "TemplateProcessing":
        for st in pp["special_tokens"].values():
            st["ids"] = [new[i] for i in st["ids"]]
    elif pp and pp["type"] == "BertProcessing":
        pp["sep"][1] = new[pp["sep"][1]]
        pp["cls"][1] = new[pp["cls"][1]]
    if out.get("padding") and "pad_id" in out["padding"]:
        out["padding"]["pad_id"] = new[out["padding"]["pad_id"]]
    return out, [id_token[old] for old in old_ids]


def vocab_sha256(lines):
    return hashlib.sha256("".join(t + "\n" for t in lines).encode("utf-8")).hexdigest()


def encode(tok, texts):
    tok.enable_truncation(MAX_LEN)
    tok.no_padding()
    return tok.encode_batch(texts)


def encoding_row(e, full):
    row = {"h": row_hash(e.ids, e.type_ids, e.attention_mask)}
    if full:
        row["ids"], row["t"], row["m"] = list(e.ids), list(e.type_ids), list(e.attention_mask)
    if len(e.overflowing) > 0:
        row["tr"] = 1
    return row


def cmd_fixtures(args):
    tk = import_tokenizers()
    from tokenizers import Tokenizer
    raw = gzip.open(args.tokenizer, "rb").read()
    tj = json.loads(raw)
    base = Tokenizer.from_str(raw.decode("utf-8"))
    unk = tj["model"]["vocab"][tj["model"].get("unk_token", "[UNK]")]
    os.makedirs(args.out, exist_ok=True)
    for name, (prune_src, prune_texts, held_src, held) in sets(args.data).items():
        keep = used_ids(base, prune_texts)
        pruned, lines = prune(tj, keep)
        ptok = Tokenizer.from_str(json.dumps(pruned, ensure_ascii=False))
        if ptok.get_vocab_size() != len(lines):
            sys.exit("%s: HF reads %d tokens from the pruned file, want %d" % (name, ptok.get_vocab_size(), len(lines)))
        new_unk = lines.index(tj["model"].get("unk_token", "[UNK]"))
        before = encode(base, held)
        after = encode(ptok, held)
        unk_rows = sum(1 for b, a in zip(before, after) if new_unk in a.ids and unk not in b.ids)
        rows = [encoding_row(e, i < ROWS_WITH_IDS) for i, e in enumerate(after)]
        tail = rows[ROWS_WITH_IDS:]
        packed = {"first": ROWS_WITH_IDS, "hashes": "".join(r["h"] for r in tail),
                  "truncated": [ROWS_WITH_IDS + i for i, r in enumerate(tail) if r.get("tr")]}
        header = {"set": name, "prune_source": prune_src, "source": held_src, "pair": False, "rows": len(rows),
                  "truncated": sum(1 for r in rows if r.get("tr")), "max_length": MAX_LEN, "padding": None,
                  "tokenizers": tk.__version__, "tokenizer_sha256": hashlib.sha256(raw).hexdigest(),
                  "vocab_size": len(lines), "vocab_sha256": vocab_sha256(lines), "unk_rows": unk_rows}
        write_jsonl_gz(os.path.join(args.out, name + ".jsonl.gz"), header, rows[:ROWS_WITH_IDS] + [packed])
        print("  %s: %d of %d tokens kept, %d held-out rows, %d gain [UNK]" % (name, len(lines), len(tj["model"]["vocab"]), len(rows), unk_rows))


def cmd_check(args):
    import_tokenizers()
    from tokenizers import Tokenizer
    bad = 0
    for name, (_, _, _, held) in sets(args.data).items():
        path = os.path.join(args.dir, name + ".tokenizer.json")
        with gzip.open(os.path.join(args.fixtures, name + ".jsonl.gz"), "rt", encoding="utf-8") as f:
            lines = f.read().splitlines()
        header = json.loads(lines[0])
        want = []
        for line in lines[1:]:
            r = json.loads(line)
            if "first" in r:
                want += [r["hashes"][i:i + 16] for i in range(0, len(r["hashes"]), 16)]
            else:
                want.append(r["h"])
        text = open(path, encoding="utf-8").read()
        tok = Tokenizer.from_str(text)  # the check: HF reads the file Go wrote
        tj = json.loads(text)
        id_token = {i: t for t, i in tj["model"]["vocab"].items()}
        for a in tj.get("added_tokens") or []:
            id_token[a["id"]] = a["content"]
        vocab = [id_token[i] for i in range(len(id_token))]
        if tok.get_vocab_size() != len(vocab) or vocab_sha256(vocab) != header["vocab_sha256"]:
            print("%s: the Go file's vocab differs from the reference pruning" % path)
            bad += 1
        got = [row_hash(e.ids, e.type_ids, e.attention_mask) for e in encode(tok, held)]
        diff = sum(1 for g, w in zip(got, want) if g != w) + abs(len(got) - len(want))
        print("%s: HF loads it; %d held-out rows, %d differ from the fixture" % (path, len(got), diff))
        bad += diff
    sys.exit(1 if bad else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(REPO), "shared", "data"))
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fixtures", help="write testdata/tokenizer/vocab_prune/*.jsonl.gz")
    f.add_argument("--tokenizer", default=COMMITTED_TOKENIZER, help="gzip'ed tokenizer.json")
    f.add_argument("--out", default=OUT_DIR)
    c = sub.add_parser("check", help="load the Go test's pruned files with HF and compare")
    c.add_argument("dir")
    c.add_argument("--fixtures", default=OUT_DIR)
    args = ap.parse_args()
    {"fixtures": cmd_fixtures, "check": cmd_check}[args.cmd](args)


if __name__ == "__main__":
    main()
