"""FAB-T: targeted Fast Adaptive Boundary attack (minimum-norm, L-infinity).

Croce & Hein, "Minimally distorted adversarial examples with a fast adaptive boundary attack",
ICML 2020. Settings of AutoAttack "standard": 9 target classes, 100 iterations, 1 restart (no
random start), ``alpha_max = 0.1``, ``eta = 1.05``, ``beta = 0.9``.

At each step the decision boundary between the true class ``y`` and the target ``t`` is linearised,
``g(z) ~ g(x1) + <w, z - x1>`` with ``g = z_y - z_t`` and ``w = grad g``; the minimal L-inf step from a
point ``p`` onto ``{g = 0}`` is ``d(p) = -(g(x1) + <w, p - x1>) / ||w||_1 * sign(w)``. The new iterate
is the biased combination ``(1 - a)(x1 + eta d(x1)) + a (x + eta d(x))`` with
``a = min(||d(x1)|| / (||d(x1)|| + ||d(x)||), alpha_max)``; whenever the iterate is adversarial it is
recorded if smaller than the best so far and pulled back towards ``x`` by ``beta``.

Deviation (documented): the projection onto the hyperplane ignores the ``data_range`` box and is then
clipped to it, whereas the original solves the box-constrained projection exactly. The result is
a valid adversarial example whenever reported successful (its norm is re-checked against ``eps``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .attacks import AttackResult, _bcast, run_attack
from .threats import Linf, Threat

__all__ = ["fab_targeted"]


def fab_targeted(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: Threat | None = None,
    *,
    n_iter: int = 100,
    n_target_classes: int = 9,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    data_range: tuple[float, float] | None = (0.0, 1.0),
    normalize: Any = None,
    bn_mode: str = "eval",
    seed: int | None = 0,
    generator: torch.Generator | None = None,
) -> AttackResult:
    """FAB-T, L-infinity: success if a misclassified point within ``eps`` is found.

    Returns:
        :class:`~robustaug.adversarial.attacks.AttackResult`; ``stats["median_norm"]`` is the median
        minimal norm found among successful points.
    """
    threat = Linf() if threat is None else threat
    if not isinstance(threat, Linf):
        raise NotImplementedError("fab_targeted supports the Linf threat only.")
    eps = threat.eps

    def body(fwd: Callable[[Tensor], Tensor], x0: Tensor, g: torch.Generator) -> AttackResult:
        n = x0.shape[0]
        with torch.no_grad():
            logits0 = fwd(x0.to(x.dtype)).float()
        if logits0.ndim != 2:
            raise ValueError("fab_targeted supports classification outputs (N, K) only.")
        order = logits0.sort(dim=1).indices
        best = x0.clone()
        best_norm = torch.full((n,), float("inf"), device=x0.device)
        clean_wrong = logits0.argmax(1) != y
        best_norm[clean_wrong] = 0.0

        def box(z: Tensor) -> Tensor:
            return z if data_range is None else z.clamp(data_range[0], data_range[1])

        for j in range(2, min(n_target_classes + 1, logits0.shape[1]) + 1):
            todo = (best_norm > eps).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            xo, yo, tt = x0[todo], y[todo], order[todo, -j]
            x1 = xo.clone()
            bn = best_norm[todo].clone()
            bx = best[todo].clone()
            for _ in range(n_iter):
                x1r = x1.detach().requires_grad_(True)
                z = fwd(x1r.to(x.dtype)).float()
                gv = z.gather(1, yo[:, None]).squeeze(1) - z.gather(1, tt[:, None]).squeeze(1)
                (w,) = torch.autograd.grad(gv.sum(), x1r)
                with torch.no_grad():
                    wf = w.flatten(1)
                    l1 = wf.abs().sum(1).clamp_min(1e-12)
                    sg = w.sign()
                    c1 = -gv.detach() / l1
                    c2 = -(gv.detach() + (wf * (xo - x1).flatten(1)).sum(1)) / l1
                    d1 = box(x1 + _bcast(c1, sg) * sg) - x1
                    d2 = box(xo + _bcast(c2, sg) * sg) - xo
                    a1 = d1.flatten(1).abs().amax(1).clamp_min(1e-8)
                    a2 = d2.flatten(1).abs().amax(1).clamp_min(1e-8)
                    a = (a1 / (a1 + a2)).clamp(0.0, alpha_max)
                    ab = _bcast(a, x1)
                    x1 = box((x1 + eta * d1) * (1 - ab) + (xo + eta * d2) * ab)
                    adv = fwd(x1.to(x.dtype)).argmax(1) != yo
                    if bool(adv.any()):
                        nrm = (x1 - xo).flatten(1).abs().amax(1)
                        better = adv & (nrm < bn)
                        bx = torch.where(_bcast(better, x1), x1, bx)
                        bn = torch.where(better, nrm, bn)
                        x1 = torch.where(_bcast(adv, x1), xo + (x1 - xo) * beta, x1)
            best = best.index_copy(0, todo, bx)
            best_norm = best_norm.index_copy(0, todo, bn)
        succ = best_norm <= eps * (1 + 1e-6)
        x_adv = torch.where(_bcast(succ, x0), best, x0)
        fin = best_norm[succ & torch.isfinite(best_norm)]
        stats = {"success_rate": float(succ.float().mean()),
                 "median_norm": float(fin.median()) if fin.numel() else float("nan")}
        return AttackResult(x_adv.detach(), (x_adv - x0).detach(), -best_norm, succ, stats)

    return run_attack(model, x, y, body, data_range=data_range, normalize=normalize,
                      bn_mode=bn_mode, seed=seed, generator=generator)
