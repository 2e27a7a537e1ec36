#!/usr/bin/env bash
# Full SST-2 quality run (BENCHMARKS.md): prepare train+dev, fine-tune
# all-MiniLM-L6-v2 (teacher), distil a 3-layer student (layers 0,2,4), and
# train the same student on labels alone for contrast. Resumable: rerun the
# script and every stage continues from its outputs and checkpoints.
# Logs: $OUT/*.log. Takes hours on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
# Outside the work tree, so a later session (fresh checkout, same machine) resumes it.
OUT=${OUT:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/bench/sst2}
SHARED=${SHARED:-../shared/data}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
BT=bin/beamtune
[ -x "$BT" ] || make build
COMMON=(--threads="$THREADS" --device=cpu --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01 --seed=1 --eval_every=500 --checkpoint_every=250 --log_every=50)
$BT prepare --train="$SHARED/sst2/train.tsv" --validation="$SHARED/sst2/dev.tsv" \
  --text_field=sentence --label_field=label --max_length=128 --output="$OUT/data" 2>&1 | tee -a "$OUT/prepare.log"
if [ ! -f "$OUT/teacher/_COMPLETE" ]; then
  /usr/bin/time -v $BT train --data="$OUT/data" --output="$OUT" --epochs=3 --lr=1e-4 "${COMMON[@]}" >> "$OUT/teacher.log" 2>&1
fi
if [ ! -f "$OUT/student/_COMPLETE" ]; then
  /usr/bin/time -v $BT distill --data="$OUT/data" --teacher="$OUT/teacher" --student_layers=0,2,4 --output="$OUT" \
    --epochs=3 --lr=1.5e-4 --alpha=0.5 --temperature=2 "${COMMON[@]}" >> "$OUT/student.log" 2>&1
fi
if [ ! -f "$OUT/labels-only/student/_COMPLETE" ]; then
  # The same 3-layer student trained on labels alone (alpha 0: cross-entropy only).
  /usr/bin/time -v $BT distill --data="$OUT/data" --teacher="$OUT/teacher" --student_layers=0,2,4 --output="$OUT/labels-only" \
    --epochs=3 --lr=1.5e-4 --alpha=0 "${COMMON[@]}" >> "$OUT/labels-only.log" 2>&1
fi
if [ "${HIDDEN:-0}" = 1 ] && [ ! -f "$OUT/hidden/student/_COMPLETE" ]; then
  # HIDDEN=1: the distilled student plus the hidden-state loss: MSE between the student's [CLS]
  # vector after each layer and the teacher's after the layer it was copied from
  # (default map 1:1,2:3,3:5; same widths, so no projection).
  /usr/bin/time -v $BT distill --data="$OUT/data" --teacher="$OUT/teacher" --student_layers=0,2,4 --output="$OUT/hidden" \
    --epochs=3 --lr=1.5e-4 --alpha=0.5 --temperature=2 --hidden_mse=1 "${COMMON[@]}" >> "$OUT/hidden.log" 2>&1
fi
echo "sst2_full: done; see $OUT/*-trials.json"
