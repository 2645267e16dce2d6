"""Noise-robust Dice loss for 2-D/3-D segmentation (soft or integer masks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _fused
from ._common import (
    LabelIndex,
    RobustLoss,
    _scaled_by,
    class_dot,
    host_checks,
    no_autocast,
    reduce_loss,
    register_loss,
)

__all__ = ["NoiseRobustDice"]


class _DiceFn(torch.autograd.Function):
    """Per-sample ``sum_c a_c N_c / D_c`` of :class:`NoiseRobustDice` as a function of ``p`` with
    a closed-form gradient: ``dL/dp = a_c (gamma |d|^(gamma-1) sign(d) / D_c - 2 p N_c / D_c^2)``,
    ``d = p - g``, ``N_c = sum_v |d|^gamma``, ``D_c = sum_v p^2 + G_c + eps``."""

    @staticmethod
    def forward(ctx, p, g, g2, a, gamma, eps):  # type: ignore[override]
        red = tuple(range(2, p.dim()))

        def vsum(t: Tensor) -> Tensor:
            return t.sum(red) if red else t

        d = p - g
        ad = d.abs()
        if gamma == 1:
            num, t = ad, None
        else:
            t = ad.pow(gamma - 1)
            num = t * ad
        den = vsum(p * p) + g2 + eps  # (N, C)
        N = vsum(num)
        ctx.save_for_backward(p, d, t, den, N, a)
        ctx.gamma = gamma
        return (a * N / den).sum(1)

    @staticmethod
    def backward(ctx, go):  # type: ignore[override]
        p, d, t, den, N, a = ctx.saved_tensors
        shape = [*den.shape] + [1] * (p.dim() - 2)
        k = (go.unsqueeze(1) * a / den).view(shape)  # (N, C, 1...)
        s = torch.sign(d) if t is None else torch.copysign(t, d).mul_(ctx.gamma)
        gp = s.mul_(k)
        gp.addcmul_(p, (-2.0 * N / den).view(shape) * k)
        return gp, None, None, None, None, None


def _power(x: Tensor, e: float) -> Tensor:
    """``x^e`` in place (``x >= 0``, ``0 < e <= 1``): ``sqrt`` for 1/2, else ``exp(e log x)`` (0 stays
    0)."""
    if e == 0.5:
        return x.sqrt_()
    if e == 1:
        return x
    return x.pow_(e)


def _class_counts(y: Tensor, n: int, c: int) -> Tensor:
    """Voxels of each class in each sample, ``(N, C)`` int64, from labels ``y`` ``(N, *)`` in
    ``[0, C)``: one ``bincount`` of ``y + C n``."""
    rows = torch.arange(0, n * c, c, device=y.device).view(n, 1)
    return torch.bincount((y.reshape(n, -1) + rows).view(-1), minlength=n * c).view(n, c)


def _dice_rows(
    p: Tensor, idx: LabelIndex, a: Tensor, gamma: float, eps: float, kappa: float
) -> tuple[Tensor, Tensor]:
    """:class:`_DiceIndexFn` for ``(N, C)`` (one voxel per sample and class), in ``p``'s buffer.

    Off the label ``d = p > 0``, so with ``r = 1 / (p^2 + eps)`` and ``T = p^(gamma-1) r``
    (``s = p^(gamma-1)``, ``N = p s``, ``D = 1 / r``): the loss term is ``a p T`` and ``dL/dp = h =
    kappa a (gamma s / D - 2 N p / D^2) = kappa a T E`` with ``E = gamma - 2 + 2 eps r`` (from ``p^2
    r = 1 - eps r``: no cancellation). These dense formulas are applied everywhere and the label's
    column (``d = p - 1``, ``D = p^2 + 1 + eps``, ``sign(d) = -1``) is then set from the general
    formula (``O(N)``); ``dL/dz = p (h - sum_c p_c h_c)`` is written into ``p``'s buffer (two
    ``(N, C)`` temporaries from the loss's workspace, one ``sqrt`` pass for the default ``gamma = 3/2``). ``kappa`` is the
    reduction's factor (``1/N`` for the mean). The loss terms are summed by one ``dot`` of ``a T``
    and ``p`` (no product buffer), and equal class weights (the default) are a scalar folded into
    ``E`` and that sum. Returns the gradient and the sum of the per-sample losses.
    """
    eps_t = torch.full((), eps, dtype=p.dtype, device=p.device)
    r = torch.addcmul(eps_t, p, p, out=idx.scratch(p)).reciprocal_()
    t = idx.scratch(p)
    if gamma == 2:
        torch.mul(p, r, out=t)
    elif gamma == 1:
        t.copy_(r)
    else:
        if gamma == 1.5:
            torch.sqrt(p, out=t)
        else:
            _power(t.copy_(p), gamma - 1)
        t.mul_(r)
    # equal class weights (the default; a free check on the CPU): a scalar folded into E and the sum
    a0 = float(a[0]) if host_checks(a) and bool(a.amin() == a.amax()) else None
    if a0 is None:
        t.mul_(a)  # a T
    w = 1.0 if a0 is None else a0
    # kappa a E in r's buffer (r is not needed any more)
    e = torch.add(torch.full((), w * kappa * (gamma - 2.0), dtype=p.dtype, device=p.device), r,
                  alpha=2 * w * kappa * eps, out=r)
    # sum of the loss terms a p T over all elements, label column fixed below: one fused dot
    total = torch.dot(t.view(-1), p.view(-1))
    t_y = idx.take(t, remember=False)
    h = e.mul_(t)  # kappa a T E
    # the label's column: d = p_y - 1 <= 0, D = p_y^2 + 1 + eps, s = -|d|^(gamma-1) (0 where d = 0)
    p_y = idx.take(p, remember=False)
    a_y = a.index_select(0, idx.y)
    ad = torch.rsub(p_y, 1.0)
    r_y = torch.addcmul(torch.full((), 1.0 + eps, dtype=p.dtype, device=p.device), p_y, p_y)
    r_y.reciprocal_()
    s_y = torch.sign(ad) if gamma == 1 else ad.pow(gamma - 1)
    num_y = s_y * ad
    ratio_y = (a_y * num_y).mul_(r_y)
    h_y = (s_y * (-gamma)).sub_(num_y.mul_(p_y).mul_(r_y).mul_(2.0)).mul_(r_y).mul_(a_y * kappa)
    dense_y = t_y.mul_(p_y).mul_(w)  # what the dense sum took at the label
    total = total * w + ratio_y.sub_(dense_y).sum()
    idx.add_to(h, h_y.sub_(idx.take(h, remember=False)))
    ph = h.mul_(p)
    gz = torch.addcmul(ph, p, ph.sum(1, keepdim=True), value=-1.0, out=p)
    del ph, h, e, t
    idx.return_scratch(reuse=True)
    return gz, total


class _DiceIndexFn(torch.autograd.Function):
    """:class:`NoiseRobustDice` for integer masks with nothing ignored, from the logits, with the
    closed-form gradient (softmax Jacobian included) computed in the forward.

    With ``d = p - g``, ``N_c = sum_v |d|^gamma``, ``D_c = sum_v p^2 + G_c + eps`` (per sample),
    ``L = sum_c a_c N_c / D_c`` and ``s = |d|^(gamma-1) sign(d)``: ``dL/dp = h = gamma a s / D -
    2 a N p / D^2`` and ``dL/dz = p (h - sum_c p h)``. ``sign(d)`` is -1 at the label and +1
    elsewhere, except where ``d = 0``, where ``|d|^(gamma-1) = 0`` for ``gamma > 1``
    (``gamma = 1`` takes ``sign(d)`` itself); for ``1 < gamma < 2`` it is computed as ``d
    |d|^(gamma-2)`` (one ``rsqrt`` pass for the default 3/2) with ``|d|`` floored at the smallest
    normal float, so no sign fix-up of the label's column is needed, and ``N_c = sum_v s d``. On
    CPU every new ``(N, C, *)`` buffer costs several elementwise passes, so ``d`` and ``s`` live in
    the loss's workspace and the gradient is written into ``p``'s buffer (the softmax's output is
    the only new one); the voxel sums use norms or one ``vecdot`` (no temporary); the class counts
    ``G_c`` are one ``bincount``.
    """

    @staticmethod
    def forward(ctx, z, y, a, gamma, eps, reduction, ws):  # type: ignore[override]
        n, c = z.shape[:2]
        if _fused.usable(z):  # float32 on the CPU: the fused kernel (same formulas)
            per_sample, gz = _fused.dice(z, y, a, gamma, eps, 1.0 / n if reduction == "mean" else 1.0)
            ctx.save_for_backward(gz)
            return per_sample.sum() / n if reduction == "mean" else per_sample.sum()
        v = y[0].numel()
        shape_in = z.shape
        if v == 1:  # one voxel per sample: the (N, C) case
            z, y = z.reshape(n, c), y.reshape(n)
        # the gradient is of the reduced loss: "mean" folds 1/N into the class weights it uses
        ag = a / n if reduction == "mean" else a
        p = torch.softmax(z, dim=1)
        idx = LabelIndex(y, z.shape, ws)
        if v == 1:  # (N, C): every voxel sum is a single term
            gz, total = _dice_rows(p, idx, a, gamma, eps, 1.0 / n if reduction == "mean" else 1.0)
            ctx.save_for_backward(gz.view(shape_in))
            return total / n if reduction == "mean" else total
        # d = p - g in a workspace buffer (the label's column minus 1: one scatter of a constant)
        x = idx.scratch(p).copy_(p)
        idx.add_to(x, torch.full((), -1.0, dtype=p.dtype, device=p.device).expand(y.shape))
        p3, x3 = p.view(n, c, v), x.view(n, c, v)
        counts = _class_counts(y, n, c).to(p.dtype)  # G_c = sum_v g^2 = voxels of class c
        den = torch.linalg.vector_norm(p3, 2, dim=-1).square_().add_(counts).add_(eps)
        if gamma == 2:
            num, s = torch.linalg.vector_norm(x3, 2, dim=-1).square_(), x
        elif gamma == 1:
            num, s = torch.linalg.vector_norm(x3, 1, dim=-1), x.sign_()
        else:
            # s = sign(d) |d|^(gamma-1) = d |d|^(gamma-2) with |d| floored at the smallest normal
            # float (0 stays 0; a change only for subnormal |d|), N_c = sum_v s d: no sign fix-up of
            # the label's column and no second power pass
            s = torch.abs(x, out=idx.scratch(p)).clamp_min_(torch.finfo(p.dtype).tiny)
            s = s.rsqrt_() if gamma == 1.5 else s.pow_(gamma - 2.0)
            s.mul_(x)
            num = torch.linalg.vecdot(s.view(n, c, v), x3, dim=-1)
        inv = den.reciprocal_()
        ratio = num.mul_(inv)
        loss = ratio @ a
        shape = (n, c) + (1,) * (z.dim() - 2)
        beta = ratio.mul_(inv).mul_(-2.0 * ag).view(shape)
        alpha = inv.mul_(gamma * ag).view(shape)
        h = s.mul_(alpha).addcmul_(p, beta)
        # dL/dz = p (h - sum_c p h), written into p's buffer (the only new (N, C, *) buffer)
        gz = p.mul_(h.sub_(class_dot(p, h).unsqueeze(1))).view(shape_in)
        del h, s, x, x3
        idx.return_scratch(reuse=True)  # (x, s and the flat label offsets: nothing refers to them)
        ctx.save_for_backward(gz)
        return loss.mean() if reduction == "mean" else loss.sum()

    @staticmethod
    def backward(ctx, go):  # type: ignore[override]
        (gz,) = ctx.saved_tensors
        # the gradient of the reduced loss; returned as it is for ``loss.backward()``
        return _scaled_by(gz, go), None, None, None, None, None, None


@register_loss("nr_dice", "noise_robust_dice")
class NoiseRobustDice(RobustLoss):
    """Noise-robust Dice loss, per sample ``n`` and class ``c``:

    ``L_nc = sum_v |p_v - g_v|^gamma / (sum_v p_v^2 + sum_v g_v^2 + eps)``,

    averaged over classes (weighted by ``weight``) and samples. ``gamma = 2`` is the soft Dice loss
    ``1 - 2 sum p g / (sum p^2 + sum g^2)`` (squared denominators; PyMIC's implementation uses the
    linear ``sum(p + g)`` instead, so its ``gamma = 2`` is not Dice), ``gamma = 1`` a normalised MAE;
    ``gamma`` in between trades Dice's sensitivity for robustness to noisy masks.

    Reductions: ``"mean"`` is the mean over samples of the per-sample loss, ``"sum"`` their sum, and
    ``"none"`` returns the per-voxel share of each sample's loss, scaled by the number of voxels ``V``
    so that its mean equals ``"mean"`` (its sum over a sample's voxels is ``V * L_n``). Ignored voxels
    (``ignore_index``) are removed from numerator and denominators and get zero gradient; a sample
    whose voxels are all ignored contributes 0 (not NaN as torch's CE mean over no element).

    Args:
        gamma: Exponent in [1, 2]; paper default 1.5.
        eps: Denominator smoothing, default 1e-5.
        include_background: When False, class 0 is left out of the class average.
        weight, ignore_index, reduction: As in :class:`torch.nn.CrossEntropyLoss` (``weight``
            weights the class average).

    References:
        Wang et al., "A Noise-robust Framework for Automatic Segmentation of COVID-19 Pneumonia
        Lesions from CT Images", IEEE TMI 39(8), 2020.
    """

    linear = False
    #: closed-form backward for the "mean"/"sum" reductions (tests switch it off for reference)
    _analytic: bool = True

    def __init__(
        self, gamma: float = 1.5, eps: float = 1e-5, include_background: bool = True, **kw
    ) -> None:
        super().__init__(**kw)
        if not 1 <= gamma <= 2:
            raise ValueError(f"gamma must be in [1, 2], got {gamma}.")
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}.")
        self.gamma = float(gamma)
        self.eps = float(eps)
        self.include_background = bool(include_background)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits ``input`` ``(N, C, *)`` against a mask (indices or probabilities)."""
        z, target, soft, valid = self._prepare(input, target)
        n, c = z.shape[:2]
        with no_autocast(z.device.type):
            fast = self._analytic and self.reduction != "none" and not soft and valid is None
            if fast and target.numel() > 0:
                w = self._class_average(c, z)
                return _DiceIndexFn.apply(
                    z.contiguous(), target, w, self.gamma, self.eps, self.reduction, self.workspace()
                )
            p = F.softmax(z, dim=1)
            if soft:
                g = target
            else:  # one-hot built in place (no int64 one_hot + movedim + cast)
                g = torch.zeros_like(p).scatter_(1, target.unsqueeze(1), 1.0)
            if valid is not None:
                m = valid.unsqueeze(1).to(z.dtype)
                p = p * m
                g = g * m
            red = tuple(range(2, z.dim()))

            def vsum(t: Tensor) -> Tensor:
                return t.sum(red) if red else t

            g2 = vsum(g) if not soft else vsum(g * g)  # a 0/1 mask is its own square
            w = self._class_average(c, z)
            if self.reduction != "none" and self._analytic:
                a = w.view(1, c).expand(n, c)
                per_sample = _DiceFn.apply(p, g, g2, a, self.gamma, self.eps)
                return reduce_loss(per_sample, None, self.reduction)
            diff = (p - g).abs()
            num = diff.pow(self.gamma) if self.gamma != 1 else diff
            den = vsum(p * p) + g2 + self.eps  # (N, C)
            coef = w.view(1, c) / den  # (N, C)
            shape = [n, c] + [1] * (z.dim() - 2)
            if self.reduction == "none":
                vox = 1
                for s in z.shape[2:]:
                    vox *= s
                return vox * (num * coef.view(shape)).sum(1)
            per_sample = (vsum(num) * coef).sum(1)
            return reduce_loss(per_sample, None, self.reduction)

    def _class_average(self, c: int, z: Tensor) -> Tensor:
        """Normalised class weights ``a`` of the class average ``(C,)``."""
        w = torch.ones(c, dtype=z.dtype, device=z.device)
        if self.weight is not None:
            w = self.weight.to(dtype=z.dtype, device=z.device).clone()
        if not self.include_background:
            w = torch.cat([w.new_zeros(1), w[1:]])
        if float(w.sum()) <= 0:
            raise ValueError("the class weights used in the average sum to 0.")
        return w / w.sum()
