"""Attack losses, the PGD engine, FGSM / FGSM-RS / PGD, and the functional :func:`perturb`.

The engine optimises the variable of any :class:`~robustaug.adversarial.threats.Threat` (additive
pixel perturbations or physical parameters). Every public attack:

* takes an explicit ``data_range`` (budgets are in its units) and raises ``ValueError`` for inputs
  outside it (no silent clamping), and an optional ``normalize`` applied inside the model call;
* runs inside :func:`~robustaug.adversarial._isolation.isolated` (no side effects on the model or on
  global RNG state); randomness comes from an explicit ``seed`` / ``generator``;
* returns a detached ``x_adv`` with the input's shape, dtype and device, and never modifies ``x``;
* works on any shape ``(N, C, *spatial)`` and for dense outputs ``(N, K, *spatial)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._isolation import check_range, isolated, make_forward
from .threats import Linf, Threat

__all__ = [
    "AttackResult",
    "LossFn",
    "ce_loss",
    "dlr_loss",
    "fgsm",
    "fgsm_rs",
    "get_loss",
    "margin_loss",
    "perturb",
    "pgd",
    "pgd_engine",
    "targeted_dlr_loss",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
OnStep = Callable[[dict[str, Any]], None]


# ------------------------------------------------------------------------------------------ losses
def _per_sample(v: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean over spatial positions (``(N, *spatial) -> (N,)``), over ``valid`` ones if given."""
    if v.ndim == 1:
        return v
    if valid is None:
        return v.flatten(1).mean(1)
    vf = valid.flatten(1).to(v.dtype)
    return (v.flatten(1) * vf).sum(1) / vf.sum(1).clamp_min(1.0)


def _valid(y: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor | None]:
    if ignore_index is None:
        return y, None
    valid = y != ignore_index
    return torch.where(valid, y, torch.zeros_like(y)), valid


def ce_loss(logits: Tensor, y: Tensor, ignore_index: int | None = None) -> Tensor:
    """Per-sample cross-entropy ``-log softmax(z)_y`` (mean over valid pixels for dense outputs).

    Computed in float32. Pixels with ``y == ignore_index`` contribute nothing (value and gradient).
    """
    z = logits.float()
    if ignore_index is None:
        return _per_sample(F.cross_entropy(z, y, reduction="none"))
    yy, valid = _valid(y, ignore_index)
    lp = -F.log_softmax(z, dim=1).gather(1, yy.unsqueeze(1)).squeeze(1)
    if valid is not None:
        lp = torch.where(valid, lp, torch.zeros_like(lp))
    return _per_sample(lp, valid)


def _top_other(z: Tensor, yy: Tensor) -> tuple[Tensor, Tensor]:
    zy = z.gather(1, yy.unsqueeze(1)).squeeze(1)
    other = z.scatter(1, yy.unsqueeze(1), float("-inf"))
    return zy, other.amax(1)


def margin_loss(logits: Tensor, y: Tensor, ignore_index: int | None = None) -> Tensor:
    """Carlini-Wagner margin ``max_{j != y} z_j - z_y`` per sample (mean over valid pixels).

    Carlini & Wagner, "Towards evaluating the robustness of neural networks", IEEE S&P 2017.
    """
    z = logits.float()
    yy, valid = _valid(y, ignore_index)
    zy, zo = _top_other(z, yy)
    m = zo - zy
    if valid is not None:
        m = torch.where(valid, m, torch.zeros_like(m))
    return _per_sample(m, valid)


def dlr_loss(logits: Tensor, y: Tensor, ignore_index: int | None = None) -> Tensor:
    r"""Difference-of-logits-ratio loss (maximised), shift and scale invariant.

    ``DLR = -(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3)``, with ``z_pi`` the sorted logits. Needs at
    least 3 classes. Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
    diverse parameter-free attacks", ICML 2020.
    """
    z = logits.float()
    if z.shape[1] < 3:
        raise ValueError(f"DLR needs at least 3 classes, got logits with {z.shape[1]}.")
    yy, valid = _valid(y, ignore_index)
    zs = z.sort(dim=1, descending=True).values
    zy, zo = _top_other(z, yy)
    v = -(zy - zo) / (zs[:, 0] - zs[:, 2] + 1e-12)
    if valid is not None:
        v = torch.where(valid, v, torch.zeros_like(v))
    return _per_sample(v, valid)


def targeted_dlr_loss(target: Tensor) -> LossFn:
    r"""Targeted DLR (maximised): ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)``.

    Needs at least 4 classes. Croce & Hein, ICML 2020.
    """

    def fn(logits: Tensor, y: Tensor) -> Tensor:
        z = logits.float()
        if z.shape[1] < 4:
            raise ValueError(f"Targeted DLR needs at least 4 classes, got {z.shape[1]}.")
        zs = z.sort(dim=1, descending=True).values
        zy = z.gather(1, y.unsqueeze(1)).squeeze(1)
        zt = z.gather(1, target.unsqueeze(1)).squeeze(1)
        v = -(zy - zt) / (zs[:, 0] - 0.5 * (zs[:, 2] + zs[:, 3]) + 1e-12)
        return _per_sample(v)

    return fn


def targeted_ce_loss(target: Tensor, ignore_index: int | None = None) -> LossFn:
    """Targeted CE (maximised): ``log softmax(z)_t`` (i.e. minus CE to the target)."""

    def fn(logits: Tensor, y: Tensor) -> Tensor:
        return -ce_loss(logits, target, ignore_index)

    return fn


_LOSSES: dict[str, Callable[..., Tensor]] = {
    "ce": ce_loss,
    "cw": margin_loss,
    "margin": margin_loss,
    "dlr": dlr_loss,
}


def get_loss(loss: str | LossFn, ignore_index: int | None = None) -> LossFn:
    """Resolve ``"ce" | "cw" | "margin" | "dlr"`` or a callable ``(logits, y) -> per-sample loss``.

    A user callable may also return a scalar or a per-pixel map; it is reduced to one value per sample
    by the engine (scalars are broadcast, which disables per-sample best tracking).
    """
    if callable(loss):
        return loss
    if not isinstance(loss, str) or loss.lower() not in _LOSSES:
        raise ValueError(f"`loss` must be one of {sorted(_LOSSES)} or a callable, got {loss!r}.")
    fn = _LOSSES[loss.lower()]
    if ignore_index is None:
        return fn
    return lambda z, y: fn(z, y, ignore_index)


def _reduce_loss(v: Tensor, n: int) -> Tensor:
    v = v.float()
    if v.ndim == 0:
        return v.expand(n)
    if v.shape[0] != n:
        raise ValueError(f"The attack loss must return one value per sample ({n}), got {tuple(v.shape)}.")
    return _per_sample(v)


def default_success(logits: Tensor, y: Tensor) -> Tensor | None:
    """Untargeted success for classification (``argmax != y``); ``None`` for dense outputs."""
    if logits.ndim != 2 or y.ndim != 1:
        return None
    return logits.argmax(1) != y


# ------------------------------------------------------------------------------------------ result
@dataclass
class AttackResult:
    """What an attack returns.

    Attributes:
        x_adv: Detached adversarial input (input shape, dtype, device).
        theta: The optimised variable (pixel perturbation or physical parameters), float32.
        loss: Per-sample attack loss at ``x_adv``.
        success: Per-sample success (classification) or ``None``.
        stats: Scalars for logging: ``loss_first``, ``loss_last``, ``success_rate``, ``steps``.
    """

    x_adv: Tensor
    theta: Tensor
    loss: Tensor
    success: Tensor | None
    stats: dict[str, float] = dataclasses.field(default_factory=dict)


# ------------------------------------------------------------------------------------------ engine
def _better(
    loss: Tensor, succ: Tensor | None, best_loss: Tensor, best_succ: Tensor | None
) -> Tensor:
    if succ is None or best_succ is None:
        return loss > best_loss
    return (succ & ~best_succ) | ((succ == best_succ) & (loss > best_loss))


def pgd_engine(
    fwd: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    threat: Threat,
    loss_fn: LossFn,
    *,
    data_range: tuple[float, float] | None,
    generator: torch.Generator | None,
    steps: int | None = None,
    rel_step: float | None = None,
    random_start: bool | None = None,
    restarts: int | None = None,
    best: bool = True,
    early_stop: bool = False,
    success_fn: Callable[[Tensor, Tensor], Tensor | None] = default_success,
    on_step: OnStep | None = None,
    in_dtype: torch.dtype | None = None,
    init_theta: Tensor | None = None,
) -> AttackResult:
    """Projected gradient ascent on the threat variable (the core loop; no isolation, no checks).

    ``theta_{t+1} = Proj_Theta(theta_t + ascent(grad_theta L(f(T_theta(x)), y)))``. With ``best``,
    restarts or ``early_stop`` the per-sample best iterate (successful first, then highest loss) is
    returned; otherwise the last iterate. ``on_step`` gets a dict per step with ``step``,
    ``restart``, ``theta``, ``x_adv`` (the new iterate), ``loss`` (of the iterate the gradient was
    taken at) and ``best_loss`` (best so far, tracked when ``best``). A ``loss_fn`` with a
    ``set_step(t, steps)`` method (SegPGD) is told the step before each evaluation. ``init_theta``
    replaces the random start of the first restart (e.g. TRADES' ``0.001 N(0, 1)`` start).
    """
    steps = threat.steps if steps is None else steps
    set_step = getattr(loss_fn, "set_step", None)
    rel = (threat.step_size / threat.eps if threat.eps > 0 else 0.0) if rel_step is None else rel_step
    random_start = threat.random_start if random_start is None else random_start
    restarts = threat.restarts if restarts is None else restarts
    in_dtype = x.dtype if in_dtype is None else in_dtype
    n = x.shape[0]
    track = best or restarts > 1 or early_stop
    best_theta: Tensor | None = None
    best_loss = torch.full((n,), float("-inf"), device=x.device)
    best_succ: Tensor | None = None
    first_loss = None
    theta = threat.zeros(x)
    for r in range(restarts):
        if init_theta is not None and r == 0:
            theta = init_theta.to(x.device, torch.float32)
        else:
            theta = threat.init(x, generator) if random_start else threat.zeros(x)
        theta = threat.project(theta, x, data_range)
        frozen = torch.zeros(n, dtype=torch.bool, device=x.device) if early_stop else None
        for t in range(steps):
            if set_step is not None:
                set_step(t, steps)
            theta.requires_grad_(True)
            logits = fwd(threat.apply(x, theta, data_range).to(in_dtype))
            lv = _reduce_loss(loss_fn(logits, y), n)
            (g,) = torch.autograd.grad(lv.sum(), theta)
            with torch.no_grad():
                theta = theta.detach()
                lv = lv.detach()
                if first_loss is None:
                    first_loss = lv
                succ = success_fn(logits.detach(), y) if (track and success_fn) else None
                if track:
                    if best_theta is None:
                        best_theta, best_loss, best_succ = theta.clone(), lv.clone(), succ
                    else:
                        upd = _better(lv, succ, best_loss, best_succ)
                        best_theta = torch.where(_bcast(upd, theta), theta, best_theta)
                        best_loss = torch.where(upd, lv, best_loss)
                        if succ is not None and best_succ is not None:
                            best_succ = best_succ | succ
                new = threat.project(threat.ascent(theta, g, rel), x, data_range)
                if frozen is not None and succ is not None:
                    frozen = frozen | succ
                    new = torch.where(_bcast(frozen, new), theta, new)
                theta = new
            if on_step is not None:
                on_step(
                    {
                        "step": t,
                        "restart": r,
                        "theta": theta.detach(),
                        "x_adv": threat.apply(x, theta, data_range).detach(),
                        "loss": lv,
                        "best_loss": best_loss.clone(),
                    }
                )
        if track:
            if set_step is not None:
                set_step(steps, steps)
            with torch.no_grad():
                logits = fwd(threat.apply(x, theta, data_range).to(in_dtype))
                lv = _reduce_loss(loss_fn(logits, y), n)
                succ = success_fn(logits, y) if success_fn else None
                if first_loss is None:
                    first_loss = lv
                if best_theta is None:
                    best_theta, best_loss, best_succ = theta.clone(), lv, succ
                else:
                    upd = _better(lv, succ, best_loss, best_succ)
                    best_theta = torch.where(_bcast(upd, theta), theta, best_theta)
                    best_loss = torch.where(upd, lv, best_loss)
                    if succ is not None and best_succ is not None:
                        best_succ = best_succ | succ
    if track and best_theta is not None:
        theta, loss, succ = best_theta, best_loss, best_succ
    else:
        loss, succ = (first_loss if first_loss is not None else best_loss), None
    with torch.no_grad():
        x_adv = threat.apply(x, theta, data_range)
    stats = {
        "loss_first": float(first_loss.mean()) if first_loss is not None else float("nan"),
        "loss_last": float(loss.mean()) if track else float("nan"),
        "success_rate": float(succ.float().mean()) if succ is not None else float("nan"),
        "steps": float(steps * restarts),
    }
    return AttackResult(x_adv.detach(), theta.detach(), loss.detach(), succ, stats)


def _bcast(mask: Tensor, ref: Tensor) -> Tensor:
    return mask.reshape(-1, *([1] * (ref.ndim - 1)))


# ------------------------------------------------------------------------------------------ runner
def make_generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    """An explicit CPU generator: ``generator`` if given, else one seeded with ``seed`` (0 if None)."""
    if generator is not None:
        return generator
    g = torch.Generator()
    g.manual_seed(0 if seed is None else int(seed))
    return g


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def run_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    body: Callable[[Callable[[Tensor], Tensor], Tensor, torch.Generator], AttackResult],
    *,
    data_range: tuple[float, float] | None,
    normalize: Any = None,
    bn_mode: str = "eval",
    seed: int | None = 0,
    generator: torch.Generator | None = None,
) -> AttackResult:
    """Checks, isolation, dtype handling around an attack ``body(fwd, x32, generator)``."""
    check_range(x, data_range)
    if not isinstance(y, Tensor):
        raise TypeError(f"`y` must be a tensor, got {type(y).__name__}.")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"`y` has {y.shape[0]} samples but `x` has {x.shape[0]}.")
    g = make_generator(seed, generator)
    x32 = x.detach().to(_work_dtype(x.dtype))
    with isolated(model, bn_mode) as inner:
        fwd = make_forward(inner, normalize, x32)
        res = body(fwd, x32, g)
    res.x_adv = res.x_adv.to(x.dtype).detach()
    return res


# ------------------------------------------------------------------------------------------ attacks
def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: Threat | None = None,
    loss: str | LossFn = "ce",
    *,
    data_range: tuple[float, float] | None = (0.0, 1.0),
    normalize: Any = None,
    bn_mode: str = "eval",
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    targeted: bool = False,
    best: bool = True,
    early_stop: bool = False,
    ignore_index: int | None = None,
    on_step: OnStep | None = None,
) -> AttackResult:
    r"""Projected gradient descent (PGD) with restarts, best-iterate tracking and early stopping.

    Maximises ``L(f(T_theta(x)), y)`` over the threat's feasible set with
    ``theta <- Proj(theta + alpha * ascent(grad))`` for ``threat.steps`` steps, from a random start,
    ``threat.restarts`` times; the per-sample best iterate is returned (``best=True``).

    Args:
        model: Classifier or dense predictor.
        x: Input ``(N, C, *spatial)`` inside ``data_range``.
        y: Labels ``(N,)`` or ``(N, *spatial)``; the target class(es) when ``targeted``.
        threat: Threat model (default ``Linf(8/255)``).
        loss: ``"ce"``, ``"cw"``/``"margin"``, ``"dlr"`` or a callable ``(logits, y) -> (N,)``.
        data_range: ``(low, high)`` of valid inputs (budgets in its units) or ``None``.
        normalize: ``(mean, std)`` per channel or a callable applied inside the model call.
        bn_mode: ``"eval"``, ``"train"`` or ``"keep"`` (see :func:`isolated`).
        seed: Seed of the private generator (ignored if ``generator`` is given).
        generator: Explicit CPU ``torch.Generator``.
        targeted: Minimise the loss to ``y`` (``y`` holds targets).
        best: Return the best iterate rather than the last.
        early_stop: Stop moving samples that are already misclassified (classification).
        ignore_index: Label ignored by the built-in dense losses.
        on_step: Hook called after every step with a dict (see :func:`pgd_engine`).

    Returns:
        :class:`AttackResult`.

    References:
        Madry et al., "Towards deep learning models resistant to adversarial attacks", ICLR 2018.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 1])
        >>> r = pgd(net, x, y, Linf(eps=0.1, steps=3))
        >>> bool((r.x_adv - x).abs().max() <= 0.1 + 1e-6)
        True
    """
    threat = Linf() if threat is None else threat
    base = get_loss(loss, ignore_index)
    lf = (lambda z, t: -base(z, t)) if targeted else base
    sf = (lambda z, t: None if z.ndim != 2 else z.argmax(1) == t) if targeted else default_success

    def body(fwd: Callable[[Tensor], Tensor], x32: Tensor, g: torch.Generator) -> AttackResult:
        return pgd_engine(
            fwd, x32, y, threat, lf, data_range=data_range, generator=g, best=best,
            early_stop=early_stop, success_fn=sf, on_step=on_step, in_dtype=x.dtype,
        )

    return run_attack(
        model, x, y, body, data_range=data_range, normalize=normalize, bn_mode=bn_mode,
        seed=seed, generator=generator,
    )


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float | Threat = 8 / 255,
    loss: str | LossFn = "ce",
    **kw: Any,
) -> AttackResult:
    r"""FGSM: one step ``x' = clip(x + eps * sign(grad_x L))`` (or the threat's steepest step).

    Goodfellow et al., "Explaining and harnessing adversarial examples", ICLR 2015.
    """
    threat = eps if isinstance(eps, Threat) else Linf(eps=float(eps))
    threat = threat.replace(steps=1, alpha=threat.eps if threat.eps > 0 else None,
                            random_start=False, restarts=1)
    return pgd(model, x, y, threat, loss, best=False, **kw)


def fgsm_rs(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float | Threat = 8 / 255,
    loss: str | LossFn = "ce",
    step: float = 1.25,
    **kw: Any,
) -> AttackResult:
    r"""FGSM with random start: ``delta0 ~ U(-eps, eps)``, ``delta = Proj(delta0 + step*eps*sign(g))``.

    ``step = 1.25`` as in Wong, Rice & Kolter, "Fast is better than free: revisiting adversarial
    training", ICLR 2020.
    """
    threat = eps if isinstance(eps, Threat) else Linf(eps=float(eps))
    threat = threat.replace(steps=1, alpha=step * threat.eps if threat.eps > 0 else None,
                            random_start=True, restarts=1)
    return pgd(model, x, y, threat, loss, best=False, **kw)


def perturb(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: Threat | None = None,
    loss: str | LossFn = "ce",
    *,
    attack: str = "pgd",
    generator: torch.Generator | None = None,
    data_range: tuple[float, float] | None = (0.0, 1.0),
    normalize: Any = None,
    bn_mode: str = "eval",
    seed: int | None = 0,
    return_result: bool = False,
    **kw: Any,
) -> Tensor | AttackResult:
    """Functional entry point: ``x_adv = perturb(model, x, y, threat=..., loss=..., generator=g)``.

    Args:
        attack: ``"pgd"``, ``"fgsm"``, ``"fgsm_rs"``, ``"apgd"`` (``loss`` selects CE/DLR),
            ``"apgd_t"``, ``"square"`` or ``"fab_t"``.
        return_result: Return the full :class:`AttackResult` instead of ``x_adv``.
        **kw: Forwarded to the attack (e.g. ``targeted``, ``on_step``, ``ignore_index``).

    Returns:
        The detached adversarial input (or the result).
    """
    from .apgd import apgd, apgd_targeted
    from .fab import fab_targeted
    from .square import square

    common = {"data_range": data_range, "normalize": normalize, "bn_mode": bn_mode, "seed": seed,
                  "generator": generator}
    threat = Linf() if threat is None else threat
    a = attack.lower().replace("-", "_")
    if a == "pgd":
        res = pgd(model, x, y, threat, loss, **common, **kw)
    elif a == "fgsm":
        res = fgsm(model, x, y, threat, loss, **common, **kw)
    elif a == "fgsm_rs":
        res = fgsm_rs(model, x, y, threat, loss, **common, **kw)
    elif a in ("apgd", "apgd_ce", "apgd_dlr"):
        lo = {"apgd_ce": "ce", "apgd_dlr": "dlr"}.get(a, loss)
        res = apgd(model, x, y, threat, lo, **common, **kw)
    elif a == "apgd_t":
        res = apgd_targeted(model, x, y, threat, **common, **kw)
    elif a == "square":
        res = square(model, x, y, threat, **common, **kw)
    elif a == "fab_t":
        res = fab_targeted(model, x, y, threat, **common, **kw)
    else:
        raise ValueError(
            f"`attack` must be one of pgd, fgsm, fgsm_rs, apgd, apgd_ce, apgd_dlr, apgd_t, square, "
            f"fab_t; got {attack!r}."
        )
    return res if return_result else res.x_adv
