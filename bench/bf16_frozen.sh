#!/usr/bin/env bash
# The word-embedding lever of issue #21: at SST-2 lengths a training step is
# dominated by work that does not shrink with bf16 (the dense gradient of the
# 30,522 × 384 word-embedding table and AdamW's update of it: 11.7 M of the
# model's 22.7 M parameters, every step). This runs bench/bf16.sh's parts 3
# and 4 with the embeddings frozen (--freeze_layers=embeddings, the option
# chosen: see BENCHMARKS.md): fp32 and bf16 end to end on SST-2 (STEPS steps,
# ROUNDS rounds interleaved), then SST-2 dev accuracy of both after MAX_STEPS.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}
DATA=${DATA:-$CACHE/bench/sst2/data}
THREADS=${THREADS:-2}
STEPS=${STEPS:-300}
ROUNDS=${ROUNDS:-2}
MAX_STEPS=${MAX_STEPS:-400}
OUT=${OUT:-$CACHE/bench/bf16}
LOCK=(flock /tmp/beamtune-cpu.lock)
FREEZE=(--freeze_layers=embeddings)
RECIPE=(--lr=1e-4 --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01 --seed=1)
mkdir -p "$OUT"
[ -x bin/beamtune ] || make build
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $THREADS threads, ${FREEZE[*]}"
printf "round\tfp32_frozen\tbf16_frozen\tbf16/fp32\n"
for r in $(seq "$ROUNDS"); do
  eps=()
  for p in fp32 bf16; do
    "${LOCK[@]}" bin/beamtune train --data="$DATA" --output="$TMP/$p$r" "${RECIPE[@]}" "${FREEZE[@]}" --max_steps="$STEPS" \
      --eval_every=0 --checkpoint_every=0 --log_every=50 --threads="$THREADS" --device=cpu --resume=false --precision=$p > "$TMP/$p$r.log" 2>&1
    eps+=("$(grep 'msg=train ' "$TMP/$p$r.log" | tail -1 | sed -E 's/.*examples_per_s=([0-9.]+).*/\1/')")
  done
  printf "%s\t%s\t%s\t%s\n" "$r" "${eps[0]}" "${eps[1]}" "$(python3 -c "print(round(${eps[1]}/${eps[0]}, 3))")"
done
for p in fp32 bf16; do
  run="$OUT/acc-$p-frozen-s$MAX_STEPS"
  if [ ! -f "$run/teacher/_COMPLETE" ]; then
    "${LOCK[@]}" bin/beamtune train --data="$DATA" --output="$run" --epochs=1 --max_steps="$MAX_STEPS" "${RECIPE[@]}" "${FREEZE[@]}" \
      --eval_every=200 --checkpoint_every=0 --log_every=100 --threads="$THREADS" --device=cpu --precision=$p > "$run.log" 2>&1
  fi
  python3 - "$run" "$p" <<'PY'
import json, sys, glob
run, p = sys.argv[1:]
rows = [json.loads(l) for l in open(glob.glob(run + "/teacher/training_log.jsonl")[0])]
evals = [(r["step"], round(100 * r["accuracy"], 2)) for r in rows if r.get("kind") == "eval"]
print(f"{p} frozen embeddings: dev accuracy by step {evals}; best {max(a for _, a in evals)}, final {evals[-1][1]}")
PY
done
