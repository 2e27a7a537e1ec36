#!/usr/bin/env bash
# Training speed and peak memory of the fine-tuning methods (issue #17), side
# by side in one run with nothing else on the machine: ROUNDS interleaved
# rounds of SPEED_STEPS optimizer steps (batch 32, SST-2, all-MiniLM-L6-v2,
# no evaluation until the end) for full fine-tuning, LoRA r=8 on
# query,value (PEFT's default) and on query,value,intermediate.dense (the
# accuracy recipe), BitFit and the frozen lower half, then PEFT + HF Trainer
# with the same two LoRA recipes. examples/s is beamtune's last train log line
# (training only) and the peer's train_examples_per_s (evaluations
# excluded); peak RSS is GNU time's maximum resident set of the process.
# Then BenchmarkInferLoRA: serving an adapter unmerged (over a shared base)
# against merged. Output: one JSON line per measurement on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/bench/peft-speed}
DATA=${DATA:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/bench/compress/sst2/data}
SHARED=${SHARED:-../shared/data}
THREADS=${THREADS:-2}
SPEED_STEPS=${SPEED_STEPS:-150}
ROUNDS=${ROUNDS:-2}
BT=${BT:-bin/beamtune}
PY=$(scripts/pyenv.sh)
[ -x "$BT" ] || make build
COMMON=(--data="$DATA" --threads="$THREADS" --device=cpu --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01
  --seed=1 --max_steps="$SPEED_STEPS" --eval_every=0 --checkpoint_every=0 --log_every=50 --resume=false)
for round in $(seq 1 "$ROUNDS"); do
  for row in "full --lr=1e-4" "lora --lr=2e-3 --peft=lora --lora_r=8 --lora_alpha=16 --lora_dropout=0.1 --lora_targets=query,value" \
             "lora-ffn --lr=2e-3 --peft=lora --lora_r=8 --lora_alpha=16 --lora_dropout=0.1 --lora_targets=query,value,intermediate.dense" \
             "bitfit --lr=1e-3 --peft=bitfit" "frozen --lr=1e-4 --freeze_layers=embeddings,0-2"; do
    set -- $row
    name=$1; shift
    out="$ROOT/$name-$round"
    rm -rf "$out"
    /usr/bin/time -f "%M" -o "$out.time" $BT train --output="$out" "${COMMON[@]}" "$@" > "$out.log" 2>&1
    eps=$(grep -o "step=$SPEED_STEPS of=[0-9]* .*examples_per_s=[0-9.]*" "$out.log" | grep -o 'examples_per_s=[0-9.]*' | cut -d= -f2)
    printf '{"engine": "beamtune", "method": "%s", "round": %d, "steps": %d, "train_examples_per_s": %s, "peak_rss_mb": %d}\n' \
      "$name" "$round" "$SPEED_STEPS" "$eps" "$(( $(tail -1 "$out.time") / 1024 ))"
  done
  for targets in query,value query,value,intermediate.dense; do
    peer=$(/usr/bin/time -f "%M" -o "$ROOT/peer-$round.time" "$PY" bench/hf_trainer.py --model="${BEAMTUNE_MODEL:-$HOME/.cache/beamtune/models/all-MiniLM-L6-v2}" \
      --train="$SHARED/sst2/train.tsv" --dev="$SHARED/sst2/dev.tsv" --format=sst2 --lr=2e-3 --batch_size=32 \
      --max_steps="$SPEED_STEPS" --eval_every=100000 --threads="$THREADS" --output="$ROOT/peer-out" \
      --lora_r=8 --lora_alpha=16 --lora_dropout=0.1 --lora_targets="$targets" 2> "$ROOT/peer-$round.log" | tail -1)
    echo "$peer" | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); print(json.dumps({'engine': 'peft+hf-trainer', 'method': sys.argv[3], 'round': int(sys.argv[1]), 'steps': d['steps'], 'train_examples_per_s': round(d['train_examples_per_s'], 1), 'peak_rss_mb': int(sys.argv[2]) // 1024}))" \
      "$round" "$(tail -1 "$ROOT/peer-$round.time")" "$([ "$targets" = query,value ] && echo lora || echo lora-ffn)"
  done
done
go test ./model/ -run '^$' -bench '^BenchmarkInferLoRA$' -benchtime=1x -count=1 2>/dev/null | grep '^BenchmarkInferLoRA/' |
  awk '{ for (i = 1; i <= NF; i++) { if ($i == "examples/s") eps = $(i-1); if ($i == "p50_ms") p50 = $(i-1) }
    split($1, a, "/"); sub(/-[0-9]+$/, "", a[2]); printf "{\"engine\": \"beamtune-serving\", \"lora\": \"%s\", \"examples_per_s\": %s, \"p50_ms_batch1\": %s}\n", a[2], eps, p50 }'
