#!/usr/bin/env bash
# Where a train step's time goes, beamtune against PyTorch eager (torch 2.1.0,
# the libtorch beamtune links): all-MiniLM-L6-v2 + 2-class head, batch 32,
# SEQ tokens (default 16, about SST-2's mean training row, where per-step
# costs weigh most), forward / backward / clipping / AdamW / clearing
# gradients in ms, ROUNDS interleaved rounds of STEPS steps. Run it idle.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
STEPS=${STEPS:-20}
SEQ=${SEQ:-16}
ROUNDS=${ROUNDS:-3}
PY=$(scripts/pyenv.sh)
MODEL=${BEAMTUNE_MODEL:-${BEAMTUNE_CACHE:-$HOME/.cache/beamtune}/models/all-MiniLM-L6-v2}
go test -c -o bin/model.test ./model
echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) CPUs, $THREADS threads, batch 32 x $SEQ tokens, $STEPS steps per round"
printf "round\tside\tforward_ms\tbackward_ms\tclip_ms\tadamw_ms\tzero_grad_ms\texamples_per_s\n"
for r in $(seq "$ROUNDS"); do
  (cd model && BEAMTUNE_THREADS=$THREADS BEAMTUNE_BENCH_SEQ=$SEQ ../bin/model.test -test.run '^$' \
    -test.bench 'TrainStepPhases' -test.benchtime="${STEPS}x") | awk -v r="$r" '/^BenchmarkTrainStepPhases/{
      for (i = 1; i <= NF; i++) v[$(i+1)] = $i
      printf "%s\tbeamtune\t%s\t%s\t%s\t%s\t%s\t%s\n", r, v["forward_ms"], v["backward_ms"], v["clip_ms"], v["adamw_ms"], v["zero_grad_ms"], v["examples/s"]}'
  "$PY" bench/train_step_peer.py --model "$MODEL" --threads "$THREADS" --steps "$STEPS" --seq "$SEQ" --phases 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("\t".join(["'"$r"'", "pytorch"] + [str(round(d[k], 2)) for k in ("forward_ms","backward_ms","clip_ms","adamw_ms","zero_grad_ms","examples_per_s")]))'
done
