#!/usr/bin/env bash
# MRPC (paraphrase pairs, single-label, issue #15): beamtune fine-tunes
# all-MiniLM-L6-v2 on the 3,668 training pairs and selects by dev F1 of the
# paraphrase class (GLUE's metric; --metric_for_best=f1); HF Trainer runs the
# same recipe on the same machine right after. Resumable. Logs: $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/bench/mrpc}
SHARED=${SHARED:-../shared/data}
THREADS=${THREADS:-2}
MODEL=${MODEL:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/models/all-MiniLM-L6-v2}
EPOCHS=${EPOCHS:-3} LR=${LR:-1e-4} EVAL_EVERY=${EVAL_EVERY:-58}
mkdir -p "$OUT"
BT=bin/beamtune
[ -x "$BT" ] || make build
$BT prepare --train="$SHARED/mrpc/train.tsv" --validation="$SHARED/mrpc/dev.tsv" --format=tsv \
  --text_field="#1 String" --pair_field="#2 String" --label_field=Quality --max_length=128 \
  --model="$MODEL" --output="$OUT/data" 2>&1 | tee -a "$OUT/prepare.log"
if [ ! -f "$OUT/teacher/_COMPLETE" ]; then
  /usr/bin/time -v $BT train --data="$OUT/data" --init="$MODEL" --output="$OUT" --epochs="$EPOCHS" --lr="$LR" \
    --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01 --seed=1 --eval_every="$EVAL_EVERY" --log_every=50 \
    --metric_for_best=f1 --threads="$THREADS" --device=cpu >> "$OUT/beamtune.log" 2>&1
fi
if [ ! -f "$OUT/hf_trainer.json" ]; then
  "$(scripts/pyenv.sh)" bench/hf_trainer.py --model="$MODEL" --train="$SHARED/mrpc/train.tsv" --dev="$SHARED/mrpc/dev.tsv" \
    --format=mrpc --epochs="$EPOCHS" --lr="$LR" --batch_size=32 --eval_every="$EVAL_EVERY" --threads="$THREADS" \
    > "$OUT/hf_trainer.out" 2> "$OUT/hf_trainer.log" && tail -n 1 "$OUT/hf_trainer.out" > "$OUT/hf_trainer.json"
fi
echo "mrpc: beamtune"; head -c 1500 "$OUT/teacher-trials.json"; echo
echo "mrpc: HF Trainer"; cat "$OUT/hf_trainer.json"
