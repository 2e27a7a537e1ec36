#!/usr/bin/env bash
# Training memory as the corpus grows (issue #21): synthetic corpora of
# 10 MB, 100 MB and 1 GB (bench/gen_corpus.py, as bench/prepare_scale.sh),
# prepared once on prism, then `beamtune train` for STEPS optimizer steps on
# each, streaming (--train_input=stream) and with every row in memory
# (--train_input=memory), and the same on a distillation copy of each dataset
# whose rows carry cached teacher logits (bench/fake_teacher: seeded noise of
# a teacher's shape; scoring 4.5 M rows with a real teacher would take
# hours). One row per (size, job, input): peak RSS (GNU time), wall seconds,
# training examples/s.
#   SIZES="10 100 1000" INPUTS="stream memory" bench/train_scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}
CORPORA=$CACHE/bench/corpora
OUT=${OUT:-$CACHE/bench/train-scale}
SIZES=${SIZES:-10 100 1000}
INPUTS=${INPUTS:-stream memory}
STEPS=${STEPS:-100}
THREADS=${THREADS:-2}
BIN=${BIN:-bin/beamtune}
mkdir -p "$CORPORA" "$OUT"
[ -x "$BIN" ] || make build
go build -o "$OUT/fake_teacher" ./bench/fake_teacher
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $THREADS threads, $STEPS steps of batch 32, --eval_rows=2000"
echo "| corpus | job | input | train rows | peak RSS MB | wall s | examples/s |"
echo "|---|---|---|---|---|---|---|"
for mb in $SIZES; do
  in=$CORPORA/synthetic-${mb}MB.tsv
  [ -f "$in" ] || python3 bench/gen_corpus.py $((mb * 1000000)) "$in" >&2
  data=$OUT/${mb}MB/data
  if [ ! -f "$data/manifest.json" ]; then
    "$BIN" prepare --runner=prism --input="$in" --text_field=sentence --label_field=label \
      --max_length=64 --output="$data" > "$OUT/${mb}MB-prepare.log" 2>&1
  fi
  ddata=$OUT/${mb}MB/distill-data
  [ -f "$ddata/manifest.json" ] || "$OUT/fake_teacher" "$data" "$ddata"
  rows=$(python3 -c "import json; print(json.load(open('$data/manifest.json'))['splits']['train']['rows'])")
  for job in train distill; do
    d=$data; [ $job = distill ] && d=$ddata
    for input in $INPUTS; do
      run=$OUT/${mb}MB-$job-$input
      rm -rf "$run"
      log=$run.log
      /usr/bin/time -v "$BIN" train --data="$d" --output="$run" --max_steps="$STEPS" --eval_rows=2000 \
        --train_input="$input" --checkpoint_every=0 --log_every=50 --threads="$THREADS" --device=cpu --resume=false > "$log" 2>&1 \
        || { echo "| $mb MB | $job | $input | $rows | failed: see $log |"; continue; }
      wall=$(awk -F': ' '/Elapsed \(wall clock\)/{print $2}' "$log" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
      rss=$(awk -F': ' '/Maximum resident set size/{print $2/1024}' "$log")
      eps=$(grep 'msg=train ' "$log" | tail -1 | sed -E 's/.*examples_per_s=([0-9.]+).*/\1/')
      printf '| %s MB | %s | %s | %s | %.0f | %.1f | %s |\n' "$mb" "$job" "$input" "$rows" "$rss" "$wall" "$eps"
    done
  done
done
