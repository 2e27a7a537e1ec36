#!/usr/bin/env bash
# bf16 against fp32 on this CPU (issue #21, BENCHMARKS.md "bf16 mixed precision").
#  1. Go benchmarks, same fine-tuned MiniLM-L6 (the SST-2 teacher bench/compress.sh
#     leaves, else BEAMTUNE_BENCH_MODEL), 2 threads, fp32 and bf16 alternating
#     in ROUNDS rounds: eval-mode examples/s at batch 32 for 32 and 128 tokens
#     (BenchmarkPrecisionInfer) and a full training step (BenchmarkPrecisionTrainStep).
#  2. PyTorch 2.1 peer of the step with CPU autocast (bench/train_step_peer.py --bf16 is
#     not a flag of that script: the step figures of the issue are quoted instead).
#  3. End to end on SST-2: `beamtune train` fp32 and bf16 against HF Trainer --bf16
#     (bench/hf_trainer_bf16.py), STEPS optimizer steps each, no evaluation inside
#     the timed window, interleaved (as bench/train_throughput.sh).
#  4. SST-2 dev accuracy, fp32 and bf16, same recipe and seed: MAX_STEPS optimizer
#     steps of batch 32 (default 400, about 19% of an epoch: the short recipe;
#     MAX_STEPS=0 EPOCHS=3 is bench/sst2_full.sh's teacher recipe), lr 1e-4, dev
#     evaluation every 200 steps.
# Every step takes flock /tmp/beamtune-cpu.lock so no other heavy job runs beside it.
# SKIP="go e2e acc" skips parts.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}
DATA=${DATA:-$CACHE/bench/sst2/data}    # prepared by bench/sst2_full.sh (its prepare step)
SHARED=${SHARED:-../shared/data}
MODEL=${BEAMTUNE_MODEL:-$CACHE/models/all-MiniLM-L6-v2}
THREADS=${THREADS:-2}
STEPS=${STEPS:-300}
ROUNDS=${ROUNDS:-2}
EPOCHS=${EPOCHS:-1}
MAX_STEPS=${MAX_STEPS:-400}
OUT=${OUT:-$CACHE/bench/bf16}
SKIP=${SKIP:-}
LOCK=(flock /tmp/beamtune-cpu.lock)
mkdir -p "$OUT" bin
"${LOCK[@]}" go build -o bin/beamtune ./cmd/beamtune
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) $(nproc) CPUs, $THREADS threads; bf16 flags: $(grep -o -w -E 'avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"

if [[ $SKIP != *go* ]]; then
  "${LOCK[@]}" go test -c -o bin/model.test ./model
  (cd model && BEAMTUNE_THREADS=$THREADS BEAMTUNE_BENCH_ROUNDS=${GO_ROUNDS:-5} "${LOCK[@]}" ../bin/model.test -test.run '^$' \
    -test.bench 'PrecisionInfer|PrecisionTrainStep' -test.benchtime=1x) | grep -E '^Benchmark' | tee "$OUT/go_bench.txt"
fi

if [[ $SKIP != *e2e* ]]; then
  PY=$(scripts/pyenv.sh)
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  RECIPE=(--lr=1e-4 --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01 --seed=1)
  printf "round\tbeamtune_fp32\tbeamtune_bf16\thf_trainer_bf16\tbf16/fp32\tbf16/hf_bf16\n" | tee "$OUT/e2e.tsv"
  for r in $(seq "$ROUNDS"); do
    eps=()
    for p in fp32 bf16; do
      "${LOCK[@]}" bin/beamtune train --data="$DATA" --output="$TMP/bt-$p-$r" "${RECIPE[@]}" --max_steps="$STEPS" --eval_every=0 \
        --checkpoint_every=0 --log_every=50 --threads="$THREADS" --device=cpu --resume=false --precision=$p > "$TMP/bt-$p-$r.log" 2>&1
      eps+=("$(grep 'msg=train ' "$TMP/bt-$p-$r.log" | tail -1 | sed -E 's/.*examples_per_s=([0-9.]+).*/\1/')")
    done
    "${LOCK[@]}" "$PY" bench/hf_trainer_bf16.py --model="$MODEL" --train="$SHARED/sst2/train.tsv" --dev="$SHARED/sst2/dev.tsv" \
      --epochs=3 --max_steps="$STEPS" --lr=1e-4 --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01 --seed=1 \
      --threads="$THREADS" --eval_every=1000000 --output="$TMP/hf$r" > "$TMP/hf$r.out" 2> "$TMP/hf$r.log"
    hf=$(grep '^{' "$TMP/hf$r.out" | tail -1 | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["train_examples_per_s"], 2))')
    printf "%s\t%s\t%s\t%s\t%s\t%s\n" "$r" "${eps[0]}" "${eps[1]}" "$hf" "$(python3 -c "print(round(${eps[1]}/${eps[0]}, 3))")" \
      "$(python3 -c "print(round(${eps[1]}/$hf, 3))")" | tee -a "$OUT/e2e.tsv"
  done
fi

if [[ $SKIP != *acc* ]]; then
  for p in fp32 bf16; do
    run="$OUT/acc-$p-e$EPOCHS-s$MAX_STEPS"
    if [ ! -f "$run/teacher/_COMPLETE" ]; then
      "${LOCK[@]}" /usr/bin/time -v bin/beamtune train --data="$DATA" --output="$run" --epochs="$EPOCHS" --max_steps="$MAX_STEPS" --lr=1e-4 \
        --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01 --seed=1 --eval_every=200 --checkpoint_every=0 --log_every=100 \
        --threads="$THREADS" --device=cpu --precision=$p > "$run.log" 2>&1
    fi
    python3 - "$run" "$p" <<'PY'
import json, sys, glob
run, p = sys.argv[1:]
rows = [json.loads(l) for l in open(glob.glob(run + "/teacher/training_log.jsonl")[0])]
evals = [(r["step"], round(100 * r["accuracy"], 2)) for r in rows if r.get("kind") == "eval"]
trains = [r["examples_per_s"] for r in rows if r.get("kind") == "train"]
print(f"{p}: dev accuracy by step {evals}; best {max(a for _, a in evals)}, final {evals[-1][1]}; last train examples/s {trains[-1]:.1f}")
PY
  done
fi
