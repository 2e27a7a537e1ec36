#!/usr/bin/env bash
# RunInference against the Python peers (issue #20): for SST-2 dev (872 sentences)
# and AG News test (7,600 title + description texts), ROUNDS interleaved rounds of
# beamtune's RunInference on prism (BenchmarkRunInference: a whole pipeline, texts
# in, results counted; the model loaded once before timing; and on the direct
# runner; and BenchmarkScoreTexts, the same work without Beam) and of HF transformers
# eager (torch.inference_mode) and ONNX Runtime fp32 (bench/runinference_peers.py),
# all texts in, labels out, batch 32, THREADS threads, the same fine-tuned model.
# QUANTIZE=int8 (or int8_per_channel) scores beamtune's side in int8; add ort_int8
# to ENGINES for ONNX Runtime's dynamic int8 on the same model.
# Usage: bench/runinference.sh [SST2_MODEL AGNEWS_MODEL]   Output: one JSON line per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-3}
ENGINES=${ENGINES:-torch,ort_fp32}
QUANTIZE=${QUANTIZE:-}
BENCH=${BEAMTUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/beamtune}/bench
SST2_MODEL=${1:-$BENCH/compress/sst2/teacher}
AG_MODEL=${2:-$BENCH/compress/agnews/teacher}
DATA=${BEAMTUNE_DATA:-../shared/data}
PY=$(scripts/pyenv.sh)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" - "$DATA" "$work" <<'PY'
import csv, sys
data, out = sys.argv[1], sys.argv[2]
with open(f"{data}/sst2/dev.tsv", encoding="utf-8") as f, open(f"{out}/sst2.txt", "w", encoding="utf-8") as o:
    next(f)
    for line in f:
        o.write(line.rstrip("\n").split("\t")[0].strip() + "\n")
with open(f"{data}/ag_news/test.csv", encoding="utf-8", newline="") as f, open(f"{out}/agnews.txt", "w", encoding="utf-8") as o:
    for row in csv.reader(f):
        o.write((row[1] + " " + row[2]).replace("\n", " ").strip() + "\n")
PY
go test -c -o "$work/inference.test" ./inference
cd inference   # the test binary's working directory, as go test runs it
for round in $(seq 1 "$ROUNDS"); do
  for set in sst2 agnews; do
    model=$SST2_MODEL; [ $set = agnews ] && model=$AG_MODEL
    for what in runinference:prism runinference:direct score_texts:none; do
      bench=${what%%:*} runner=${what##*:}
      name=BenchmarkRunInference; [ $bench = score_texts ] && name=BenchmarkScoreTexts
      BEAMTUNE_BENCH_MODEL=$model BEAMTUNE_BENCH_TEXTS=$work/$set.txt BEAMTUNE_THREADS=$THREADS BEAMTUNE_BENCH_QUANTIZE=$QUANTIZE \
        "$work/inference.test" -test.run '^$' -test.bench "^$name\$" -test.benchtime=1x --runner="${runner/none/prism}" 2>/dev/null |
        awk -v r="$round" -v s="$set" -v t="$THREADS" -v e="beamtune_${bench}_${runner}${QUANTIZE:+_$QUANTIZE}" '/^Benchmark/{
          for (i = 1; i <= NF; i++) if ($i == "examples/s") eps = $(i-1)
          printf "{\"round\": %d, \"set\": \"%s\", \"engine\": \"%s\", \"threads\": %d, \"batch\": 32, \"examples_per_sec\": %s}\n", r, s, e, t, eps }'
    done
    "$PY" ../bench/runinference_peers.py "$model" "$work/$set.txt" --threads "$THREADS" --engines "$ENGINES" 2>/dev/null |
      python3 -c "import json,sys; [print(json.dumps(dict(round=int(sys.argv[1]), set=sys.argv[2], **json.loads(l)))) for l in sys.stdin]" "$round" "$set"
  done
done
