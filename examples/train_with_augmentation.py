"""A plain PyTorch training loop, before and after adding artifact augmentation.

The only change is three lines (marked ``# robustaug``): build an augmentation once, and apply it to
each training batch. Both models are then evaluated on clean test images and under unseen-severity
MRI artifacts with ``severity_sweep``.

Run: python examples/train_with_augmentation.py [--quick]
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import robustaug as ra
from robustaug.core.rng import seeded_global_rng
from robustaug.data.datasets import phantom_slices
from robustaug.evaluate import severity_sweep
from robustaug.evaluate.study import SmallCNN


def train(x, y, epochs, augment=None, seed=0):
    with seeded_global_rng(seed):  # weight init without touching the caller's RNG
        model = SmallCNN(1, 2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x), generator=g).split(16):
            xb, yb = x[idx], y[idx]
            if augment is not None:  # robustaug
                xb = augment(xb)  # robustaug
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smallest settings (for CI)")
    args = ap.parse_args()
    n_train, n_test, size, epochs = (300, 100, 48, 4) if args.quick else (800, 200, 64, 6)
    tr, te = phantom_slices(n_train, size=size, seed=1), phantom_slices(n_test, size=size, seed=2)

    before = train(tr["image"], tr["label"], epochs)
    names = [n for n in ("RicianNoise", "BiasField", "GaussianBlur") if n in ra.list_artifacts()]
    augment = ra.OneOf([ra.create(n, severity=s) for n in names for s in (1, 2, 3)], p=0.8, seed=0)  # robustaug
    after = train(tr["image"], tr["label"], epochs, augment=augment)

    for label, model in (("before", before), ("after", after)):
        rows = severity_sweep(model, (te["image"], te["label"]), names, severities=[0, 4, 5],
                              metrics=["accuracy"], draws=1, seed=0)
        mean = {s: sum(r["mean"] for r in rows if r["severity"] == s) / len(names) for s in (0, 4, 5)}
        print(f"{label:>6}: clean {mean[0]:.3f} | severity 4 {mean[4]:.3f} | severity 5 {mean[5]:.3f}")


if __name__ == "__main__":
    main()
