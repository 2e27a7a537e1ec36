#!/usr/bin/env bash
# Teachers for bench/compress.sh (issue #16): SST-2 (full training split, one
# epoch, dev 872 rows) and AG News (the 11,997-row subset, two epochs, the
# official 7,600-row test split), all-MiniLM-L6-v2, the recipes of
# bench/sst2_full.sh and bench/agnews.sh with fewer epochs. Resumable.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/bench/compress}
SHARED=${SHARED:-../shared/data}
THREADS=${THREADS:-2}
BT=${BT:-bin/beamtune}
[ -x "$BT" ] || make build
COMMON=(--threads="$THREADS" --device=cpu --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01 --seed=1 --checkpoint_every=250 --log_every=100)
mkdir -p "$ROOT/sst2" "$ROOT/agnews"
$BT prepare --train="$SHARED/sst2/train.tsv" --validation="$SHARED/sst2/dev.tsv" \
  --text_field=sentence --label_field=label --max_length=128 --output="$ROOT/sst2/data" >> "$ROOT/sst2/prepare.log" 2>&1
$BT prepare --train="$SHARED/ag_news/train_subset_11997.csv" --test="$SHARED/ag_news/test.csv" \
  --validation_from_train=0.05 --format=csv --header=false --text_field=2,3 --label_field=1 \
  --max_length=128 --output="$ROOT/agnews/data" >> "$ROOT/agnews/prepare.log" 2>&1
if [ ! -f "$ROOT/agnews/teacher/_COMPLETE" ]; then
  $BT train --data="$ROOT/agnews/data" --output="$ROOT/agnews" --epochs=2 --lr=1e-4 --eval_every=250 "${COMMON[@]}" >> "$ROOT/agnews/teacher.log" 2>&1
fi
if [ ! -f "$ROOT/sst2/teacher/_COMPLETE" ]; then
  $BT train --data="$ROOT/sst2/data" --output="$ROOT/sst2" --epochs=1 --lr=1e-4 --eval_every=500 "${COMMON[@]}" >> "$ROOT/sst2/teacher.log" 2>&1
fi
echo "compress_teachers: done"
