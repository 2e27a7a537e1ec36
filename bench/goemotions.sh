#!/usr/bin/env bash
# GoEmotions (multi-label, 28 labels, issue #15): beamtune fine-tunes
# all-MiniLM-L6-v2 on the 43,410 training comments, keeps the checkpoint with
# the best dev macro-F1 (labels at probability 0.5), tunes per-label
# thresholds on dev and scores the test split with them; HF Trainer runs the
# same recipe and the same thresholding rule on the same machine right
# after. Resumable (beamtune continues from its checkpoints). Logs: $OUT.
# Another seed: SEED=2 OUT=.../goemotions-seed2 bench/goemotions.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/bench/goemotions}
SHARED=${SHARED:-../shared/data}
THREADS=${THREADS:-2}
MODEL=${MODEL:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/models/all-MiniLM-L6-v2}
EPOCHS=${EPOCHS:-3} LR=${LR:-1e-4} EVAL_EVERY=${EVAL_EVERY:-400} MAX_LENGTH=${MAX_LENGTH:-64} SEED=${SEED:-1}
GE=$SHARED/goemotions
mkdir -p "$OUT"
BT=bin/beamtune
[ -x "$BT" ] || make build
$BT prepare --train="$GE/train.tsv" --validation="$GE/dev.tsv" --test="$GE/test.tsv" --format=tsv_quoted --header=false \
  --text_field=1 --label_field=2 --id_field=3 --task=multi_label_classification --label_names="$GE/emotions.txt" \
  --max_length="$MAX_LENGTH" --model="$MODEL" --output="$OUT/data" 2>&1 | tee -a "$OUT/prepare.log"
if [ ! -f "$OUT/teacher/_COMPLETE" ]; then
  /usr/bin/time -v $BT train --data="$OUT/data" --init="$MODEL" --output="$OUT" --epochs="$EPOCHS" --lr="$LR" \
    --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01 --seed="$SEED" --eval_every="$EVAL_EVERY" --log_every=100 \
    --metric_for_best=macro_f1 --threads="$THREADS" --device=cpu >> "$OUT/beamtune.log" 2>&1
fi
if [ ! -f "$OUT/report-teacher/report.json" ]; then
  $BT evaluate --data="$OUT/data" --split=test --model=teacher="$OUT/teacher" --output="$OUT/report-teacher" \
    --threads="$THREADS" --device=cpu >> "$OUT/evaluate.log" 2>&1
fi
if [ ! -f "$OUT/test_ids.txt" ]; then
  # The ids of the test rows beamtune kept (prepare removes duplicates), so the
  # Trainer is also scored on exactly those rows.
  "$(scripts/pyenv.sh)" -c 'import json, sys, pyarrow.parquet as pq
d = sys.argv[1]; m = json.load(open(d + "/manifest.json"))
for s in m["shards"]:
    if s["split"] == "test":
        print("\n".join(pq.read_table(d + "/" + s["path"], columns=["id"]).column("id").to_pylist()))' "$OUT/data" > "$OUT/test_ids.txt"
fi
if [ ! -f "$OUT/hf_trainer.json" ]; then
  "$(scripts/pyenv.sh)" bench/hf_trainer.py --test_ids="$OUT/test_ids.txt" --model="$MODEL" --train="$GE/train.tsv" --dev="$GE/dev.tsv" --test="$GE/test.tsv" \
    --format=goemotions --epochs="$EPOCHS" --lr="$LR" --batch_size=32 --eval_every="$EVAL_EVERY" --max_length="$MAX_LENGTH" --seed="$SEED" \
    --threads="$THREADS" --output="$OUT/hf-checkpoints" > "$OUT/hf_trainer.out" 2> "$OUT/hf_trainer.log" \
    && tail -n 1 "$OUT/hf_trainer.out" > "$OUT/hf_trainer.json" && rm -rf "$OUT/hf-checkpoints"
fi
echo "goemotions: beamtune test (per-label thresholds tuned on dev)"
grep -o '"macro_f1": [0-9.]*\|"micro_f1": [0-9.]*' "$OUT/report-teacher/report.json" | head -2
echo "goemotions: HF Trainer"; cat "$OUT/hf_trainer.json"
