#!/usr/bin/env bash
# End-to-end training throughput on SST-2: `beamtune train` (Beam on prism,
# Parquet shards, length-bucketed batches, AdamW, clipping) vs HF
# transformers' Trainer (bench/hf_trainer.py, group_by_length) with the same
# recipe, STEPS optimizer steps each, no evaluation inside the timed window,
# ROUNDS rounds interleaved in this one invocation. Run it on an idle machine.
#
# Both sides time their training loop only (model loading, tokenizing and the
# final evaluation excluded): beamtune's figure is the examples/s of its last
# progress line; the Trainer's is steps x batch / (train() time).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}
DATA=${DATA:-$CACHE/bench/sst2/data}    # prepared by bench/sst2_full.sh
SHARED=${SHARED:-../shared/data}
MODEL=${BEAMTUNE_MODEL:-$CACHE/models/all-MiniLM-L6-v2}
THREADS=${THREADS:-2}
STEPS=${STEPS:-300}
ROUNDS=${ROUNDS:-2}
PY=$(scripts/pyenv.sh)
[ -x bin/beamtune ] || make build
[ -f "$DATA/manifest.json" ] || { echo "no prepared SST-2 at $DATA: run bench/sst2_full.sh (its prepare step) first" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
RECIPE=(--lr=1e-4 --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01 --seed=1)
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $THREADS threads each, $STEPS steps of batch 32, $ROUNDS rounds"
printf "round\tbeamtune_ex_s\thf_trainer_ex_s\tratio\n"
for r in $(seq "$ROUNDS"); do
  bin/beamtune train --data="$DATA" --output="$TMP/bt$r" "${RECIPE[@]}" --max_steps="$STEPS" --eval_every=0 \
    --checkpoint_every=0 --log_every=50 --threads="$THREADS" --device=cpu --resume=false > "$TMP/bt$r.log" 2>&1
  bt=$(grep 'msg=train ' "$TMP/bt$r.log" | tail -1 | sed -E 's/.*examples_per_s=([0-9.]+).*/\1/')
  "$PY" bench/hf_trainer.py --model="$MODEL" --train="$SHARED/sst2/train.tsv" --dev="$SHARED/sst2/dev.tsv" \
    --epochs=3 --max_steps="$STEPS" --lr=1e-4 --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01 --seed=1 \
    --threads="$THREADS" --eval_every=1000000 --output="$TMP/hf$r" > "$TMP/hf$r.out" 2> "$TMP/hf$r.log"
  hf=$(grep '^{' "$TMP/hf$r.out" | tail -1 | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["train_examples_per_s"], 2))')
  printf "%s\t%s\t%s\t%s\n" "$r" "$bt" "$hf" "$(python3 -c "print(round($bt/$hf, 3))")"
done
