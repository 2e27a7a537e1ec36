#!/usr/bin/env bash
# Streamed against in-memory training input on SST-2 (issue #21): the same
# `beamtune train` recipe for STEPS optimizer steps with --train_input=memory and
# --train_input=stream, ROUNDS rounds interleaved in this one invocation; each
# figure is the examples/s of the run's last progress line (the training
# loop only). Run it on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}
DATA=${DATA:-$CACHE/bench/compress/sst2/data}   # full SST-2 train, prepared by bench/compress.sh
THREADS=${THREADS:-2}
STEPS=${STEPS:-300}
ROUNDS=${ROUNDS:-2}
BIN=${BIN:-bin/beamtune}
[ -x "$BIN" ] || make build
[ -f "$DATA/manifest.json" ] || { echo "no prepared SST-2 at $DATA" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $THREADS threads, $STEPS steps of batch 32, $ROUNDS rounds, $DATA"
printf "round\tmemory_ex_s\tstream_ex_s\tstream/memory\n"
for r in $(seq "$ROUNDS"); do
  for input in memory stream; do
    "$BIN" train --data="$DATA" --output="$TMP/$input$r" --lr=1e-4 --batch_size=32 --seed=1 --max_steps="$STEPS" \
      --eval_every=0 --eval_rows=200 --train_input=$input --checkpoint_every=0 --log_every=50 --threads="$THREADS" \
      --device=cpu --resume=false > "$TMP/$input$r.log" 2>&1
    grep 'msg=train ' "$TMP/$input$r.log" | tail -1 | sed -E 's/.*examples_per_s=([0-9.]+).*/\1/' > "$TMP/$input$r.eps"
  done
  m=$(cat "$TMP/memory$r.eps"); s=$(cat "$TMP/stream$r.eps")
  printf "%s\t%s\t%s\t%s\n" "$r" "$m" "$s" "$(python3 -c "print(round($s/$m, 3))")"
done
