#!/usr/bin/env bash
# AG News quality run (BENCHMARKS.md): fine-tune all-MiniLM-L6-v2 on the
# 11,997-row training subset (5% of it held out by hash for checkpoint
# selection) and score the official 7,600-row test split, which training
# never sees. Resumable like bench/sst2_full.sh. Logs: $OUT/*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/bench/agnews}
SHARED=${SHARED:-../shared/data}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
BT=bin/beamtune
[ -x "$BT" ] || make build
$BT prepare --train="$SHARED/ag_news/train_subset_11997.csv" --test="$SHARED/ag_news/test.csv" \
  --validation_from_train=0.05 --format=csv --header=false --text_field=2,3 --label_field=1 \
  --max_length=128 --output="$OUT/data" 2>&1 | tee -a "$OUT/prepare.log"
if [ ! -f "$OUT/teacher/_COMPLETE" ]; then
  /usr/bin/time -v $BT train --data="$OUT/data" --output="$OUT" --epochs=3 --lr=1e-4 --threads="$THREADS" --device=cpu \
    --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01 --seed=1 --eval_every=250 --checkpoint_every=250 --log_every=50 \
    >> "$OUT/teacher.log" 2>&1
fi
if [ ! -f "$OUT/report/report.json" ]; then
  $BT evaluate --data="$OUT/data" --split=test --model=teacher="$OUT/teacher" --threads="$THREADS" --device=cpu \
    --output="$OUT/report" >> "$OUT/evaluate.log" 2>&1
fi
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); [print(m['name'], 'test accuracy', m['metrics']['accuracy']) for m in r['models']]" "$OUT/report/report.json" || true
