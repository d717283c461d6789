#!/usr/bin/env python3
"""Writes the small foreign-format fixtures in this folder, with the standard library
only (no torch): files laid out byte for byte as PyTorch writes them.

  legacy.pt   torch.save(obj, f, _use_new_zipfile_serialization=False), the format of
              PyTorch < 1.6: pickles in a row, then each storage's element count and
              little-endian bytes. obj = {"epoch": 7, "model": OrderedDict of a
              float32 weight, a float64 bias, a transposed view of a shared int64
              storage}, "best": nan}.

Run from anywhere: python3 testdata/foreign/make_fixtures.py
"""

import collections
import io
import math
import os
import pickle
import struct
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))

# Stand-ins for the torch globals the pickles name; pickle looks them up by module
# and name, so they live in fake modules under torch's names.
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")
sys.modules["torch"] = torch
sys.modules["torch._utils"] = torch_utils


def _rebuild_tensor_v2(*args):
    raise RuntimeError("only for pickling")


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2


def storage_class(name, fmt):
    cls = type(name, (), {"__module__": "torch", "fmt": fmt})
    setattr(torch, name, cls)
    return cls


FloatStorage = storage_class("FloatStorage", "<f")
DoubleStorage = storage_class("DoubleStorage", "<d")
LongStorage = storage_class("LongStorage", "<q")


class Storage:
    def __init__(self, cls, key, values):
        self.cls, self.key, self.values = cls, key, values

    def data(self):
        return b"".join(struct.pack(self.cls.fmt, v) for v in self.values)


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)

    def __reduce_ex__(self, protocol):
        storage, offset, size, stride = self.args
        return (
            _rebuild_tensor_v2,
            (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict()),
        )


class LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", len(obj.values), None)
        return None


def legacy_save(obj, storages):
    out = io.BytesIO()
    for header in (
        0x1950A86A20F9469CFC6C,
        1001,
        {"protocol_version": 1001, "little_endian": True,
         "type_sizes": {"short": 2, "int": 4, "long": 4}},
    ):
        pickle.dump(header, out, protocol=2)
    LegacyPickler(out, protocol=2).dump(obj)
    keys = sorted(s.key for s in storages)
    pickle.dump(keys, out, protocol=2)
    by_key = {s.key: s for s in storages}
    for k in keys:
        out.write(struct.pack("<q", len(by_key[k].values)))
        out.write(by_key[k].data())
    return out.getvalue()


def main():
    w = Storage(FloatStorage, "140001", [0.5 * i for i in range(6)])
    b = Storage(DoubleStorage, "140002", [-1.0, 2.5])
    ints = Storage(LongStorage, "140003", list(range(6)))
    model = collections.OrderedDict(
        [
            ("fc.weight", Tensor(w, 0, [2, 3], [3, 1])),
            ("fc.bias", Tensor(b, 0, [2], [1])),
            # The transpose of the 2x3 matrix [[0, 1, 2], [3, 4, 5]], and its last row.
            ("ids.t", Tensor(ints, 0, [3, 2], [1, 3])),
            ("ids.row", Tensor(ints, 3, [3], [1])),
        ]
    )
    obj = {"epoch": 7, "model": model, "best": math.nan}
    with open(os.path.join(HERE, "legacy.pt"), "wb") as f:
        f.write(legacy_save(obj, [w, b, ints]))


if __name__ == "__main__":
    main()
