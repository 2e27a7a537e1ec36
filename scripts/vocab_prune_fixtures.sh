#!/usr/bin/env bash
# vocab_prune_fixtures.sh: regenerates testdata/tokenizer/vocab_prune/ (the HF
# reference for tokenizer.PruneVocab) and checks that HF tokenizers loads the
# pruned tokenizer.json files the Go code writes and encodes with them as
# the reference does. Needs ../shared/data; pure Go, no libtorch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(scripts/pyenv.sh)
"$PY" scripts/vocab_prune_reference.py fixtures
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
BEAMTUNE_PRUNE_OUT=$OUT go test ./model/tokenizer/ -run 'TestPruneEquality' -count=1 -v | grep -E 'prune_test|^(---|ok|FAIL)'
"$PY" scripts/vocab_prune_reference.py check "$OUT"
