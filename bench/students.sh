#!/usr/bin/env bash
# Distilled 3-layer students per task kind (issue #15): each student takes the
# teacher's layers 0, 2, 4 and learns from the teacher that bench/mrpc.sh,
# bench/stsb.sh and bench/goemotions.sh trained (logits and [CLS] hidden
# states), selecting by the task's metric on dev. Run those scripts first.
# Resumable: a finished student is skipped, an interrupted one continues
# from its checkpoints. Results: $CACHE/bench/<task>/student*.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}
THREADS=${THREADS:-2}
TASKS=${TASKS:-mrpc stsb goemotions}
BT=bin/beamtune
[ -x "$BT" ] || make build
for task in $TASKS; do
  case $task in
    mrpc) dir=$CACHE/bench/mrpc; teacher=$dir/teacher; metric=f1; epochs=5 ;;
    stsb) dir=$CACHE/bench/stsb; teacher=$dir/pearson/teacher; metric=pearson; epochs=5 ;;
    goemotions) dir=$CACHE/bench/goemotions; teacher=$dir/teacher; metric=macro_f1; epochs=3 ;;
    *) echo "unknown task $task" >&2; exit 2 ;;
  esac
  if [ ! -f "$teacher/_COMPLETE" ]; then
    echo "students: $task has no teacher at $teacher; run bench/$task.sh first" >&2
    continue
  fi
  if [ ! -f "$dir/student-run/student/_COMPLETE" ]; then
    /usr/bin/time -v $BT distill --data="$dir/data" --teacher="$teacher" --student_layers=0,2,4 \
      --output="$dir/student-run" --epochs="$epochs" --lr=1.5e-4 --alpha=0.5 --temperature=2 --hidden_mse=1 \
      --metric_for_best="$metric" --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01 --seed=1 \
      --eval_every=100 --log_every=50 --threads="$THREADS" --device=cpu >> "$dir/student.log" 2>&1
  fi
  echo "students: $task teacher and student (best $metric on dev):"
  grep -h '"best_metric"' "$teacher"/../teacher-trials.json "$dir"/student-run/student-trials.json 2>/dev/null | head -4 || true
done
