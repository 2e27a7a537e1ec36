#!/usr/bin/env bash
# LoRA's own learning rate on the bench/peft.sh budget (issue #17: tuning it
# is fair): LoRA r=8 (TARGETS, default query,value; alpha 16, dropout 0.1) on
# SST-2 with a sweep over LRS (trials in parallel on prism), then PEFT + HF
# Trainer at the winning rate, same steps. Resumable. Output (NAME default
# lora-lr): $ROOT/$NAME.log, $ROOT/$NAME/teacher-trials.json and
# $ROOT/peer-${NAME#lora-}.json (peer-lr.json for the default).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/bench/peft}
DATA=${DATA:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/bench/compress/sst2/data}
SHARED=${SHARED:-../shared/data}
THREADS=${THREADS:-2}
MAX_STEPS=${MAX_STEPS:-1000}
EVAL_EVERY=${EVAL_EVERY:-250}
LRS=${LRS:-1e-3,2e-3}
TARGETS=${TARGETS:-query,value}
NAME=${NAME:-lora-lr}
PEER=$ROOT/peer-${NAME#lora-}
BT=${BT:-bin/beamtune}
[ -x "$BT" ] || make build
if [ ! -f "$ROOT/$NAME/teacher/_COMPLETE" ]; then
  $BT train --output="$ROOT/$NAME" --data="$DATA" --threads="$THREADS" --device=cpu --batch_size=32 --warmup_ratio=0.1 \
    --weight_decay=0.01 --seed=1 --max_steps="$MAX_STEPS" --eval_every="$EVAL_EVERY" --checkpoint_every=250 --log_every=100 \
    --peft=lora --lora_r=8 --lora_alpha=16 --lora_dropout=0.1 --lora_targets="$TARGETS" --sweep lr="$LRS" > "$ROOT/$NAME.log" 2>&1
fi
best_lr=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['best']['config']['lr'])" "$ROOT/$NAME/teacher-trials.json")
python3 -c "import json,sys; [print('lora lr', t['config']['lr'], 'best val_accuracy', round(t['best_metric'], 4)) for t in json.load(open(sys.argv[1]))['trials']]" "$ROOT/$NAME/teacher-trials.json"
if [ ! -f "$PEER.json" ]; then
  "$(scripts/pyenv.sh)" bench/hf_trainer.py --model="${BEAMTUNE_MODEL:-$HOME/.cache/beamtune/models/all-MiniLM-L6-v2}" \
    --train="$SHARED/sst2/train.tsv" --dev="$SHARED/sst2/dev.tsv" --format=sst2 --lr="$best_lr" --batch_size=32 \
    --max_steps="$MAX_STEPS" --eval_every="$EVAL_EVERY" --threads="$THREADS" --output="$PEER-out" \
    --lora_r=8 --lora_alpha=16 --lora_dropout=0.1 --lora_targets="$TARGETS" 2> "$PEER.log" | tail -1 > "$PEER.json.tmp"
  mv "$PEER.json.tmp" "$PEER.json"
fi
echo "peer at lr $best_lr: $(cat "$PEER.json")"
