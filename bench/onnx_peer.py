"""ONNX Runtime as a peer: a HF classification model exported with torch.onnx
(opset 14, dynamic batch and sequence) and run on the CPU provider with a fixed
number of intra-op threads; optionally its dynamic int8 form (QInt8 weights,
per tensor). Shared by bench/int8_peers.py and bench/runinference_peers.py.
"""

import os
import tempfile

import torch


def export(model, int8=False):
    """Exports model to a temporary folder; returns {"fp32": path[, "int8": path]}."""
    tmp = tempfile.mkdtemp()
    paths = {"fp32": os.path.join(tmp, "model.onnx")}
    x = torch.ones((2, 16), dtype=torch.int64)
    torch.onnx.export(model, (x, torch.ones_like(x)), paths["fp32"], input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], opset_version=14,
                      dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}})
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        paths["int8"] = os.path.join(tmp, "model.int8.onnx")
        quantize_dynamic(paths["fp32"], paths["int8"], weight_type=QuantType.QInt8)
    return paths


def runner(path, threads):
    """A function (input_ids, attention_mask) -> logits over the ONNX model at path."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return lambda ids, mask: sess.run(None, {"input_ids": ids, "attention_mask": mask})[0]
