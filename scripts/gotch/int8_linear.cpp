
// ---- beamtune: dynamic int8 linear (appended to libtch/torch_api.cpp by scripts/setup.sh)
//
// The int8 linear ops are dispatcher ops, not at:: functions, so gotch's
// generated wrappers cannot reach them. Without VNNI, and with VNNI but
// without AVX-512, these are the calls PyTorch's quantize_dynamic makes for
// every nn.Linear: the weight packed once (quantized::linear_prepack, for
// fbgemm or oneDNN), then quantized::linear_dynamic, which quantizes its
// input per batch, multiplies in int8 and returns float32 with the bias
// added. With VNNI and AVX-512 the activations are quantized by beamtune's
// kernel instead, as follows.
#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>

// On the oneDNN path the activations are quantized by beamtune's kernel
// (bt_kernels::quantize_u8, kernels.cpp), not inside
// quantized::linear_dynamic: that op finds the input's min and max with
// fbgemm::FindMinMax, one thread for the whole tensor (4.9% of a process
// scoring AG News in int8 on 2 cores, the other core spinning meanwhile),
// then has oneDNN reorder it to u8. The kernel does both passes on the
// thread team, and the u8 input goes to onednn::qlinear_pointwise (libtorch
// 2.1's int8 linear for already-quantized activations, float32 out). The
// parameters and the rounding are linear_dynamic's, so the outputs match
// its oneDNN path up to float summation order (model/int8_test.go compares
// them with torch's, testdata/int8/reference.json).
namespace bt_kernels {
at::Tensor quantize_u8(const at::Tensor &x, double *scale, int64_t *zero_point);
}

namespace bt_int8 {

// The oneDNN form of a packed layer: onednn::qlinear_prepack's weight, the
// weight's scales (one, or one per output row) and zero points, the bias
// (or none) and the number of outputs.
static at::Tensor pointwise(const at::Tensor &input, const c10::ivalue::Tuple &layer) {
  const auto &e = layer.elements();
  auto x = input.contiguous();
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) > 0, "bt_int8_linear: the input needs a last dimension");
  const int64_t in = x.size(-1);
  auto x2 = x.reshape({-1, in});
  auto out_sizes = x.sizes().vec();
  if (x2.numel() == 0) {
    out_sizes.back() = e[4].toInt();
    return at::empty(out_sizes, x.options());
  }
  double scale;
  int64_t zero_point;
  auto q = bt_kernels::quantize_u8(x2, &scale, &zero_point);
  static auto op = c10::Dispatcher::singleton().findSchemaOrThrow("onednn::qlinear_pointwise", "");
  torch::jit::Stack stack;
  stack.emplace_back(q);
  stack.emplace_back(scale);
  stack.emplace_back(zero_point);
  stack.emplace_back(e[0]);
  stack.emplace_back(e[1]);
  stack.emplace_back(e[2]);
  stack.emplace_back(e[3]);
  stack.emplace_back(1.0);                // output scale: float32 out, unused
  stack.emplace_back(static_cast<int64_t>(0));
  stack.emplace_back(true);               // float32 output
  stack.emplace_back(std::string("none"));
  stack.emplace_back(c10::List<double>());
  stack.emplace_back(std::string(""));
  op.callBoxed(&stack);
  auto y = stack[0].toTensor();
  out_sizes.back() = y.size(-1);
  return y.reshape(out_sizes);
}

}  // namespace bt_int8

// weight: int8 [out, in], already quantized (zero point 0); scales: one per
// tensor (n_scales == 1) or one per output row. bias may be null. onednn packs
// for oneDNN's kernels instead of fbgemm's: on CPUs with VNNI or AMX they are
// several times faster. With AVX-512 the result is the tuple pointwise
// above takes; without it, linear_dynamic's packed object, packed under
// the oneDNN engine: the engine is process-wide state read by prepack only
// (the packed object then runs its own kernels), so the caller serialises
// prepacks.
ivalue bt_int8_linear_prepack(tensor weight, double *scales, int64_t n_scales, tensor bias, int onednn) {
  PROTECT(
    if (onednn && __builtin_cpu_supports("avx512f")) {
      static auto pack = c10::Dispatcher::singleton().findSchemaOrThrow("onednn::qlinear_prepack", "");
      torch::jit::Stack stack;
      stack.emplace_back(*weight);
      stack.emplace_back(c10::IValue());  // x_shape: unknown, batches vary
      pack.callBoxed(&stack);
      auto w_scales = torch::from_blob(scales, {n_scales}, torch::kDouble).to(torch::kFloat);
      auto w_zero_points = torch::zeros({n_scales}, torch::kInt);
      auto b = bias == nullptr ? c10::IValue() : c10::IValue(bias->contiguous());
      return new torch::jit::IValue(c10::ivalue::Tuple::create({stack[0], w_scales, w_zero_points, b, weight->size(0)}));
    }
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
    if (packed->isTuple()) {
      TORCH_CHECK(!reduce_range, "bt_int8_linear: 7-bit activations are fbgemm's, not oneDNN's");
      return new torch::Tensor(bt_int8::pointwise(*input, *packed->toTuple()));
    }
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
