#!/usr/bin/env bash
# Parameter-efficient fine-tuning on SST-2 (issue #17): all-MiniLM-L6-v2,
# the same budget of optimizer steps (MAX_STEPS, batch 32) for every row:
# full fine-tuning, LoRA r=8 (query,value), BitFit, and full fine-tuning with
# the embeddings and the lower half of the layers frozen; then PEFT + HF
# Trainer with the same LoRA recipe. Each run's peak RSS is GNU time's
# maximum resident set size of the whole process. Dev accuracy is the best
# evaluation (every EVAL_EVERY steps), as beamtune publishes the best
# checkpoint; the peer reports the same. Resumable: a finished row is skipped.
# Output: $ROOT/<row>.log, $ROOT/<row>.time and $ROOT/peer.json.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/bench/peft}
DATA=${DATA:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/bench/compress/sst2/data}
SHARED=${SHARED:-../shared/data}
THREADS=${THREADS:-2}
MAX_STEPS=${MAX_STEPS:-1000}
EVAL_EVERY=${EVAL_EVERY:-250}
BT=${BT:-bin/beamtune}
[ -x "$BT" ] || make build
[ -f "$DATA/manifest.json" ] || $BT prepare --train="$SHARED/sst2/train.tsv" --validation="$SHARED/sst2/dev.tsv" \
  --text_field=sentence --label_field=label --max_length=128 --output="$DATA"
mkdir -p "$ROOT"
COMMON=(--data="$DATA" --threads="$THREADS" --device=cpu --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01
  --seed=1 --max_steps="$MAX_STEPS" --eval_every="$EVAL_EVERY" --checkpoint_every=250 --log_every=100)
row() { # name, flags...
  local name=$1; shift
  if [ ! -f "$ROOT/$name/teacher/_COMPLETE" ]; then
    /usr/bin/time -f "%M" -o "$ROOT/$name.time" $BT train --output="$ROOT/$name" "${COMMON[@]}" "$@" > "$ROOT/$name.log" 2>&1
  fi
  echo "$name: $(grep -o 'val_accuracy [0-9.]*' "$ROOT/$name.log" | tail -1) peak_rss_kb $(tail -1 "$ROOT/$name.time")"
}
row full --lr=1e-4
row lora --lr=5e-4 --peft=lora --lora_r=8 --lora_alpha=16 --lora_dropout=0.1 --lora_targets=query,value
row bitfit --lr=1e-3 --peft=bitfit
row frozen --lr=1e-4 --freeze_layers=embeddings,0-2
if [ ! -f "$ROOT/peer.json" ]; then
  PY=$(scripts/pyenv.sh)
  /usr/bin/time -f "%M" -o "$ROOT/peer.time" "$PY" bench/hf_trainer.py --model="${BEAMTUNE_MODEL:-$HOME/.cache/beamtune/models/all-MiniLM-L6-v2}" \
    --train="$SHARED/sst2/train.tsv" --dev="$SHARED/sst2/dev.tsv" --format=sst2 --lr=5e-4 --batch_size=32 \
    --max_steps="$MAX_STEPS" --eval_every="$EVAL_EVERY" --threads="$THREADS" --output="$ROOT/peer-out" \
    --lora_r=8 --lora_alpha=16 --lora_dropout=0.1 --lora_targets=query,value 2> "$ROOT/peer.log" | tail -1 > "$ROOT/peer.json.tmp"
  mv "$ROOT/peer.json.tmp" "$ROOT/peer.json"
fi
echo "peer: $(cat "$ROOT/peer.json") peak_rss_kb $(tail -1 "$ROOT/peer.time")"
