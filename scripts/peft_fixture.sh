#!/usr/bin/env bash
# peft_fixture.sh: regenerate testdata/peft with PEFT (scripts/pyenv.sh) in both
# directions (issue #17): PEFT writes adapters beamtune must load, and PEFT
# loads the adapter beamtune writes (TestAdapterForPEFT) and must give the same
# logits; that adapter, PEFT's logits and the result (ROUNDTRIP.json) are kept
# for model/adapter_test.go, which needs no Python.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(scripts/pyenv.sh)
out=testdata/peft
rm -rf "$out/peft-adapter" "$out/peft-adapter-rslora" "$out/beamtune-adapter"
"$PY" scripts/peft_fixture.py --make "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
BEAMTUNE_PEFT_EXPORT_DIR=$tmp/beamtune-adapter go test ./model -run '^TestAdapterForPEFT$' -count=1 | tail -n 1
"$PY" scripts/peft_fixture.py --check "$tmp/beamtune-adapter" "$tmp/beamtune-adapter/go_logits.safetensors" "$out/ROUNDTRIP.json"
rm "$tmp/beamtune-adapter/go_logits.safetensors"
cp -r "$tmp/beamtune-adapter" "$out/beamtune-adapter"
