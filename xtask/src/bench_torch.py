"""PyTorch's side of `cargo xtask bench --vs-torch`: the same workloads as tempo's
benches/ (sizes, hyperparameters, models), timed with time.perf_counter, printed as JSON.
Written by xtask (`xtask/src/bench.rs`, whose tables are the one list of workloads: the
optimizers with their specs, the schedulers by name, the sizes); argv[1] is a JSON
config carrying them."""
import gzip
import json
import os
import statistics
import sys
import time
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim import lr_scheduler as S
from torch.optim.swa_utils import SWALR

warnings.filterwarnings("ignore")
cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
QUICK = cfg["quick"]
TARGET = 0.3 if QUICK else 2.0
results = {}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def measure(fn, batch, samples):
    """Times per call of fn over `samples` batches of calls lasting at least `batch`
    seconds (fewer batches for a call slower than 10 batches), and the calls timed."""
    fn()
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= batch or n >= 1 << 24:
            break
        n = max(n * 2, int(n * batch / max(dt, 1e-9)))
    k = samples
    if n == 1 and dt > 10 * batch:
        k = min(k, 3)  # a slow call: a few samples keep the run short
    per = []
    for _ in range(k):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        per.append((time.perf_counter() - t0) / n)
    return per, n * k


def timeit(name, fn, elements=None, bytes_=None, samples=None):
    """The fastest and the median time per call of fn over `samples` timed batches."""
    per, iters = measure(fn, TARGET / 10, samples or (5 if QUICK else 20))
    med = statistics.median(per)
    best = min(per)
    results[name] = {"ns": best * 1e9, "median_ns": med * 1e9, "elements": elements, "bytes": bytes_, "iters": iters}
    log(f"{name}: {best * 1e9:.1f} ns (median {med * 1e9:.1f} ns)")


def params_with_grads(sizes, seed):
    g = torch.Generator().manual_seed(seed)
    ps = []
    for n in sizes:
        p = torch.randn(n, generator=g).requires_grad_()
        p.grad = torch.randn(n, generator=g) * 0.1
        ps.append(p)
    return ps


# benchmark group -> (torch.optim class, kwargs), from the specs xtask passes.
OPTS = {
    group: (getattr(torch.optim, spec["type"]), spec.get("kwargs", {}))
    for group, spec in cfg["optimizers"].items()
}


def make_opt(name, fused, sizes):
    cls, kw = OPTS[name]
    ps = params_with_grads(sizes, 42)
    opt = cls(ps, **kw, **({"fused": True} if fused else {}))
    opt.step()
    return opt


def optim_suite():
    for name, (cls, kw) in OPTS.items():
        for variant, extra in (("", {}), ("_fused", {"fused": True})):
            for label, sizes in [(f"n={n}", [n]) for n in cfg["sizes"]] + [
                (f"mix/tensors={len(cfg['mix'])},n={sum(cfg['mix'])}", cfg["mix"])
            ]:
                ps = params_with_grads(sizes, 42)
                try:
                    opt = cls(ps, **kw, **extra)
                    opt.step()
                except Exception as e:  # fused not available for this optimizer
                    log(f"{name}{variant}: {e}")
                    break
                timeit(f"{name}{variant}/{label}", opt.step, elements=sum(sizes))
                del opt, ps


def sched_suite():
    # One constructor per name of xtask's scheduler list (tempo's side: the arguments of
    # benches/lib.rs's scheduler_specs); a name without one is reported and skipped.
    def make(name, opt):
        if name == "LambdaLR":
            return S.LambdaLR(opt, lambda e: min(1.0, (e + 1) / 1000.0))
        if name == "MultiplicativeLR":
            return S.MultiplicativeLR(opt, lambda e: 0.9999999)
        if name == "StepLR":
            return S.StepLR(opt, step_size=1000, gamma=0.999)
        if name == "MultiStepLR":
            return S.MultiStepLR(opt, milestones=[30, 80], gamma=0.1)
        if name == "ConstantLR":
            return S.ConstantLR(opt, factor=0.5, total_iters=100)
        if name == "LinearLR":
            return S.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=100)
        if name == "ExponentialLR":
            return S.ExponentialLR(opt, gamma=0.9999999)
        if name == "PolynomialLR":
            return S.PolynomialLR(opt, total_iters=1000, power=2.0)
        if name == "CosineAnnealingLR":
            return S.CosineAnnealingLR(opt, T_max=1000, eta_min=1e-5)
        if name == "CosineAnnealingWarmRestarts":
            return S.CosineAnnealingWarmRestarts(opt, T_0=100, T_mult=1, eta_min=1e-5)
        if name == "CyclicLR":
            return S.CyclicLR(opt, base_lr=1e-4, max_lr=1e-2, step_size_up=100)
        if name == "OneCycleLR":
            return S.OneCycleLR(opt, max_lr=0.01, total_steps=10**12)
        if name == "ReduceLROnPlateau":
            return S.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=10)
        if name == "SWALR":
            return SWALR(opt, swa_lr=0.05, anneal_epochs=10)
        if name == "SequentialLR":
            return S.SequentialLR(
                opt,
                [S.LinearLR(opt, start_factor=0.1, total_iters=100), S.CosineAnnealingLR(opt, T_max=1000)],
                milestones=[100],
            )
        if name == "ChainedScheduler":
            return S.ChainedScheduler(
                [S.ConstantLR(opt, factor=0.5, total_iters=10), S.ExponentialLR(opt, gamma=0.9999999)],
                optimizer=opt,
            )
        if name in ("WarmupCosineLR", "WarmupStableDecayLR", "InverseSqrtLR"):
            return None  # tempo's presets: PyTorch has no such class
        return None

    for name in cfg["schedulers"]:
        ps = params_with_grads([16], 7)
        opt = torch.optim.Adam(ps, lr=0.01)
        opt.step()
        s = make(name, opt)
        if s is None:
            log(f"sched_step/name={name}: no PyTorch constructor in this script")
            continue
        if name == "ReduceLROnPlateau":
            timeit(f"sched_step/name={name}", lambda: s.step(1.0))
        else:
            timeit(f"sched_step/name={name}", s.step)


class NetX(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 20)
        self.fc2 = nn.Linear(20, 20)
        self.out = nn.Linear(20, 4)

    def forward(self, x):
        return self.out(self.fc2(self.fc1(x)))


def train_suite():
    torch.manual_seed(0)
    nx = NetX()
    r = torch.tensor([1.0, 2.0])
    targets = [torch.randint(0, 10, (4,)) for _ in range(10)]
    o = torch.optim.Adam(nx.parameters(), lr=0.1, foreach=False)
    def cyclic():
        return S.CyclicLR(o, base_lr=1e-3, max_lr=0.1, step_size_up=1, mode="triangular2", cycle_momentum=False)

    state = {"i": 0, "s": cyclic()}

    def seed_iteration():
        t = targets[state["i"] % 10]
        state["i"] += 1
        o.zero_grad()
        loss = torch.sum(t - nx(r))
        loss.backward()
        o.step()
        # PyTorch's triangular2 computes 2.0 ** (cycle - 1), which raises OverflowError
        # past cycle 1024 (step 2048 here); tempo's does not. Start a new scheduler
        # before that (once per 2000 iterations: nothing next to the timing).
        if state["i"] % 2000 == 0:
            state["s"] = cyclic()
        state["s"].step()
        return float(loss)

    timeit("train/seed_iteration", seed_iteration)

    with gzip.open(cfg["digits"], "rt") as f:
        rows = [[float(v) for v in line.split(",")] for line in f if line.strip()]
    data = torch.tensor(rows)
    feats, labels = data[:, :64] / 16.0, data[:, 64].long()
    torch.manual_seed(0)
    n = len(rows)
    order = torch.randperm(n)[: n - int(-(-n * 0.2 // 1))]
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    sch = S.OneCycleLR(opt, max_lr=0.01, total_steps=10**12)
    batches = [order[i : i + 32] for i in range(0, len(order), 32)]

    def epoch():
        loss = None
        for idx in batches:
            opt.zero_grad()
            loss = F.cross_entropy(model(feats[idx]), labels[idx])
            loss.backward()
            opt.step()
            sch.step()
        return float(loss)

    timeit("train/digits_epoch/batch=32", epoch, elements=len(order))


def ckpt_state():
    c = cfg["ckpt"]
    params, names = [], []
    for l in range(c["layers"]):
        g = torch.Generator().manual_seed(1000 + 4 * l)
        params.append((torch.randn(c["out"], c["in"], generator=g) * 0.02).requires_grad_())
        names.append(f"layers.{l}.weight")
        params.append((torch.randn(c["out"], generator=g) * 0.02).requires_grad_())
        names.append(f"layers.{l}.bias")
    for i, p in enumerate(params):
        p.grad = torch.randn(p.shape, generator=torch.Generator().manual_seed(5000 + i)) * 0.01
    opt = torch.optim.Adam(params, lr=1e-3)
    opt.step()
    for p in params:
        p.grad = None
    ckpt = {
        "epoch": 1,
        "step": 1,
        "model": {n: p.detach() for n, p in zip(names, params)},
        "optimizer": opt.state_dict(),
    }
    nbytes = sum(p.numel() * 4 for p in params) * 3
    n = sum(p.numel() for p in params)
    return ckpt, nbytes, n


def ckpt_suite():
    ckpt, nbytes, n = ckpt_state()
    path = os.path.join(cfg["scratch"], "torch-25m.pt")
    k = 3 if QUICK else 10

    def save():
        torch.save(ckpt, path)

    timeit(f"ckpt/torch_save/n={n}", save, bytes_=nbytes, samples=k)
    timeit(f"ckpt/torch_load/n={n}", lambda: torch.load(path, weights_only=True), bytes_=nbytes, samples=k)
    os.remove(path)


def serve():
    """The paired rounds: one workload id per line on stdin, one JSON line per id on
    stdout (see benches/pair.rs, tempo's side)."""
    batch, samples = cfg["pair"]["batch_ms"] / 1e3, cfg["pair"]["samples"]
    works, shared = {}, {}

    def make(wid):
        if wid.startswith("ckpt/torch_"):
            if "ckpt" not in shared:
                shared["ckpt"] = ckpt_state()[0]
            ckpt = shared["ckpt"]
            path = os.path.join(cfg["scratch"], "pair-" + wid.split("/")[1] + ".pt")
            torch.save(ckpt, path)
            shared.setdefault("files", []).append(path)
            if wid.startswith("ckpt/torch_save/"):
                return lambda: torch.save(ckpt, path)
            return lambda: torch.load(path, weights_only=True)
        name, label = wid.split("/", 1)
        fused = name.endswith("_fused")
        name = name[: -len("_fused")] if fused else name
        sizes = cfg["mix"] if label.startswith("mix/") else [int(label[len("n="):])]
        opt = make_opt(name, fused, sizes)
        return opt.step

    for line in sys.stdin:
        wid = line.strip()
        if not wid:
            continue
        try:
            if wid not in works:
                works[wid] = make(wid)
            per, iters = measure(works[wid], batch, samples)
            reply = {"id": wid, "ns": min(per) * 1e9, "iters": iters}
        except Exception as e:  # reported, not fatal: the other workloads go on
            reply = {"id": wid, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)
    for path in shared.get("files", []):
        os.remove(path)


if cfg.get("serve"):
    serve()
    sys.exit(0)

SUITES = {"optim": optim_suite, "sched": sched_suite, "train": train_suite, "ckpt": ckpt_suite}
for name in cfg["suites"]:
    SUITES[name]()
print(json.dumps({"torch_version": torch.__version__, "threads": torch.get_num_threads(), "results": results}))
