#!/usr/bin/env bash
# Train-step throughput: beamtune (Go, gotch, libtorch 2.1.0) vs PyTorch eager
# (Python, torch 2.1.0), all-MiniLM-L6-v2 + 2-class head, batch 32, seq 128,
# same thread count, run back to back in this invocation (ROUNDS rounds,
# interleaved; both sides vary by ~10% run to run here, so the summary is the
# median of the per-round ratios and the ratio of the means).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
STEPS=${STEPS:-5}
PY=$(scripts/pyenv.sh)
MODEL=${BEAMTUNE_MODEL:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/models/all-MiniLM-L6-v2}
go test -c -o bin/model.test ./model
ROUNDS=${ROUNDS:-4}
: > /tmp/train_step_rounds.txt
for round in $(seq "$ROUNDS"); do
  go_line=$(cd model && BEAMTUNE_THREADS=$THREADS ../bin/model.test -test.run '^$' -test.bench 'TrainStepMiniLM|MatmulCeiling' -test.benchtime=${STEPS}x)
  echo "$go_line" | grep -E "^Benchmark"
  py_line=$("$PY" bench/train_step_peer.py --model "$MODEL" --threads "$THREADS" --steps "$STEPS" 2>/dev/null)
  echo "$py_line"
  go_eps=$(echo "$go_line" | awk '/TrainStepMiniLM/{for(i=1;i<=NF;i++) if($(i+1)=="examples/s") print $i}')
  py_eps=$(echo "$py_line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["examples_per_s"])')
  gflops=$(echo "$go_line" | awk '/MatmulCeiling/{for(i=1;i<=NF;i++) if($(i+1)=="GFLOP/s") print $i}')
  python3 - "$go_eps" "$py_eps" "$gflops" <<'PY'
import sys
go, py, ceil = map(float, sys.argv[1:])
# FLOPs of one step: 6 x params-in-matmuls x tokens + attention (QK^T and PV: 2 x 2 x seq^2 x hidden per layer, x3 for fwd+bwd)
tokens, hidden, layers, inter, seq = 32 * 128, 384, 6, 1536, 128
linear = layers * (4 * hidden * hidden + 2 * hidden * inter)
attn = layers * 2 * 2 * seq * seq * hidden * 32
step_flops = 3 * (2 * linear * tokens + attn)
print(f"ratio beamtune/pytorch = {go/py:.3f}   beamtune {go:.2f} ex/s = {go/32*step_flops/1e9:.1f} GFLOP/s = {go/32*step_flops/1e9/ceil:.0%} of the {ceil:.0f} GFLOP/s GEMM ceiling")
with open("/tmp/train_step_rounds.txt", "a") as f:
    f.write(f"{go} {py} {ceil} {go/32*step_flops/1e9}\n")
PY
done
python3 - <<'PY'
import statistics as st
rows = [list(map(float, l.split())) for l in open("/tmp/train_step_rounds.txt")]
go = [r[0] for r in rows]; py = [r[1] for r in rows]
print(f"summary over {len(rows)} rounds: beamtune {st.mean(go):.2f} ex/s (min {min(go):.2f}, max {max(go):.2f}), "
      f"PyTorch {st.mean(py):.2f} ex/s (min {min(py):.2f}, max {max(py):.2f}); "
      f"median ratio {st.median([r[0]/r[1] for r in rows]):.3f}, ratio of means {st.mean(go)/st.mean(py):.3f}; "
      f"beamtune at {st.mean([r[3] for r in rows]):.0f} GFLOP/s = {st.mean([r[3]/r[2] for r in rows]):.0%} of the GEMM ceiling")
PY
