
// ---- beamtune: dynamic int8 linear (appended to libtch/torch_api.cpp by scripts/setup.sh)
//
// quantized::linear_prepack and quantized::linear_dynamic are dispatcher ops,
// not at:: functions, so gotch's generated wrappers cannot reach them. These
// two calls are what PyTorch's quantize_dynamic runs for every nn.Linear: the
// weight is packed once for fbgemm; each call quantizes its input per batch,
// multiplies in int8 and returns float32 with the bias added.
#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>

// weight: int8 [out, in], already quantized (zero point 0); scales: one per
// tensor (n_scales == 1) or one per output row. bias may be null. onednn packs
// for oneDNN's kernels instead of fbgemm's (libtorch's default engine for
// linear layers): on CPUs with VNNI or AMX they are several times faster.
// The engine is process-wide state read by prepack only (the packed object
// then runs its own kernels); the caller serialises prepacks.
ivalue bt_int8_linear_prepack(tensor weight, double *scales, int64_t n_scales, tensor bias, int onednn) {
  PROTECT(
    at::Tensor q;
    if (n_scales == 1) {
      q = at::_make_per_tensor_quantized_tensor(*weight, scales[0], 0);
    } else {
      auto s = torch::from_blob(scales, {n_scales}, torch::kDouble).clone();
      auto z = torch::zeros({n_scales}, torch::kLong);
      q = at::_make_per_channel_quantized_tensor(*weight, s, z, 0);
    }
    static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_prepack", "");
    torch::jit::Stack stack;
    stack.emplace_back(q);
    stack.emplace_back(bias == nullptr ? c10::optional<at::Tensor>() : c10::optional<at::Tensor>(*bias));
    auto &ctx = at::globalContext();
    const auto previous = ctx.qEngine();
    if (onednn) ctx.setQEngine(at::QEngine::ONEDNN);
    try {
      op.callBoxed(&stack);
    } catch (...) {
      ctx.setQEngine(previous);
      throw;
    }
    ctx.setQEngine(previous);
    return new torch::jit::IValue(stack[0]);
  )
  return nullptr;
}

// input: float32 [..., in]. reduce_range quantizes activations to 7 bits, as
// PyTorch does on fbgemm to keep int16 intermediate sums of CPUs without VNNI
// from saturating.
tensor bt_int8_linear(tensor input, ivalue packed, int reduce_range) {
  PROTECT(
    static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_dynamic", "");
    torch::jit::Stack stack;
    stack.emplace_back(*input);
    stack.emplace_back(*packed);
    stack.emplace_back(reduce_range != 0);
    op.callBoxed(&stack);
    return new torch::Tensor(stack[0].toTensor());
  )
  return nullptr;
}
