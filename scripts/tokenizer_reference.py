#!/usr/bin/env python3
"""Reference data for model/tokenizer, produced with Hugging Face `tokenizers`.

The Go package model/tokenizer must give exactly the ids, type ids and attention
masks that HF `tokenizers` gives for a BERT WordPiece tokenizer.json. This script
asks the real library and writes what it said, so the Go tests compare against
the reference and not against our reading of its source.

Setup (the script installs nothing itself):

    pip install tokenizers==0.23.3

Commands (run from anywhere; paths default to this repository):

    python3 scripts/tokenizer_reference.py tables
        Probes every Unicode code point through the library's own normalizer and
        pre-tokenizer pieces and writes model/tokenizer/unicode_tables.go. The
        library mixes Unicode versions (an old unicode_categories crate for
        control/punctuation/Mn, an old normalization crate for NFD, Rust's std
        for whitespace and lowercase), none of which is the version of Go's
        unicode package, so the Go code uses these probed tables instead.

    python3 scripts/tokenizer_reference.py encode TEXT [PAIR] [--max-length N]
        Prints HF's tokens and ids for one input (to look at a mismatch the
        Go test reports past the rows whose ids the fixtures keep).

    python3 scripts/tokenizer_reference.py fixtures
        Encodes the SST-2 and AG News files from ../shared/data, a generated
        Unicode stress set, and a per-code-point normalizer probe, and writes
        gzip'ed JSONL fixtures under testdata/tokenizer/ (read by
        model/tokenizer/equality_test.go).

Fixture format (every file: gzip'ed JSONL, first line a header object):
  row hash "h": FNV-1a 64 (hex) over, for ids, type_ids and attention_mask in
  that order, the list length then each value, all as uint32 little-endian.
  Rows that carry "ids"/"t"/"m" hold the full lists (first ROWS_WITH_IDS rows
  of a data set, and every stress row). "tr": 1 marks a row that truncation cut
  (the encoding has overflowing parts). A data set file ends with one line
  {"first": n, "hashes": "<16 hex digits per row from row n on>",
  "truncated": [rows from n on that truncation cut]}.
  codepoints.jsonl.gz: per normalizer setting, one hash per block of 512 code
  points (first 16 hex digits of SHA-256 over each code point's probe_record).
"""

import argparse
import csv
import gzip
import hashlib
import io
import json
import os
import random
import sys
import unicodedata

PINNED_TOKENIZERS = "0.23.3"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TOKENIZER = "/root/.cache/beamtune/models/all-MiniLM-L6-v2/tokenizer.json"
COMMITTED_TOKENIZER = os.path.join(REPO, "testdata", "tokenizer", "all-MiniLM-L6-v2.tokenizer.json.gz")
ROWS_WITH_IDS = 200
MAX_LEN = 128
BLOCK = 512  # code points per hash in the code point probe

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1


def import_tokenizers():
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        sys.exit("tokenizers is not installed: pip install tokenizers==%s" % PINNED_TOKENIZERS)
    if tokenizers.__version__ != PINNED_TOKENIZERS:
        sys.exit("tokenizers %s found, the fixtures are pinned to %s: pip install tokenizers==%s"
                 % (tokenizers.__version__, PINNED_TOKENIZERS, PINNED_TOKENIZERS))
    return tokenizers


def all_code_points():
    return [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


def fnv_bytes(h, data):
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & MASK64
    return h


def row_hash(ids, type_ids, mask):
    buf = bytearray()
    for seq in (ids, type_ids, mask):
        buf += len(seq).to_bytes(4, "little")
        for v in seq:
            buf += int(v).to_bytes(4, "little")
    return "%016x" % fnv_bytes(FNV_OFFSET, buf)


# ---------------------------------------------------------------- tables


def ranges_of(points):
    out = []
    for c in sorted(points):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def go_string(s):
    out = []
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        elif o <= 0xFFFF:
            out.append("\\u%04x" % o)
        else:
            out.append("\\U%08x" % o)
    return '"' + "".join(out) + '"'


def cmd_tables(args):
    tk = import_tokenizers()
    from tokenizers import normalizers, pre_tokenizers

    clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    strip = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True, lowercase=False)
    lower = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=True)
    nfd = normalizers.NFD()
    pretok = pre_tokenizers.BertPreTokenizer()

    dropped, spaces_clean, punct, spaces, marks = [], [], [], [], []
    lowercase, decomp = {}, {}
    for c in all_code_points():
        ch = chr(c)
        out = clean.normalize_str(ch)
        if out == "":
            dropped.append(c)
        elif out == " ":
            spaces_clean.append(c)
        elif out != ch:
            sys.exit("clean_text gave %r for U+%04X: not a drop/space/keep outcome" % (out, c))
        d = nfd.normalize_str(ch)
        if d != ch:
            decomp[c] = d
        elif strip.normalize_str(ch) == "":
            marks.append(c)  # Mn as seen by the strip_accents filter (after NFD)
        low = lower.normalize_str(ch)
        if low != ch:
            lowercase[c] = low
        pieces = [p for p, _ in pretok.pre_tokenize_str("a" + ch + "a")]
        if len(pieces) == 3:
            punct.append(c)
        elif len(pieces) == 2:
            spaces.append(c)
        elif pieces != ["a" + ch + "a"]:
            sys.exit("pre-tokenizer gave %r around U+%04X" % (pieces, c))

    # clean_text maps to ' ' what Rust's char::is_whitespace accepts, after it drops
    # control characters; the pre-tokenizer splits on the same predicate. One table
    # serves both only if that holds.
    if set(spaces_clean) != set(spaces) - set(dropped):
        sys.exit("normalizer whitespace and pre-tokenizer whitespace differ")

    # Hangul syllables decompose by formula; check the library agrees and keep them out of the table.
    def hangul(c):
        s = c - 0xAC00
        t = 0x11A7 + s % 28
        return chr(0x1100 + s // 588) + chr(0x1161 + (s % 588) // 28) + (chr(t) if t != 0x11A7 else "")
    for c in range(0xAC00, 0xD7A4):
        if decomp.pop(c, None) != hangul(c):
            sys.exit("Hangul U+%04X does not decompose by formula" % c)

    # Canonical combining classes as the library's NFD sees them. Python's
    # unicodedata gives the values; a mark the library's older tables do not know
    # is a starter there. Probe: a non-starter m placed before a class-1 mark swaps
    # with it (class > 1), and a class-230 mark placed before m swaps (class < 230).
    a1, a230 = "\u0334", "\u0301"
    ccc = {}
    for c in all_code_points():
        m = chr(c)
        v = unicodedata.combining(m)
        if c in decomp or (0xAC00 <= c <= 0xD7A3):
            continue
        after_1 = c != 0x334 and nfd.normalize_str(m + a1) == a1 + m
        before_230 = c != 0x301 and nfd.normalize_str(a230 + m) == m + a230
        if v == 0:
            if after_1 or before_230:
                sys.exit("U+%04X is a non-starter in the library but not in unicodedata" % c)
            continue
        if (v == 1 and before_230) or (v > 1 and after_1):
            ccc[c] = v
    # Check the values: each non-starter against one representative per class.
    reps = {}
    for c, v in sorted(ccc.items()):
        reps.setdefault(v, c)
    for c, v in ccc.items():
        for k, r in reps.items():
            if r == c:
                continue
            swapped = nfd.normalize_str(chr(c) + chr(r)) == chr(r) + chr(c)
            if swapped != (v > k):
                sys.exit("combining class of U+%04X (%d) disagrees with the library against class %d" % (c, v, k))
    for c, d in decomp.items():
        for ch in d:
            if unicodedata.combining(ch) and ord(ch) not in ccc:
                sys.exit("decomposition of U+%04X holds U+%04X, whose class is unknown" % (c, ord(ch)))

    ccc_ranges = []
    for c in sorted(ccc):
        if ccc_ranges and ccc_ranges[-1][1] == c - 1 and ccc_ranges[-1][2] == ccc[c]:
            ccc_ranges[-1][1] = c
        else:
            ccc_ranges.append([c, c, ccc[c]])

    lines = []
    w = lines.append
    w("// Code generated by scripts/tokenizer_reference.py tables from tokenizers %s; DO NOT EDIT." % tk.__version__)
    w("")
    w("package tokenizer")
    w("")
    w("// tablesVersion names the library whose behaviour these tables record.")
    w('const tablesVersion = "tokenizers %s"' % tk.__version__)
    w("")

    def emit_ranges(name, doc, points):
        w("// %s" % doc)
        w("var %s = []runeRange{" % name)
        for lo, hi in ranges_of(points):
            w("\t{0x%04X, 0x%04X}," % (lo, hi))
        w("}")
        w("")

    emit_ranges("hfDropped", "hfDropped holds what BertNormalizer clean_text removes: NUL, U+FFFD and its 'other' category (Cc, Cf, Co) except tab, LF and CR.", dropped)
    emit_ranges("hfWhitespace", "hfWhitespace holds Rust's char::is_whitespace: clean_text maps these to ' ' (after dropping the control ones) and BertPreTokenizer splits on them.", spaces)
    emit_ranges("hfPunctuation", "hfPunctuation holds what BertPreTokenizer isolates: ASCII punctuation and the P* categories of the unicode_categories crate.", punct)
    emit_ranges("hfNonspacingMarks", "hfNonspacingMarks holds the Mn characters strip_accents drops after NFD (NFD-stable code points only).", marks)
    w("// hfCombiningClasses holds the canonical combining class of each non-starter, as the library's NFD orders them.")
    w("var hfCombiningClasses = []classRange{")
    for lo, hi, v in ccc_ranges:
        w("\t{0x%04X, 0x%04X, %d}," % (lo, hi, v))
    w("}")
    w("")
    w("// hfLowercase holds Rust's char::to_lowercase where it changes the character.")
    w("var hfLowercase = []runeMapping{")
    for c in sorted(lowercase):
        w("\t{0x%04X, %s}," % (c, go_string(lowercase[c])))
    w("}")
    w("")
    w("// hfDecompositions holds the full canonical decomposition (NFD) of each code point that has one, Hangul syllables excepted.")
    w("var hfDecompositions = []runeMapping{")
    for c in sorted(decomp):
        w("\t{0x%04X, %s}," % (c, go_string(decomp[c])))
    w("}")
    out = args.out or os.path.join(REPO, "model", "tokenizer", "unicode_tables.go")
    with open(out, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s: %d dropped, %d whitespace, %d punctuation, %d Mn, %d non-starters, %d lowercase, %d decompositions"
          % (out, len(dropped), len(spaces), len(punct), len(marks), len(ccc), len(lowercase), len(decomp)))


# ---------------------------------------------------------------- data


def read_tsv_column(path, column):
    text = open(path, "rb").read().decode("utf-8")
    lines = text.split("\n")
    idx = lines[0].split("\t").index(column)
    return [line.split("\t")[idx] for line in lines[1:] if line != ""]


def read_ag_news(path):
    text = open(path, "rb").read().decode("utf-8")
    return [(r[1], r[2]) for r in csv.reader(io.StringIO(text, newline=""))]


def stress_texts():
    """Hand-written cases plus seeded random strings (deterministic)."""
    long_word = "a" * 100
    cases = [
        "", " ", "   \t\n  ", ".", "!!!", "a", "Hello, world!", "HELLO WORLD", "don't stop-believing...",
        "Café Ångström naïve résumé façade coöperate", "CAFÉ ÅNGSTRÖM NAÏVE", "e\u0301 a\u0308\u0301 \u0301start o\u0302\u0323",
        "野口里佳 Noguchi Rika", "中文字符测试，还有标点。", "日本語のテキスト カタカナ ひらがな", "안녕하세요 세계", "\uf900\ufa0b\U0002f800 compat",
        "I \u2764\ufe0f NY \U0001f923\U0001f970\U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001fae0",
        "\u0130stanbul \u0130 i\u0307", "\u212aelvin \u212a", "\u2126hm \u2126", "\u212bngstr\u00f6m \u212b", "STRA\u1e9eE \u1e9e \u00df",
        "a\u00a0b", "a\u2003b\u2009c", "a\u3000b", "a\u1680b\u205fc\u202fd", "a\u2028b\u2029c", "a\u0085b",
        "a\u200bb", "a\u200cb\u200dc", "a\ufeffb", "a\u2060b", "a\u00adb",
        "a\x00b", "a\x07b", "a\x0bb", "a\x0cb", "a\x1cb\x1fc", "a\x7fb", "a\x80b\x9fc", "tab\there\nnew\rline",
        "a\ufffdb", "\ufffd", "\ufffd\ufffd",
        long_word, long_word + "a", "\u00e9" * 100, "\u00e9" * 101, "e\u0301" * 101, "x" + "\u0301" * 150 + "y",
        ("pneumonoultramicroscopicsilicovolcanoconiosis " * 3).strip(), "supercalifragilisticexpialidocious",
        "Москва Athens Αθήνα القاهرة תל־אביב दिल्ली กรุงเทพ", "ΟΔΥΣΣΕΥΣ Σίσυφος ς", "שָׁלוֹם עֲלֵיכֶם",
        "\U0001d15e\U0001d165\U0001d16d \U0001d16d\U0001d165 a\U0001d16d\u0301\U0001d165 a\U0001d16d\u034f\U0001d165",
        "\u08d4\u08d5 \u0628\u08d4\u064e\u08e1 \u1b44\u1baa", "\u302e\u302f\u0301\u302e",
        "[CLS] hello [SEP]", "[MASK]", "x[UNK]y", "[cls] [Cls]", "[CLS", "[[CLS]]", "[PAD][PAD]", "a[SEP]b[MASK]c",
        "\ue000\uf8ff \U000f0000 \U0010fffd", "\u0378\u0379 \U0001ffff \U000e0001", "\ufdd0 \ufffe \uffff \U0010ffff",
        "\uff21\uff22\uff23\uff11\uff12\uff13\uff01", "\ufb01 \ufb02 \u2163 \u00bd \u2460", "\u1fef \u037e \u0387 \u1ffd \u1fee",
        "\u2018quoted\u2019 \u201cdouble\u201d \u00abguillemets\u00bb \u2014 dash \u2013 en \u2026", "\u00bfQu\u00e9? \u00a1S\u00ed!",
        "$100 #hash @user ^caret `tick` ~tilde |pipe \\back {brace} <angle>", "1,234.56 3.14e10 0x1F",
        "naïve\u0301\u0301", "\u0345\u0399", "\u1e9b\u0323", "\u01c5\u01c4\u01c6", "\u0149", "\u1f80\u1f88",
        "\u0f73\u0f75\u0f81", "\u0958\u0959 \u09dc", "\u2adc \u2add\u0338", "\U0001d400\U0001d41a",
        "\u1100\u1161\u11a8 \uac00\u11a8", "\u3131\u314f",
        " ".join(["word"] * 200), "x " * 300, "\u4e00" * 200, "a" * 5000,
    ]
    rng = random.Random(20240611)
    pools = [
        (0.35, [chr(c) for c in range(0x20, 0x7F)]),
        (0.08, [chr(c) for c in (0x9, 0xA, 0xD, 0x0, 0x7, 0xB, 0xC, 0x1F, 0x7F, 0x85, 0xA0, 0x2003, 0x3000, 0x200B, 0x200D, 0xFEFF, 0xFFFD)]),
        (0.17, [chr(c) for c in list(range(0xA0, 0x250)) + list(range(0x370, 0x400)) + list(range(0x400, 0x460)) + list(range(0x1E00, 0x1F00))]),
        (0.10, [chr(c) for c in list(range(0x300, 0x370)) + [0x8D4, 0x8E1, 0x1B44, 0x302E, 0x1D165, 0x1D16D, 0x34F, 0x1DFB, 0xFE0F]]),
        (0.10, [chr(c) for c in list(range(0x4E00, 0x4E80)) + list(range(0x3040, 0x30FF)) + list(range(0xAC00, 0xAC80)) + list(range(0xF900, 0xF920))]),
        (0.05, [chr(c) for c in (0x130, 0x212A, 0x2126, 0x212B, 0x1E9E, 0x3A3, 0x1FEF, 0x37E, 0x1F923, 0x1F970, 0x2764, 0x1F468)]),
        (0.05, list("[CLS][SEP][MASK]##")),
    ]
    total = sum(w for w, _ in pools)

    def pick():
        x = rng.random() * total
        for w, pool in pools:
            if x < w:
                return rng.choice(pool)
            x -= w
        c = rng.randrange(0, 0x110000 - 0x800)
        return chr(c + 0x800 if c >= 0xD800 else c)  # any code point but surrogates

    for _ in range(1500):
        cases.append("".join(pick() for _ in range(rng.randint(1, 60))))
    return cases, rng


# ---------------------------------------------------------------- fixtures


def encoding_row(e, full):
    row = {"h": row_hash(e.ids, e.type_ids, e.attention_mask)}
    if full:
        row["ids"] = list(e.ids)
        row["t"] = list(e.type_ids)
        row["m"] = list(e.attention_mask)
    if len(e.overflowing) > 0:
        row["tr"] = 1
    return row


def write_jsonl_gz(path, header, rows):
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write((json.dumps(header, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8"))
        for r in rows:
            gz.write((json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8"))
    with open(path, "wb") as f:
        f.write(raw.getvalue())
    print("wrote %s (%d rows, %d bytes)" % (os.path.relpath(path, REPO), len(rows), len(raw.getvalue())))


def configure(tok, max_length, padding):
    if max_length:
        tok.enable_truncation(max_length)
    else:
        tok.no_truncation()
    if padding is None:
        tok.no_padding()
    elif "fixed" in padding:
        tok.enable_padding(length=padding["fixed"], pad_to_multiple_of=padding.get("multiple"))
    else:
        tok.enable_padding(pad_to_multiple_of=padding.get("multiple"))


def encode_set(tok, inputs, pair, max_length, padding):
    """Encodes like a caller of encode_batch would; batch padding pads per batch."""
    configure(tok, max_length, padding)
    batch = padding.get("batch", len(inputs)) if padding else len(inputs)
    batch = max(batch, 1)
    out = []
    for i in range(0, len(inputs), batch):
        chunk = inputs[i:i + batch]
        out.extend(tok.encode_batch([tuple(p) for p in chunk] if pair else chunk))
    return out


def cmd_fixtures(args):
    tk = import_tokenizers()
    from tokenizers import Tokenizer, normalizers, pre_tokenizers

    tok_path = args.tokenizer
    raw = open(tok_path, "rb").read()
    tok_sha = hashlib.sha256(raw).hexdigest()
    out_dir = args.out
    os.makedirs(out_dir, exist_ok=True)

    # The committed copy lets the Go tests run where the model cache is absent.
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    with open(COMMITTED_TOKENIZER, "wb") as f:
        f.write(buf.getvalue())

    base = {"tokenizers": tk.__version__, "tokenizer_sha256": tok_sha}

    def file_tok():
        return Tokenizer.from_file(tok_path)

    data = args.data
    sst2_train = read_tsv_column(os.path.join(data, "sst2", "train.tsv"), "sentence")
    sst2_dev = read_tsv_column(os.path.join(data, "sst2", "dev.tsv"), "sentence")
    ag = read_ag_news(os.path.join(data, "ag_news", "test.csv"))
    ag_single = [t + " " + d for t, d in ag]
    dev_pairs = [[sst2_dev[i], sst2_dev[i + 1]] for i in range(len(sst2_dev) - 1)]

    # name, source (the Go test rebuilds the inputs from it), inputs, pair, max_length, padding
    sets = [
        ("sst2_train", "sst2/train.tsv:sentence", sst2_train, False, MAX_LEN, None),
        ("sst2_dev", "sst2/dev.tsv:sentence", sst2_dev, False, MAX_LEN, None),
        ("ag_news_test", "ag_news/test.csv:title+' '+description", ag_single, False, MAX_LEN, None),
        ("ag_news_test_pairs", "ag_news/test.csv:(title,description)", [list(p) for p in ag], True, 64, None),
        ("sst2_dev_pairs_padded", "sst2/dev.tsv:(sentence[i],sentence[i+1])", dev_pairs, True, 32, {"batch": 16, "multiple": 8}),
        ("sst2_dev_file_defaults", "sst2/dev.tsv:sentence", sst2_dev, False, "file", "file"),
    ]
    tok = file_tok()
    for name, source, inputs, pair, max_length, padding in sets:
        if max_length == "file":
            t2 = file_tok()  # truncation and padding as tokenizer.json sets them
            encs = t2.encode_batch(inputs)
            header_opts = {"max_length": "file", "padding": "file"}
        else:
            encs = encode_set(tok, inputs, pair, max_length, padding)
            header_opts = {"max_length": max_length, "padding": padding}
        rows = [encoding_row(e, i < ROWS_WITH_IDS) for i, e in enumerate(encs)]
        header = dict(base, set=name, source=source, pair=pair, rows=len(rows),
                      truncated=sum(1 for r in rows if r.get("tr")), **header_opts)
        # Past the first rows, only hashes: one line, concatenated, which
        # compresses to the 8 bytes a hash holds.
        tail = rows[ROWS_WITH_IDS:]
        packed = {"first": ROWS_WITH_IDS, "hashes": "".join(r["h"] for r in tail),
                  "truncated": [ROWS_WITH_IDS + i for i, r in enumerate(tail) if r.get("tr")]}
        write_jsonl_gz(os.path.join(out_dir, name + ".jsonl.gz"), header, rows[:ROWS_WITH_IDS] + [packed])

    # Stress set: inputs travel in the fixture, once per input, with one result
    # ("v") per truncation setting.
    texts, rng = stress_texts()
    lengths = (None, MAX_LEN, 8)
    results = [encode_set(tok, texts, False, n, None) for n in lengths]
    # "n": hash of the normalizer + pre-tokenizer output alone (probe_record), which
    # sees differences the vocab hides (two unknown words are both [UNK]).
    model_norm, model_pretok = tok.normalizer, tok.pre_tokenizer
    rows = []
    for i, text in enumerate(texts):
        rows.append({"a": text, "n": hashlib.sha256(probe_record(model_norm, model_pretok, text)).hexdigest()[:16],
                     "v": [dict(encoding_row(res[i], True), max_length=n) for n, res in zip(lengths, results)]})
    write_jsonl_gz(os.path.join(out_dir, "stress_single.jsonl.gz"),
                   dict(base, set="stress_single", pair=False, rows=len(rows)), rows)

    pairs = [[rng.choice(texts), rng.choice(texts)] for _ in range(400)]
    pairs += [["", ""], ["a", ""], ["", "b"], ["[SEP]", "[CLS]"], ["x " * 100, "y " * 100], ["x " * 10, "y " * 200], ["x " * 200, "y " * 10]]
    lengths = (None, MAX_LEN, 16, 7, 3)
    results = [encode_set(tok, pairs, True, n, None) for n in lengths]
    rows = []
    for i, (a, b) in enumerate(pairs):
        rows.append({"a": a, "b": b, "v": [dict(encoding_row(res[i], True), max_length=n) for n, res in zip(lengths, results)]})
    write_jsonl_gz(os.path.join(out_dir, "stress_pair.jsonl.gz"),
                   dict(base, set="stress_pair", pair=True, rows=len(rows)), rows)

    # Padding: fixed lengths (shorter and longer than the encodings), batch longest,
    # pad_to_multiple_of; each batch is one row holding all its encodings.
    rows = []
    batches = [texts[i:i + 7] for i in range(0, 140, 7)] + [[""], ["a", "b c d e f g h i j k l"]]
    pair_batches = [pairs[i:i + 5] for i in range(0, 50, 5)]
    for padding, max_length in (({"fixed": 16}, MAX_LEN), ({"fixed": 40, "multiple": 16}, 24),
                                ({}, MAX_LEN), ({"multiple": 8}, 20), ({"multiple": 5}, None)):
        for pair, bs in ((False, batches), (True, pair_batches)):
            configure(tok, max_length, padding)
            for b in bs:
                encs = tok.encode_batch([tuple(p) for p in b] if pair else b)
                rows.append({"pair": pair, "inputs": b, "max_length": max_length, "padding": padding,
                             "encodings": [encoding_row(e, True) for e in encs]})
    write_jsonl_gz(os.path.join(out_dir, "stress_batch.jsonl.gz"),
                   dict(base, set="stress_batch", rows=len(rows)), rows)

    # Per-code-point probe of normalizer + pre-tokenizer, for several BertNormalizer
    # settings: one hash per block of BLOCK code points.
    configs = [
        {"clean_text": True, "handle_chinese_chars": True, "strip_accents": True, "lowercase": True},
        {"clean_text": True, "handle_chinese_chars": True, "strip_accents": False, "lowercase": False},
        {"clean_text": True, "handle_chinese_chars": True, "strip_accents": False, "lowercase": True},
        {"clean_text": False, "handle_chinese_chars": False, "strip_accents": True, "lowercase": False},
    ]
    pretok = pre_tokenizers.BertPreTokenizer()
    rows = []
    for cfg in configs:
        norm = normalizers.BertNormalizer(**cfg)
        blocks = []
        for start in range(0, 0x110000, BLOCK):
            h = hashlib.sha256()
            for c in range(start, start + BLOCK):
                if 0xD800 <= c <= 0xDFFF:
                    continue
                h.update(probe_record(norm, pretok, probe_text(chr(c))))
            blocks.append(h.hexdigest()[:16])
        rows.append({"config": cfg, "blocks": blocks})
    write_jsonl_gz(os.path.join(out_dir, "codepoints.jsonl.gz"),
                   dict(base, set="codepoints", block=BLOCK, text="'a'+c+'b '+c", rows=len(rows)), rows)


def probe_text(ch):
    return "a" + ch + "b " + ch


def probe_record(norm, pretok, text):
    """Bytes hashed per probe: the normalized text, 0xFF, then each pre-token and 0xFE."""
    n = norm.normalize_str(text)
    out = bytearray(n.encode("utf-8"))
    out.append(0xFF)
    for p, _ in pretok.pre_tokenize_str(n):
        out += p.encode("utf-8")
        out.append(0xFE)
    return bytes(out)


def cmd_probe(args):
    """Prints what the library makes of each code point in a range (to chase a block mismatch)."""
    import_tokenizers()
    from tokenizers import normalizers, pre_tokenizers
    cfg = json.loads(args.config)
    norm = normalizers.BertNormalizer(**cfg)
    pretok = pre_tokenizers.BertPreTokenizer()
    for c in range(int(args.start, 16), int(args.end, 16) + 1):
        if 0xD800 <= c <= 0xDFFF:
            continue
        n = norm.normalize_str(probe_text(chr(c)))
        print("U+%04X %r %r" % (c, n, [p for p, _ in pretok.pre_tokenize_str(n)]))


def cmd_encode(args):
    """Prints HF's encoding of a text (or pair) with the model's tokenizer.json settings."""
    import_tokenizers()
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(args.tokenizer)
    if args.max_length is not None:
        tok.enable_truncation(args.max_length)
    if not args.keep_padding:
        tok.no_padding()
    e = tok.encode(args.text, args.pair) if args.pair is not None else tok.encode(args.text)
    print(json.dumps({"tokens": e.tokens, "ids": e.ids, "type_ids": e.type_ids,
                      "attention_mask": e.attention_mask, "truncated": len(e.overflowing) > 0}, ensure_ascii=False))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tables", help="write model/tokenizer/unicode_tables.go")
    t.add_argument("--out")
    f = sub.add_parser("fixtures", help="write testdata/tokenizer/*.jsonl.gz")
    f.add_argument("--tokenizer", default=DEFAULT_TOKENIZER if os.path.exists(DEFAULT_TOKENIZER) else None)
    f.add_argument("--data", default=os.path.join(os.path.dirname(REPO), "shared", "data"))
    f.add_argument("--out", default=os.path.join(REPO, "testdata", "tokenizer"))
    p = sub.add_parser("probe", help="print the library's view of a code point range")
    p.add_argument("start")
    p.add_argument("end")
    p.add_argument("--config", default='{"clean_text": true, "handle_chinese_chars": true, "strip_accents": true, "lowercase": true}')
    e = sub.add_parser("encode", help="print HF's encoding of TEXT [PAIR]")
    e.add_argument("text")
    e.add_argument("pair", nargs="?")
    e.add_argument("--tokenizer", default=DEFAULT_TOKENIZER)
    e.add_argument("--max-length", type=int, default=128)
    e.add_argument("--keep-padding", action="store_true", help="keep the padding tokenizer.json sets")
    args = ap.parse_args()
    if args.cmd == "fixtures" and not args.tokenizer:
        sys.exit("no tokenizer.json: pass --tokenizer (the model's file, %s)" % DEFAULT_TOKENIZER)
    {"tables": cmd_tables, "fixtures": cmd_fixtures, "probe": cmd_probe, "encode": cmd_encode}[args.cmd](args)


if __name__ == "__main__":
    main()
