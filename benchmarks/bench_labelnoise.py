"""Label-issue detection on noisy digits: robustaug's torch out-of-fold pipeline vs cleanlab + LogReg.

Protocol (recorded in benchmarks/labelnoise.md):
  * data: scikit-learn's bundled ``load_digits`` (offline), stratified 70/30 split (``random_state=0``):
    1257 train / 540 clean test; pixels /16, standardised with train statistics;
  * noise on the training labels only, injected by ``robustaug.labelnoise``: ``symmetric(rate,
    mode="exact")`` (flip to a uniformly drawn *other* class, class-balanced count) at 0.4 and 0.6, and
    ``pairflip(0.4)`` (c -> c+1 mod 10, Bernoulli); noise seed ``1000 + s``;
  * baseline (same run, same noisy labels): cleanlab 5-fold out-of-fold probabilities of
    ``LogisticRegression(max_iter=1000)`` (``cleanlab.count.estimate_cv_predicted_probabilities``,
    seed 0) -> ``cleanlab.filter.find_label_issues`` (default ``filter_by="prune_by_noise_rate"``);
  * robustaug: ``out_of_fold_probs`` (5 stratified folds) of an MLP 64-256-10 (ReLU) trained with the
    generalised cross-entropy (GCE, q=0.7; Zhang & Sabuncu 2018) by Adam lr 1e-3, batch 64, 40 epochs,
    averaged over an ensemble of 3 initialisations -> ``robustaug.labelnoise.find_label_issues`` (same
    default filter);
  * metrics: precision / recall of the flagged set against the known flips; single-run signals
    (``single_run_signals``: one 30-epoch GCE run on all noisy data, CE loss and logit margin recorded
    every epoch) -> AUROC of the small-loss rank and of -AUM against the flip mask; downstream: an
    MLP 64-256-10 trained with CE for 100 epochs on (a) all noisy labels, (b) the samples kept by
    ``prune`` of robustaug's flagged set; clean test accuracy at the last epoch (also LogReg for both).

Usage::

    python benchmarks/bench_labelnoise.py              # full run (~3-6 min on 2 CPU cores)
    python benchmarks/bench_labelnoise.py --quick      # 1 ensemble member, fewer epochs
    python benchmarks/bench_labelnoise.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from robustaug.labelnoise import (
    find_label_issues,
    make_train_fn,
    out_of_fold_probs,
    pairflip,
    prune,
    single_run_signals,
    symmetric,
)

C = 10
SETTINGS = [("sym", 0.4), ("sym", 0.6), ("pair", 0.4)]


class GCE(nn.Module):
    """Generalised cross-entropy ``(1 - p_y^q) / q`` (Zhang & Sabuncu, NeurIPS 2018), mean-reduced."""

    def __init__(self, q: float = 0.7) -> None:
        super().__init__()
        self.q = q

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits.float(), 1).gather(1, y[:, None]).squeeze(1)
        return ((1 - torch.exp(self.q * logp)) / self.q).mean()


def mlp(seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, C))
    with torch.no_grad():
        for p in net.parameters():  # PyTorch-default-like uniform init from a private generator
            bound = 1.0 / np.sqrt(p.shape[-1] if p.ndim > 1 else 64)
            p.uniform_(-bound, bound, generator=g)
    return net


def load():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.3, stratify=y, random_state=0)
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
    return ((Xtr - mu) / sd).astype(np.float32), ytr, ((Xte - mu) / sd).astype(np.float32), yte


def pr(flagged: np.ndarray, flips: np.ndarray) -> tuple[float, float]:
    tp = float(np.sum(flagged & flips))
    return tp / max(flagged.sum(), 1), tp / max(flips.sum(), 1)


def train_eval(Xtr, ytr, Xte, yte, epochs: int, seed: int) -> float:
    torch.set_num_threads(1)
    net = mlp(seed)
    ds = TensorDataset(torch.from_numpy(Xtr), torch.from_numpy(ytr).long())
    make_train_fn(epochs=epochs, lr=1e-3, batch_size=64)(net, ds, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        pred = net(torch.from_numpy(Xte)).argmax(1).numpy()
    return float(np.mean(pred == yte))


def run(args) -> dict:
    from cleanlab.count import estimate_cv_predicted_probabilities
    from cleanlab.filter import find_label_issues as cl_find
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    torch.set_num_threads(1)
    Xtr, ytr, Xte, yte = load()
    ens = 1 if args.quick else 3
    epochs = 20 if args.quick else 40
    results = []
    for kind, rate in SETTINGS:
        t0 = time.time()
        if kind == "sym":
            res = symmetric(ytr, rate, C, mode="exact", seed=1000 + args.seed)
        else:
            res = pairflip(ytr, rate, C, seed=1000 + args.seed)
        yn, flips = np.asarray(res.labels), np.asarray(res.mask)
        row: dict = {"noise": f"{kind} {rate}", "realised_rate": float(flips.mean())}

        # baseline: cleanlab + LogReg OOF
        tb = time.time()
        P_lr = estimate_cv_predicted_probabilities(
            Xtr, yn, clf=LogisticRegression(max_iter=1000), cv_n_folds=5, seed=0
        )
        m_lr = cl_find(yn, P_lr, n_jobs=1)
        row["baseline_precision"], row["baseline_recall"] = pr(m_lr, flips)
        row["baseline_seconds"] = time.time() - tb

        # robustaug: torch OOF (GCE MLP ensemble) -> adapter
        tr = time.time()
        ds = TensorDataset(torch.from_numpy(Xtr), torch.from_numpy(yn).long())
        P = torch.zeros(len(yn), C)
        for e in range(ens):
            P += out_of_fold_probs(
                lambda e=e: mlp(100 + e),
                ds,
                k=5,
                train_fn=make_train_fn(epochs=epochs, lr=1e-3, batch_size=64, loss_fn=GCE(0.7)),
                labels=yn,
                seed=e,
            )
        P /= ens
        issues = find_label_issues(torch.from_numpy(yn), P)
        m_ra = issues.mask.numpy()
        row["robustaug_precision"], row["robustaug_recall"] = pr(m_ra, flips)
        row["robustaug_seconds"] = time.time() - tr

        # single-run signals
        sig = single_run_signals(mlp(7), ds, epochs=15 if args.quick else 30, lr=1e-3,
                                 loss_fn=GCE(0.7), seed=0)
        row["auroc_small_loss"] = float(roc_auc_score(flips, sig.small_loss_rank().numpy()))
        row["auroc_aum"] = float(roc_auc_score(flips, -sig.aum().numpy()))

        # downstream: prune and retrain
        keep = np.asarray(prune(m_ra))
        ep_ds = 50 if args.quick else 100
        row["mlp_acc_noisy"] = train_eval(Xtr, yn, Xte, yte, ep_ds, 0)
        row["mlp_acc_pruned"] = train_eval(Xtr[keep], yn[keep], Xte, yte, ep_ds, 0)
        lr_noisy = LogisticRegression(max_iter=1000).fit(Xtr, yn).score(Xte, yte)
        lr_pruned = LogisticRegression(max_iter=1000).fit(Xtr[keep], yn[keep]).score(Xte, yte)
        row["logreg_acc_noisy"], row["logreg_acc_pruned"] = float(lr_noisy), float(lr_pruned)
        row["seconds"] = time.time() - t0
        results.append(row)
        print(json.dumps(row), flush=True)
    return {
        "benchmark": "labelnoise_detection_digits",
        "quick": bool(args.quick),
        "seed": args.seed,
        "machine": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
        "results": results,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 ensemble member, fewer epochs")
    ap.add_argument("--seed", type=int, default=0, help="noise seed offset (noise seed = 1000 + seed)")
    ap.add_argument("--json", default=None, help="write results to this JSON file")
    args = ap.parse_args()
    out = run(args)
    hdr = ("noise", "P base", "R base", "P ours", "R ours", "AUROC loss", "AUROC AUM",
           "MLP noisy", "MLP pruned")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for r in out["results"]:
        print(
            f"| {r['noise']} | {r['baseline_precision']:.3f} | {r['baseline_recall']:.3f} | "
            f"{r['robustaug_precision']:.3f} | {r['robustaug_recall']:.3f} | "
            f"{r['auroc_small_loss']:.3f} | {r['auroc_aum']:.3f} | {r['mlp_acc_noisy']:.3f} | "
            f"{r['mlp_acc_pruned']:.3f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
