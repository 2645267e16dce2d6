"""Square attack (L-infinity), a score-based black-box attack used to detect gradient masking.

Andriushchenko, Croce, Flammarion & Hein, "Square attack: a query-efficient black-box adversarial
attack via random search", ECCV 2020. Settings follow the AutoAttack implementation: margin loss,
vertical-stripe initialisation, ``p_init = 0.8`` with the piecewise-constant schedule rescaled to
``n_queries``, one random window position per iteration for the batch, and per-sample acceptance of
improvements. Generalised to any number of spatial dimensions (the square becomes a hypercube).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .attacks import AttackResult, run_attack
from .threats import Linf, Threat

__all__ = ["p_selection", "square"]


def p_selection(p_init: float, it: int, n_queries: int) -> float:
    """The fraction of coordinates changed at iteration ``it`` (AutoAttack's schedule)."""
    it = int(it / n_queries * 10000)
    for lo, hi, div in ((10, 50, 2), (50, 200, 4), (200, 500, 8), (500, 1000, 16),
                        (1000, 2000, 32), (2000, 4000, 64), (4000, 6000, 128),
                        (6000, 8000, 256), (8000, 10000, 512)):
        if lo < it <= hi:
            return p_init / div
    return p_init


def _margin(logits: Tensor, y: Tensor) -> Tensor:
    z = logits.float()
    zy = z.gather(1, y[:, None]).squeeze(1)
    other = z.scatter(1, y[:, None], float("-inf")).amax(1)
    return zy - other


def square(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: Threat | None = None,
    *,
    n_queries: int = 5000,
    p_init: float = 0.8,
    data_range: tuple[float, float] | None = (0.0, 1.0),
    normalize: Any = None,
    bn_mode: str = "eval",
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    on_step: Callable[[dict[str, Any]], None] | None = None,
) -> AttackResult:
    """Square attack, L-infinity, untargeted (margin loss ``z_y - max_{j != y} z_j``, minimised).

    Args:
        threat: A :class:`~robustaug.adversarial.threats.Linf` threat (only its ``eps`` is used).
        n_queries: Query budget per sample (5000 in AutoAttack "standard").
        p_init: Initial fraction of changed coordinates.
        Other arguments as in :func:`~robustaug.adversarial.attacks.pgd`.

    Returns:
        :class:`~robustaug.adversarial.attacks.AttackResult` (``stats["queries"]``: mean queries).
    """
    threat = Linf() if threat is None else threat
    if not isinstance(threat, Linf):
        raise NotImplementedError("square supports the Linf threat only.")
    eps = threat.eps

    def body(fwd: Callable[[Tensor], Tensor], x32: Tensor, g: torch.Generator) -> AttackResult:
        n, c = x32.shape[:2]
        spatial = x32.shape[2:]
        if len(spatial) < 1:
            raise ValueError("square needs at least one spatial dimension.")
        nfeat = x32[0].numel()
        d = len(spatial)

        def clip(z: Tensor) -> Tensor:
            z = torch.minimum(torch.maximum(z, x32 - eps), x32 + eps)
            if data_range is not None:
                z = z.clamp(data_range[0], data_range[1])
            return z

        def rsign(shape: tuple[int, ...]) -> Tensor:
            r = torch.randint(0, 2, shape, generator=g).to(torch.float32) * 2 - 1
            return r.to(x32.device, x32.dtype)

        with torch.no_grad():
            # vertical stripes: one sign per (sample, channel, last spatial index)
            stripe = rsign((n, c, *([1] * (d - 1)), spatial[-1]))
            xb = clip(x32 + eps * stripe)
            logits = fwd(xb.to(x.dtype))
            if logits.ndim != 2:
                raise ValueError("square supports classification outputs (N, K) only.")
            m = _margin(logits, y)
            queries = torch.ones(n)
            for it in range(max(n_queries - 1, 0)):
                todo = (m > 0).nonzero().squeeze(1)
                if todo.numel() == 0:
                    break
                xc, xbc = x32[todo], xb[todo]
                p = p_selection(p_init, it, n_queries)
                s = max(round((p * nfeat / c) ** (1.0 / d)), 1)
                s = min(s, max(min(spatial) - 1, 1))
                starts = [int(torch.randint(0, max(sz - s, 0) + 1, (1,), generator=g)) for sz in spatial]
                win = (slice(None), slice(None), *tuple(slice(a, a + s) for a in starts))
                new = xbc.clone()
                sgn = rsign((len(todo), c, *([1] * d)))
                new[win] = new[win] + 2 * eps * sgn
                new = torch.minimum(torch.maximum(new, xc - eps), xc + eps)
                if data_range is not None:
                    new = new.clamp(data_range[0], data_range[1])
                mn = _margin(fwd(new.to(x.dtype)), y[todo])
                imp = mn < m[todo]
                m = m.index_copy(0, todo, torch.where(imp, mn, m[todo]))
                upd = torch.where(imp.reshape(-1, *([1] * (x32.ndim - 1))), new, xbc)
                xb = xb.index_copy(0, todo, upd)
                queries[todo.cpu()] += 1
                if on_step is not None:
                    on_step({"step": it, "x_adv": xb.clone(), "theta": xb - x32, "loss": -m.clone()})
        succ = m <= 0
        stats = {"success_rate": float(succ.float().mean()), "queries": float(queries.mean())}
        return AttackResult(xb.detach(), (xb - x32).detach(), -m, succ, stats)

    return run_attack(model, x, y, body, data_range=data_range, normalize=normalize,
                      bn_mode=bn_mode, seed=seed, generator=generator)


_ = math  # math kept for readers comparing with the reference formula
