#!/usr/bin/env bash
# Go WordPiece encoder (model/tokenizer) against HF tokenizers on the same
# text, one thread each, same tokenizer.json, truncation 128, no padding.
#
#   bash bench/tokenizer_bench.sh            # the peer runs in scripts/pyenv.sh's environment
#
# Both run pinned to one core (taskset, when present) and one thread: Go with
# -cpu 1 (GOMAXPROCS=1, the GC included), HF with RAYON_NUM_THREADS=1 and
# TOKENIZERS_PARALLELISM=false. Each prints MB/s of input text (median of its
# runs); the last lines give Go/HF.
set -euo pipefail
cd "$(dirname "$0")/.."

export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
pin=()
if command -v taskset >/dev/null 2>&1; then
  pin=(taskset -c 0)
fi

go test -c -o /tmp/tokenizer_bench.test ./model/tokenizer/ >/dev/null
go_out=$(cd model/tokenizer && "${pin[@]}" /tmp/tokenizer_bench.test -test.run '^$' \
  -test.bench '^BenchmarkEncode(SST2|AGNews)$' -test.benchtime 5x -test.count 5 -test.cpu 1)
rm -f /tmp/tokenizer_bench.test
echo "$go_out" | grep -E '^(Benchmark|cpu:)'

PY=$(scripts/pyenv.sh)
peer_out=$("${pin[@]}" "$PY" bench/tokenizer_peer.py)
echo "$peer_out"

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
for set in sst2 ag_news; do
  case $set in sst2) bench=BenchmarkEncodeSST2 ;; ag_news) bench=BenchmarkEncodeAGNews ;; esac
  go_mbs=$(echo "$go_out" | awk -v b="$bench" '$1==b {for (i=1;i<=NF;i++) if ($(i+1)=="MB/s") print $i}' | median)
  hf_mbs=$(echo "$peer_out" | awk -v s="$set" '$1=="peer" && $2==s {print $3}')
  ratio=$(awk -v g="$go_mbs" -v h="$hf_mbs" 'BEGIN {printf "%.1f", g/h}')
  printf '%-8s go %8.2f MB/s   hf %6.2f MB/s   go/hf %sx\n' "$set" "$go_mbs" "$hf_mbs" "$ratio"
done
