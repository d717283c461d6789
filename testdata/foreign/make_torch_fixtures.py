#!/usr/bin/env python3
"""Writes the fixtures in this folder that only PyTorch itself can write faithfully,
with torch.save (PyTorch 2.15) and transformers (5.25). The tests read the files and
never need Python; run this by hand to make them again:

  python3 -m venv /tmp/env && /tmp/env/bin/pip install torch==2.15.0 transformers==5.25.0 accelerate
  /tmp/env/bin/python testdata/foreign/make_torch_fixtures.py

  sparse.pt         a dict of sparse tensors: COO (coalesced float32; uncoalesced
                    float64 with a dense dimension and a repeated index), CSR with int64
                    and with int32 indices, CSC, BSR (2x2 blocks) and BSC, and a
                    sparse nn.Parameter.
  sparse_bad.pt     a COO tensor whose index is outside its size, which torch.load
                    (weights_only=True) refuses when it validates sparse tensors.
  quantized.pt      quantized tensors: per-tensor affine qint8, quint8, qint32 and
                    quint4x2 (two 4-bit values a byte), per-channel affine quint8
                    (float64 scales, int64 zero points), per_channel_affine_float_qparams
                    (float32 scales and zero points, written by torch as per_channel_affine),
                    and a transposed (non-contiguous) qint8 view.
  sparse_legacy.pt  a COO tensor, a CSR tensor and a quantized tensor in the legacy
                    format (torch.save(..., _use_new_zipfile_serialization=False)).
  checkpoint-40/training_args.bin
                    what transformers' Trainer writes next to a checkpoint:
                    torch.save(TrainingArguments(...)), a pickled dataclass whose
                    lr_scheduler_type is the SchedulerType enum.
"""

import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def sparse():
    coo = torch.sparse_coo_tensor(
        torch.tensor([[0, 1, 3], [2, 0, 4]]), torch.tensor([1.5, -2.0, 3.25]), (4, 5)
    ).coalesce()
    # Not coalesced: index 1 twice; values with a dense dimension of 2.
    uncoalesced = torch.sparse_coo_tensor(
        torch.tensor([[1, 0, 1]]),
        torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, float("nan")]], dtype=torch.float64),
        (3, 2),
    )
    dense = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 3.0]])
    csr = dense.to_sparse_csr()
    csr32 = torch.sparse_csr_tensor(
        torch.tensor([0, 1, 3], dtype=torch.int32),
        torch.tensor([1, 0, 2], dtype=torch.int32),
        torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16),
        (2, 3),
    )
    csc = dense.to_sparse_csc()
    blocks = torch.arange(16.0).reshape(4, 4)
    blocks[0:2, 0:2] = 0
    bsr = blocks.to_sparse_bsr((2, 2))
    bsc = blocks.to_sparse_bsc((2, 2))
    param = torch.nn.Parameter(coo.clone(), requires_grad=False)
    obj = {
        "coo": coo,
        "uncoalesced": uncoalesced,
        "csr": csr,
        "csr32": csr32,
        "csc": csc,
        "bsr": bsr,
        "bsc": bsc,
        "param": param,
    }
    torch.save(obj, os.path.join(HERE, "sparse.pt"))
    back = torch.load(os.path.join(HERE, "sparse.pt"), weights_only=True)
    assert all(torch.equal(back[k].to_dense(), obj[k].to_dense().detach()) or k == "uncoalesced" for k in obj)

    bad = torch.sparse_coo_tensor(
        torch.tensor([[0, 9]]), torch.tensor([1.0, 2.0]), (4,), check_invariants=False
    )
    torch.save({"emb": {"weight": bad}}, os.path.join(HERE, "sparse_bad.pt"))
    try:
        torch.load(os.path.join(HERE, "sparse_bad.pt"), weights_only=True)
    except RuntimeError:
        pass
    else:
        raise AssertionError("torch.load accepted an index outside the size")


def quantized():
    x = torch.tensor([[-1.0, 0.0, 0.5], [2.0, -0.25, 1.0]])
    obj = {
        "qint8": torch.quantize_per_tensor(x, 0.1, 3, torch.qint8),
        "quint8": torch.quantize_per_tensor(x, 0.05, 128, torch.quint8),
        "qint32": torch.quantize_per_tensor(x, 1e-3, -7, torch.qint32),
        "quint4x2": torch.quantize_per_tensor(
            torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]), 1.0, 0, torch.quint4x2
        ),
        "per_channel": torch.quantize_per_channel(
            x,
            torch.tensor([0.1, 0.2], dtype=torch.float64),
            torch.tensor([0, 10]),
            0,
            torch.quint8,
        ),
        "float_qparams": torch.quantize_per_channel(
            x,
            torch.tensor([0.1, 0.2, 0.3]),
            torch.tensor([0.0, 1.0, -1.0]),
            1,
            torch.quint8,
        ),
        "transposed": torch.quantize_per_tensor(x, 0.1, 3, torch.qint8).t(),
    }
    assert obj["float_qparams"].qscheme() == torch.per_channel_affine_float_qparams
    torch.save(obj, os.path.join(HERE, "quantized.pt"))
    back = torch.load(os.path.join(HERE, "quantized.pt"), weights_only=True)
    for k in obj:
        assert torch.equal(back[k].int_repr(), obj[k].int_repr()), k


def legacy():
    coo = torch.sparse_coo_tensor(
        torch.tensor([[0, 2]]), torch.tensor([1.0, -1.0]), (3,)
    ).coalesce()
    obj = {
        "coo": coo,
        "csr": torch.tensor([[0.0, 1.0], [2.0, 0.0]]).to_sparse_csr(),
        "q": torch.quantize_per_tensor(torch.tensor([0.5, 1.0]), 0.5, 1, torch.quint8),
    }
    path = os.path.join(HERE, "sparse_legacy.pt")
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    back = torch.load(path, weights_only=True)
    assert torch.equal(back["coo"].to_dense(), coo.to_dense())


def training_args():
    from transformers import TrainingArguments

    folder = os.path.join(HERE, "checkpoint-40")
    os.makedirs(folder, exist_ok=True)
    args = TrainingArguments(
        output_dir="out",
        learning_rate=3e-4,
        lr_scheduler_type="cosine",
        warmup_steps=8,
        max_steps=100,
        num_train_epochs=2,
        report_to=[],
    )
    # What Trainer._save does: torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME)).
    torch.save(args, os.path.join(folder, "training_args.bin"))


if __name__ == "__main__":
    sparse()
    quantized()
    legacy()
    training_args()
