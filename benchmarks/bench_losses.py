"""Noise-robust losses on noisy digits (accuracy) and their cost relative to F.cross_entropy.

Accuracy protocol (recorded in benchmarks/losses.md):
  * data: scikit-learn's bundled ``load_digits`` (offline), stratified 70/30 split
    (``random_state=0``): 1257 train / 540 clean test; pixels /16, standardised with train statistics;
  * noise on the training labels only, injected by :func:`inject_noise` below (numpy Generator, exact
    count ``round(rate * n)``): symmetric = flip to a uniformly drawn *other* class, pair-flip =
    ``c -> (c + 1) mod 10``; settings sym 0.4, sym 0.6, pair 0.4; seeds 0, 1, 2 (noise, init, order);
  * model: MLP 64-128-128-10 (ReLU), PyTorch-default init, Adam lr 1e-3, cosine decay to 0, batch 64,
    200 epochs, no weight decay, no early stopping; the 9 (noise, seed) runs of one method are trained
    side by side as a batched ensemble (independent weights, batches and Adam states; the summed loss
    gives each run its own gradient), which is the same computation as 9 separate runs;
  * metric: clean test accuracy at the **last epoch** (best epoch in the JSON, optimistic), and the
    fraction of flipped training samples whose prediction equals the noisy label ("memorised");
  * every loss with its paper's CIFAR-10 defaults: GCE q=0.7, MAE scale 1, SCE alpha=0.1 beta=1
    A=ln(1e-4), NCE+RCE 1/1, NCE+AGCE 1/4 a=6 q=1.5, ANL-CE 5/5 + L1 delta=5e-5, ELR beta=0.7 lam=3,
    co-teaching tau = nominal noise rate, T_k = 10 (accuracy of network 1).

Usage::

    python benchmarks/bench_losses.py                  # accuracy + overhead (a few minutes)
    python benchmarks/bench_losses.py --epochs 20      # quick smoke run
    python benchmarks/bench_losses.py --only overhead --json out.json
    python benchmarks/bench_losses.py --overhead-only --losses nfl focal --reps 5
    python benchmarks/bench_losses.py --overhead-only --steady-heap   # no page faults (see below)
    python benchmarks/bench_losses.py --overhead-only --no-fused      # eager code only

The focal family (focal, NFL, NNFL, NCE, NNCE and their active-passive sums with MAE/RCE) runs
through the fused CPU kernel of ``robustaug/losses/_fused.c`` where a C compiler is available (the
JSON's ``fused_kernel``); ``--no-fused`` measures the eager code instead.

Overhead and page faults: torch allocates CPU tensors with the C allocator; glibc hands memory back
to the OS when the top of the heap is free (trimming), and then every fresh buffer costs a page fault
per 4 KiB page on its first write. How often that happens depends on the allocation history of the
process, so the same code takes 0 to ~1,700 faults per call in different runs. The overhead table
reports the minor page faults per call of ``F.cross_entropy`` and of each loss (``resource``), and
``--steady-heap`` re-runs the benchmark with glibc's trimming and ``mmap`` thresholds raised
(``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TOP_PAD_``: for measurement only,
nothing the package sets), where neither side faults: the pure compute ratio.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from robustaug.losses import ELR, _fused, keep_ratio, l1_penalty, list_losses, robust_loss

C = 10
SETTINGS = [("sym", 0.4), ("sym", 0.6), ("pair", 0.4)]
SEEDS = [0, 1, 2]
METHODS = {
    "CE": ("ce", {}),
    "GCE": ("gce", {}),
    "MAE": ("mae", {}),
    "SCE": ("sce", {}),
    "NCE+RCE": ("nce+rce", {}),
    "NCE+AGCE": ("nce+agce", {}),
    "ANL-CE": ("anl", {}),
    "ELR": ("elr", {}),
    "Co-teaching": ("coteaching", {}),
}


def inject_noise(
    y: np.ndarray, kind: str, rate: float, num_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """Flip exactly ``round(rate * n)`` labels: ``sym`` to another class, ``pair`` to ``c + 1``."""
    n = len(y)
    idx = rng.choice(n, size=round(rate * n), replace=False)
    noisy = y.copy()
    if kind == "sym":
        noisy[idx] = (y[idx] + rng.integers(1, num_classes, size=len(idx))) % num_classes
    elif kind == "pair":
        noisy[idx] = (y[idx] + 1) % num_classes
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    return noisy


def load_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.3, stratify=y, random_state=0)
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
    f = lambda a: torch.tensor((a - mu) / sd, dtype=torch.float32)  # noqa: E731
    return f(Xtr), torch.tensor(ytr), f(Xte), torch.tensor(yte)


class BatchedMLP(torch.nn.Module):
    """R independent MLPs 64-256-256-10 evaluated with batched matmuls."""

    def __init__(self, seeds: list[int], hidden: int = 128) -> None:
        sizes = (64, hidden, hidden, C)
        super().__init__()
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            ws, bs = [], []
            for s in seeds:
                g = torch.Generator().manual_seed(10_000 * s + fan_in + 7 * fan_out)
                bound = 1 / math.sqrt(fan_in)  # nn.Linear's default init
                ws.append((torch.rand(fan_in, fan_out, generator=g) * 2 - 1) * bound)
                bs.append((torch.rand(1, fan_out, generator=g) * 2 - 1) * bound)
            self.weights.append(torch.nn.Parameter(torch.stack(ws)))
            self.biases.append(torch.nn.Parameter(torch.stack(bs)))

    def forward(self, x):  # x: (R, B, 64)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = torch.relu(x)
        return x


def run_method(
    method: str, data, epochs: int, batch: int = 64, lr: float = 1e-3, hidden: int = 128
) -> dict:
    Xtr, ytr, Xte, yte = data
    n = len(ytr)
    runs = [(kind, rate, s) for kind, rate in SETTINGS for s in SEEDS]
    R = len(runs)
    noisy, flipped = [], []
    for kind, rate, s in runs:
        rng = np.random.default_rng([s, int(rate * 100), kind == "pair"])
        yn = inject_noise(ytr.numpy(), kind, rate, C, rng)
        noisy.append(torch.tensor(yn))
        flipped.append(torch.tensor(yn != ytr.numpy()))
    noisy = torch.stack(noisy)  # (R, n)
    flipped = torch.stack(flipped)
    seeds = [s for _, _, s in runs]
    name, kw = METHODS[method]
    coteach = name == "coteaching"
    models = [BatchedMLP(seeds, hidden)]
    if coteach:
        models.append(BatchedMLP([s + 1000 for s in seeds], hidden))
    params = [p for m in models for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    if name == "elr":
        loss_fn = ELR(R * n, C, reduction="none")
    elif not coteach:
        loss_fn = robust_loss(name, reduction="none", **kw)
    taus = torch.tensor([rate for _, rate, _ in runs])
    order_rngs = [np.random.default_rng([s, 99, r]) for r, s in enumerate(seeds)]
    accs = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        perms = torch.stack([torch.from_numpy(g.permutation(n)) for g in order_rngs])  # (R, n)
        for start in range(0, n, batch):
            idx = perms[:, start : start + batch]  # (R, B)
            xb = Xtr[idx]  # (R, B, 64)
            yb = torch.gather(noisy, 1, idx)
            B = idx.shape[1]
            if coteach:
                l1 = F.cross_entropy(
                    models[0](xb).reshape(R * B, C), yb.reshape(-1), reduction="none"
                )
                l2 = F.cross_entropy(
                    models[1](xb).reshape(R * B, C), yb.reshape(-1), reduction="none"
                )
                l1, l2 = l1.view(R, B), l2.view(R, B)
                loss = 0.0
                for r in range(R):
                    k = max(1, math.floor(keep_ratio(epoch, float(taus[r]), 10) * B + 1e-9))
                    keep1 = torch.argsort(l2[r].detach(), stable=True)[:k]  # peer's small-loss set
                    keep2 = torch.argsort(l1[r].detach(), stable=True)[:k]
                    loss = loss + l1[r, keep1].mean() + l2[r, keep2].mean()
            else:
                logits = models[0](xb).reshape(R * B, C)
                if name == "elr":
                    gidx = (idx + n * torch.arange(R)[:, None]).reshape(-1)
                    ell = loss_fn(logits, yb.reshape(-1), gidx)
                else:
                    ell = loss_fn(logits, yb.reshape(-1))
                loss = ell.view(R, B).mean(1).sum()
                if name == "anl":
                    loss = loss + l1_penalty(models[0], 5e-5)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        with torch.no_grad():
            pred = models[0](Xte.expand(R, -1, -1)).argmax(-1)
            accs.append((pred == yte).float().mean(1))
    with torch.no_grad():
        pred_tr = models[0](Xtr.expand(R, -1, -1)).argmax(-1)
        mem = ((pred_tr == noisy) & flipped).sum(1) / flipped.sum(1)
    accs = torch.stack(accs)  # (epochs, R)
    out = {"seconds": time.perf_counter() - t0, "runs": []}
    for r, (kind, rate, s) in enumerate(runs):
        out["runs"].append(
            {
                "noise": f"{kind}{rate}",
                "seed": s,
                "realised_rate": float(flipped[r].float().mean()),
                "last": float(accs[-1, r]),
                "best": float(accs[:, r].max()),
                "memorised": float(mem[r]),
            }
        )
    return out


def accuracy_tables(results: dict) -> str:
    noises = [f"{k}{r}" for k, r in SETTINGS]

    def cell(method, noise, key):
        vals = [100 * x[key] for x in results[method]["runs"] if x["noise"] == noise]
        return statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0

    lines = [
        "| Method | " + " | ".join(noises) + " | Δ vs CE at sym0.4 | wall s |",
        "|---|" + "---|" * (len(noises) + 2),
    ]
    ce40 = cell("CE", "sym0.4", "last")[0] if "CE" in results else float("nan")
    for m, res in results.items():
        cells = []
        for nz in noises:
            mu, sd = cell(m, nz, "last")
            best = cell(m, nz, "best")[0]
            cells.append(f"{mu:.1f} ± {sd:.1f} ({best:.1f})")
        d = cell(m, "sym0.4", "last")[0] - ce40
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {d:+.1f} | {res['seconds']:.0f} |")
    lines += ["", "Memorised flipped labels at the last epoch (%):", ""]
    lines += ["| Method | " + " | ".join(noises) + " |", "|---|" + "---|" * len(noises)]
    for m in results:
        lines.append(
            f"| {m} | " + " | ".join(f"{cell(m, nz, 'memorised')[0]:.0f}" for nz in noises) + " |"
        )
    return "\n".join(lines)


_STEADY_ENV = {
    "MALLOC_TRIM_THRESHOLD_": str(4 << 30),
    "MALLOC_MMAP_THRESHOLD_": str(1 << 30),
    "MALLOC_TOP_PAD_": str(256 << 20),
}


def _minflt() -> int:
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    except (ImportError, OSError):  # pragma: no cover - not on Linux
        return 0


def overhead(reps: int = 15, block: int = 5, only: list[str] | None = None) -> dict:
    """Median over interleaved repetitions of time(loss fwd+bwd) / time(F.cross_entropy fwd+bwd).

    Each repetition times a block of ``block`` consecutive calls of F.cross_entropy, then of the
    loss, on the same (cloned) logits, and records the ratio, and the minor page faults per call of
    both (median over the repetitions).
    """
    shapes = {"(4096, 100)": (4096, 100), "(8, 4, 128, 128)": (8, 4, 128, 128)}
    names = [n for n in list_losses() if n != "elr" and (not only or n in only)]
    g = torch.Generator().manual_seed(0)
    res: dict = {}
    for label, shape in shapes.items():
        z0 = torch.randn(shape, generator=g)
        t = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
        losses = {}
        for nm in names:
            kw = (
                {"T": 0.9 * torch.eye(shape[1]) + 0.1 / shape[1]}
                if nm in ("forward", "backward")
                else {}
            )
            losses[nm] = robust_loss(nm, **kw)

        faults: list[float] = []

        def timed(fn, z0=z0, t=t, k=block, faults=faults):
            z = z0.clone().requires_grad_(True)
            f0 = _minflt()
            t0 = time.perf_counter()
            for _ in range(k):
                fn(z, t).backward()
            dt = (time.perf_counter() - t0) / k
            faults.append((_minflt() - f0) / k)
            return dt

        for fn in [F.cross_entropy, *losses.values()]:  # warm-up
            timed(fn)
        ratios = {nm: [] for nm in names}
        flt = {nm: [] for nm in names}
        ce_times, ce_flt = [], []
        for _ in range(reps):
            for nm, fn in losses.items():
                base = timed(F.cross_entropy)
                ce_flt.append(faults[-1])
                ratios[nm].append(timed(fn) / base)
                flt[nm].append(faults[-1])
                ce_times.append(base)
        res[label] = {
            "cross_entropy_ms": 1e3 * statistics.median(ce_times),
            "cross_entropy_faults": statistics.median(ce_flt),
            "ratio": {nm: statistics.median(v) for nm, v in ratios.items()},
            "faults": {nm: statistics.median(v) for nm, v in flt.items()},
        }
    return res


def overhead_table(res: dict) -> str:
    labels = list(res)
    head = " | ".join(f"{lb} | faults/call" for lb in labels)
    lines = ["| Loss | " + head + " |", "|---|" + "---|---|" * len(labels)]
    lines.append(
        "| F.cross_entropy (ms) | "
        + " | ".join(
            f"{res[lb]['cross_entropy_ms']:.2f} ms | {res[lb]['cross_entropy_faults']:.0f}"
            for lb in labels
        )
        + " |"
    )
    for nm in res[labels[0]]["ratio"]:
        lines.append(
            f"| {nm} | "
            + " | ".join(
                f"{res[lb]['ratio'][nm]:.2f}x | {res[lb]['faults'][nm]:.0f}" for lb in labels
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    ap.add_argument("--only", choices=["accuracy", "overhead"], default=None)
    ap.add_argument("--overhead-only", action="store_true", help="same as --only overhead")
    ap.add_argument("--losses", nargs="*", default=None, help="overhead: only these losses")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--json", default=None, help="write raw results here")
    ap.add_argument(
        "--no-fused",
        action="store_true",
        help="the eager code only (ROBUSTAUG_FUSED=0): no fused CPU kernel for the focal family",
    )
    ap.add_argument(
        "--steady-heap",
        action="store_true",
        help="re-run with glibc's heap trimming off (no page faults on either side)",
    )
    args = ap.parse_args(argv)
    if args.steady_heap and any(os.environ.get(k) != v for k, v in _STEADY_ENV.items()):
        # glibc reads these when the process starts: re-execute with them set
        args_in = sys.argv[1:] if argv is None else list(argv)
        os.execve(sys.executable, [sys.executable, __file__, *args_in], {**os.environ, **_STEADY_ENV})
    if args.overhead_only:
        args.only = "overhead"
    torch.set_num_threads(args.threads)
    if args.no_fused:
        os.environ["ROBUSTAUG_FUSED"] = "0"  # (read when the kernel is first asked for)
    meta = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "threads": args.threads,
        "epochs": args.epochs,
        "hidden": args.hidden,
        "command": " ".join(sys.argv),
        "steady_heap": all(os.environ.get(k) == v for k, v in _STEADY_ENV.items()),
        "fused_kernel": _fused.kernel() is not None,  # (compiled here on first use, untimed)
    }
    out: dict = {"meta": meta}
    if args.only in (None, "accuracy"):
        data = load_data()
        results = {}
        for m in args.methods:
            results[m] = run_method(m, data, args.epochs, hidden=args.hidden)
            print(f"[{m}] {results[m]['seconds']:.0f}s", file=sys.stderr, flush=True)
        out["accuracy"] = results
        print(f"## Accuracy (last epoch, mean ± std over seeds {SEEDS}; best epoch in brackets)\n")
        print(accuracy_tables(results))
        print()
    if args.only in (None, "overhead"):
        res = overhead(args.reps, only=args.losses)
        out["overhead"] = res
        print(f"## Overhead: fwd+bwd / F.cross_entropy (median of {args.reps} blocks of 5)\n")
        print(overhead_table(res))
    print(f"\n_{meta}_")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
