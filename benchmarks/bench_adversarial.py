"""Adversarial benchmark: attack strength, training methods, and engine overhead (CPU).

Run:  python benchmarks/bench_adversarial.py            (full: several minutes)
      python benchmarks/bench_adversarial.py --quick    (smoke: a few epochs, small eval)

Writes ``benchmarks/adversarial.md`` (table) and ``benchmarks/adversarial.json`` (raw numbers with
machine metadata).

Setup (the calibration of the reference note): scikit-learn's bundled digits (8x8, scaled to
[0, 1]), stratified 75/25 split (seed 0: 1347 train / 450 test), a small CNN with BatchNorm
(Conv32-BN-ReLU, Conv64-BN-ReLU, MaxPool, FC128, FC10), Adam 1e-3, batch 64, L-inf eps = 0.2.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import robustaug.adversarial as adv

EPS = 0.2
HERE = Path(__file__).resolve().parent


def data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.25, stratify=d.target,
                                          random_state=0)
    t = torch.from_numpy
    return t(xtr), t(ytr).long(), t(xte), t(yte).long()


def make_model(seed: int = 0) -> nn.Module:
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1024, 128), nn.ReLU(), nn.Linear(128, 10),
        )


def batches(x, y, bs, seed):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=g)
    for i in range(0, len(x), bs):
        j = idx[i:i + bs]
        yield x[j], y[j]


def train(method: str, xtr, ytr, epochs: int, m: int = 1, **kw) -> tuple[nn.Module, float]:
    model = make_model(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    robust = None
    if method != "clean":
        robust = adv.RobustLoss(model, nn.CrossEntropyLoss(), method=method, data_range=(0, 1),
                                bn_mode="eval", seed=0, **kw)
    t0 = time.process_time()
    for ep in range(epochs):
        it = batches(xtr, ytr, 64, ep)
        if m > 1:
            it = adv.replay(it, m)
        for xb, yb in it:
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb) if robust is None else robust(xb, yb)
            loss.backward()
            opt.step()
    return model.eval(), (time.process_time() - t0) / epochs


def accuracy(model, x, y, x_adv=None):
    with torch.no_grad():
        return float((model(x if x_adv is None else x_adv).argmax(1) == y).float().mean())


def pgd20(model, x, y):
    th = adv.Linf(eps=EPS, steps=20, alpha=EPS / 4)
    xa = adv.perturb(model, x, y, threat=th, data_range=(0, 1), seed=0)
    return accuracy(model, x, y, xa)


def hand_pgd(model, x, y, eps, alpha, steps, g):
    delta = (torch.rand(x.shape, generator=g) * 2 - 1) * eps
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y)
        (gr,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + alpha * gr.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def overhead(model, x, y, reps: int = 7) -> dict:
    """PGD-10 on a batch of 256, one thread, interleaved repeats, process CPU time (median)."""
    torch.set_num_threads(1)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)  # the hand loop's best case; robustaug does this itself
    th = adv.Linf(eps=EPS, steps=10, alpha=EPS / 4)
    runs = {
        "hand": lambda: hand_pgd(model, x, y, EPS, EPS / 4, 10, torch.Generator().manual_seed(0)),
        "robustaug_last": lambda: adv.pgd(model, x, y, th, best=False, seed=0),
        "robustaug_best": lambda: adv.pgd(model, x, y, th, best=True, seed=0),
    }
    for f in runs.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(reps):
        for k, f in runs.items():
            t0 = time.process_time()
            f()
            times[k].append(time.process_time() - t0)
    for p in model.parameters():
        p.requires_grad_(True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"median_s": med, "ratio_last": med["robustaug_last"] / med["hand"],
            "ratio_best": med["robustaug_best"] / med["hand"]}


def audit(model, x, y) -> dict:
    """Side-effect audit of robustaug's own attacks (table 3.4 of the reference note)."""
    out = {}
    model.train()
    model[1].eval()  # frozen BN
    for name, fn in {
        "pgd": lambda: adv.pgd(model, x, y, adv.Linf(EPS, steps=5)),
        "apgd_ce": lambda: adv.apgd(model, x, y, adv.Linf(EPS), n_iter=5),
        "apgd_t": lambda: adv.apgd_targeted(model, x, y, adv.Linf(EPS), n_iter=5, n_target_classes=2),
        "fab_t": lambda: adv.fab_targeted(model, x, y, adv.Linf(EPS), n_iter=5, n_target_classes=2),
        "square": lambda: adv.square(model, x, y, adv.Linf(EPS), n_queries=20),
    }.items():
        modes = [m.training for m in model.modules()]
        bufs = [b.clone() for b in model.buffers()]
        rng = torch.get_rng_state()
        grads = [p.grad for p in model.parameters()]
        res = fn()
        out[name] = {
            "modes_restored": modes == [m.training for m in model.modules()],
            "weight_grads_left": any(p.grad is not g for p, g in zip(model.parameters(), grads)),
            "bn_changed": not all(torch.equal(a, b) for a, b in zip(bufs, model.buffers())),
            "global_rng_changed": not torch.equal(rng, torch.get_rng_state()),
            "in_ball_and_range": bool((res.x_adv - x).abs().max() <= EPS * (1 + 1e-6)
                                      and res.x_adv.min() >= 0 and res.x_adv.max() <= 1),
        }
    model.eval()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default="clean,pgd_at,trades,fgsm_rs,free,free_recipe")
    ap.add_argument("--out", default=str(HERE), help="folder for adversarial.md / .json")
    ap.add_argument("--suite", default=None, help="evaluation suite (default: standard; lite with --quick)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    random.seed(0)
    xtr, ytr, xte, yte = data()
    epochs = 3 if args.quick else 30
    n_eval = 100 if args.quick else len(xte)
    xe, ye = xte[:n_eval], yte[:n_eval]
    suite = args.suite or ("lite" if args.quick else "standard")
    cfg = {
        "clean": {},
        "pgd_at": {"threat": adv.Linf(eps=EPS, steps=7)},
        "trades": {"threat": adv.Linf(eps=EPS, steps=7), "beta": 6.0},
        "fgsm_rs": {"threat": adv.Linf(eps=EPS)},
        # Free-AT, common setting: m = 4 replays, epochs / m
        "free": {"threat": adv.Linf(eps=EPS), "m": 4, "epochs": max(epochs // 4, 1)},
        # recipe: same number of passes as the PGD-7 budget (m = 4, 30 epochs), eps warm-up
        "free_recipe": {"threat": adv.Linf(eps=EPS), "m": 4, "epochs": epochs,
                            "eps_warmup": 4 * 22 * max(epochs // 6, 1)},
    }
    results = {}
    for name in args.methods.split(","):
        kw = dict(cfg[name])
        m = kw.pop("m", 1)
        ep = kw.pop("epochs", epochs)
        method = "free" if name.startswith("free") else name
        t0 = time.perf_counter()
        model, cpu_epoch = train(method, xtr, ytr, ep, m=m, **kw)
        wall_train = time.perf_counter() - t0
        r = {"epochs": ep, "replays": m, "cpu_s_per_epoch": cpu_epoch, "train_wall_s": wall_train,
             "clean": accuracy(model, xe, ye), "pgd20": pgd20(model, xe, ye)}
        t1 = time.perf_counter()
        with torch.no_grad():
            pass
        rep = adv.evaluate(model, [(xe[i:i + 150], ye[i:i + 150]) for i in range(0, n_eval, 150)],
                           adv.Linf(eps=EPS), suite, data_range=(0, 1), seed=0, check_flags=True)
        r.update({"suite": suite, "robust": rep.robust_acc, "per_attack": rep.per_attack,
                  "flags": rep.flags, "eval_wall_s": time.perf_counter() - t1})
        results[name] = r
        print(name, json.dumps(r), flush=True)
        if name == "clean":
            clean_model = model
    # epoch cost, 1 thread, interleaved (clean vs fgsm_rs)
    torch.set_num_threads(1)
    costs: dict[str, list[float]] = {"clean": [], "fgsm_rs": []}
    for _ in range(1 if args.quick else 3):
        for k in costs:
            costs[k].append(train(k, xtr, ytr, 1, **({} if k == "clean" else
                                                     {"threat": adv.Linf(eps=EPS)}))[1])
    cost = {k: statistics.median(v) for k, v in costs.items()}
    cost["ratio"] = cost["fgsm_rs"] / cost["clean"]
    print("epoch cost", cost, flush=True)
    ov_model = clean_model if "clean" in results else make_model(0).eval()
    ov = overhead(ov_model, xte[:256], yte[:256], reps=3 if args.quick else 7)
    print("overhead", ov, flush=True)
    aud = audit(ov_model, xte[:64], yte[:64])
    print("audit", aud, flush=True)
    meta = {"python": sys.version.split()[0], "torch": torch.__version__,
            "platform": platform.platform(), "processor": platform.processor(),
            "threads": args.threads, "quick": args.quick}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "adversarial.json").write_text(json.dumps(
        {"meta": meta, "results": results, "epoch_cost": cost, "overhead": ov, "audit": aud},
        indent=1))
    write_md(results, cost, ov, aud, meta, out)


def write_md(results, cost, ov, aud, meta, out: Path = HERE) -> None:
    lines = [
        "# Adversarial benchmark (CPU)",
        "",
        "Generated by `python benchmarks/bench_adversarial.py`"
        + (" --quick (smoke run, not the reference numbers)" if meta["quick"] else "") + ".",
        f"torch {meta['torch']}, {meta['platform']}, {meta['threads']} threads (machine shared with "
        "other jobs: wall times are noisy; costs use process CPU time).",
        "",
        "digits (450 test images), BN-CNN, L-inf eps = 0.2, Adam 1e-3, batch 64, seed 0.",
        "PGD-20: alpha = eps/4, random start. `standard`: APGD-CE + APGD-T + FAB-T + Square "
        "(original AutoAttack settings), point-wise worst case.",
        "",
        "| Method | epochs x replays | CPU s/epoch | Clean % | PGD-20 % | suite | robust % | flags |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, r in results.items():
        lines.append(
            f"| {k} | {r['epochs']} x {r['replays']} | {r['cpu_s_per_epoch']:.2f} | "
            f"{100 * r['clean']:.2f} | {100 * r['pgd20']:.2f} | {r['suite']} | "
            f"{100 * r['robust']:.2f} | {'; '.join(r['flags']) or '-'} |")
    lines += ["", "Per-attack breakdown (robust % after each attack, cumulative):", "",
              "| Method | " + " | ".join(next(iter(results.values()))["per_attack"]) + " |",
              "|---|" + "---|" * len(next(iter(results.values()))["per_attack"])]
    for k, r in results.items():
        lines.append(f"| {k} | " + " | ".join(f"{100 * v['robust_acc']:.2f}"
                                              for v in r["per_attack"].values()) + " |")
    lines += [
        "",
        f"FGSM-RS epoch cost vs clean (1 thread, interleaved, median CPU s): clean "
        f"{cost['clean']:.3f}, fgsm_rs {cost['fgsm_rs']:.3f}, ratio **{cost['ratio']:.2f}x**.",
        "",
        "PGD-10 on a batch of 256, 1 thread, interleaved repeats, median CPU s: "
        f"hand loop {ov['median_s']['hand']:.3f}, robustaug (last iterate) "
        f"{ov['median_s']['robustaug_last']:.3f} (**{ov['ratio_last']:.3f}x**), robustaug "
        f"(best-iterate tracking, one extra forward) {ov['median_s']['robustaug_best']:.3f} "
        f"({ov['ratio_best']:.3f}x).",
        "",
        "Side-effect audit (model in train mode with one BN frozen, 64 images):",
        "",
        "| Attack | modes restored | weight grads left | BN stats changed | global RNG changed | "
        "in eps-ball and [0,1] |",
        "|---|---|---|---|---|---|",
    ]
    for k, a in aud.items():
        lines.append(f"| {k} | {a['modes_restored']} | {a['weight_grads_left']} | {a['bn_changed']} | "
                     f"{a['global_rng_changed']} | {a['in_ball_and_range']} |")
    (out / "adversarial.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
