#!/usr/bin/env bash
# STS-B (regression on sentence pairs, issue #15): beamtune fine-tunes
# all-MiniLM-L6-v2 on the 5,749 training pairs and selects by dev Pearson;
# HF Trainer runs the same recipe on the same machine right after. Resumable
# (beamtune continues from its checkpoints). Logs and results: $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/bench/stsb}
SHARED=${SHARED:-../shared/data}
THREADS=${THREADS:-2}
MODEL=${MODEL:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/models/all-MiniLM-L6-v2}
EPOCHS=${EPOCHS:-3} LR=${LR:-1e-4} EVAL_EVERY=${EVAL_EVERY:-90}
mkdir -p "$OUT"
BT=bin/beamtune
[ -x "$BT" ] || make build
$BT prepare --train="$SHARED/stsb/train.tsv" --validation="$SHARED/stsb/dev.tsv" --format=tsv --header=false \
  --text_field=6 --pair_field=7 --label_field=5 --task=regression --label_range=0:5 --max_length=128 \
  --model="$MODEL" --output="$OUT/data" 2>&1 | tee -a "$OUT/prepare.log"
for metric in pearson spearman; do
  if [ ! -f "$OUT/$metric/teacher/_COMPLETE" ]; then
    /usr/bin/time -v $BT train --data="$OUT/data" --init="$MODEL" --output="$OUT/$metric" --epochs="$EPOCHS" --lr="$LR" \
      --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01 --seed=1 --eval_every="$EVAL_EVERY" --log_every=50 \
      --metric_for_best="$metric" --threads="$THREADS" --device=cpu >> "$OUT/beamtune-$metric.log" 2>&1
  fi
done
if [ ! -f "$OUT/hf_trainer.json" ]; then
  "$(scripts/pyenv.sh)" bench/hf_trainer.py --model="$MODEL" --train="$SHARED/stsb/train.tsv" --dev="$SHARED/stsb/dev.tsv" \
    --format=stsb --epochs="$EPOCHS" --lr="$LR" --batch_size=32 --eval_every="$EVAL_EVERY" --threads="$THREADS" \
    > "$OUT/hf_trainer.json.tmp" 2> "$OUT/hf_trainer.log" && mv "$OUT/hf_trainer.json.tmp" "$OUT/hf_trainer.json"
fi
echo "stsb: beamtune"; cat "$OUT"/pearson/teacher-trials.json "$OUT"/spearman/teacher-trials.json | head -c 2000; echo
echo "stsb: HF Trainer"; cat "$OUT/hf_trainer.json"
