"""Noise-robust classification/segmentation losses (softmax family).

Notation: ``p = softmax(z)`` over the class dimension, ``y`` the given (possibly noisy) label, ``C``
the number of classes. For a soft target ``q`` a loss defined per label is extended linearly,
``L(p, q) = sum_k q_k L(p, k)``, so a one-hot ``q`` gives the integer-label value.
All losses accept ``weight``, ``ignore_index`` and ``reduction`` like :class:`torch.nn.CrossEntropyLoss`
(see :class:`robustaug.losses.RobustLoss`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from . import _common, _fused
from ._common import (
    ArgmaxIndex,
    LabelIndex,
    RobustLoss,
    class_dot,
    gather_column,
    log1m_softmax,
    one_minus_p,
    register_loss,
)
from ._fused import FocalTerms

__all__ = [
    "AEL",
    "AGCE",
    "ANL",
    "AUL",
    "GCE",
    "MAE",
    "NCE",
    "NFL",
    "NGCE",
    "NMAE",
    "NNCE",
    "NNFL",
    "RCE",
    "SCE",
    "ActivePassive",
    "Bootstrap",
    "CrossEntropy",
    "FocalLoss",
    "TaylorCE",
    "TruncatedGCE",
    "l1_penalty",
]

#: SCE's ``A`` as used in all public PyTorch code (one-hot clamped at 1e-4): ln(1e-4) = -9.21.
SCE_A_CODE = math.log(1e-4)
#: SCE's ``A`` as written in the paper.
SCE_A_PAPER = -4.0


def _pos(name: str, value: float, *, strict: bool = True) -> float:
    value = float(value)
    if not (value > 0 if strict else value >= 0) or not math.isfinite(value):
        raise ValueError(f"{name} must be {'> 0' if strict else '>= 0'}, got {value}.")
    return value


def _focal_class_losses(logp: Tensor, gamma: float) -> Tensor:
    """``-(1 - p_k)^gamma log p_k`` for every class, with stable finite gradients."""
    if gamma == 0:
        return -logp
    return -torch.exp(gamma * log1m_softmax(logp)) * logp


def _keep_mask(p: Tensor, out: Tensor | None = None) -> Tensor:
    """``[p_k <= 1/2]`` as 0./1. in ``p``'s dtype (a comparison written straight to a floating
    buffer: one pass, no ``bool`` tensor). At most one class per element has ``p > 1/2``.
    ``out``: a buffer like ``p`` to write it to."""
    return torch.le(p, 0.5, out=torch.empty_like(p) if out is None else out)


def _rest_of_big(p: Tensor, keep: Tensor, out: Tensor | None = None) -> Tensor:
    """``sum_k p_k [p_k <= 1/2]`` (keepdim): ``1 - p_max`` without cancellation where ``p_max > 1/2``
    (plus ``tiny`` so that it stays > 0; this changes nothing above the underflow threshold).
    ``out``: a scratch buffer like ``p`` (overwritten)."""
    small = torch.mul(p, keep, out=out) if out is not None else p * keep
    return small.sum(1, keepdim=True).add_(torch.finfo(p.dtype).tiny)


def _one(p: Tensor) -> Tensor:
    return torch.ones((), dtype=p.dtype, device=p.device)


def _pow_gamma(u: Tensor, gamma: float, out: Tensor | None = None) -> Tensor:
    """``u^gamma`` (``u > 0``, ``gamma > 0``): products and one ``sqrt`` for (half-)integer ``gamma``
    up to 4 (the defaults 0.5 and 2), ``exp(gamma log u)`` otherwise; the same value up to
    rounding, several times cheaper than ``exp``/``log`` passes on CPU."""
    out = torch.empty_like(u) if out is None else out
    whole = int(gamma)
    if 2 * gamma == int(2 * gamma) and gamma <= 4:
        if gamma != whole:
            torch.sqrt(u, out=out)
        else:
            out.copy_(u)
            whole -= 1
        for _ in range(whole):
            out.mul_(u)
        return out
    return torch.log(u, out=out).mul_(gamma).exp_()


def _others_sum(p: Tensor, out: Tensor) -> Tensor:
    """``out_k = sum_{j != k} p_j`` (``= 1 - p_k`` without cancellation, plus ``tiny`` so that it
    stays > 0) for every class, by prefix and suffix sums over the class dimension: about ``3 C``
    operations on ``(N, *)`` slices, cheaper than the masked sum for few classes on a grid."""
    c = p.shape[1]
    out.select(1, 0).fill_(torch.finfo(p.dtype).tiny)  # carried into every prefix sum
    for k in range(1, c):
        torch.add(out.select(1, k - 1), p.select(1, k - 1), out=out.select(1, k))
    acc = torch.empty_like(p.select(1, c - 1), memory_format=torch.contiguous_format)
    acc.copy_(p.select(1, c - 1))
    for k in range(c - 2, -1, -1):
        out.select(1, k).add_(acc)
        if k:
            acc.add_(p.select(1, k))
    return out


def _focal_dense(
    p: Tensor, z: Tensor, lse: Tensor, gamma: float, y: LabelIndex, min_prob: float | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Focal terms of every class for the normalised focal losses.

    With ``u = 1 - p``, ``FL_k = -u_k^gamma log p_k`` and ``FL' = dFL/dlog p = -u^gamma (1 - gamma
    t)``, ``t = p log p / u`` (see :class:`FocalLoss`), returns the label's ``-FL_y`` ``(N, *)``,
    ``-sum_k FL_k`` ``(N, *)`` and ``-FL'`` ``(N, C, *)``. With ``min_prob`` (NNFL), ``p`` and
    ``log p`` are clamped at the floor and ``FL'`` is zero where ``log p`` is below it (the largest
    class, above the floor, keeps its true ``1 - p``: the others' unclamped sum).

    Only a class with ``p > 1/2`` (at most one per element, the largest) needs care: its ``u`` is
    the sum of the other probabilities (exact near saturation, where ``1 - p`` cancels) and its
    ``t``, which lies in ``[-1, 0]`` (``-> -1`` as ``u -> 0``), is clamped there against the
    rounding noise of ``log p / u``; for every other class ``u >= 1/2`` and ``t`` is accurate as
    computed. With few classes on a grid (segmentation) every ``u`` is the sum of the other
    classes (:func:`_others_sum`) and ``t`` is clamped densely. Otherwise the dense passes are the
    plain formulas; when some ``p > 1/2`` (always off the CPU, where the check would synchronise)
    ``u`` of the largest class is replaced by the masked class sum and, with many classes, its
    ``-FL'`` is recomputed per element (``(N, 1, *)``, with ``log p = log1p(-u)``, or the largest
    logit minus ``lse`` under the floor) and put in place by ``lerp`` with the mask ``[p <= 1/2]``
    (0/1 weights select exactly; a comparison written to a float buffer is several times cheaper on
    CPU than a ``bool`` mask, ``argmax`` or ``nonzero``); with few classes ``t`` is clamped
    densely.

    On CPU a fresh ``(N, C, *)`` buffer costs several elementwise passes (its memory is cold), so
    the work is done in place in two buffers (``log p``, then ``-FL'``; and ``u``) from the loss's
    workspace (:class:`~robustaug.losses._common.Workspace`), plus a new one for ``gamma`` other
    than 1/2 (``u^gamma``). ``-FL_k = u^gamma log p_k`` is formed in place and
    summed over classes, then turned into ``u^gamma t`` (``gamma = 1/2``: ``v = sqrt(u)`` is kept
    and ``v log p * p / v = p log p``, so ``-FL' = v - (p log p) / (2 v)`` by one ``addcdiv``).
    """
    buf = y.scratch(p)
    p_true = p  # (the largest class's 1 - p is the sum of the others' true probabilities)
    if min_prob is not None:
        p = p.clamp_min(min_prob)
    if gamma == 0:
        logp = torch.sub(z, lse, out=buf)
        live = None
        if min_prob is not None:
            live = (logp >= math.log(min_prob)).to(p.dtype)
            logp.clamp_(min=math.log(min_prob))
        nfl_y, s_nfl, nd = y.take(logp, remember=False), logp.sum(1), logp.fill_(1.0)
        return nfl_y, s_nfl, nd if live is None else nd.mul_(live)
    u = y.scratch(p)
    pm = y.p_max if min_prob is None else None  # (the floor clamps p)
    sat = not _common.host_checks(p) or (float(p.amax()) if pm is None else pm) > 0.5
    if p.dim() > 2 and p.shape[1] <= 16 and min_prob is None:
        # few classes on a grid: every u as the others' sum (the floor breaks sum p = 1: not there)
        _others_sum(p, u)
    elif sat:  # u of the largest class from the others: sum_k p_k [p_k <= 1/2]
        keep = _keep_mask(p, out=buf)
        rest = _rest_of_big(p_true, keep, out=u)
        torch.sub(_one(p), p, out=u)
        torch.lerp(rest.expand_as(u), u, keep, out=u)
    else:
        torch.sub(_one(p), p, out=u)
    logp = torch.sub(z, lse, out=buf)
    live = None
    if min_prob is not None:
        live = (logp >= math.log(min_prob)).to(p.dtype)
        logp.clamp_(min=math.log(min_prob))
    # per-element fix-up of the largest class: ~12 ops on (N, 1, *), cheap against two dense
    # passes when there are many classes; with few classes (segmentation) t is clamped densely
    many = p.shape[1] > 16
    if not many:
        if gamma == 0.5:
            v = u.sqrt_()
            nfl_y = y.take(v, remember=False).mul_(y.take(logp, remember=False))
            s_nfl = class_dot(v, logp)
            t = logp.mul_(p).div_(v).div_(v)
            if sat:
                t.clamp_(-1.0, 0.0)
            nd = torch.addcmul(v, t, v, value=-0.5, out=t)  # v (1 - t / 2)
        else:
            ug = _pow_gamma(u, gamma)
            nfl_y = y.take(ug, remember=False).mul_(y.take(logp, remember=False))
            s_nfl = class_dot(ug, logp)
            t = logp.mul_(p).div_(u)
            if sat:
                t.clamp_(-1.0, 0.0)
            nd = torch.addcmul(ug, ug, t, value=-gamma, out=t)  # u^gamma (1 - gamma t)
    elif gamma == 0.5:
        v = u.sqrt_()
        w = logp.mul_(v)  # v log p = -FL
        nfl_y, s_nfl = y.take(w, remember=False), w.sum(1)
        pl = w.mul_(p).div_(v)  # p log p
        nd = torch.addcdiv(v, pl, v, value=-0.5, out=pl)  # v (1 - t / 2)
    else:
        ug = _pow_gamma(u, gamma)
        w = logp.mul_(ug)  # u^gamma log p = -FL
        nfl_y, s_nfl = y.take(w, remember=False), w.sum(1)
        tg = w.mul_(p).div_(u)  # u^gamma t
        nd = torch.add(ug, tg, alpha=-gamma, out=tg)  # u^gamma (1 - gamma t)
    if many and sat:  # the largest class: exact u, t clamped to [-1, 0]
        p_m = p.amax(1, keepdim=True)
        u_m = torch.where(p_m > 0.5, rest, torch.rsub(p_m, 1.0))
        if min_prob is None:
            logp_m = torch.log1p(-u_m)  # (the others' sum is 1 - p_m: exact)
        else:  # (the floor breaks sum p = 1; the largest logit is the largest class's)
            logp_m = z.amax(1, keepdim=True).sub_(lse).clamp_(min=math.log(min_prob))
        t_m = logp_m.mul_(p_m).div_(u_m).clamp_(-1.0, 0.0)
        nd_m = _pow_gamma(u_m, gamma).mul_(t_m.mul_(-gamma).add_(1.0))
        keep = _keep_mask(p, out=u)  # (u is no longer needed)
        torch.lerp(nd_m.expand_as(nd), nd, keep, out=nd)
    if live is not None:
        nd.mul_(live)
    return nfl_y, s_nfl, nd


def _focal_and_derivative(
    u: Tensor, p: Tensor, logp: Tensor, gamma: float
) -> tuple[Tensor, Tensor]:
    """``FL = -u^gamma log p`` and ``dFL/dlog p = u^gamma (gamma t - 1)``, ``t = p log p / u``
    clamped to its range ``[-1, 0]`` (``u = 1 - p`` > 0; per-element vectors)."""
    if gamma == 0:
        return -logp, -torch.ones_like(logp)
    t = torch.mul(p, logp).div_(u).clamp_(-1.0, 0.0)
    ug = _pow_gamma(u, gamma)
    fl = torch.mul(ug, logp).neg_()
    return fl, t.mul_(ug).mul_(gamma).sub_(ug)


def _one_minus_p_y_terms(p: Tensor, y: LabelIndex, k: float):
    """Analytic terms of ``k (1 - p_y)`` (MAE, RCE) from the softmax's label column: the value
    (exact to ``k eps`` absolute) and ``dL/dlog p_y = -k p_y``, with no ``exp`` pass."""
    p_y = gather_column(p, y)
    return torch.rsub(p_y, 1.0).mul_(k), [], [(y, p_y * -k)]


@register_loss("ce", "cross_entropy")
class CrossEntropy(RobustLoss):
    """Cross-entropy ``-log p_y`` (baseline; memorises label noise).

    Same value and gradient as :func:`torch.nn.functional.cross_entropy` for integer targets.

    References:
        Standard; see e.g. Goodfellow et al., *Deep Learning* (2016), §6.2.2.
    """

    pointwise = True

    def class_losses(self, logp: Tensor) -> Tensor:
        return -logp

    def _focal_terms(self) -> FocalTerms:
        return FocalTerms(0.0, a_f=1.0)  # (the focal loss with gamma = 0)

    def _column(self, s: Tensor) -> tuple[Tensor, float]:
        return -s, -1.0


@register_loss("gce", "lq")
class GCE(RobustLoss):
    """Generalized cross-entropy (Lq loss): ``(1 - p_y^q) / q``.

    ``q -> 0`` recovers CE, ``q = 1`` gives ``1 - p_y`` (MAE up to a factor 2). Bounded by ``1/q``;
    the gradient is ``p_y^q`` times CE's, which down-weights hard (likely mislabelled) samples.
    Computed as ``-expm1(q log p_y) / q``, exact for small ``q``.

    Args:
        q: Exponent in (0, 1]; paper default 0.7 (Keras and PyMIC default to 0.5).
        weight, ignore_index, reduction: As in :class:`torch.nn.CrossEntropyLoss`.

    References:
        Zhang & Sabuncu, "Generalized Cross Entropy Loss for Training Deep Neural Networks with
        Noisy Labels", NeurIPS 2018.
    """

    pointwise = True

    def __init__(self, q: float = 0.7, **kw) -> None:
        super().__init__(**kw)
        self.q = _pos("q", q)
        if self.q > 1:
            raise ValueError(f"q must be in (0, 1], got {q}.")

    def class_losses(self, logp: Tensor) -> Tensor:
        return -torch.expm1(self.q * logp) / self.q

    def _focal_terms(self) -> FocalTerms:
        return FocalTerms(col=(1.0 / self.q, -1.0 / self.q, 0.0, 1.0, self.q, 0))  # (1 - p^q) / q

    def _column(self, s: Tensor) -> tuple[Tensor, Tensor]:
        pq = torch.exp(self.q * s)
        return (1 - pq) / self.q, -pq


@register_loss("truncated_gce", "truncated_lq")
class TruncatedGCE(GCE):
    """Truncated Lq loss: ``Lq(p_y)`` if ``p_y > k`` else ``Lq(k)`` (a constant, zero gradient).

    This is the stateless form of the truncated loss; samples whose label probability is below ``k``
    stop contributing gradient. (The paper additionally prunes such samples every few epochs with a
    per-sample weight buffer.)

    Args:
        q: Lq exponent, paper default 0.7.
        k: Truncation threshold in (0, 1), paper default 0.5.

    References:
        Zhang & Sabuncu, NeurIPS 2018 (§3.3, truncated Lq loss).
    """

    def __init__(self, q: float = 0.7, k: float = 0.5, **kw) -> None:
        super().__init__(q=q, **kw)
        if not 0 < k < 1:
            raise ValueError(f"k must be in (0, 1), got {k}.")
        self.k = float(k)

    def class_losses(self, logp: Tensor) -> Tensor:
        lq = super().class_losses(logp)
        cap = (1 - self.k**self.q) / self.q
        return torch.clamp(lq, max=cap)

    def _focal_terms(self) -> FocalTerms:
        # (1 - max(p, k)^q) / q, no gradient where p < k
        return FocalTerms(col=(1.0 / self.q, -1.0 / self.q, self.k, 1.0, self.q, 3))

    def _column(self, s: Tensor) -> tuple[Tensor, Tensor]:
        lq, d = super()._column(s)
        cap = (1 - self.k**self.q) / self.q
        keep = lq <= cap  # torch.clamp passes the gradient where the value is not clipped
        return torch.clamp(lq, max=cap), d * keep


@register_loss("mae")
class MAE(RobustLoss):
    """Mean absolute error on the probability simplex: ``scale * (1 - p_y)``.

    ``||p - e_y||_1 = 2 (1 - p_y)``, so ``scale=2`` is the L1 distance; the APL/ANL code uses
    ``scale=1`` (default here). Symmetric: ``sum_k L(p, k) = scale * (C - 1)``. Robust to symmetric
    noise but can underfit with many classes.

    References:
        Ghosh, Kumar & Sastry, "Robust Loss Functions under Label Noise for Deep Neural Networks",
        AAAI 2017.
    """

    pointwise = True

    def __init__(self, scale: float = 1.0, **kw) -> None:
        super().__init__(**kw)
        self.scale = _pos("scale", scale)

    def class_losses(self, logp: Tensor) -> Tensor:
        return self.scale * one_minus_p(logp)

    def _focal_terms(self) -> FocalTerms:
        return FocalTerms(c=self.scale)

    def _index_terms(self, z: Tensor, y: Tensor, p: Tensor, lse: Tensor):
        return _one_minus_p_y_terms(p, y, self.scale)


@register_loss("rce")
class RCE(RobustLoss):
    """Reverse cross-entropy ``-sum_k p_k log q_k`` with ``log 0 := A``: ``-A (1 - p_y)``.

    Args:
        A: Value of ``log 0`` (< 0). Default ``ln(1e-4) = -9.21``, what all public PyTorch code
            uses (it clamps the one-hot at 1e-4); the paper writes ``A = -4`` (``SCE_A_PAPER``).

    References:
        Wang et al., "Symmetric Cross Entropy for Robust Learning with Noisy Labels", ICCV 2019.
    """

    pointwise = True

    def __init__(self, A: float = SCE_A_CODE, **kw) -> None:
        super().__init__(**kw)
        if not A < 0:
            raise ValueError(f"A must be < 0 (it stands for log 0), got {A}.")
        self.A = float(A)

    def class_losses(self, logp: Tensor) -> Tensor:
        return -self.A * one_minus_p(logp)

    def _focal_terms(self) -> FocalTerms:
        return FocalTerms(c=-self.A)

    def _index_terms(self, z: Tensor, y: Tensor, p: Tensor, lse: Tensor):
        return _one_minus_p_y_terms(p, y, -self.A)


@register_loss("sce")
class SCE(RobustLoss):
    """Symmetric cross-entropy ``alpha * CE + beta * RCE``.

    Args:
        alpha: CE weight. Paper CIFAR-10 0.1 (default), CIFAR-100 6.0.
        beta: RCE weight. Paper CIFAR-10 1.0 (default), CIFAR-100 0.1.
        A: ``log 0`` in RCE; default ``ln(1e-4)`` (code), ``-4`` in the paper.

    References:
        Wang et al., "Symmetric Cross Entropy for Robust Learning with Noisy Labels", ICCV 2019.
    """

    pointwise = True

    def __init__(self, alpha: float = 0.1, beta: float = 1.0, A: float = SCE_A_CODE, **kw) -> None:
        super().__init__(**kw)
        self.alpha = _pos("alpha", alpha, strict=False)
        self.beta = _pos("beta", beta, strict=False)
        if not A < 0:
            raise ValueError(f"A must be < 0 (it stands for log 0), got {A}.")
        self.A = float(A)

    def class_losses(self, logp: Tensor) -> Tensor:
        return self.alpha * (-logp) + self.beta * (-self.A) * one_minus_p(logp)

    def _focal_terms(self) -> FocalTerms:
        return FocalTerms(0.0, a_f=self.alpha, c=-self.beta * self.A)  # alpha CE + beta RCE

    def _column(self, s: Tensor) -> tuple[Tensor, Tensor]:
        ell = self.alpha * (-s) + self.beta * (-self.A) * one_minus_p(s)
        return ell, self.beta * self.A * s.exp() - self.alpha


@register_loss("nce")
class NCE(RobustLoss):
    """Normalized cross-entropy ``-log p_y / sum_k (-log p_k)``; ``sum_k NCE_k = 1``.

    References:
        Ma et al., "Normalized Loss Functions for Deep Learning with Noisy Labels", ICML 2020.
    """

    _weighted_terms = True

    def __init__(self, scale: float = 1.0, **kw) -> None:
        super().__init__(**kw)
        self.scale = _pos("scale", scale)

    def class_losses(self, logp: Tensor) -> Tensor:
        nl = -logp
        return self.scale * nl / nl.sum(1, keepdim=True)

    def element_loss(self, logp: Tensor, target: Tensor, soft: bool) -> Tensor:
        if soft:
            return super().element_loss(logp, target, soft)
        nl_y = -logp.gather(1, target.unsqueeze(1)).squeeze(1)
        return self.scale * nl_y / (-logp).sum(1)

    def _focal_terms(self) -> FocalTerms:
        return FocalTerms(0.0, a_n=self.scale)  # (NFL with gamma = 0)

    def _index_terms(self, z: Tensor, y: Tensor, p: Tensor, lse: Tensor, w: float = 1.0):
        scale = self.scale * w  # (w: weight of this part in a composite loss)
        # L = f_y / S with f = -log p, S = sum_k f_k: dL/dlog p_k = (L - [k = y]) / S
        lse1 = lse.squeeze(1)
        inv = torch.mul(lse1, z.shape[1]).sub_(z.sum(1)).reciprocal_()  # 1 / sum_k -log p_k
        L = torch.sub(lse1, gather_column(z, y)).mul_(inv)
        k = inv.mul_(scale) if scale != 1 else inv
        return (
            L * scale if scale != 1 else L,
            [(None, L * k, z.shape[1])],
            [(y, k.neg())],
        )


@register_loss("focal")
class FocalLoss(RobustLoss):
    """Focal loss ``-(1 - p_y)^gamma log p_y`` (not noise-robust by itself; the NFL's numerator).

    ``(1 - p)^gamma`` is evaluated as ``exp(gamma * log(1 - p))`` with a stable ``log(1 - p)``, so
    gradients stay finite for saturated predictions even for ``gamma < 1``. For integer targets the
    gradient is the closed form ``dFL/dlog p_y = u^gamma (gamma p_y log p_y / u - 1)``,
    ``u = 1 - p_y`` (summed from the other classes when ``p_y > 1/2``; ``p log p / u`` lies in
    ``[-1, 0]`` and is clamped there against rounding noise at saturation), the exact derivative,
    not a detached focal factor.

    Args:
        gamma: Focusing parameter, default 2.0 (Lin et al.).

    References:
        Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
    """

    def __init__(self, gamma: float = 2.0, **kw) -> None:
        super().__init__(**kw)
        self.gamma = _pos("gamma", gamma, strict=False)

    def class_losses(self, logp: Tensor) -> Tensor:
        return _focal_class_losses(logp, self.gamma)

    def _focal_terms(self) -> FocalTerms:
        return FocalTerms(self.gamma, a_f=1.0)

    def _index_terms(self, z: Tensor, y: Tensor, p: Tensor, lse: Tensor):
        s = gather_column(z, y) - lse.squeeze(1)
        p_y = gather_column(p, y)
        u = torch.rsub(p_y, 1.0)
        over = p_y > 0.5
        if not _common.host_checks(p) or bool(over.any()):  # 1 - p_y from the other classes
            keep = _keep_mask(p)
            rest = _rest_of_big(p, keep, out=keep).squeeze(1)
            u = torch.where(over, rest, u)
        fl, d = _focal_and_derivative(u, p_y, s, self.gamma)
        return fl, [], [(y, d)]


@register_loss("nfl")
class NFL(RobustLoss):
    """Normalized focal loss ``FL_y / sum_k FL_k``, ``FL_k = -(1 - p_k)^gamma log p_k``.

    ``sum_k NFL_k = 1``. The focal factor is differentiated exactly (the reference code detaches it)
    through a stable ``log(1 - p)``: no NaN when ``p -> 1`` (naive autograd through
    ``(1 - p)**gamma`` with ``gamma < 1`` gives ``0 * inf``). Integer targets use the closed form
    ``dL/dlog p_k = ([k = y] FL'_y - L FL'_k) / sum_j FL_j`` (see :class:`FocalLoss` for ``FL'``).

    Args:
        gamma: Focusing parameter, APL default 0.5.

    References:
        Ma et al., "Normalized Loss Functions for Deep Learning with Noisy Labels", ICML 2020.
    """

    _weighted_terms = True

    def __init__(self, gamma: float = 0.5, scale: float = 1.0, **kw) -> None:
        super().__init__(**kw)
        self.gamma = _pos("gamma", gamma, strict=False)
        self.scale = _pos("scale", scale)

    def class_losses(self, logp: Tensor) -> Tensor:
        fl = _focal_class_losses(logp, self.gamma)
        return self.scale * fl / fl.sum(1, keepdim=True)

    def _focal_terms(self) -> FocalTerms:
        return FocalTerms(self.gamma, a_n=self.scale)

    def _index_terms(self, z: Tensor, y: Tensor, p: Tensor, lse: Tensor, w: float = 1.0):
        scale = self.scale * w  # (w: weight of this part in a composite loss)
        # L = f_y / S, f = FL, S = sum_k f_k: dL/dlog p_k = ([k = y] f'_y - L f'_k) / S
        nfl_y, s_nfl, nd = _focal_dense(p, z, lse, self.gamma, y)  # -FL_y, -sum FL, -FL'
        # (N, *) arithmetic in place on the fresh vectors: on a grid each is a large temporary
        k = s_nfl.reciprocal_().mul_(-scale)  # scale / S, S = sum FL = -s_nfl
        L = nfl_y.mul_(k).neg_()  # scale FL_y / S (nfl_y = -FL_y)
        col = gather_column(nd, y, remember=False).mul_(k).neg_()
        kl = k.mul_(L) if scale == 1 else k.mul_(L).div_(scale)  # scale L / S
        return L, [(nd, kl, nd.sum(1))], [(y, col)]


@register_loss("ngce")
class NGCE(RobustLoss):
    """Normalized GCE ``(1 - p_y^q) / (C - sum_k p_k^q)``.

    Args:
        q: Exponent, default 0.7.

    References:
        Ma et al., ICML 2020.
    """

    _weighted_terms = True

    def __init__(self, q: float = 0.7, scale: float = 1.0, **kw) -> None:
        super().__init__(**kw)
        self.q = _pos("q", q)
        self.scale = _pos("scale", scale)

    def class_losses(self, logp: Tensor) -> Tensor:
        num = -torch.expm1(self.q * logp)  # 1 - p^q
        return self.scale * num / num.sum(1, keepdim=True)

    def element_loss(self, logp: Tensor, target: Tensor, soft: bool) -> Tensor:
        if soft:
            return super().element_loss(logp, target, soft)
        num_y = -torch.expm1(self.q * logp.gather(1, target.unsqueeze(1)).squeeze(1))
        return self.scale * num_y / (-torch.expm1(self.q * logp)).sum(1)

    def _focal_terms(self) -> FocalTerms:
        return FocalTerms(self.q, a_n=self.scale, kind="gce")

    def _index_terms(self, z: Tensor, y: Tensor, p: Tensor, lse: Tensor, w: float = 1.0):
        scale = self.scale * w  # (w: weight of this part in a composite loss)
        # f_k = 1 - p_k^q, f'_k = -q p_k^q, S = C - sum_k p_k^q
        q = self.q
        pq = torch.sub(z, lse).mul_(q).exp_()  # p^q (in place: cheaper than pow here)
        spq = pq.sum(1)
        inv = torch.rsub(spq, z.shape[1]).reciprocal_()  # 1 / S
        s = gather_column(z, y) - lse.squeeze(1)
        L = torch.expm1(s.mul_(q)).neg_().mul_(inv)  # (1 - p_y^q) / S
        kq = scale * q
        return (
            L * scale if scale != 1 else L,
            [(pq, (L * inv).mul_(kq), spq)],
            [(y, gather_column(pq, y).mul(inv).mul_(-kq))],
        )


@register_loss("nmae")
class NMAE(RobustLoss):
    """Normalized MAE ``(1 - p_y) / (C - 1)`` (MAE divided by its class sum).

    References:
        Ma et al., ICML 2020.
    """

    def __init__(self, scale: float = 1.0, **kw) -> None:
        super().__init__(**kw)
        self.scale = _pos("scale", scale)

    def class_losses(self, logp: Tensor) -> Tensor:
        return self.scale * one_minus_p(logp) / (logp.shape[1] - 1)

    def _fused_call(self, z: Tensor) -> Callable[..., tuple[Tensor, Tensor | None]]:
        # (its MAE coefficient depends on the number of classes: not a part of a composite call)
        terms = FocalTerms(c=self.scale / (z.shape[1] - 1))
        return functools.partial(_fused.focal_family, terms=terms)

    def _index_terms(self, z: Tensor, y: Tensor, p: Tensor, lse: Tensor):
        s = gather_column(z, y) - lse.squeeze(1)
        k = self.scale / (z.shape[1] - 1)
        return k * one_minus_p(s), [], [(y, -k * s.exp())]


@register_loss("agce")
class AGCE(RobustLoss):
    """Asymmetric generalized cross-entropy ``((a + 1)^q - (a + p_y)^q) / q``.

    ``q = 1`` gives ``1 - p_y``.

    Args:
        a: Offset > 0, ALFs CIFAR-10 default 0.6.
        q: Exponent > 0, ALFs CIFAR-10 default 0.6.

    References:
        Zhou et al., "Asymmetric Loss Functions for Learning with Noisy Labels", ICML 2021.
    """

    pointwise = True

    def __init__(self, a: float = 0.6, q: float = 0.6, scale: float = 1.0, **kw) -> None:
        super().__init__(**kw)
        self.a = _pos("a", a)
        self.q = _pos("q", q)
        self.scale = _pos("scale", scale)

    def class_losses(self, logp: Tensor) -> Tensor:
        p = logp.exp()
        return self.scale * ((self.a + 1) ** self.q - (self.a + p) ** self.q) / self.q

    def _focal_terms(self) -> FocalTerms:
        k = self.scale / self.q  # k (a + 1)^q - k (a + p)^q
        return FocalTerms(col=(k * (self.a + 1) ** self.q, -k, self.a, 1.0, self.q, 0))

    def _column(self, s: Tensor) -> tuple[Tensor, Tensor]:
        p = s.exp()
        apq1 = (self.a + p) ** (self.q - 1)
        ell = self.scale * ((self.a + 1) ** self.q - apq1 * (self.a + p)) / self.q
        return ell, -self.scale * apq1 * p


@register_loss("aul")
class AUL(RobustLoss):
    """Asymmetric unhinged loss ``((a - p_y)^q - (a - 1)^q) / q``, ``a > 1``.

    ``q = 1`` gives ``1 - p_y``.

    Args:
        a: Offset > 1, ALFs CIFAR-10 default 5.5.
        q: Exponent > 0, ALFs CIFAR-10 default 3.

    References:
        Zhou et al., ICML 2021.
    """

    pointwise = True

    def __init__(self, a: float = 5.5, q: float = 3.0, scale: float = 1.0, **kw) -> None:
        super().__init__(**kw)
        if not a > 1:
            raise ValueError(f"a must be > 1, got {a}.")
        self.a = float(a)
        self.q = _pos("q", q)
        self.scale = _pos("scale", scale)

    def class_losses(self, logp: Tensor) -> Tensor:
        p = logp.exp()
        return self.scale * ((self.a - p) ** self.q - (self.a - 1) ** self.q) / self.q

    def _focal_terms(self) -> FocalTerms:
        k = self.scale / self.q  # k (a - p)^q - k (a - 1)^q
        return FocalTerms(col=(-k * (self.a - 1) ** self.q, k, self.a, -1.0, self.q, 0))

    def _column(self, s: Tensor) -> tuple[Tensor, Tensor]:
        p = s.exp()
        apq1 = (self.a - p) ** (self.q - 1)
        ell = self.scale * (apq1 * (self.a - p) - (self.a - 1) ** self.q) / self.q
        return ell, -self.scale * apq1 * p


@register_loss("ael")
class AEL(RobustLoss):
    """Asymmetric exponential loss ``exp(-p_y / a)``.

    Args:
        a: Temperature > 0, ALFs CIFAR-10 default 2.5.

    References:
        Zhou et al., ICML 2021.
    """

    pointwise = True

    def __init__(self, a: float = 2.5, scale: float = 1.0, **kw) -> None:
        super().__init__(**kw)
        self.a = _pos("a", a)
        self.scale = _pos("scale", scale)

    def class_losses(self, logp: Tensor) -> Tensor:
        return self.scale * torch.exp(-logp.exp() / self.a)

    def _focal_terms(self) -> FocalTerms:
        return FocalTerms(col=(0.0, self.scale, 0.0, -1.0 / self.a, 1.0, 1))  # scale e^(-p / a)

    def _column(self, s: Tensor) -> tuple[Tensor, Tensor]:
        p = s.exp()
        ell = self.scale * torch.exp(-p / self.a)
        return ell, -ell * p / self.a


@register_loss("nnce")
class NNCE(RobustLoss):
    """Normalized negative cross-entropy ``1 - (A + log p_y) / sum_k (A + log p_k)``.

    ``log p`` is clamped at ``log(min_prob)`` and ``A = -log(min_prob)``, so every term is >= 0;
    ``sum_k NNCE_k = C - 1``.

    Args:
        min_prob: Probability floor, default 1e-7.

    References:
        Ye et al., "Active Negative Loss Functions for Learning with Noisy Labels", NeurIPS 2023.
    """

    _weighted_terms = True

    def __init__(self, min_prob: float = 1e-7, scale: float = 1.0, **kw) -> None:
        super().__init__(**kw)
        if not 0 < min_prob < 1:
            raise ValueError(f"min_prob must be in (0, 1), got {min_prob}.")
        self.min_prob = float(min_prob)
        self.scale = _pos("scale", scale)

    def class_losses(self, logp: Tensor) -> Tensor:
        A = -math.log(self.min_prob)
        s = A + torch.clamp(logp, min=-A)
        return self.scale * (1 - s / s.sum(1, keepdim=True))

    def element_loss(self, logp: Tensor, target: Tensor, soft: bool) -> Tensor:
        if soft:
            return super().element_loss(logp, target, soft)
        A = -math.log(self.min_prob)
        s = A + torch.clamp(logp, min=-A)
        return self.scale * (1 - s.gather(1, target.unsqueeze(1)).squeeze(1) / s.sum(1))

    def _focal_terms(self) -> FocalTerms:
        return FocalTerms(0.0, a_nn=self.scale, min_prob=self.min_prob)  # (NNFL with gamma = 0)

    def _index_terms(self, z: Tensor, y: Tensor, p: Tensor, lse: Tensor, w: float = 1.0):
        scale = self.scale * w  # (w: weight of this part in a composite loss)
        # L = 1 - f_y / S, f_k = A + max(log p_k, -A), f'_k = [log p_k >= -A]
        A = -math.log(self.min_prob)
        c = z.shape[1]
        lse1 = lse.squeeze(1)
        if _common.host_checks(z) and float(torch.sub(lse1, z.amin(1)).amax()) <= A:
            # no probability below the floor (a free check on the CPU): f_k = A + log p_k, so
            # S = C A + sum_k z_k - C lse and f'_k = 1; reductions only, no dense temporaries
            inv = torch.mul(lse1, -c).add_(z.sum(1)).add_(c * A).reciprocal_()  # 1 / S
            L = torch.sub(gather_column(z, y), lse1).add_(A).mul_(inv)  # f_y / S
            ell = torch.rsub(L, 1.0)
            nk = inv.mul_(-scale)  # -scale / S
            return ell.mul_(scale) if scale != 1 else ell, [(None, L.mul_(nk).neg_(), c)], [(y, nk)]
        logp = z - lse
        f = torch.clamp(logp, min=-A).add_(A)
        live = (logp >= -A).to(z.dtype)
        S = f.sum(1)
        fy = gather_column(f, y)
        k = scale / S
        return (
            scale * (1 - fy / S),
            [(live, k * fy / S, live.sum(1))],
            [(y, -k * gather_column(live, y))],
        )


@register_loss("nnfl")
class NNFL(RobustLoss):
    """Normalized negative focal loss: NNCE with ``A + log p_k`` replaced by ``(1 - p_k)^gamma``-
    weighted terms, ``1 - (A - FL_y) / sum_k (A - FL_k)`` with ``FL`` clamped at ``A``.

    Args:
        gamma: Focusing parameter, default 0.5.
        min_prob: Probability floor, default 1e-7 (``A = -log(min_prob)``).

    References:
        Ye et al., NeurIPS 2023 (ANL-FL).
    """

    _weighted_terms = True

    def __init__(
        self, gamma: float = 0.5, min_prob: float = 1e-7, scale: float = 1.0, **kw
    ) -> None:
        super().__init__(**kw)
        self.gamma = _pos("gamma", gamma, strict=False)
        if not 0 < min_prob < 1:
            raise ValueError(f"min_prob must be in (0, 1), got {min_prob}.")
        self.min_prob = float(min_prob)
        self.scale = _pos("scale", scale)

    def class_losses(self, logp: Tensor) -> Tensor:
        A = -math.log(self.min_prob)
        # FL(max(log p, -A)): the floor's constant (1 - min_prob)^gamma A below it; above it FL of the
        # true p (a clamped vector would change the largest class's 1 - p, the sum of the others)
        floor = A * (1.0 - self.min_prob) ** self.gamma
        fl = torch.where(logp >= -A, _focal_class_losses(logp, self.gamma), floor)
        s = A - fl
        return self.scale * (1 - s / s.sum(1, keepdim=True))

    def _focal_terms(self) -> FocalTerms:
        return FocalTerms(self.gamma, a_nn=self.scale, min_prob=self.min_prob)

    def _index_terms(self, z: Tensor, y: Tensor, p: Tensor, lse: Tensor, w: float = 1.0):
        scale = self.scale * w  # (w: weight of this part in a composite loss)
        # f_k = A - FL(max(log p_k, -A)), L = 1 - f_y / S: as NNCE with f'_k = -FL'_k [log p_k >= -A]
        A = -math.log(self.min_prob)
        # no probability near or below the floor (a free check on the CPU): nothing is clamped (the
        # margin covers the rounding between softmax's p and exp(z - lse) at the boundary)
        floor = not _common.host_checks(z) or float(p.amin()) < self.min_prob * 1.01
        nfl_y, s_nfl, df = _focal_dense(  # f' = -FL'
            p, z, lse, self.gamma, y, min_prob=self.min_prob if floor else None
        )
        # f_k = A - FL_k; (N, *) arithmetic in place on the fresh vectors
        S = s_nfl.add_(z.shape[1] * A)
        L = nfl_y.add_(A).div_(S)  # f_y / S
        k = S.reciprocal_().mul_(scale)
        ell = torch.rsub(L, 1.0).mul_(scale)
        col = gather_column(df, y, remember=False).mul_(k).neg_()
        return ell, [(df, k.mul_(L), df.sum(1))], [(y, col)]


_ACTIVE = {
    "nce": NCE,
    "nfl": NFL,
    "ngce": NGCE,
    "nmae": NMAE,
    "ce": CrossEntropy,
    "focal": FocalLoss,
    "gce": GCE,
}
_PASSIVE = {
    "rce": RCE,
    "mae": MAE,
    "agce": AGCE,
    "aul": AUL,
    "ael": AEL,
    "nmae": NMAE,
    "nnce": NNCE,
    "nnfl": NNFL,
}


#: class attribute marking losses whose ``_index_terms`` take a weight ``w``
_WEIGHTED = "_weighted_terms"


def _part_terms(part: RobustLoss, w: float, z: Tensor, y: LabelIndex, p: Tensor, lse: Tensor):
    if _WEIGHTED in type(part).__dict__:
        return part._index_terms(z, y, p, lse, w=w)
    return part._index_terms(z, y, p, lse)


def _make_part(part: RobustLoss | str, table: dict[str, type[RobustLoss]], kw: dict) -> RobustLoss:
    if isinstance(part, RobustLoss):
        return part
    key = str(part).lower()
    if key not in table:
        raise ValueError(f"unknown loss {part!r}; expected one of {sorted(table)} or a RobustLoss.")
    return table[key](**kw)


class ActivePassive(RobustLoss):
    """Active-passive loss ``alpha * active + beta * passive`` (APL / ALFs / ANL framework).

    ``active`` (e.g. NCE, NFL) maximises the label's probability, ``passive`` (RCE, MAE, AGCE, NNCE...)
    minimises the others'; normalised/bounded members make the sum robust while avoiding underfitting.
    ``weight``/``ignore_index``/``reduction`` of the composite apply; those of the parts are ignored.

    Args:
        active: A loss module or name (``"nce"``, ``"nfl"``, ``"ngce"``, ``"nmae"``, ``"ce"``...).
        passive: A loss module or name (``"rce"``, ``"mae"``, ``"agce"``, ``"aul"``, ``"ael"``,
            ``"nnce"``...).
        alpha: Weight of the active part (APL CIFAR-10: 1).
        beta: Weight of the passive part (APL CIFAR-10: 1).
        active_kw, passive_kw: Constructor arguments when the parts are given by name.

    Presets: :meth:`preset` with ``"nce+rce"``, ``"nfl+rce"``, ``"nce+mae"`` (alpha=beta=1),
    ``"nce+agce"`` (alpha=1, beta=4, a=6, q=1.5), ``"nce+aul"`` (alpha=1, beta=4, a=6.3, q=1.5): the
    CIFAR-10 values of the reference configs.

    References:
        Ma et al., "Normalized Loss Functions for Deep Learning with Noisy Labels", ICML 2020;
        Zhou et al., "Asymmetric Loss Functions for Learning with Noisy Labels", ICML 2021.
    """

    PRESETS: dict[str, dict] = {
        "nce+rce": {"active": "nce", "passive": "rce", "alpha": 1.0, "beta": 1.0},
        "nfl+rce": {"active": "nfl", "passive": "rce", "alpha": 1.0, "beta": 1.0},
        "nce+mae": {"active": "nce", "passive": "mae", "alpha": 1.0, "beta": 1.0},
        "nce+agce": {
            "active": "nce",
            "passive": "agce",
            "alpha": 1.0,
            "beta": 4.0,
            "passive_kw": {"a": 6.0, "q": 1.5},
        },
        "nce+aul": {
            "active": "nce",
            "passive": "aul",
            "alpha": 1.0,
            "beta": 4.0,
            "passive_kw": {"a": 6.3, "q": 1.5},
        },
    }

    def __init__(
        self,
        active: RobustLoss | str = "nce",
        passive: RobustLoss | str = "rce",
        alpha: float = 1.0,
        beta: float = 1.0,
        *,
        active_kw: dict | None = None,
        passive_kw: dict | None = None,
        **kw,
    ) -> None:
        super().__init__(**kw)
        self.active = _make_part(active, _ACTIVE, dict(active_kw or {}))
        self.passive = _make_part(passive, _PASSIVE, dict(passive_kw or {}))
        if not (self.active.linear and self.passive.linear):
            raise ValueError("active and passive must be per-label (linear) losses.")
        self.alpha = _pos("alpha", alpha, strict=False)
        self.beta = _pos("beta", beta, strict=False)

    @classmethod
    def preset(cls, name: str, **overrides) -> ActivePassive:
        """Build a named preset (``"nce+rce"``, ``"nfl+rce"``, ``"nce+mae"``, ``"nce+agce"``,
        ``"nce+aul"``); keyword arguments override the preset's."""
        key = name.lower().replace(" ", "")
        if key not in cls.PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(cls.PRESETS)}.")
        args = dict(cls.PRESETS[key])
        for k in ("active_kw", "passive_kw"):
            if k in overrides:
                args[k] = {**args.get(k, {}), **overrides.pop(k)}
        args.update(overrides)
        return cls(**args)

    def class_losses(self, logp: Tensor) -> Tensor:
        return self.alpha * self.active.class_losses(logp) + self.beta * self.passive.class_losses(
            logp
        )

    def element_loss(self, logp: Tensor, target: Tensor, soft: bool) -> Tensor:
        if soft:
            return super().element_loss(logp, target, soft)
        a = self.active.element_loss(logp, target, soft)
        return self.alpha * a + self.beta * self.passive.element_loss(logp, target, soft)

    def _has_analytic(self) -> bool:
        return self.active._has_analytic() and self.passive._has_analytic()

    def _focal_terms(self) -> FocalTerms | None:
        ta, tp = self.active._focal_terms(), self.passive._focal_terms()
        if ta is None or tp is None:
            return None
        return ta.scaled(self.alpha).combine(tp.scaled(self.beta))

    def _index_terms(self, z: Tensor, y: Tensor, p: Tensor, lse: Tensor):
        a, b = self.alpha, self.beta
        # the normalised losses take their weight as an argument (folded in their coefficients)
        la, da, ca = _part_terms(self.active, a, z, y, p, lse)
        if _WEIGHTED in type(self.active).__dict__:
            a = 1.0
        lp, dp, cp = _part_terms(self.passive, b, z, y, p, lse)
        if _WEIGHTED in type(self.passive).__dict__:
            b = 1.0

        def sc(w: float, c: Tensor | float) -> Tensor | float:
            return c if w == 1.0 else w * c  # (the presets' weights are mostly 1: no extra pass)

        dense = [(base, sc(a, c), bs) for base, c, bs in da]
        dense += [(base, sc(b, c), bs) for base, c, bs in dp]
        cols = [(i, sc(a, c)) for i, c in ca] + [(i, sc(b, c)) for i, c in cp]
        ell = torch.add(la, lp, alpha=b) if a == 1.0 else (la * a).add_(lp, alpha=b)
        return ell, dense, cols


def _preset_factory(name: str):
    def factory(**kw) -> ActivePassive:
        return ActivePassive.preset(name, **kw)

    factory.__name__ = name.replace("+", "_").upper()
    factory.__doc__ = f"ActivePassive preset {name!r}: {ActivePassive.PRESETS[name]}."
    return factory


for _n in ActivePassive.PRESETS:
    register_loss(_n)(_preset_factory(_n))


@register_loss("anl", "anl_ce")
class ANL(ActivePassive):
    """Active negative loss ``alpha * NCE + beta * NNCE`` (ANL-CE; ``active="nfl"`` gives ANL-FL).

    The paper also adds an L1 penalty ``delta * ||w||_1`` on the model's parameters; it is not part of
    the loss value, use :func:`l1_penalty` (CIFAR-10: delta=5e-5 with no weight decay).

    Args:
        alpha: NCE weight, CIFAR-10 default 5 (CIFAR-100: 10).
        beta: NNCE weight, CIFAR-10 default 5 (CIFAR-100: 1).
        min_prob: NNCE probability floor, default 1e-7.
        active: ``"nce"`` (ANL-CE) or ``"nfl"`` (ANL-FL, then ``passive`` is NNFL).
        gamma: Focusing parameter of ANL-FL.

    References:
        Ye et al., "Active Negative Loss Functions for Learning with Noisy Labels", NeurIPS 2023.
    """

    def __init__(
        self,
        alpha: float = 5.0,
        beta: float = 5.0,
        min_prob: float = 1e-7,
        active: str = "nce",
        gamma: float = 0.5,
        **kw,
    ) -> None:
        if active == "nce":
            a, p = NCE(), NNCE(min_prob=min_prob)
        elif active == "nfl":
            a, p = NFL(gamma=gamma), NNFL(gamma=gamma, min_prob=min_prob)
        else:
            raise ValueError(f"active must be 'nce' or 'nfl', got {active!r}.")
        super().__init__(a, p, alpha, beta, **kw)


def l1_penalty(model: nn.Module, delta: float = 5e-5, *, only_weights: bool = False) -> Tensor:
    """ANL's parameter penalty ``delta * sum |w|`` over the trainable parameters of ``model``.

    Args:
        model: The network being trained.
        delta: Penalty strength; ANL CIFAR-10 5e-5, CIFAR-100 5e-7.
        only_weights: Skip 1-D parameters (biases, normalisation scales).

    Returns:
        A scalar tensor to add to the loss.

    References:
        Ye et al., NeurIPS 2023.
    """
    _pos("delta", delta, strict=False)
    params = [
        p for p in model.parameters() if p.requires_grad and not (only_weights and p.dim() <= 1)
    ]
    if not params:
        raise ValueError("model has no trainable parameters for the L1 penalty.")
    return delta * sum(p.abs().sum() for p in params)


@register_loss("taylor_ce", "taylor")
class TaylorCE(RobustLoss):
    """Taylor cross-entropy ``sum_{k=1..t} (1 - p_y)^k / k`` (CE's Taylor series about ``p_y = 1``).

    ``t = 1`` gives ``1 - p_y`` (MAE); ``t -> inf`` recovers CE. Not "Taylor softmax".

    Args:
        order: Number of terms ``t`` >= 1, default 2.

    References:
        Feng et al., "Can Cross Entropy Loss Be Robust to Label Noise?", IJCAI 2020.
    """

    pointwise = True

    def __init__(self, order: int = 2, **kw) -> None:
        super().__init__(**kw)
        if int(order) != order or order < 1:
            raise ValueError(f"order must be an integer >= 1, got {order}.")
        self.order = int(order)

    def class_losses(self, logp: Tensor) -> Tensor:
        u = one_minus_p(logp)
        out = u.clone()
        term = u
        for k in range(2, self.order + 1):
            term = term * u
            out = out + term / k
        return out

    def _focal_terms(self) -> FocalTerms:
        return FocalTerms(col=(0.0, 1.0, 0.0, 0.0, float(self.order), 2))  # sum_{k<=t} u^k / k

    def _column(self, s: Tensor) -> tuple[Tensor, Tensor]:
        # L = sum_{k<=t} u^k / k, dL/du = sum_{k<t} u^k (Horner), du/ds = -p
        p = s.exp()
        u = one_minus_p(s)
        ell = u / self.order
        du = torch.ones_like(u)
        for k in range(self.order - 1, 0, -1):
            ell = (ell + 1.0 / k) * u if k > 0 else ell
            du = du * u + 1
        return ell, -du * p


@register_loss("bootstrap")
class Bootstrap(RobustLoss):
    """Bootstrapping loss: CE against ``beta * q + (1 - beta) * p_hat``.

    Soft (``hard=False``): ``p_hat = p`` (gradient flows, i.e. ``beta * CE + (1 - beta) * H(p)``, CE
    with entropy minimisation); hard: ``p_hat = onehot(argmax p)`` (no gradient through it).

    Args:
        beta: Weight of the given label; defaults 0.95 (soft) and 0.8 (hard) as in the paper.
        hard: Hard or soft bootstrapping.

    References:
        Reed et al., "Training Deep Neural Networks on Noisy Labels with Bootstrapping", ICLR 2015
        workshop.
    """

    linear = False

    def __init__(self, beta: float | None = None, hard: bool = False, **kw) -> None:
        super().__init__(**kw)
        beta = (0.8 if hard else 0.95) if beta is None else float(beta)
        if not 0 <= beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {beta}.")
        self.beta = beta
        self.hard = bool(hard)

    def element_loss(self, logp: Tensor, target: Tensor, soft: bool) -> Tensor:
        ce = (-(target * logp).sum(1)) if soft else -logp.gather(1, target.unsqueeze(1)).squeeze(1)
        if self.hard:
            pred = logp.detach().argmax(1, keepdim=True)
            other = -logp.gather(1, pred).squeeze(1)
        else:
            other = -(logp.exp() * logp).sum(1)
        return self.beta * ce + (1 - self.beta) * other

    def _has_analytic(self) -> bool:
        return True

    def _focal_terms(self) -> FocalTerms:
        # beta CE (the focal loss with gamma = 0) + (1 - beta) H(p) or (1 - beta) (-log p_max)
        if self.hard:
            return FocalTerms(0.0, a_f=self.beta, a_m=1.0 - self.beta)
        return FocalTerms(0.0, a_f=self.beta, a_h=1.0 - self.beta)

    def _index_terms(self, z: Tensor, y: Tensor, p: Tensor, lse: Tensor):
        b = self.beta
        s = gather_column(z, y) - lse.squeeze(1)
        if self.hard:
            # the prediction is the first arg-max of the logits (of p: the same class), and
            # -log p_pred = lse - max z: no index is needed in the forward
            z_max = z.amax(1)
            other = lse.squeeze(1) - z_max
            return (
                s.mul_(-b).add_(other, alpha=1 - b),
                [],
                [(y, -b), (ArgmaxIndex(z, z_max), b - 1)],
            )
        # H = -sum p log p, dH/dlog p_k = -p_k (log p_k + 1)
        plogp = torch.sub(z, lse).mul_(p)
        ent = -plogp.sum(1)
        base = plogp.add_(p)
        return b * (-s) + (1 - b) * ent, [(base, -(1 - b), 1 - ent)], [(y, -b)]


@register_loss("bootstrap_hard")
def bootstrap_hard(**kw) -> Bootstrap:
    """Hard bootstrapping preset: ``Bootstrap(hard=True)`` (beta 0.8)."""
    return Bootstrap(hard=True, **kw)
