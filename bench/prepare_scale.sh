#!/usr/bin/env bash
# Prepare at scale: synthetic corpora of 10 MB, 100 MB and 1 GB (bench/gen_corpus.py,
# cached under the beamtune cache), prepared on prism and on the direct runner.
# Prints one row per (size, runner): wall seconds, input MB/s, CPU seconds (user + system:
# on a shared machine wall time includes waiting for the CPU, CPU time does not) and
# peak RSS (GNU time).
#   SIZES="10 100 1000" RUNNERS="prism direct" bench/prepare_scale.sh
# BIN=path/to/beamtune compares another build (e.g. one kept from before a change).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}
DATA=$CACHE/bench/corpora
OUT=${OUT:-$CACHE/bench/prepare-scale}
SIZES=${SIZES:-10 100 1000}
RUNNERS=${RUNNERS:-prism direct}
mkdir -p "$DATA" "$OUT"
BIN=${BIN:-bin/beamtune}
[ -x "$BIN" ] || make build
echo "| size MB | runner | wall s | MB/s | CPU s | peak RSS MB | rows kept | rejected |"
echo "|---|---|---|---|---|---|---|---|"
for mb in $SIZES; do
  in=$DATA/synthetic-${mb}MB.tsv
  [ -f "$in" ] || python3 bench/gen_corpus.py $((mb * 1000000)) "$in" >&2
  bytes=$(stat -c %s "$in")
  for runner in $RUNNERS; do
    out=$OUT/${mb}MB-$runner
    rm -rf "$out"
    log=$OUT/${mb}MB-$runner.log
    /usr/bin/time -v "$BIN" prepare --runner="$runner" --input="$in" --text_field=sentence --label_field=label \
      --max_length=64 --output="$out" > "$log" 2>&1 || { echo "| $mb | $runner | failed: see $log |"; continue; }
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/{print $2}' "$log" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
    cpu=$(awk -F': ' '/User time|System time/{s+=$2} END{print s}' "$log")
    rss=$(awk -F': ' '/Maximum resident set size/{print $2/1024}' "$log")
    kept=$(python3 -c "import json,sys; m=json.load(open('$out/manifest.json')); print(sum(s['rows'] for s in m['splits'].values()), m['rejected']['total'])")
    printf '| %s | %s | %.1f | %.2f | %.1f | %.0f | %s | %s |\n' "$mb" "$runner" "$wall" "$(echo "$bytes / 1000000 / $wall" | bc -l)" "$cpu" "$rss" ${kept}
  done
done
