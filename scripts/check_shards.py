#!/usr/bin/env python3
"""Reads a beamtune dataset's shards with pyarrow, pandas, DuckDB and HF
datasets, and checks each sees the rows and columns the manifest promises.

    $(scripts/pyenv.sh) scripts/check_shards.py DATASET_DIR
Prints one JSON line per reader and exits non-zero on any disagreement."""
import json, os, sys, glob

import duckdb, pandas as pd, pyarrow.parquet as pq
import datasets

root = sys.argv[1]
man = json.load(open(os.path.join(root, "manifest.json")))
ok = True
for split, summary in sorted(man["splits"].items()):
    files = sorted(os.path.join(root, s["path"]) for s in man["shards"] if s["split"] == split)
    want = summary["rows"]
    got = {}
    t = pq.read_table(files)
    got["pyarrow"] = t.num_rows
    cols = t.column_names
    got["pandas"] = len(pd.concat(pd.read_parquet(f) for f in files))
    got["duckdb"] = duckdb.sql(f"select count(*) from read_parquet({files!r})").fetchone()[0]
    ds = datasets.load_dataset("parquet", data_files=files, split="train")
    got["hf_datasets"] = ds.num_rows
    first = ds[0]
    lengths_ok = all(len(r["input_ids"]) == r["length"] for r in ds.select(range(min(200, ds.num_rows))))
    res = {"split": split, "manifest_rows": want, **got, "columns": cols, "input_ids_type": str(t.schema.field("input_ids").type),
           "lengths_match": lengths_ok, "first_id": first["id"]}
    print(json.dumps(res))
    ok = ok and all(v == want for v in got.values()) and lengths_ok
sys.exit(0 if ok else 1)
