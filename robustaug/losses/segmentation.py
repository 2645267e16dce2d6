"""Noise-robust Dice loss for 2-D/3-D segmentation (soft or integer masks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import RobustLoss, reduce_loss, register_loss

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
        with torch.autocast(device_type=z.device.type, enabled=False):
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
            w = torch.ones(c, dtype=z.dtype, device=z.device)
            if self.weight is not None:
                w = self.weight.to(dtype=z.dtype, device=z.device).clone()
            if not self.include_background:
                w = torch.cat([w.new_zeros(1), w[1:]])
            if float(w.sum()) <= 0:
                raise ValueError("the class weights used in the average sum to 0.")
            if self.reduction != "none" and self._analytic:
                a = (w / w.sum()).view(1, c).expand(n, c)
                per_sample = _DiceFn.apply(p, g, g2, a, self.gamma, self.eps)
                return reduce_loss(per_sample, None, self.reduction)
            diff = (p - g).abs()
            num = diff.pow(self.gamma) if self.gamma != 1 else diff
            den = vsum(p * p) + g2 + self.eps  # (N, C)
            coef = (w / w.sum()).view(1, c) / den  # (N, C)
            shape = [n, c] + [1] * (z.dim() - 2)
            if self.reduction == "none":
                vox = 1
                for s in z.shape[2:]:
                    vox *= s
                return vox * (num * coef.view(shape)).sum(1)
            per_sample = (vsum(num) * coef).sum(1)
            return reduce_loss(per_sample, None, self.reduction)
