#!/usr/bin/env bash
# int8 inference against float32 and the Python peers (issue #16): for each
# model folder, ROUNDS interleaved rounds of beamtune float32 and int8
# (BenchmarkInfer in model/) then PyTorch eager, PyTorch quantize_dynamic,
# ONNX Runtime fp32 and ONNX Runtime dynamic int8 (bench/int8_peers.py), all
# at batch 32 × SEQ tokens and THREADS threads on the same random token ids.
# Usage: bench/int8.sh MODEL_DIR...   Output: one JSON line per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
SEQ=${SEQ:-32}
ROUNDS=${ROUNDS:-3}
PY=$(scripts/pyenv.sh)
for model in "$@"; do
  for round in $(seq 1 "$ROUNDS"); do
    BEAMTUNE_BENCH_MODEL=$model BEAMTUNE_BENCH_SEQ=$SEQ BEAMTUNE_THREADS=$THREADS \
      go test ./model/ -run '^$' -bench '^BenchmarkInfer$' -benchtime=1x -count=1 2>/dev/null |
      awk -v m="$model" -v r="$round" -v t="$THREADS" -v s="$SEQ" '/^BenchmarkInfer\//{
        split($1, a, "/"); sub(/-[0-9]+$/, "", a[2]);
        for (i = 1; i <= NF; i++) { if ($i == "examples/s") eps = $(i-1); if ($i == "p50_ms") p50 = $(i-1) }
        printf "{\"model\": \"%s\", \"round\": %d, \"engine\": \"beamtune_%s\", \"threads\": %d, \"batch\": 32, \"seq\": %d, \"examples_per_sec\": %s, \"p50_ms_batch1\": %s}\n", m, r, (a[2] == "none" ? "fp32" : a[2]), t, s, eps, p50 }'
    "$PY" bench/int8_peers.py "$model" --threads "$THREADS" --seq "$SEQ" 2>/dev/null |
      python3 -c "import json,sys; [print(json.dumps(dict(model=sys.argv[1], round=int(sys.argv[2]), **json.loads(l)))) for l in sys.stdin]" "$model" "$round"
  done
done
