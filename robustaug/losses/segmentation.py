"""Noise-robust Dice loss for 2-D/3-D segmentation (soft or integer masks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import RobustLoss, as_probabilities, reduce_loss, register_loss

__all__ = ["NoiseRobustDice"]


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
            g = target if soft else as_probabilities(target, c, z.dtype)
            if valid is not None:
                m = valid.unsqueeze(1).to(z.dtype)
                p = p * m
                g = g * m
            red = tuple(range(2, z.dim()))
            diff = (p - g).abs()
            num = diff.pow(self.gamma) if self.gamma != 1 else diff

            def vsum(t: Tensor) -> Tensor:
                return t.sum(red) if red else t

            den = vsum(p * p) + vsum(g * g) + self.eps  # (N, C)
            w = torch.ones(c, dtype=z.dtype, device=z.device)
            if self.weight is not None:
                w = self.weight.to(dtype=z.dtype, device=z.device).clone()
            if not self.include_background:
                w = torch.cat([w.new_zeros(1), w[1:]])
            if float(w.sum()) <= 0:
                raise ValueError("the class weights used in the average sum to 0.")
            coef = (w / w.sum()).view(1, c) / den  # (N, C)
            shape = [n, c] + [1] * (z.dim() - 2)
            if self.reduction == "none":
                vox = 1
                for s in z.shape[2:]:
                    vox *= s
                return vox * (num * coef.view(shape)).sum(1)
            per_sample = (vsum(num) * coef).sum(1)
            return reduce_loss(per_sample, None, self.reduction)
