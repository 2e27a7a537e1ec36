#!/usr/bin/env bash
# parity.sh: regenerate testdata/parity from HF transformers, then check that the
# folders beamtune exports for each task kind (single-label, multi-label,
# regression, a head- and FFN-pruned model, and the task folders of a multi-task
# bundle) load in transformers as the same task, with the same logits and
# the loss their problem_type names. The result of the round trip is written
# to testdata/parity/ROUNDTRIP.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(scripts/pyenv.sh)
MODEL=${BEAMTUNE_MODEL:-${BEAMTUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/beamtune}/models/all-MiniLM-L6-v2}
"$PY" scripts/parity.py --model "$MODEL"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Writes $out/exported (single-label) and its multi_label_classification/,
# regression/ and pruned/ folders, each with go_logits.safetensors.
BEAMTUNE_EXPORT_DIR=$out/exported go test ./model -run '^TestExportForTransformers$' -count=1 -v | tail -n 6
"$PY" scripts/parity.py --model "$MODEL" --roundtrip "$out/exported" | tee testdata/parity/ROUNDTRIP.json
