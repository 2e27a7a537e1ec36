#!/usr/bin/env bash
# The word-embedding table trained row-sparse (model/rowsparse.go) against the
# dense update it replaced (BENCHMARKS.md "bf16 mixed precision", issue #21's
# lever): `beamtune train` on SST-2 built at HEAD and at BASE (the commit before
# the row-sparse table), fp32 and bf16, STEPS optimizer steps each, interleaved
# in ROUNDS rounds, no evaluation inside the timed window. Each pair's final
# model must be the same file bit for bit (the row-sparse update replays the
# dense one's arithmetic); the script says so per pair.
# Every run takes flock /tmp/beamtune-cpu.lock so no other heavy job runs beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}
DATA=${DATA:-$CACHE/bench/sst2/data} # prepared by bench/sst2_full.sh (its prepare step)
BASE=${BASE:-b1f5376}                # the dense update; built against the current patched gotch (go.work)
THREADS=${THREADS:-2}
STEPS=${STEPS:-300}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$CACHE/bench/rowsparse}
LOCK=(flock /tmp/beamtune-cpu.lock)
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'git worktree remove --force "$TMP/base" >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT

scripts/setup.sh >/dev/null
"${LOCK[@]}" go build -o "$TMP/bt-new" ./cmd/beamtune
git worktree add --detach "$TMP/base" "$BASE" >/dev/null 2>&1
cp go.work "$TMP/base/" # the same patched gotch (setup.sh writes go.work, which git ignores)
(cd "$TMP/base" && "${LOCK[@]}" go build -o "$TMP/bt-base" ./cmd/beamtune)
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) $(nproc) CPUs, $THREADS threads; HEAD $(git rev-parse --short HEAD), BASE $BASE" | tee "$OUT/e2e.txt"

for r in $(seq "$ROUNDS"); do
  for p in fp32 bf16; do
    for b in base new; do
      run="$TMP/$b-$p-$r"
      if ! "${LOCK[@]}" "$TMP/bt-$b" train --data="$DATA" --output="$run" --lr=1e-4 --batch_size=32 --warmup_ratio=0.1 \
        --weight_decay=0.01 --seed=1 --max_steps="$STEPS" --eval_every=0 --checkpoint_every=0 --log_every=50 \
        --threads="$THREADS" --device=cpu --resume=false --precision="$p" > "$run.log" 2>&1; then
        cp "$run.log" "$OUT/failed-$b-$p-$r.log"
        echo "round=$r precision=$p build=$b FAILED (log: $OUT/failed-$b-$p-$r.log):" | tee -a "$OUT/e2e.txt"
        tail -5 "$run.log" >&2
        exit 1
      fi
      eps=$(grep 'msg=train ' "$run.log" | tail -1 | sed -E 's/.*examples_per_s=([0-9.]+).*/\1/')
      echo "$(date -u +%T) round=$r precision=$p build=$b examples_per_s=$eps" | tee -a "$OUT/e2e.txt"
    done
    f=teacher-trials/default/final/model.safetensors
    if cmp -s "$TMP/base-$p-$r/$f" "$TMP/new-$p-$r/$f"; then same=yes; else same=NO; fi
    echo "round=$r precision=$p final_model_bit_identical=$same" | tee -a "$OUT/e2e.txt"
  done
done
