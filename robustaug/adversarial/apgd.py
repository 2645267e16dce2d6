"""Auto-PGD (APGD-CE, APGD-DLR) and targeted APGD (APGD-T), step-size free.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020. Settings follow the original implementation
(fra31/auto-attack): step ``eta = 2 eps``, momentum ``alpha = 0.75``, checkpoints every
``k`` iterations starting at ``ceil(0.22 N)``, shrinking by ``ceil(0.03 N)`` down to ``ceil(0.06 N)``;
at a checkpoint the step is halved and the iterate reset to the best point if fewer than
``rho = 0.75`` of the steps since the last checkpoint increased the loss, or if the step was not
reduced last time and the best loss did not improve.

The engine works on any :class:`~robustaug.adversarial.threats.Threat` (the variable is updated with
the threat's ascent step and projection), any input shape, and dense outputs (where it maximises the
per-sample loss without a success criterion).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ._isolation import check_range
from .attacks import (
    AttackResult,
    LossFn,
    OnStep,
    _bcast,
    _reduce_loss,
    default_success,
    get_loss,
    run_attack,
    targeted_dlr_loss,
)
from .threats import L2, Linf, Threat

__all__ = ["apgd", "apgd_engine", "apgd_targeted"]


def _apgd_init(threat: Threat, x: Tensor, g: torch.Generator) -> Tensor:
    if type(threat) is Linf:
        t = torch.rand(x.shape, generator=g, dtype=torch.float32) * 2 - 1
        m = t.flatten(1).abs().amax(1).clamp_min(1e-12)
        return (threat.eps * t / _bcast(m, t)).to(x.device, x.dtype)
    if type(threat) is L2:
        t = torch.randn(x.shape, generator=g, dtype=torch.float32)
        m = t.flatten(1).norm(dim=1).clamp_min(1e-12)
        return (threat.eps * t / _bcast(m, t)).to(x.device, x.dtype)
    return threat.init(x, g)


def apgd_engine(
    fwd: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    threat: Threat,
    loss_fn: LossFn,
    *,
    data_range: tuple[float, float] | None,
    generator: torch.Generator,
    n_iter: int = 100,
    n_restarts: int = 1,
    success_fn: Callable[[Tensor, Tensor], Tensor | None] = default_success,
    on_step: OnStep | None = None,
    in_dtype: torch.dtype | None = None,
    rho: float = 0.75,
) -> AttackResult:
    """The APGD loop (no isolation, no checks). Returns successful points where found, else the
    highest-loss point."""
    in_dtype = x.dtype if in_dtype is None else in_dtype
    n = x.shape[0]
    set_step = getattr(loss_fn, "set_step", None)
    n_iter_2 = max(math.ceil(0.22 * n_iter), 1)
    n_iter_min = max(math.ceil(0.06 * n_iter), 1)
    size_decr = max(math.ceil(0.03 * n_iter), 1)

    def eval_grad(theta: Tensor, it: int) -> tuple[Tensor, Tensor, Tensor]:
        if set_step is not None:
            set_step(it, n_iter)
        theta = theta.detach().requires_grad_(True)
        logits = fwd(threat.apply(x, theta, data_range).to(in_dtype))
        lv = _reduce_loss(loss_fn(logits, y), n)
        (gr,) = torch.autograd.grad(lv.sum(), theta)
        return lv.detach(), gr.detach(), logits.detach()

    out_theta: Tensor | None = None
    out_loss = torch.full((n,), float("-inf"), device=x.device)
    out_succ: Tensor | None = None
    first = None
    for r in range(n_restarts):
        theta = threat.project(_apgd_init(threat, x, generator), x, data_range)
        lv, grad, logits = eval_grad(theta, 0)
        first = lv if first is None else first
        succ = success_fn(logits, y)
        best_theta, best_loss, best_grad = theta.clone(), lv.clone(), grad.clone()
        adv_theta = theta.clone()
        found = succ.clone() if succ is not None else None
        step = torch.full((n,), 2.0, device=x.device)
        theta_old = theta.clone()
        hist = [lv]
        k, counter = n_iter_2, 0
        loss_best_last = best_loss.clone()
        reduced_last = torch.ones(n, dtype=torch.bool, device=x.device)
        for i in range(n_iter):
            with torch.no_grad():
                a = 0.75 if i > 0 else 1.0
                diff = theta - theta_old
                theta_old = theta
                z = threat.project(threat.ascent(theta, grad, step), x, data_range)
                theta = threat.project(theta + (z - theta) * a + diff * (1 - a), x, data_range)
            lv, grad, logits = eval_grad(theta, i + 1)
            with torch.no_grad():
                succ = success_fn(logits, y)
                if succ is not None and found is not None:
                    newly = succ & ~found
                    adv_theta = torch.where(_bcast(newly, theta), theta, adv_theta)
                    found = found | succ
                hist.append(lv)
                imp = lv > best_loss
                best_theta = torch.where(_bcast(imp, theta), theta, best_theta)
                best_grad = torch.where(_bcast(imp, grad), grad, best_grad)
                best_loss = torch.where(imp, lv, best_loss)
                counter += 1
                if counter == k:
                    h = torch.stack(hist[-(k + 1):])
                    n_inc = (h[1:] > h[:-1]).float().sum(0)
                    osc = n_inc <= k * rho
                    no_impr = ~reduced_last & (loss_best_last >= best_loss)
                    osc = osc | no_impr
                    reduced_last = osc
                    loss_best_last = best_loss.clone()
                    if bool(osc.any()):
                        step = torch.where(osc, step / 2, step)
                        theta = torch.where(_bcast(osc, theta), best_theta, theta)
                        grad = torch.where(_bcast(osc, grad), best_grad, grad)
                    k = max(k - size_decr, n_iter_min)
                    counter = 0
            if on_step is not None:
                on_step(
                    {
                        "step": i, "restart": r, "theta": theta.detach(),
                        "x_adv": threat.apply(x, theta, data_range).detach(),
                        "loss": lv, "best_loss": best_loss.clone(), "step_size": step.clone(),
                    }
                )
        # candidate of this restart: a successful point if found, else the best-loss point
        if found is not None:
            cand = torch.where(_bcast(found, theta), adv_theta, best_theta)
        else:
            cand = best_theta
        if out_theta is None:
            out_theta, out_loss, out_succ = cand, best_loss, found
        else:
            if found is not None and out_succ is not None:
                upd = (found & ~out_succ) | ((found == out_succ) & (best_loss > out_loss))
                out_succ = out_succ | found
            else:
                upd = best_loss > out_loss
            out_theta = torch.where(_bcast(upd, cand), cand, out_theta)
            out_loss = torch.where(upd, best_loss, out_loss)
    assert out_theta is not None
    with torch.no_grad():
        x_adv = threat.apply(x, out_theta, data_range)
    stats = {
        "loss_first": float(first.mean()) if first is not None else float("nan"),
        "loss_last": float(out_loss.mean()),
        "success_rate": float(out_succ.float().mean()) if out_succ is not None else float("nan"),
        "steps": float(n_iter * n_restarts),
    }
    return AttackResult(x_adv.detach(), out_theta.detach(), out_loss.detach(), out_succ, stats)


def apgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: Threat | None = None,
    loss: str | LossFn = "ce",
    *,
    n_iter: int = 100,
    n_restarts: int = 1,
    data_range: tuple[float, float] | None = (0.0, 1.0),
    normalize: Any = None,
    bn_mode: str = "eval",
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    ignore_index: int | None = None,
    on_step: OnStep | None = None,
) -> AttackResult:
    """APGD-CE (``loss="ce"``) or APGD-DLR (``loss="dlr"``), untargeted.

    Args:
        threat: Threat; its ``eps`` is used, ``steps``/``alpha`` are ignored (step-size free).
        n_iter: Iterations per restart (100 in AutoAttack).
        n_restarts: Restarts (1 in AutoAttack "standard").
        Other arguments as in :func:`~robustaug.adversarial.attacks.pgd`.

    Returns:
        :class:`~robustaug.adversarial.attacks.AttackResult`.

    References:
        Croce & Hein, ICML 2020.
    """
    threat = Linf() if threat is None else threat
    lf = get_loss(loss, ignore_index)

    def body(fwd: Callable[[Tensor], Tensor], x32: Tensor, g: torch.Generator) -> AttackResult:
        return apgd_engine(fwd, x32, y, threat, lf, data_range=data_range, generator=g,
                           n_iter=n_iter, n_restarts=n_restarts, on_step=on_step,
                           in_dtype=x.dtype)

    return run_attack(model, x, y, body, data_range=data_range, normalize=normalize,
                      bn_mode=bn_mode, seed=seed, generator=generator)


def apgd_targeted(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: Threat | None = None,
    *,
    n_iter: int = 100,
    n_target_classes: int = 9,
    n_restarts: int = 1,
    data_range: tuple[float, float] | None = (0.0, 1.0),
    normalize: Any = None,
    bn_mode: str = "eval",
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    on_step: OnStep | None = None,
) -> AttackResult:
    r"""APGD-T: targeted DLR APGD against the top ``n_target_classes`` runner-up classes.

    For ``j = 2 .. n_target_classes + 1`` the target is the ``j``-th highest clean logit; points
    already broken are not attacked again (as in AutoAttack). Success means misclassification.

    References:
        Croce & Hein, ICML 2020 (AutoAttack "standard": 9 targets x 100 iterations, 1 restart).
    """
    threat = Linf() if threat is None else threat
    check_range(x, data_range)

    def body(fwd: Callable[[Tensor], Tensor], x32: Tensor, g: torch.Generator) -> AttackResult:
        with torch.no_grad():
            logits0 = fwd(x32.to(x.dtype)).float()
        if logits0.ndim != 2:
            raise ValueError("apgd_targeted supports classification outputs (N, K) only.")
        k = logits0.shape[1]
        order = logits0.sort(dim=1).indices
        n = x32.shape[0]
        theta = threat.zeros(x32)
        succ = logits0.argmax(1) != y
        loss = torch.full((n,), float("-inf"))
        first = None
        for j in range(2, min(n_target_classes + 1, k - 1) + 1):
            todo = (~succ).nonzero().squeeze(1)
            if todo.numel() == 0:
                break
            target = order[todo, -j]
            res = apgd_engine(
                fwd, x32[todo], y[todo], threat, targeted_dlr_loss(target),
                data_range=data_range, generator=g, n_iter=n_iter, n_restarts=n_restarts,
                on_step=on_step, in_dtype=x.dtype,
            )
            first = res.stats["loss_first"] if first is None else first
            assert res.success is not None
            theta = theta.index_copy(0, todo, res.theta.to(theta.dtype))
            loss = loss.index_copy(0, todo.cpu(), res.loss.float().cpu())
            succ = succ.index_copy(0, todo, res.success)
        with torch.no_grad():
            x_adv = threat.apply(x32, theta, data_range)
        stats = {"loss_first": float("nan") if first is None else first,
                 "success_rate": float(succ.float().mean()),
                 "steps": float(n_iter * n_target_classes * n_restarts)}
        return AttackResult(x_adv.detach(), theta, loss.to(x.device), succ, stats)

    return run_attack(model, x, y, body, data_range=data_range, normalize=normalize,
                      bn_mode=bn_mode, seed=seed, generator=generator)
