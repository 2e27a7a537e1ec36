"""Writes testdata/int8/reference.json: what PyTorch 2.1's dynamic quantization
makes of one random linear layer, for model/int8_test.go (issue #16).

For a seeded weight, bias and input it records the weight observers' scales and
int8 values (per tensor and per output channel, symmetric, as quantize_dynamic's
default qconfigs) and torch.ops.quantized.linear_dynamic's output with and
without reduce_range, and without it on an input of rounding ties; and the
oneDNN engine's output on a larger input. Run through scripts/int8_fixture.sh (the pinned env).
"""
import json
import sys

import torch
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

torch.manual_seed(0)
out_f, in_f = 48, 40
w = torch.randn(out_f, in_f) * 0.08
w[3, 5] = 0.9  # an outlier: per-channel scales differ from the per-tensor one
w[7] = 0.0     # an all-zero row
b = torch.randn(out_f) * 0.1
x = torch.randn(3, 5, in_f)
# An input made of rounding ties: on a grid of 1/128 from -1 to 2.984375 (both
# present), the activation scale is exactly 1/64 and the zero point 64, so
# every other value quantizes to exactly k + 0.5. Rounding half away from zero
# instead of to even would change half of them.
g = torch.arange(4 * 8 * in_f)
ties = (((g * 37) % 511 - 128).float() / 128).reshape(4, 8, in_f)

result = {"out": out_f, "in": in_f, "weight": w.flatten().tolist(), "bias": b.tolist(),
          "input_shape": list(x.shape), "input": x.flatten().tolist(),
          "float": torch.nn.functional.linear(x, w, b).flatten().tolist(),
          "ties_shape": list(ties.shape), "ties": ties.flatten().tolist()}
for name, obs in [("per_tensor", MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)),
                  ("per_channel", PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric))]:
    obs(w)
    scale, zp = obs.calculate_qparams()
    if name == "per_tensor":
        q = torch.quantize_per_tensor(w, float(scale), int(zp), torch.qint8)
    else:
        q = torch.quantize_per_channel(w, scale.double(), zp.long(), 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(q, b)
    entry = {"scales": scale.double().flatten().tolist(), "int8": q.int_repr().flatten().tolist()}
    for rr in (False, True):
        y = torch.ops.quantized.linear_dynamic(x, packed, rr)
        entry["output_reduce_range" if rr else "output"] = y.flatten().tolist()
    entry["ties_output"] = torch.ops.quantized.linear_dynamic(ties, packed, False).flatten().tolist()
    result[name] = entry
# A larger input against the oneDNN engine's linear_dynamic, for the path
# beamtune takes on CPUs with VNNI and AVX-512: 1,000 rows of 40 (more than
# two of beamtune's 16K-value chunks, so its min and max come from several
# threads), values from a formula model/int8_test.go repeats, the one
# minimum and the one maximum in the second half; the layer is the first 4
# outputs of the one above, per tensor.
big = [(((i * 7919) % 4001) - 2000) / 500.0 for i in range(1000 * in_f)]
big[30001], big[39000] = -6.5, 7.25
xb = torch.tensor(big, dtype=torch.float32).reshape(1000, in_f)
torch.backends.quantized.engine = "onednn"
obs = MinMaxObserver(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
obs(w[:4])
scale, zp = obs.calculate_qparams()
packed = torch.ops.quantized.linear_prepack(torch.quantize_per_tensor(w[:4], float(scale), int(zp), torch.qint8), b[:4])
result["onednn_large_output"] = torch.ops.quantized.linear_dynamic(xb, packed, False).flatten().tolist()
json.dump(result, open(sys.argv[1], "w"))
