#!/usr/bin/env bash
# make bench: the benchmarks whose figures BENCHMARKS.md records, each with
# its peer in the same invocation. Long quality runs (bench/sst2_full.sh,
# bench/hf_trainer.py) are separate: they take hours on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== tokenizer (beamtune vs HF tokenizers, one core)"; bench/tokenizer_bench.sh
echo "== train step (beamtune vs PyTorch eager)"; bench/train_step.sh
echo "== train step phases at SST-2 lengths (beamtune vs PyTorch eager)"; bench/train_step_phases.sh
echo "== memory (20,000 steps, 2-layer model)"; (cd model && go test -run '^$' -bench MemoryTiny -benchtime=1x -count=1 .)
echo "== prepare at scale (prism and direct)"; SIZES="${SIZES:-10 100}" bench/prepare_scale.sh
echo "== signing and verifying a model folder (beamtune vs model_signing)"; bench/signing.sh
echo "== RunInference vs HF eager and ONNX Runtime (needs the Compression section's teachers)"; ROUNDS=1 bench/runinference.sh
echo "== training memory at scale, streamed and in memory"; SIZES="${SIZES:-10 100}" bench/train_scale.sh
echo "== streamed against in-memory training input on SST-2 (needs the Compression section's prepared data)"; ROUNDS=1 bench/stream_speed.sh
echo "== bf16 against fp32, and against HF Trainer --bf16"; ROUNDS=1 SKIP=acc bench/bf16.sh
echo "== the row-sparse word-embedding table against the dense update (bit-identical models)"; ROUNDS=1 bench/rowsparse.sh
