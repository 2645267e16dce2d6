"""Adversarial / robust training as a loss object that drops into any loop.

.. code-block:: python

    robust = RobustLoss(model, criterion, method="trades", threat=Linf(eps=8/255, steps=7),
                        data_range=(0, 1), normalize=None, bn_mode="eval", seed=0)
    for x, y in loader:
        opt.zero_grad()
        loss = robust(x, y)      # was: loss = criterion(model(x), y)
        loss.backward()
        opt.step()

The attack runs on the unwrapped model inside :func:`~robustaug.adversarial._isolation.isolated`
(no side effects, no weight gradients, no global RNG use); the training forward goes through
``model`` itself (so DDP synchronises gradients as usual) in the mode the user set. The returned
scalar has a graph to the parameters only; ``robust.last`` holds ``x_adv``, logits and statistics.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._isolation import check_range, isolated, make_forward, unwrap
from .attacks import LossFn, get_loss, make_generator, pgd_engine
from .threats import Linf, Threat

__all__ = [
    "AWP",
    "METHODS",
    "CatastrophicOverfittingWarning",
    "RobustLoss",
    "jsd_consistency",
    "kl_divergence",
    "mart_loss",
    "replay",
    "trades_loss",
]

METHODS = ("pgd_at", "trades", "mart", "fgsm_rs", "free", "physical", "augment")


class CatastrophicOverfittingWarning(UserWarning):
    """FGSM training lost its PGD robustness (Wong et al. 2020, Andriushchenko & Flammarion 2020)."""


# ------------------------------------------------------------------------------------ formulas
def kl_divergence(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    r"""Per-sample ``KL(p || q) = sum_k p_k (log p_k - log q_k)`` with ``p, q`` softmax of logits
    (mean over pixels for dense outputs), float32."""
    lp = F.log_softmax(logits_p.float(), 1)
    lq = F.log_softmax(logits_q.float(), 1)
    kl = (lp.exp() * (lp - lq)).sum(1)
    return kl if kl.ndim == 1 else kl.flatten(1).mean(1)


def trades_loss(logits_nat: Tensor, logits_adv: Tensor, y: Tensor, beta: float,
                criterion: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    r"""TRADES: ``L(f(x), y) + beta * mean_i KL(f(x_i) || f(x'_i))``.

    Zhang et al., "Theoretically principled trade-off between robustness and accuracy", ICML 2019.
    """
    return criterion(logits_nat, y) + beta * kl_divergence(logits_nat, logits_adv).mean()


def mart_loss(logits_nat: Tensor, logits_adv: Tensor, y: Tensor, beta: float) -> Tensor:
    r"""MART: ``BCE(p', y) + beta * mean_i KL(p_i || p'_i) (1 - p_i[y_i])``.

    ``BCE(p', y) = -log p'_y - log(1 - max_{k != y} p'_k)``. Wang et al., "Improving adversarial
    robustness requires revisiting misclassified examples", ICLR 2020 (constants as in the reference
    code: ``1.0001``, ``1e-12``, ``1.0000001``).
    """
    adv_probs = F.softmax(logits_adv.float(), 1)
    top2 = adv_probs.argsort(1)[:, -2:]
    new_y = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    loss_adv = F.cross_entropy(logits_adv.float(), y) + F.nll_loss(
        torch.log(1.0001 - adv_probs + 1e-12), new_y)
    nat_probs = F.softmax(logits_nat.float(), 1)
    true_probs = nat_probs.gather(1, y[:, None]).squeeze(1)
    kl = (nat_probs * (torch.log(nat_probs + 1e-12) - torch.log(adv_probs + 1e-12))).sum(1)
    return loss_adv + beta * (kl * (1.0000001 - true_probs)).mean()


def jsd_consistency(*logits: Tensor) -> Tensor:
    r"""Jensen-Shannon divergence of the softmax of several logits: ``mean_i KL(p_i || M)``,
    ``M = mean_i p_i`` (AugMix: Hendrycks et al., ICLR 2020), batch mean (pixel mean if dense)."""
    ps = [F.softmax(z.float(), 1) for z in logits]
    m = torch.clamp(sum(ps) / len(ps), 1e-7, 1).log()
    out = sum((p * (torch.log(p.clamp_min(1e-12)) - m)).sum(1) for p in ps) / len(ps)
    return out.mean()


def replay(loader: Iterable[Any], m: int) -> Iterator[Any]:
    """Yield every batch ``m`` times in a row (Free-AT "minibatch replay"; run epochs / m epochs)."""
    if int(m) != m or m < 1:
        raise ValueError(f"`m` must be an int >= 1, got {m!r}.")
    for batch in loader:
        for _ in range(m):
            yield batch


# ------------------------------------------------------------------------------------ AWP
@dataclass
class AWP:
    r"""Adversarial weight perturbation add-on (Wu, Xia & Wang, NeurIPS 2020).

    Per weight tensor ``w`` (``ndim > 1``), ``v = gamma ||w|| g / ||g||`` with ``g`` the gradient of
    the adversarial loss; the training loss is computed at ``w + v`` via
    :func:`torch.func.functional_call`, with ``v`` constant, so ``d loss / d w`` is the gradient at the
    perturbed point and the stored weights are never modified (exactly restored by construction).

    Args:
        gamma: Relative size of the weight perturbation (5e-3 in the paper for CIFAR).
    """

    gamma: float = 5e-3


# ------------------------------------------------------------------------------------ RobustLoss
class RobustLoss:
    """A training loss with an inner attack: call it where ``criterion(model(x), y)`` was.

    Args:
        model: The model being trained (DDP / DataParallel allowed: attacks use ``model.module``).
        criterion: Outer loss ``(logits, y) -> scalar`` (default cross-entropy); any criterion,
            including Dice/CE for segmentation.
        method: ``"pgd_at"`` (Madry et al. 2018), ``"trades"`` (KL inner maximisation, ``beta``),
            ``"mart"`` (``beta``), ``"fgsm_rs"`` (Wong et al. 2020; ``fgsm_variant`` ``"rs"``,
            ``"n_fgsm"`` or ``"gradalign"``), ``"free"`` (Shafahi et al. 2019; use with
            :func:`replay`), ``"physical"`` (adversarial artifact parameters + consistency) or
            ``"augment"`` (random artifacts + Jensen-Shannon consistency, AugMix-style).
        threat: Threat model (default ``Linf(8/255, steps=7)``); a physical threat (or a list, one
            picked per call) for ``"physical"``.
        data_range: Valid input range (budgets in its units); inputs outside raise ``ValueError``.
        normalize: ``(mean, std)`` or callable applied inside the model call.
        bn_mode: Mode during the attack (``"eval"``, ``"train"``, ``"keep"``).
        seed: Seed of the private generator (all randomness; global RNG untouched).
        attack_loss: Inner loss for pgd_at / fgsm_rs / physical (``"ce"``, ``"cw"``, ``"dlr"`` or a
            callable); TRADES always uses KL.
        beta: TRADES / MART weight.
        clean_weight: Mix ratio ``w``: loss ``= (1 - w) L_adv + w L_clean`` (pgd_at, fgsm_rs, free).
        eps_warmup: Linear eps curriculum over this many calls (0: off).
        eps_schedule: Callable ``call_index -> factor`` (overrides ``eps_warmup``).
        awp: An :class:`AWP` (or its ``gamma``) to add weight perturbation (pgd_at, trades, mart).
        fgsm_variant: ``"rs"`` (step ``1.25 eps``, ``U(-eps, eps)`` start), ``"n_fgsm"`` (de Jorge et
            al. 2022: ``U(-2eps, 2eps)`` noise, step ``eps``, no projection to the eps-ball) or
            ``"gradalign"`` (Andriushchenko & Flammarion 2020: FGSM-RS plus
            ``lambda (1 - cos(grad_x l(x), grad_x l(x + eta)))``).
        gradalign_lambda: GradAlign weight.
        guard_every: Catastrophic-overfitting guard for fgsm_rs: every this many calls run PGD-10 on
            the batch (0: off).
        guard_action: ``"warn"``, ``"rollback"`` (restore the weights of the last healthy check) or
            ``"switch"`` (warn and switch to ``"n_fgsm"``).
        guard_drop: Flag when PGD accuracy falls below ``guard_drop`` x its best value so far.
        consistency_weight: Weight of the consistency term (physical: KL; augment: JSD, AugMix 12).
        artifacts: For ``"augment"``: artifact names (built with ``robustaug.create(name,
            severity=s)``), Transforms, or callables ``x -> x``.
        severity: Severity (int or ``(lo, hi)``) for named artifacts.
        ignore_index: Ignored label for the built-in dense attack losses.
    """

    def __init__(
        self,
        model: nn.Module,
        criterion: Callable[[Tensor, Tensor], Tensor] | None = None,
        method: str = "pgd_at",
        threat: Threat | Sequence[Threat] | None = None,
        *,
        data_range: tuple[float, float] | None = (0.0, 1.0),
        normalize: Any = None,
        bn_mode: str = "eval",
        seed: int = 0,
        attack_loss: str | LossFn = "ce",
        beta: float = 6.0,
        clean_weight: float = 0.0,
        eps_warmup: int = 0,
        eps_schedule: Callable[[int], float] | None = None,
        awp: AWP | float | None = None,
        fgsm_variant: str = "rs",
        gradalign_lambda: float = 0.2,
        guard_every: int = 0,
        guard_action: str = "warn",
        guard_drop: float = 0.3,
        consistency_weight: float | None = None,
        artifacts: Sequence[Any] | None = None,
        severity: int | tuple[int, int] = (1, 5),
        ignore_index: int | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
        if not 0.0 <= clean_weight <= 1.0:
            raise ValueError(f"`clean_weight` must be in [0, 1], got {clean_weight!r}.")
        if fgsm_variant not in ("rs", "n_fgsm", "gradalign"):
            raise ValueError(f"`fgsm_variant` must be 'rs', 'n_fgsm' or 'gradalign', got {fgsm_variant!r}.")
        if guard_action not in ("warn", "rollback", "switch"):
            raise ValueError(f"`guard_action` must be 'warn', 'rollback' or 'switch', got {guard_action!r}.")
        if awp is not None and method not in ("pgd_at", "trades", "mart"):
            raise ValueError("`awp` is an add-on to pgd_at, trades or mart.")
        if awp is not None and unwrap(model) is not model:
            raise ValueError("`awp` is not supported with DDP/DataParallel wrappers.")
        self.model = model
        self.criterion = criterion if criterion is not None else nn.CrossEntropyLoss()
        self.method = method
        if threat is None:
            threat = Linf(eps=8 / 255, steps=7)
        self.threats = list(threat) if isinstance(threat, (list, tuple)) else [threat]
        self.threat = self.threats[0]
        self.data_range = data_range
        self.normalize = normalize
        self.bn_mode = bn_mode
        self.seed = seed
        self.generator = make_generator(seed, None)
        self.attack_loss = get_loss(attack_loss, ignore_index)
        self.beta = float(beta)
        self.clean_weight = float(clean_weight)
        self.eps_warmup = int(eps_warmup)
        self.eps_schedule = eps_schedule
        self.awp = AWP(float(awp)) if isinstance(awp, (int, float)) else awp
        self.fgsm_variant = fgsm_variant
        self.gradalign_lambda = float(gradalign_lambda)
        self.guard_every = int(guard_every)
        self.guard_action = guard_action
        self.guard_drop = float(guard_drop)
        default_cw = {"augment": 12.0, "physical": 1.0}.get(method, 0.0)
        self.consistency_weight = default_cw if consistency_weight is None else float(consistency_weight)
        self.ignore_index = ignore_index
        self.calls = 0
        self.co_events = 0
        self.guard_history: list[float] = []
        self._guard_best = 0.0
        self._guard_state: dict[str, Tensor] | None = None
        self._free_delta: Tensor | None = None
        self._awp_norm = 0.0
        self.last: dict[str, Any] = {}
        self._augs = self._build_augs(artifacts, severity) if method == "augment" else []

    # ------------------------------------------------------------------ helpers
    def _threat_now(self) -> Threat:
        th = self.threats[0]
        if len(self.threats) > 1:
            i = int(torch.randint(0, len(self.threats), (1,), generator=self.generator))
            th = self.threats[i]
        factor = 1.0
        if self.eps_schedule is not None:
            factor = float(self.eps_schedule(self.calls))
        elif self.eps_warmup > 0:
            factor = min(1.0, (self.calls + 1) / self.eps_warmup)
        return th if factor == 1.0 else th.scaled(factor)

    def _fwd(self, x: Tensor) -> Tensor:
        return make_forward(self.model, self.normalize, x)(x)

    def _attack(self, x: Tensor, y: Tensor, threat: Threat, loss_fn: LossFn, *,
                init: Tensor | None = None, rel_step: float | None = None,
                random_start: bool | None = None, steps: int | None = None) -> tuple[Tensor, dict]:
        x32 = x.detach().float()
        with isolated(self.model, self.bn_mode) as inner:
            fwd = make_forward(inner, self.normalize, x32)
            res = pgd_engine(fwd, x32, y, threat, loss_fn, data_range=self.data_range,
                             generator=self.generator, best=False, init_theta=init,
                             rel_step=rel_step, random_start=random_start, steps=steps,
                             restarts=1, in_dtype=x.dtype)
        return res.x_adv.to(x.dtype).detach(), res.stats

    def _clean_logits_detached(self, x: Tensor) -> Tensor:
        with isolated(self.model, self.bn_mode) as inner, torch.no_grad():
            return make_forward(inner, self.normalize, x)(x).detach()

    # ------------------------------------------------------------------ call
    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """Return the scalar training loss for the batch ``(x, y)``."""
        check_range(x, self.data_range)
        threat = self._threat_now()
        m = self.method
        if m == "pgd_at":
            loss = self._pgd_at(x, y, threat)
        elif m == "trades":
            loss = self._trades(x, y, threat)
        elif m == "mart":
            loss = self._mart(x, y, threat)
        elif m == "fgsm_rs":
            loss = self._fgsm(x, y, threat)
        elif m == "free":
            loss = self._free(x, y, threat)
        elif m == "physical":
            loss = self._physical(x, y, threat)
        else:
            loss = self._augment(x, y)
        self.calls += 1
        if self.awp is not None:
            self.last["awp_norm"] = self._awp_norm
        self.last["loss"] = loss.detach()
        self.last["eps"] = threat.eps
        return loss

    def _mix(self, loss_adv: Tensor, x: Tensor, y: Tensor) -> Tensor:
        if self.clean_weight <= 0:
            return loss_adv
        lc = self.criterion(self._fwd(x), y)
        self.last["loss_clean"] = lc.detach()
        return (1 - self.clean_weight) * loss_adv + self.clean_weight * lc

    def _awp_forward(self, x_adv: Tensor, x: Tensor, y: Tensor,
                     loss_of: Callable[[Callable[[Tensor], Tensor]], Tensor]) -> Tensor:
        """Compute ``loss_of(fwd)`` at perturbed weights ``w + v`` (v constant)."""
        assert self.awp is not None
        inner = unwrap(self.model)
        names = [n for n, p in inner.named_parameters() if p.requires_grad and p.ndim > 1]
        params = dict(inner.named_parameters())
        with isolated(self.model, "keep", params_grad=True):
            lv = loss_of(lambda z: make_forward(inner, self.normalize, z)(z))
            grads = torch.autograd.grad(lv, [params[n] for n in names], allow_unused=True)
        pert = {}
        for n, g in zip(names, grads):
            w = params[n]
            if g is None:
                continue
            gn = g.norm()
            if gn > 0:
                pert[n] = (self.awp.gamma * w.detach().norm() / gn) * g.detach()
        self._awp_norm = float(sum(v.norm() ** 2 for v in pert.values()) ** 0.5) if pert else 0.0
        buffers = dict(inner.named_buffers())

        def fwd_pert(z: Tensor) -> Tensor:
            pp = {n: (p + pert[n] if n in pert else p) for n, p in params.items()}
            return make_forward(
                lambda t: torch.func.functional_call(inner, {**pp, **buffers}, (t,)),
                self.normalize, z)(z)

        return loss_of(fwd_pert)

    def _pgd_at(self, x: Tensor, y: Tensor, threat: Threat) -> Tensor:
        x_adv, stats = self._attack(x, y, threat, self.attack_loss)
        if self.awp is not None:
            crit = self.criterion
            loss = self._awp_forward(x_adv, x, y, lambda f: crit(f(x_adv), y))
            logits = None
        else:
            logits = self._fwd(x_adv)
            loss = self.criterion(logits, y)
        self.last = {"x_adv": x_adv, "logits_adv": None if logits is None else logits.detach(),
                     "stats": stats, "method": "pgd_at"}
        return self._mix(loss, x, y)

    def _kl_inner(self, x: Tensor) -> LossFn:
        ref = self._clean_logits_detached(x)
        return lambda z, _y: kl_divergence(ref, z)

    def _trades(self, x: Tensor, y: Tensor, threat: Threat) -> Tensor:
        init = 0.001 * torch.randn(x.shape, generator=self.generator).to(x.device)
        x_adv, stats = self._attack(x, y, threat, self._kl_inner(x), init=init)
        crit, beta = self.criterion, self.beta

        def loss_of(f: Callable[[Tensor], Tensor]) -> Tensor:
            return trades_loss(f(x), f(x_adv), y, beta, crit)

        if self.awp is not None:
            loss = self._awp_forward(x_adv, x, y, loss_of)
            ln = la = None
        else:
            ln, la = self._fwd(x), self._fwd(x_adv)
            loss = trades_loss(ln, la, y, beta, crit)
        self.last = {"x_adv": x_adv, "logits_clean": None if ln is None else ln.detach(),
                     "logits_adv": None if la is None else la.detach(), "stats": stats,
                     "method": "trades"}
        return loss

    def _mart(self, x: Tensor, y: Tensor, threat: Threat) -> Tensor:
        init = 0.001 * torch.randn(x.shape, generator=self.generator).to(x.device)
        x_adv, stats = self._attack(x, y, threat, self.attack_loss, init=init)
        beta = self.beta

        def loss_of(f: Callable[[Tensor], Tensor]) -> Tensor:
            return mart_loss(f(x), f(x_adv), y, beta)

        if self.awp is not None:
            loss = self._awp_forward(x_adv, x, y, loss_of)
        else:
            loss = loss_of(self._fwd)
        self.last = {"x_adv": x_adv, "stats": stats, "method": "mart"}
        return loss

    # ------------------------------------------------------------------ FGSM family
    def _fgsm(self, x: Tensor, y: Tensor, threat: Threat) -> Tensor:
        eps = threat.eps
        v = self.fgsm_variant
        if v == "n_fgsm":
            u = torch.rand(x.shape, generator=self.generator).to(x.device)
            init = (2 * u - 1) * 2 * eps
            # no projection onto the eps-ball: use an unbounded Linf(4 eps) container (only data_range)
            th = Linf(eps=3 * eps, steps=1, alpha=eps)
            x_adv, stats = self._attack(x, y, th, self.attack_loss, init=init, rel_step=1 / 3,
                                        steps=1)
        else:
            x_adv, stats = self._attack(x, y, threat, self.attack_loss, rel_step=1.25,
                                        random_start=True, steps=1)
        logits = self._fwd(x_adv)
        loss = self.criterion(logits, y)
        if v == "gradalign":
            loss = loss + self.gradalign_lambda * self._gradalign(x, y, eps)
        self.last = {"x_adv": x_adv, "logits_adv": logits.detach(), "stats": stats,
                     "method": f"fgsm_{v}"}
        loss = self._mix(loss, x, y)
        if self.guard_every > 0 and self.calls % self.guard_every == 0:
            self._guard(x, y, threat)
        return loss

    def _gradalign(self, x: Tensor, y: Tensor, eps: float) -> Tensor:
        r"""``1 - cos(grad_x l(x), grad_x l(x + eta))``, ``eta ~ U(-eps, eps)``, double backprop."""
        eta = (torch.rand(x.shape, generator=self.generator).to(x.device) * 2 - 1) * eps
        x1 = x.detach().clone().requires_grad_(True)
        x2 = (x.detach() + eta)
        if self.data_range is not None:
            x2 = x2.clamp(*self.data_range)
        x2 = x2.requires_grad_(True)
        l1 = self.attack_loss(self._fwd(x1), y).sum()
        l2 = self.attack_loss(self._fwd(x2), y).sum()
        (g1,) = torch.autograd.grad(l1, x1, create_graph=True)
        (g2,) = torch.autograd.grad(l2, x2, create_graph=True)
        cos = F.cosine_similarity(g1.flatten(1), g2.flatten(1), dim=1)
        return (1 - cos).mean()

    def _guard(self, x: Tensor, y: Tensor, threat: Threat) -> None:
        """Catastrophic-overfitting check: PGD-10 accuracy on the batch vs its best so far."""
        th = threat.replace(steps=10, alpha=threat.eps / 4, restarts=1, random_start=True)
        x_adv, _ = self._attack(x, y, th, get_loss("ce", self.ignore_index))
        with torch.no_grad():
            logits = self._clean_logits_detached(x_adv)
        if logits.ndim != 2:
            return
        acc = float((logits.argmax(1) == y).float().mean())
        self.guard_history.append(acc)
        if acc >= self._guard_best:
            self._guard_best = acc
            if self.guard_action == "rollback":
                self._guard_state = copy.deepcopy(unwrap(self.model).state_dict())
        elif self._guard_best >= 0.2 and acc < self.guard_drop * self._guard_best:
            self.co_events += 1
            msg = (f"catastrophic overfitting suspected: PGD-10 accuracy {acc:.3f} fell below "
                   f"{self.guard_drop} x best {self._guard_best:.3f}")
            if self.guard_action == "rollback" and self._guard_state is not None:
                unwrap(self.model).load_state_dict(self._guard_state)
                msg += "; weights rolled back to the last healthy check"
            elif self.guard_action == "switch":
                self.fgsm_variant = "n_fgsm"
                msg += "; switching to N-FGSM"
            warnings.warn(msg, CatastrophicOverfittingWarning, stacklevel=3)
        self.last["guard_pgd_acc"] = acc

    # ------------------------------------------------------------------ Free-AT
    def _free(self, x: Tensor, y: Tensor, threat: Threat) -> Tensor:
        r"""Free-AT replay: ``delta <- Proj(delta + eps * sign(grad_delta))`` from the previous
        backward, then ``L(f(x + delta), y)`` with ``delta`` a leaf (its gradient comes with the user's
        ``loss.backward()``)."""
        eps = threat.eps
        d = self._free_delta
        if d is not None and d.grad is not None and d.shape == x.shape:
            with torch.no_grad():
                d = threat.ascent(d.detach(), d.grad, 1.0)
        elif d is None or d.shape != x.shape:
            d = torch.zeros_like(x, dtype=torch.float32)
        d = threat.project(d.detach(), x.detach().float(), self.data_range)
        d.requires_grad_(True)
        self._free_delta = d
        x_adv = (x.detach().float() + d).to(x.dtype)
        logits = self._fwd(x_adv)
        loss = self.criterion(logits, y)
        self.last = {"x_adv": x_adv.detach(), "logits_adv": logits.detach(), "delta": d,
                     "stats": {"eps": eps}, "method": "free"}
        return self._mix(loss, x, y)

    # ------------------------------------------------------------------ physical
    def _physical(self, x: Tensor, y: Tensor, threat: Threat) -> Tensor:
        x_adv, stats = self._attack(x, y, threat, self._kl_inner(x))
        ln, la = self._fwd(x), self._fwd(x_adv)
        loss = (self.criterion(ln, y) + self.criterion(la, y)
                + self.consistency_weight * kl_divergence(ln, la).mean())
        self.last = {"x_adv": x_adv, "logits_clean": ln.detach(), "logits_adv": la.detach(),
                     "stats": stats, "method": "physical", "threat": type(threat).__name__}
        return loss

    # ------------------------------------------------------------------ augment
    def _build_augs(self, artifacts: Sequence[Any] | None, severity: Any) -> list[Any]:
        if not artifacts:
            raise ValueError("method='augment' needs `artifacts` (names, Transforms or callables).")
        out = []
        for a in artifacts:
            if isinstance(a, str):
                from ..core.registry import create

                lo, hi = (severity, severity) if isinstance(severity, int) else severity
                out.append([create(a, severity=s) for s in range(int(lo), int(hi) + 1)])
            else:
                out.append([a])
        return out

    def _apply_aug(self, op: Any, x: Tensor) -> Tensor:
        from ..core.transform import Transform

        if isinstance(op, Transform):
            params = op.sample_params(x, self.generator)
            return op.apply(x, params)
        try:
            return op(x, generator=self.generator)
        except TypeError:
            return op(x)

    def _augmix(self, x: Tensor, width: int = 3, depth: int = 3) -> Tensor:
        g = self.generator
        e = -torch.log(torch.rand(width, generator=g).clamp_min(1e-12))  # Dirichlet(1, ..., 1)
        w = (e / e.sum()).tolist()
        mix = torch.zeros_like(x, dtype=torch.float32)
        for i in range(width):
            xi = x.float()
            for _ in range(int(torch.randint(1, depth + 1, (1,), generator=g))):
                group = self._augs[int(torch.randint(0, len(self._augs), (1,), generator=g))]
                op = group[int(torch.randint(0, len(group), (1,), generator=g))]
                xi = self._apply_aug(op, xi).float()
            mix = mix + w[i] * xi
        mm = float(torch.rand(1, generator=g))  # Beta(1, 1)
        out = mm * x.float() + (1 - mm) * mix
        if self.data_range is not None:
            out = out.clamp(*self.data_range)
        return out.to(x.dtype).detach()

    def _augment(self, x: Tensor, y: Tensor) -> Tensor:
        with torch.no_grad():
            x1, x2 = self._augmix(x), self._augmix(x)
        n = x.shape[0]
        logits = self._fwd(torch.cat([x, x1, x2]))
        lc, l1, l2 = logits[:n], logits[n:2 * n], logits[2 * n:]
        loss = self.criterion(lc, y) + self.consistency_weight * jsd_consistency(lc, l1, l2)
        self.last = {"x_aug": (x1, x2), "logits_clean": lc.detach(), "stats": {},
                     "method": "augment"}
        return loss


_ = math  # used in docstrings' formulas
