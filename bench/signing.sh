#!/usr/bin/env bash
# Signing and verifying a model folder (issue #19): ROUNDS interleaved rounds
# of `beamtune sign` / `beamtune verify` and the OpenSSF model_signing CLI
# (`model_signing sign key` / `verify key`, pinned in scripts/pyenv.sh) on
# copies of the same folder with the same ECDSA P-256 key. Both are timed
# as whole commands (process start included), as a user runs them.
# Usage: bench/signing.sh [MODEL_DIR]   (default: the demo's published
# teacher, else the pretrained all-MiniLM-L6-v2 folder)
# Output: one JSON line per measurement, then the medians and ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SRC=${1:-}
if [ -z "$SRC" ]; then
  SRC=out/demo/run/teacher
  [ -d "$SRC" ] || SRC=${BEAMTUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/beamtune}/models/all-MiniLM-L6-v2
fi
PY=$(scripts/pyenv.sh)
MS=$(dirname "$PY")/model_signing
make -s build >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl ecparam -name prime256v1 -genkey -noout -out "$work/key.pem"
openssl ec -in "$work/key.pem" -pubout -out "$work/key.pub" 2>/dev/null
cp -r "$SRC" "$work/bt" && rm -f "$work/bt/model.sig"
cp -r "$SRC" "$work/ms" && rm -f "$work/ms/model.sig"
bytes=$(du -sb "$work/bt" | cut -f1)
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); awk -v s="$s" -v e="$e" 'BEGIN { printf "%.4f", e - s }'; }
out=$work/times.jsonl
for round in $(seq 1 "$ROUNDS"); do
  for op in sign verify; do
    if [ $op = sign ]; then
      b=$(t bin/beamtune sign "$work/bt" --signing_key "$work/key.pem")
      p=$(t "$MS" sign key "$work/ms" --private_key "$work/key.pem" --signature "$work/ms/model.sig")
    else
      b=$(t bin/beamtune verify "$work/bt" --public_key "$work/key.pub")
      p=$(t "$MS" verify key "$work/ms" --signature "$work/ms/model.sig" --public_key "$work/key.pub")
    fi
    printf '{"round": %d, "op": "%s", "engine": "beamtune", "bytes": %d, "seconds": %s}\n' "$round" $op "$bytes" "$b" | tee -a "$out"
    printf '{"round": %d, "op": "%s", "engine": "model_signing", "bytes": %d, "seconds": %s}\n' "$round" $op "$bytes" "$p" | tee -a "$out"
  done
done
# Both tools must accept each other's signatures on these folders.
bin/beamtune verify "$work/ms" --public_key "$work/key.pub" >/dev/null
"$MS" verify key "$work/bt" --signature "$work/bt/model.sig" --public_key "$work/key.pub" >/dev/null
python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for op in ("sign", "verify"):
    med = {e: statistics.median(r["seconds"] for r in rows if r["op"] == op and r["engine"] == e) for e in ("beamtune", "model_signing")}
    print(json.dumps({"op": op, "median_s": med, "speedup_vs_model_signing": round(med["model_signing"] / med["beamtune"], 2)}))
PY
