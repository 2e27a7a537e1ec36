#!/usr/bin/env bash
# Regenerates testdata/metrics/reference.json (scikit-learn and SciPy values for
# the metric tests); installs both into the reference environment first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(scripts/pyenv.sh)
"$PY" -m pip install --quiet "scikit-learn==1.5.2" "scipy==1.13.1" >&2
"$PY" scripts/metric_fixtures.py > testdata/metrics/reference.json.tmp
mv testdata/metrics/reference.json.tmp testdata/metrics/reference.json
echo "wrote testdata/metrics/reference.json"
