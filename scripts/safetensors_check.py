#!/usr/bin/env python3
"""Check that files written by beamtune's Go safetensors writer load in Python.

Go's TestGoldenFiles (model/safetensors) asserts that the Go writer produces
testdata/golden.safetensors and testdata/golden_bf16.safetensors byte for byte.
This script rebuilds the same tensors independently with numpy and checks that

  * safetensors.numpy loads golden.safetensors to exactly these values,
    dtypes, shapes and metadata;
  * safetensors.numpy.save of the same tensors produces the identical bytes
    (so the Go writer matches the reference layout, padding and escaping);
  * the bfloat16 file, which numpy cannot represent, is accepted by
    safetensors.deserialize with the expected bits, and safetensors.serialize
    reproduces it byte for byte.

Optionally, pass a path to a Go-written file to check that it loads at all.

Usage: pip install safetensors numpy
       python3 scripts/safetensors_check.py [extra.safetensors ...]
"""
import os
import sys

import numpy as np
import safetensors
from safetensors import deserialize, safe_open, serialize
from safetensors.numpy import load_file, save

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = os.path.join(ROOT, "model", "safetensors", "testdata")


def expected():
    u16 = lambda bits: np.array(bits, dtype=np.uint16).view(np.float16)
    tensors = {
        "layer.f32": np.array([[-0.5, -0.25, 0], [0.25, 0.5, 0.75]], dtype=np.float32),
        "layer.f64": np.array([1.0 / 3, -2.5, 1e300], dtype=np.float64),
        "layer.f16": u16([0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x7C00, 0xFC00, 0x8000]).reshape(2, 4),
        "mask.bool": np.array([True, False, True]),
        "q.u8": np.array([0, 1, 255], dtype=np.uint8),
        "q.i8": np.array([-128, -1, 0, 127], dtype=np.int8),
        "q.i16": np.array([-32768, 32767], dtype=np.int16),
        "q.u16": np.array([65535, 1], dtype=np.uint16),
        "q.i32": np.array([-(2**31), 7], dtype=np.int32),
        "q.u32": np.array([2**32 - 1], dtype=np.uint32),
        "q.i64": np.array([[-(2**63)], [2**63 - 1]], dtype=np.int64),
        "q.u64": np.array([2**64 - 1, 0], dtype=np.uint64),
        "scalar": np.array(42.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        'ünïcode "quoted"\t<&>': np.array([1], dtype=np.float32),
    }
    metadata = {"note": 'beamtune <&> "q"\n\x01 é'}
    return tensors, metadata


def check_golden():
    path = os.path.join(TESTDATA, "golden.safetensors")
    want, md = expected()
    got = load_file(path)
    assert sorted(got) == sorted(want), (sorted(got), sorted(want))
    for name, w in want.items():
        g = got[name]
        assert g.dtype == w.dtype, (name, g.dtype, w.dtype)
        assert g.shape == w.shape, (name, g.shape, w.shape)
        assert g.tobytes() == w.tobytes(), (name, g, w)
    with safe_open(path, framework="numpy") as f:
        assert f.metadata() == md, f.metadata()
    # The file has a single metadata key because Python's writer emits
    # metadata in Rust HashMap order, which is random per process.
    ref = save(want, metadata=md)
    raw = open(path, "rb").read()
    assert ref == raw, "Python's save() differs from the Go-written bytes"
    print(f"ok  {path}: {len(want)} tensors load exactly; save() is byte-identical")


_keep_alive = []


def raw_specs(tensors):
    """Build serialize() input from (dtype, shape, bytes): TensorSpec with a
    raw pointer on safetensors >= 0.7, plain dicts before."""
    try:
        from safetensors import TensorSpec
    except ImportError:
        return {k: {"dtype": d, "shape": s, "data": b} for k, (d, s, b) in tensors.items()}
    out = {}
    for k, (d, s, b) in tensors.items():
        buf = np.frombuffer(bytearray(b), dtype=np.uint8)
        _keep_alive.append(buf)  # serialize() reads through the raw pointer
        out[k] = TensorSpec(dtype=d, shape=list(s), data_ptr=buf.ctypes.data, data_len=len(b))
    return out


def check_bf16():
    path = os.path.join(TESTDATA, "golden_bf16.safetensors")
    raw = open(path, "rb").read()
    items = dict(deserialize(raw))
    want = {
        "bf16": ([4], [0x3F80, 0x4049, 0xFF80, 0x0001]),
        "rounded": ([2], [0x3F80, 0x3F82]),  # 1+2^-8 and 1+3*2^-8, ties to even
    }
    for name, (shape, bits) in want.items():
        it = items[name]
        assert it["dtype"] == "BF16" and list(it["shape"]) == shape, (name, it["dtype"], it["shape"])
        got = np.frombuffer(bytes(it["data"]), dtype="<u2")
        assert list(got) == bits, (name, [hex(b) for b in got])
    vals = (np.frombuffer(bytes(items["bf16"]["data"]), dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    assert vals[0] == 1 and vals[1] == 3.140625 and np.isneginf(vals[2]) and vals[3] == np.float32(2.0**-133)
    f32 = items["f32"]
    assert f32["dtype"] == "F32" and np.frombuffer(bytes(f32["data"]), "<f4")[0] == 2
    # deserialize() reports header dtypes, serialize() wants numpy-style names.
    names = {"BF16": "bfloat16", "F32": "float32"}
    again = serialize(raw_specs({k: (names[v["dtype"]], v["shape"], bytes(v["data"])) for k, v in items.items()}))
    assert again == raw, "safetensors.serialize differs from the Go-written bytes"
    print(f"ok  {path}: bfloat16 bits as expected; serialize() is byte-identical")


def check_loads(path):
    with safe_open(path, framework="numpy") as f:
        n = len(list(f.keys()))
    print(f"ok  {path}: loads with safe_open ({n} tensors)")


if __name__ == "__main__":
    print(f"safetensors {safetensors.__version__}, numpy {np.__version__}")
    check_golden()
    check_bf16()
    for p in sys.argv[1:]:
        check_loads(p)
