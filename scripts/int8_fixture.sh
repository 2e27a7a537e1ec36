#!/usr/bin/env bash
# Regenerates testdata/int8/reference.json with the pinned PyTorch (scripts/pyenv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
"$(scripts/pyenv.sh)" scripts/int8_fixture.py testdata/int8/reference.json
