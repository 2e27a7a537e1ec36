#!/usr/bin/env bash
# pyenv.sh: the Python environment for reference scripts and peer benchmarks
# (HF transformers, tokenizers, PyTorch eager, ONNX Runtime, PEFT, model-signing). beamtune itself never runs Python.
# Prints the interpreter path. Idempotent.
#
# torch is pinned to 2.1.0, the libtorch beamtune links, so peer benchmarks
# compare the same kernels.
set -euo pipefail
CACHE=${BEAMTUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/beamtune}
VENV=$CACHE/pyenv
REQS=("torch==2.1.0" "numpy<2" "transformers==4.44.2" "tokenizers==0.19.1" "safetensors==0.4.5" "pyarrow==17.0.0" "duckdb==1.1.3" "pandas==2.2.3" "accelerate==0.34.2" "datasets==2.21.0" "onnx==1.16.2" "onnxruntime==1.19.2" "peft==0.12.0" "model-signing==1.1.1" "pyopenssl==26.4.0")
STAMP="$VENV/.reqs-$(printf '%s ' "${REQS[@]}" | sha256sum | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
  echo "pyenv: installing ${REQS[*]} into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --find-links "$CACHE/downloads" "${REQS[@]}" >&2
  touch "$STAMP"
fi
echo "$VENV/bin/python"
