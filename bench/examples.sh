#!/usr/bin/env bash
# The example reports under docs/examples/ for the task kinds of issue #15:
# each benchmark's teacher and its distilled 3-layer student, the student
# gated against the teacher as champion on the task's metric. Needs the
# models of bench/mrpc.sh, bench/stsb.sh, bench/goemotions.sh and
# bench/students.sh; a task whose models are missing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}
THREADS=${THREADS:-2}
TASKS=${TASKS:-mrpc stsb goemotions}
BT=bin/beamtune
[ -x "$BT" ] || make build
for task in $TASKS; do
  dir=$CACHE/bench/$task; teacher=$dir/teacher; split=validation; metric=
  case $task in
    mrpc) metric=f1 ;;                        # GLUE's MRPC metric
    stsb) teacher=$dir/pearson/teacher ;;
    goemotions) split=test ;;                 # thresholds were tuned on validation
  esac
  student=$dir/student-run/student
  if [ ! -f "$teacher/_COMPLETE" ] || [ ! -f "$student/_COMPLETE" ]; then
    echo "examples: $task: no teacher or student yet; skipped" >&2
    continue
  fi
  rm -rf "docs/examples/$task"
  $BT evaluate --data="$dir/data" --split="$split" --model=teacher="$teacher" --model=student="$student" \
    --champion="$teacher" --challenger=student ${metric:+--gate_metric=$metric} \
    --output="docs/examples/$task" --threads="$THREADS" --device=cpu
done
