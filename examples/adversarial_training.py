"""Adversarial training in a plain PyTorch loop: one changed line.

    python examples/adversarial_training.py --quick     # < 2 min on a CPU
    python examples/adversarial_training.py --method trades --epochs 30

Data: scikit-learn's bundled digits (8x8, scaled to [0, 1]); model: a small CNN with BatchNorm;
threat: L-inf eps = 0.2 (on the [0, 1] scale). At the end the model is evaluated clean, under PGD-20
and under the "lite" suite (APGD-CE + APGD-T + Square, point-wise worst case).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

import robustaug.adversarial as adv


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="pgd_at", choices=["pgd_at", "trades", "mart", "fgsm_rs"])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="3 epochs, evaluate 100 images")
    args = ap.parse_args()
    epochs = 3 if args.quick else args.epochs
    torch.set_num_threads(1)

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy((d.images / 16.0).astype(np.float32))[:, None]
    y = torch.from_numpy(d.target).long()
    itr, ite = train_test_split(np.arange(len(x)), test_size=0.25, stratify=d.target, random_state=0)
    xtr, ytr, xte, yte = x[itr], y[itr], x[ite], y[ite]

    torch.manual_seed(0)  # the user's own seeding; robustaug never touches the global RNG
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1024, 128), nn.ReLU(), nn.Linear(128, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    threat = adv.Linf(eps=0.2, steps=7)
    robust = adv.RobustLoss(model, criterion, method=args.method, threat=threat,
                            data_range=(0.0, 1.0), normalize=None, bn_mode="eval", seed=0)

    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        total = 0.0
        for i in range(0, len(xtr), 64):
            xb, yb = xtr[perm[i:i + 64]], ytr[perm[i:i + 64]]
            opt.zero_grad()
            loss = robust(xb, yb)  # was: loss = criterion(model(xb), yb)
            loss.backward()
            opt.step()
            total += float(loss) * len(xb)
        print(f"epoch {epoch + 1}/{epochs}  loss {total / len(xtr):.3f}  "
              f"inner-attack loss {robust.last['stats']['loss_first']:.3f}")

    model.eval()
    n = 100 if args.quick else len(xte)
    xe, ye = xte[:n], yte[:n]
    with torch.no_grad():
        clean = (model(xe).argmax(1) == ye).float().mean().item()
    x_adv = adv.perturb(model, xe, ye, threat=adv.Linf(eps=0.2, steps=20, alpha=0.05),
                        data_range=(0.0, 1.0), seed=0)
    with torch.no_grad():
        pgd = (model(x_adv).argmax(1) == ye).float().mean().item()
    report = adv.evaluate(model, [(xe, ye)], adv.Linf(eps=0.2), suite="lite", data_range=(0.0, 1.0))
    print(f"clean {100 * clean:.1f}%  PGD-20 {100 * pgd:.1f}%  lite suite {100 * report.robust_acc:.1f}%"
          f"  ({report.time_s:.0f} s)  flags: {report.flags or 'none'}")


if __name__ == "__main__":
    main()
