"""Train on noisy labels with a noise-robust loss: a one-line change in a plain PyTorch loop.

    python examples/robust_loss.py            # 40 % symmetric noise on digits, 120 epochs (minutes)
    python examples/robust_loss.py --quick    # 20 epochs (about a minute of CPU time)

The loop is ordinary PyTorch; the only change is the criterion:

    criterion = nn.CrossEntropyLoss()                      # before
    criterion = robust_loss("nce+rce")                     # after (or NCE+RCE, GCE(), ANL(), ...)
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from robustaug.losses import CoTeaching, robust_loss


def noisy_digits(rate: float, seed: int):
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X / 16.0, y, test_size=0.3, stratify=y, random_state=0)
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ytr), size=round(rate * len(ytr)), replace=False)
    ynoisy = ytr.copy()
    ynoisy[idx] = (ytr[idx] + rng.integers(1, 10, size=len(idx))) % 10  # flip to another class
    t = lambda a: torch.tensor((a - mu) / sd, dtype=torch.float32)  # noqa: E731
    return t(Xtr), torch.tensor(ynoisy), t(Xte), torch.tensor(yte)


def make_model(seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10)
    )
    with torch.no_grad():  # seeded init without touching the global RNG
        for p in model.parameters():
            bound = 1 / p.shape[-1] ** 0.5 if p.dim() == 2 else 0.05
            p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
    return model


def train(criterion, data, epochs: int, seed: int = 0) -> float:
    Xtr, ytr, Xte, yte = data
    model = make_model(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(ytr), generator=g).split(64):
            loss = criterion(model(Xtr[idx]), ytr[idx])  # <- the only loss-specific line
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return (model(Xte).argmax(1) == yte).float().mean().item()


def train_coteaching(data, epochs: int, forget_rate: float, seed: int = 0) -> float:
    Xtr, ytr, Xte, yte = data
    m1, m2 = make_model(seed), make_model(seed + 1)
    step = CoTeaching(
        m1,
        m2,
        torch.optim.Adam(m1.parameters(), 1e-3),
        torch.optim.Adam(m2.parameters(), 1e-3),
        forget_rate=forget_rate,  # e.g. robustaug.labelnoise.estimate_noise_rate(...)
    )
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        for idx in torch.randperm(len(ytr), generator=g).split(64):
            step(Xtr[idx], ytr[idx], epoch=epoch, index=idx)
    with torch.no_grad():
        return (m1(Xte).argmax(1) == yte).float().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="20 epochs instead of 120")
    ap.add_argument("--noise", type=float, default=0.4)
    args = ap.parse_args()
    epochs = 20 if args.quick else 120
    data = noisy_digits(args.noise, seed=0)
    print(
        f"digits, {args.noise:.0%} symmetric label noise, MLP, {epochs} epochs (clean test accuracy)"
    )
    print(f"  CrossEntropyLoss : {train(nn.CrossEntropyLoss(), data, epochs):.3f}")
    for name in ("gce", "nce+rce", "anl"):
        print(f"  {name:<17}: {train(robust_loss(name), data, epochs):.3f}")
    print(f"  co-teaching      : {train_coteaching(data, epochs, args.noise):.3f}")


if __name__ == "__main__":
    main()
