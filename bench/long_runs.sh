#!/usr/bin/env bash
# The long quality runs of BENCHMARKS.md, one after another (two libtorch
# processes on 2 cores slow each other 5-10x). Every stage skips what it
# already finished, so rerunning the script resumes. Log: $LOG.
set -uo pipefail
cd "$(dirname "$0")/.."
CACHE=${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}
SST=${SST:-$CACHE/bench/sst2}
SHARED=${SHARED:-../shared/data}
BT=bin/beamtune
# Sleep, not spin, when OpenMP workers wait: on 2 shared cores a spinning
# pool turns any other process (a build, a test) into a 5-10x slowdown.
# Throughput comparisons are measured separately with the machine idle.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
stage() { echo "== $(date -u +%H:%M:%S) $*"; }

stage "SST-2 evaluate: teacher vs distilled student (dev)"
[ -f "$SST/report/report.json" ] || $BT evaluate --data="$SST/data" --split=validation \
  --model=teacher="$SST/teacher" --model=student="$SST/student" --threads=2 --device=cpu \
  --output="$SST/report" >> "$SST/evaluate.log" 2>&1

stage "AG News teacher"
bench/agnews.sh

stage "SST-2 teacher, seed 2"
SEED2=$CACHE/bench/sst2-seed2
mkdir -p "$SEED2"
[ -f "$SEED2/teacher/_COMPLETE" ] || /usr/bin/time -v $BT train --data="$SST/data" --output="$SEED2" --epochs=3 --lr=1e-4 \
  --threads=2 --device=cpu --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01 --seed=2 --eval_every=500 \
  --checkpoint_every=250 --log_every=50 >> "$SEED2/teacher.log" 2>&1
stage "HF Trainer peer, SST-2, beamtune's teacher recipe"
if [ ! -s "$SST/hf_trainer.json" ]; then
  PY=$(scripts/pyenv.sh)
  /usr/bin/time -v "$PY" bench/hf_trainer.py --model="$CACHE/models/all-MiniLM-L6-v2" \
    --train="$SHARED/sst2/train.tsv" --dev="$SHARED/sst2/dev.tsv" --epochs=3 --lr=1e-4 --batch_size=32 \
    --warmup_ratio=0.1 --weight_decay=0.01 --seed=1 --threads=2 --eval_every=500 --output="$CACHE/bench/hf_out" \
    > "$SST/hf_trainer.out" 2> "$SST/hf_trainer.log" && grep '^{' "$SST/hf_trainer.out" | tail -1 > "$SST/hf_trainer.json"
fi

stage "SST-2 labels-only student, then the rest of sst2_full.sh"
bench/sst2_full.sh

stage "done"
