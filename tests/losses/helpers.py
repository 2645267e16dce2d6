"""Helpers to build and call every registered loss in the generic contract tests."""

from __future__ import annotations

import torch

from robustaug.losses import ELR, list_losses, robust_loss

ALL_LOSSES = list_losses()
SIGMOID_LOSSES = list_losses("sigmoid")


def random_T(c: int, seed: int = 0, diag: float = 0.8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    R = torch.rand(c, c, generator=g, dtype=torch.float64)
    R = R / R.sum(1, keepdim=True)
    return diag * torch.eye(c, dtype=torch.float64) + (1 - diag) * R


def build(name: str, c: int, spatial: tuple[int, ...] = (), n: int = 8, **kw):
    """Build a registered loss with the constructor arguments it needs for ``c`` classes."""
    if name in ("forward", "backward"):
        kw.setdefault("T", random_T(c))
    if name == "truncated_gce":
        kw.setdefault("k", 0.1)  # with random logits, k=0.5 would truncate (zero grad) most samples
    if name == "elr":
        kw.setdefault("num_examples", n)
        kw["num_classes"] = c
        kw["spatial_shape"] = spatial
    loss = robust_loss(name, **kw)
    if isinstance(loss, ELR):
        # a primed, frozen state makes the loss a pure function of its inputs
        g = torch.Generator().manual_seed(1)
        t = torch.softmax(3 * torch.randn(loss.targets.shape, generator=g), dim=1)
        loss.targets.copy_(t)
        loss.eval()
    return loss


def call(loss, z: torch.Tensor, t: torch.Tensor):
    if isinstance(loss, ELR):
        return loss(z, t, torch.arange(z.shape[0]))
    return loss(z, t)


def logits(shape, seed: int = 0, scale: float = 1.0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


def labels(n: int, c: int, spatial=(), seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 100)
    return torch.randint(0, c, (n, *spatial), generator=g)
