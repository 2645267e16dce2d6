"""Image-quality metrics used by tests, severity calibration and reports."""

from __future__ import annotations

import torch
from torch import Tensor

from .generic import gaussian_kernel1d, separable_conv

__all__ = ["psnr", "ssim"]


def ssim(
    x: Tensor,
    y: Tensor,
    data_range: float | None = None,
    *,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Structural similarity per sample (Wang et al., IEEE TIP 13(4), 2004), 2D or 3D.

    $$ SSIM = \\frac{(2\\mu_x\\mu_y + C_1)(2\\sigma_{xy} + C_2)}
    {(\\mu_x^2 + \\mu_y^2 + C_1)(\\sigma_x^2 + \\sigma_y^2 + C_2)},\\ C_i = (k_i L)^2 $$

    Local statistics use a Gaussian window (sigma 1.5 px, radius 5 px), as in the paper.

    Args:
        x: ``(B, C, *spatial)``.
        y: Reference of the same shape.
        data_range: ``L``; defaults to the per-batch range of ``y``.
        sigma: Window standard deviation in pixels.
        k1: Stabiliser constant for the means.
        k2: Stabiliser constant for the variances.

    Returns:
        ``(B,)`` mean SSIM over channels and space.
    """
    if x.shape != y.shape:
        raise ValueError(f"`x` and `y` must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}.")
    x = x.to(torch.float64)
    y = y.to(torch.float64)
    nd = x.ndim - 2
    if data_range is None:
        data_range = float(y.max() - y.min()) or 1.0
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    b = x.shape[0]
    k = gaussian_kernel1d(torch.full((b,), sigma, dtype=torch.float64, device=x.device), 5)
    ks = [k] * nd

    def filt(t: Tensor) -> Tensor:
        return separable_conv(t, ks, mode="replicate")

    mx, my = filt(x), filt(y)
    vx = filt(x * x) - mx * mx
    vy = filt(y * y) - my * my
    cxy = filt(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.reshape(b, -1).mean(1)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per sample in dB: ``10 log10(L^2 / MSE)``."""
    mse = (x.to(torch.float64) - y.to(torch.float64)).pow(2).reshape(x.shape[0], -1).mean(1)
    return 10 * torch.log10(data_range**2 / mse.clamp_min(1e-30))
