"""Independent safetensors reader/writer (json + struct + numpy only) used by the C++ tests.

Usage: safetensors_check.py OURS.safetensors THEIRS.safetensors
Reads OURS (written by cts) and checks its content, then writes THEIRS for cts to read.
"""
import json
import struct
import sys

import numpy as np

DTYPES = {"F32": np.float32, "U16": np.uint16, "U8": np.uint8, "I32": np.int32, "I64": np.int64}


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=DTYPES[info["dtype"]]).reshape(info["shape"])
    return out, header.get("__metadata__", {})


def write(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, (dtype, arr) in tensors.items():
        b = np.ascontiguousarray(arr, dtype=DTYPES[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    tensors, meta = read(sys.argv[1])
    expected = np.arange(12, dtype=np.float32).reshape(3, 4) / np.float32(7.0)
    assert np.allclose(tensors["x"], expected, atol=1e-7), tensors["x"]
    assert tensors["p"].tolist() == [1, 2, 65000], tensors["p"]
    assert meta == {"who": "cts"}, meta
    write(sys.argv[2], {"y": ("F32", np.arange(6).reshape(2, 3) * 0.5), "z": ("U16", np.array([3, 65535]))}, {"who": "python"})
    print("safetensors cross-check ok")


if __name__ == "__main__":
    main()
