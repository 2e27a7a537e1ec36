#!/usr/bin/env bash
# Compression benchmarks (issue #16, BENCHMARKS.md "Compression"), on SST-2
# dev and AG News test with the teachers of bench/compress_teachers.sh:
#   pruned   the teacher with 50% of heads and 50% of FFN width (two rounds of
#            importance, then one epoch of recovery distillation from it)
#   vocab    the teacher with the vocabulary pruned to the training split
#   vocab10  the same keeping only tokens used 10 times or more (--vocab_min_count)
#   student  a 3-layer student (teacher layers 0,2,4), distilled
#   stack    the student pruned to 50% heads / 50% FFN, recovered from the
#            student, vocabulary pruned; scored in int8
#   stack2   harder: 35% of the encoder weights (--param_keep) and tokens used
#            10+ times; its own report beside the teacher
# then one evaluate per data set with every model side by side (float32 and
# int8), speed at 32 tokens. Resumable: finished stages are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/bench/compress}
THREADS=${THREADS:-2}
SETS=${SETS:-sst2 agnews}
BT=${BT:-bin/beamtune}
[ -x "$BT" ] || make build
# table prints a report as the Markdown table BENCHMARKS.md shows.
table() {
  python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
base = r["models"][0]
print(f"{r['dataset']} {r['split']} ({r['examples']} examples)")
print("| model | params | size MB | accuracy (95% CI) | kept | ex/s batch 32 | speedup | p50 ms batch 1 |")
print("|---|---|---|---|---|---|---|---|")
for m in r["models"]:
    mt, sp = m["metrics"], m["speed"]
    ci = mt.get("accuracy_ci95") or {}
    lo, hi = ci.get("low", float("nan")), ci.get("high", float("nan"))
    print(f"| {m['name']} | {m['params']/1e6:.2f} M | {m['size_bytes']/1e6:.1f} | {100*mt['accuracy']:.2f}% ({100*lo:.2f}–{100*hi:.2f}) | "
          f"{100*mt['accuracy']/base['metrics']['accuracy']:.1f}% | {sp['examples_per_s']:.1f} | "
          f"{sp['examples_per_s']/base['speed']['examples_per_s']:.2f}× | {sp['latency_p50_ms']:.2f} |")
PY
}
COMMON=(--threads="$THREADS" --device=cpu --batch_size=32 --warmup_ratio=0.1 --weight_decay=0.01 --seed=1 --checkpoint_every=250 --log_every=100)
for ds in $SETS; do
  D=$ROOT/$ds
  case $ds in
    sst2) split=validation; epochs=1; every=500 ;;
    agnews) split=test; epochs=2; every=250 ;;
  esac
  [ -f "$D/teacher/_COMPLETE" ] || { echo "compress: no teacher in $D; run bench/compress_teachers.sh" >&2; exit 1; }
  if [ ! -f "$D/pruned/compressed/_COMPLETE" ]; then
    /usr/bin/time -v $BT compress --data="$D/data" --model="$D/teacher" --output="$D/pruned" --head_keep=0.5 --ffn_keep=0.5 \
      --prune_steps=2 --importance_batches=16 --epochs=1 --lr=1e-4 --alpha=0.5 --temperature=2 --eval_every="$every" "${COMMON[@]}" >> "$D/pruned.log" 2>&1
  fi
  if [ ! -f "$D/vocab/compressed/_COMPLETE" ]; then
    $BT compress --data="$D/data" --model="$D/teacher" --output="$D/vocab" --prune_vocab "${COMMON[@]}" >> "$D/vocab.log" 2>&1
  fi
  if [ ! -f "$D/vocab10/compressed/_COMPLETE" ]; then
    $BT compress --data="$D/data" --model="$D/teacher" --output="$D/vocab10" --prune_vocab --vocab_min_count=10 "${COMMON[@]}" >> "$D/vocab10.log" 2>&1
  fi
  if [ ! -f "$D/student/_COMPLETE" ]; then
    /usr/bin/time -v $BT distill --data="$D/data" --teacher="$D/teacher" --student_layers=0,2,4 --output="$D" \
      --epochs="$epochs" --lr=1.5e-4 --alpha=0.5 --temperature=2 --eval_every="$every" "${COMMON[@]}" >> "$D/student.log" 2>&1
  fi
  if [ ! -f "$D/stack/compressed/_COMPLETE" ]; then
    /usr/bin/time -v $BT compress --data="$D/data" --model="$D/student" --output="$D/stack" --head_keep=0.5 --ffn_keep=0.5 \
      --prune_steps=2 --importance_batches=16 --prune_vocab --epochs=1 --lr=1e-4 --alpha=0.5 --temperature=2 --eval_every="$every" \
      "${COMMON[@]}" >> "$D/stack.log" 2>&1
  fi
  if [ ! -f "$D/report/report.json" ]; then
    $BT evaluate --data="$D/data" --split="$split" --speed_seq_len=32 --threads="$THREADS" --device=cpu --output="$D/report" \
      --model=teacher="$D/teacher" --model=teacher-int8="$D/teacher,quantize=int8" \
      --model=pruned="$D/pruned/compressed" --model=pruned-int8="$D/pruned/compressed,quantize=int8" \
      --model=vocab="$D/vocab/compressed" --model=vocab10="$D/vocab10/compressed" --model=student="$D/student" --model=student-int8="$D/student,quantize=int8" \
      --model=stack="$D/stack/compressed" --model=stack-int8="$D/stack/compressed,quantize=int8" \
      --model=stack-int8-channel="$D/stack/compressed,quantize=int8_per_channel" >> "$D/evaluate.log" 2>&1
  fi
  if [ ! -f "$D/stack2/compressed/_COMPLETE" ]; then
    /usr/bin/time -v $BT compress --data="$D/data" --model="$D/student" --output="$D/stack2" --param_keep=0.35 \
      --prune_steps=2 --importance_batches=16 --prune_vocab --vocab_min_count=10 --epochs=1 --lr=1e-4 --alpha=0.5 --temperature=2 \
      --eval_every="$every" "${COMMON[@]}" >> "$D/stack2.log" 2>&1
  fi
  if [ ! -f "$D/report-stack2/report.json" ]; then
    $BT evaluate --data="$D/data" --split="$split" --speed_seq_len=32 --threads="$THREADS" --device=cpu --output="$D/report-stack2" \
      --model=teacher="$D/teacher" --model=stack2="$D/stack2/compressed" --model=stack2-int8="$D/stack2/compressed,quantize=int8" \
      --model=stack2-int8-channel="$D/stack2/compressed,quantize=int8_per_channel" >> "$D/evaluate-stack2.log" 2>&1
  fi
  if [ ! -f "$D/report-channel/report.json" ]; then
    # int8 with a weight scale per output row, beside the default one scale per matrix.
    $BT evaluate --data="$D/data" --split="$split" --speed_seq_len=32 --threads="$THREADS" --device=cpu --output="$D/report-channel" \
      --model=teacher="$D/teacher" --model=teacher-int8="$D/teacher,quantize=int8" \
      --model=teacher-int8-channel="$D/teacher,quantize=int8_per_channel" >> "$D/evaluate-channel.log" 2>&1
  fi
  table "$D/report/report.json"
  if [ -f "$D/report-stack2/report.json" ]; then table "$D/report-stack2/report.json"; fi
  table "$D/report-channel/report.json"
done
