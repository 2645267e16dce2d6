"""Reliable evaluation: AutoAttack-style suites, point-wise worst case and gradient-masking flags.

``evaluate(model, loader, threat, suite)`` runs the attacks of a suite one after the other, each on the
points that are still robust, so a point counts as robust only if *every* attack failed (the
point-wise worst case). The final adversarial examples are re-checked (budget, ``data_range``,
prediction) before robust accuracy is reported.

Suites:

* ``"standard"``: the original AutoAttack "standard" settings (Croce & Hein, ICML 2020): APGD-CE
  (100 iterations, 1 restart), APGD-T (9 target classes x 100 iterations), FAB-T (9 x 100) and
  Square (5000 queries, ``p_init = 0.8``).
* ``"lite"``: a cheaper, clearly named CPU/CI variant: APGD-CE (100), APGD-T (9 x 100) and Square
  (1000 queries). It is an upper bound on ``"standard"``.
* a list of attack names from ``"apgd_ce"``, ``"apgd_dlr"``, ``"apgd_t"``, ``"fab_t"``, ``"square"``,
  ``"pgd"`` (the threat's PGD settings).

FAB-T and Square are L-inf only; for other threats they are skipped (and reported as skipped).

Flags (raised as :class:`GradientMaskingWarning` and listed in the report), after the AutoAttack
``flags_doc``: a randomised model (two forward passes differ), softmax-like outputs (rows sum to 1),
zero input gradients, and the black-box Square attack succeeding where the white-box attacks failed.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ._isolation import check_range, isolated, make_forward
from .apgd import apgd, apgd_targeted
from .attacks import AttackResult, make_generator, pgd
from .fab import fab_targeted
from .square import square
from .threats import Linf, Threat

__all__ = ["SUITES", "EvalReport", "GradientMaskingWarning", "evaluate", "masking_flags"]

SUITES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "standard": [
        ("apgd_ce", {"n_iter": 100, "n_restarts": 1}),
        ("apgd_t", {"n_iter": 100, "n_target_classes": 9, "n_restarts": 1}),
        ("fab_t", {"n_iter": 100, "n_target_classes": 9}),
        ("square", {"n_queries": 5000, "p_init": 0.8}),
    ],
    "lite": [
        ("apgd_ce", {"n_iter": 100, "n_restarts": 1}),
        ("apgd_t", {"n_iter": 100, "n_target_classes": 9, "n_restarts": 1}),
        ("square", {"n_queries": 1000, "p_init": 0.8}),
    ],
}


class GradientMaskingWarning(UserWarning):
    """An evaluation result may be unreliable (obfuscated gradients)."""


@dataclass
class EvalReport:
    """Result of :func:`evaluate`.

    Attributes:
        clean_acc: Clean accuracy.
        robust_acc: Accuracy under the point-wise worst case over the suite.
        per_attack: For each attack: robust accuracy after it (cumulative), points it broke, seconds.
        flags: Gradient-masking flags raised.
        time_s: Total seconds.
        n: Number of evaluated points.
        suite: Suite name or attack list.
        robust: Per-sample robust mask (bool, CPU).
    """

    clean_acc: float
    robust_acc: float
    per_attack: dict[str, dict[str, float]]
    flags: list[str]
    time_s: float
    n: int
    suite: str
    robust: Tensor = field(repr=False, default_factory=lambda: torch.zeros(0, dtype=torch.bool))

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary."""
        return {"clean_acc": self.clean_acc, "robust_acc": self.robust_acc,
                "per_attack": self.per_attack, "flags": self.flags, "time_s": self.time_s,
                "n": self.n, "suite": self.suite}


def _run_one(name: str, kw: dict[str, Any], model: nn.Module, x: Tensor, y: Tensor, threat: Threat,
             common: dict[str, Any]) -> AttackResult:
    if name in ("apgd_ce", "apgd_dlr"):
        return apgd(model, x, y, threat, "ce" if name == "apgd_ce" else "dlr", **kw, **common)
    if name == "apgd_t":
        return apgd_targeted(model, x, y, threat, **kw, **common)
    if name == "fab_t":
        return fab_targeted(model, x, y, threat, **kw, **common)
    if name == "square":
        return square(model, x, y, threat, **kw, **common)
    if name == "pgd":
        return pgd(model, x, y, threat, "ce", early_stop=True, **kw, **common)
    raise ValueError(f"Unknown attack {name!r} in suite.")


def masking_flags(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    normalize: Any = None,
    bn_mode: str = "eval",
) -> list[str]:
    """Static gradient-masking checks on one batch: randomness, softmax outputs, zero gradients."""
    flags: list[str] = []
    with isolated(model, bn_mode) as inner:
        fwd = make_forward(inner, normalize, x)
        with torch.no_grad():
            o1 = fwd(x).float()
            o2 = fwd(x).float()
        if not torch.equal(o1, o2):
            flags.append("randomized: two forward passes differ; use EOT and several evaluations")
        if o1.ndim == 2 and bool((o1 >= 0).all()) and torch.allclose(
            o1.sum(1), torch.ones_like(o1[:, 0]), atol=1e-4
        ):
            flags.append("softmax: outputs look like probabilities; attacks need logits")
        xr = x.detach().clone().requires_grad_(True)
        out = fwd(xr).float()
        if out.ndim == 2:
            lv = nn.functional.cross_entropy(out, y, reduction="sum")
            (gr,) = torch.autograd.grad(lv, xr)
            zero = (gr.flatten(1).abs().amax(1) == 0).sum().item()
            if zero > 0:
                flags.append(f"zero_gradients: {zero} of {len(x)} points have an all-zero input "
                             "gradient")
    return flags


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    threat: Threat | None = None,
    suite: str | Sequence[str] = "standard",
    *,
    data_range: tuple[float, float] | None = (0.0, 1.0),
    normalize: Any = None,
    bn_mode: str = "eval",
    seed: int = 0,
    device: torch.device | str | None = None,
    check_flags: bool = True,
    progress: Callable[[str], None] | None = None,
) -> EvalReport:
    """Clean and robust accuracy under a suite of attacks, with a per-attack breakdown and flags.

    Args:
        model: Classifier returning logits ``(N, K)``.
        loader: Iterable of ``(x, y)`` batches (a DataLoader or a list).
        threat: Threat (default ``Linf(8/255)``); only its ``eps`` matters for APGD/FAB/Square.
        suite: ``"standard"``, ``"lite"`` or a list of attack names (see module docs).
        data_range: Valid input range (inputs outside raise ``ValueError``).
        normalize: ``(mean, std)`` or callable applied inside the model call.
        bn_mode: Mode during attacks and evaluation.
        seed: Seed of the private generator shared by all attacks (global RNG untouched).
        device: Move batches here (default: the model's parameter device).
        check_flags: Run the gradient-masking checks and warn.
        progress: Optional callback receiving progress lines.

    Returns:
        :class:`EvalReport`.

    References:
        Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
        parameter-free attacks", ICML 2020; AutoAttack ``flags_doc.md``.
    """
    threat = Linf() if threat is None else threat
    if isinstance(suite, str):
        if suite not in SUITES:
            raise ValueError(f"`suite` must be one of {sorted(SUITES)} or a list, got {suite!r}.")
        plan = SUITES[suite]
        suite_name = suite
    else:
        plan = [(str(a).lower().replace("-", "_"), {}) for a in suite]
        suite_name = "+".join(a for a, _ in plan)
    if device is None:
        p = next(iter(model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
    g = make_generator(seed, None)
    common = {"data_range": data_range, "normalize": normalize, "bn_mode": bn_mode, "generator": g}
    t_start = time.perf_counter()
    per = {name: {"robust_acc": 0.0, "broken": 0.0, "time_s": 0.0, "skipped": 0.0}
           for name, _ in plan}
    flags: list[str] = []
    n_tot, n_clean, robust_all = 0, 0, []
    whitebox_failed_square_won = 0
    for bi, (xb, yb) in enumerate(loader):
        x = xb.to(device)
        y = yb.to(device)
        check_range(x, data_range)
        if check_flags and bi == 0:
            flags.extend(masking_flags(model, x, y, normalize=normalize, bn_mode=bn_mode))
        with isolated(model, bn_mode) as inner, torch.no_grad():
            clean = make_forward(inner, normalize, x)(x).argmax(1) == y
        robust = clean.clone()
        x_adv = x.clone()
        for name, kw in plan:
            if name in ("fab_t", "square") and not isinstance(threat, Linf):
                per[name]["skipped"] = 1.0
                continue
            todo = robust.nonzero().squeeze(1)
            if todo.numel() == 0:
                continue
            t0 = time.perf_counter()
            res = _run_one(name, kw, model, x[todo], y[todo], threat, common)
            per[name]["time_s"] += time.perf_counter() - t0
            assert res.success is not None
            broke = todo[res.success.to(todo.device)]
            x_adv[broke] = res.x_adv[res.success].to(x_adv.dtype)
            robust[broke] = False
            per[name]["broken"] += float(len(broke))
            if name == "square" and len(broke) > 0:
                whitebox_failed_square_won += len(broke)
        # re-check: budget, range, prediction
        with isolated(model, bn_mode) as inner, torch.no_grad():
            pred = make_forward(inner, normalize, x_adv)(x_adv).argmax(1)
        delta = (x_adv.float() - x.float()).flatten(1)
        size = threat.size(delta) if threat.additive else delta.new_zeros(len(x))
        ok_budget = size <= threat.eps * (1 + 1e-5) + 1e-7 if threat.additive else torch.ones_like(clean)
        attacked = clean & ~robust
        bad = attacked & (~ok_budget | (pred == y))
        if bool(bad.any()):
            # an attack reported a success that does not verify: count those points as robust
            robust = robust | bad
            flags.append(f"verification: {int(bad.sum())} reported successes did not verify")
        n_tot += len(x)
        n_clean += int(clean.sum())
        robust_all.append(robust.cpu())
        for name, _ in plan:
            per[name]["robust_acc"] += 0.0  # filled below
        if progress is not None:
            progress(f"batch {bi}: clean {int(clean.sum())}/{len(x)} robust {int(robust.sum())}")
    if whitebox_failed_square_won > 0:
        flags.append(f"square_beats_whitebox: Square broke {whitebox_failed_square_won} points the "
                     "white-box attacks missed")
    rob = torch.cat(robust_all) if robust_all else torch.zeros(0, dtype=torch.bool)
    # cumulative robust accuracy after each attack
    remaining = float(n_clean)
    for name, _ in plan:
        remaining -= per[name]["broken"]
        per[name]["robust_acc"] = remaining / max(n_tot, 1)
    if check_flags:
        for f in flags:
            warnings.warn(f"Possible gradient masking / unreliable evaluation: {f}",
                          GradientMaskingWarning, stacklevel=2)
    return EvalReport(
        clean_acc=n_clean / max(n_tot, 1),
        robust_acc=float(rob.float().sum()) / max(n_tot, 1),
        per_attack=per,
        flags=flags,
        time_s=time.perf_counter() - t_start,
        n=n_tot,
        suite=suite_name,
        robust=rob,
    )
