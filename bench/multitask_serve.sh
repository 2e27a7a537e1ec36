#!/usr/bin/env bash
# Serving three tasks with one multi-task bundle against three single-task
# models run one after another on the same inputs (issue #18):
# BenchmarkServeTasks (model/bench_infer_test.go), all-MiniLM-L6-v2 shapes
# with heads of 2, 4 and 2 classes, batch 32, at 32 and 128 tokens, the two
# ways interleaved within each run, ROUNDS runs each. Run it with nothing
# else on the machine. Output: one line per run with both examples/s and
# the speed-up; raw lines also in $OUT/serve.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/bench/multitask}
ROUNDS=${ROUNDS:-3}
mkdir -p "$OUT"
for seq in 32 128; do
  BEAMTUNE_BENCH_SEQ=$seq BEAMTUNE_THREADS=${THREADS:-2} go test ./model -run '^$' -bench '^BenchmarkServeTasks$' \
    -benchtime 2x -count "$ROUNDS" 2>&1 | grep '^BenchmarkServeTasks' | sed "s/^/seq=$seq /" | tee -a "$OUT/serve.txt"
done
