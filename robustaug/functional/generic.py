"""Generic image degradations: noise, blur, resolution loss and intensity curves.

All kernels take a float batch ``(B, C, *spatial)`` (2 or 3 spatial axes) and per-sample parameters
as ``(B,)`` tensors (or Python scalars, broadcast to the batch). They are deterministic: any noise is
generated from recorded integer seeds. None writes into its input.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.rng import new_generator, per_sample_noise

__all__ = [
    "contrast",
    "downsample",
    "gamma",
    "gaussian_blur",
    "gaussian_kernel1d",
    "gaussian_noise",
    "motion_blur",
    "motion_psf",
    "poisson_noise",
    "separable_conv",
]


def _per_sample(v: Tensor | float, x: Tensor) -> Tensor:
    """Per-sample values ``(B,)`` (or a scalar) on x's device/dtype, shaped to broadcast against x."""
    t = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.numel() != x.shape[0]:
        raise ValueError(f"Per-sample parameters need {x.shape[0]} values (the batch), got {t.numel()}.")
    return t.reshape(-1, *([1] * (x.ndim - 1)))


def _spatial(x: Tensor) -> int:
    nd = x.ndim - 2
    if nd not in (2, 3):
        raise ValueError(f"`x` must be (B,C,H,W) or (B,C,D,H,W), got shape {tuple(x.shape)}.")
    return nd


# ----------------------------------------------------------------------------- noise
def gaussian_noise(x: Tensor, std: Tensor | float, seeds: Tensor) -> Tensor:
    """Additive white Gaussian noise: ``y = x + std * n``, ``n ~ N(0, 1)`` i.i.d. per voxel.

    Args:
        x: ``(B, C, *spatial)``.
        std: Standard deviation in intensity units, per sample ``(B,)`` or a scalar.
        seeds: ``(B,)`` int64 seeds of the per-sample noise fields.

    Returns:
        The noisy batch.
    """
    n = per_sample_noise(seeds, x.shape[1:], device=x.device, dtype=x.dtype)
    return x + _per_sample(std, x) * n


def poisson_noise(x: Tensor, photons: Tensor | float, seeds: Tensor) -> Tensor:
    """Shot (quantum) noise: ``y = Poisson(photons * x) / photons``.

    The intensity is read as a linear detector signal where 1.0 corresponds to ``photons`` counts, so
    ``E[y] = x`` and ``Var[y] = x / photons``. Negative intensities have no photon interpretation and
    are treated as zero counts.

    Args:
        x: ``(B, C, *spatial)``, intensities >= 0.
        photons: Photon count per unit intensity, per sample ``(B,)`` or a scalar.
        seeds: ``(B,)`` int64 seeds.

    Returns:
        The noisy batch (not differentiable).
    """
    lam = (x.clamp_min(0) * _per_sample(photons, x)).to(torch.float64)
    out = torch.empty_like(lam)
    for i, s in enumerate(seeds.tolist()):
        g = new_generator(s, x.device)
        out[i] = torch.poisson(lam[i], generator=g)
    return (out / _per_sample(photons, out)).to(x.dtype)


# ----------------------------------------------------------------------------- blur
def gaussian_kernel1d(sigma: Tensor, radius: int) -> Tensor:
    """Normalised Gaussian kernels ``(B, 2*radius+1)`` for per-sample ``sigma`` ``(B,)`` (pixels).

    ``sigma == 0`` gives the delta kernel.
    """
    t = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    s = sigma.reshape(-1, 1)
    safe = torch.where(s > 0, s, torch.ones_like(s))
    k = torch.exp(-0.5 * (t / safe) ** 2)
    delta = (t == 0).to(sigma.dtype).expand_as(k)
    k = torch.where(s > 0, k, delta)
    return k / k.sum(dim=1, keepdim=True)


def separable_conv(x: Tensor, kernels: Sequence[Tensor | None], mode: str = "reflect") -> Tensor:
    """Convolve each sample with its own 1D kernel along each spatial axis.

    Args:
        x: ``(B, C, *spatial)``.
        kernels: One entry per spatial axis: ``(B, K)`` kernels (odd ``K``) or ``None`` to skip.
        mode: Padding mode (``"reflect"``, ``"replicate"``, ``"constant"`` or ``"circular"``).

    Returns:
        The filtered batch.
    """
    nd = _spatial(x)
    b = x.shape[0]
    y = x
    for axis, k in enumerate(kernels):
        if k is None:
            continue
        r = (k.shape[1] - 1) // 2
        if r == 0 or b == 0:
            continue
        ax = 2 + axis
        n = y.shape[ax]
        pad_mode = mode if (mode != "reflect" or n > r) else "replicate"
        w = k.to(device=x.device, dtype=x.dtype).flip(-1)
        if k.requires_grad:
            y = _conv_axis_conv1d(y, w, ax, r, pad_mode)
            continue
        # Each line along the axis is padded at its own two ends (no leakage between lines) and
        # filtered by shift-and-add of the padded slab: K fused passes, no movedim copies.
        if bool((w == w[:1]).all()):
            y = _conv_axis_shift_add(y, w[0], ax, r, pad_mode, nd)
        else:
            y = torch.cat(
                [_conv_axis_shift_add(y[i : i + 1], w[i], ax, r, pad_mode, nd) for i in range(b)]
            )
    return y


def _conv_axis_shift_add(y: Tensor, w: Tensor, ax: int, r: int, pad_mode: str, nd: int) -> Tensor:
    """``out[i] = sum_j w[j] pad(y)[i + j]`` along tensor dim ``ax`` (cross-correlation)."""
    n = y.shape[ax]
    pads = [0] * (2 * nd)
    pos = 2 * (y.ndim - 1 - ax)
    pads[pos] = pads[pos + 1] = r
    yp = F.pad(y, pads, mode=pad_mode)
    wl = w.tolist()
    symmetric = all(wl[j] == wl[-1 - j] for j in range(r))
    out = yp.narrow(ax, r, n) * wl[r]
    for j in range(r):
        if symmetric:
            out.add_(yp.narrow(ax, j, n) + yp.narrow(ax, 2 * r - j, n), alpha=wl[j])
        else:
            out.add_(yp.narrow(ax, j, n), alpha=wl[j])
            out.add_(yp.narrow(ax, 2 * r - j, n), alpha=wl[2 * r - j])
    return out


def _conv_axis_conv1d(y: Tensor, w: Tensor, ax: int, r: int, pad_mode: str) -> Tensor:
    """Differentiable (w.r.t. the kernels) per-sample conv1d along tensor dim ``ax``."""
    b = y.shape[0]
    moved = y.movedim(ax, -1)
    shp = moved.shape
    n = shp[-1]
    per = []
    for i in range(b):
        rows = F.pad(moved[i].reshape(-1, 1, n), (r, r), mode=pad_mode)
        per.append(F.conv1d(rows, w[i : i + 1].unsqueeze(1)).reshape(shp[1:]))
    return torch.stack(per).movedim(-1, ax)


def gaussian_blur(
    x: Tensor, sigma: Tensor | float | Sequence[Tensor | float], truncate: float = 3.0
) -> Tensor:
    """Separable Gaussian blur with per-sample, per-axis sigma in pixels.

    $$ y = x * G_\\sigma,\\quad G_\\sigma(t) \\propto e^{-t^2 / (2\\sigma^2)} $$

    Args:
        x: ``(B, C, *spatial)``.
        sigma: Standard deviation in pixels: a scalar or ``(B,)`` for all axes, or a sequence with one
            such entry per spatial axis (anisotropic blur, e.g. from ``sigma_mm / spacing``).
        truncate: Kernel radius in units of sigma.

    Returns:
        The blurred batch (reflect padding; the mean is preserved).
    """
    nd = _spatial(x)
    if isinstance(sigma, (list, tuple)):
        if len(sigma) != nd:
            raise ValueError(f"`sigma` needs one entry per spatial axis ({nd}), got {len(sigma)}.")
        sigmas = list(sigma)
    else:
        sigmas = [sigma] * nd
    kernels = []
    for s in sigmas:
        st = torch.as_tensor(s, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        smax = float(st.max()) if st.numel() else 0.0
        radius = max(0, math.ceil(truncate * smax))
        kernels.append(gaussian_kernel1d(st, radius) if radius > 0 else None)
    return separable_conv(x, kernels, mode="reflect")


def motion_psf(length: Tensor, angles: Tensor, nd: int, *, samples_per_px: int = 8) -> Tensor:
    """Linear motion point-spread functions: a line segment of ``length`` pixels, unit sum.

    In 2D ``angles`` is ``(B,)`` in degrees from the last (W) axis towards the H axis; in 3D it is
    ``(B, 2)``: azimuth in the H-W plane and elevation towards D. The segment is rasterised by
    splatting densely sampled points with linear interpolation, so sub-pixel lengths and arbitrary
    angles give a smooth, centred kernel.

    Returns:
        ``(B, K, K)`` or ``(B, K, K, K)`` kernels with odd ``K``.
    """
    b = length.shape[0]
    dtype = torch.float64
    length = length.to(dtype)
    lmax = float(length.max()) if b else 1.0
    r = max(1, math.ceil(lmax / 2) + 1)
    k = 2 * r + 1
    n = max(2, math.ceil(lmax * samples_per_px) + 1)
    t = torch.linspace(-0.5, 0.5, n, dtype=dtype).reshape(1, n) * length.reshape(-1, 1)  # (B, n)
    if nd == 2:
        a = torch.deg2rad(angles.to(dtype).reshape(-1, 1))
        dirs = [torch.sin(a), torch.cos(a)]  # (H, W)
    else:
        ang = angles.to(dtype).reshape(-1, 2)
        az, el = torch.deg2rad(ang[:, :1]), torch.deg2rad(ang[:, 1:])
        dirs = [torch.sin(el), torch.cos(el) * torch.sin(az), torch.cos(el) * torch.cos(az)]
    coords = [t * d + r for d in dirs]  # each (B, n), in [0, K-1]
    psf = torch.zeros((b, *([k] * nd)), dtype=dtype)
    flat = psf.reshape(b, -1)
    floors = [c.floor() for c in coords]
    fracs = [c - f for c, f in zip(coords, floors)]
    for corner in itertools.product((0, 1), repeat=nd):
        w = torch.ones_like(t)
        idx = torch.zeros_like(t, dtype=torch.int64)
        for ax in range(nd):
            off = corner[ax]
            w = w * (fracs[ax] if off else 1 - fracs[ax])
            pos = (floors[ax].to(torch.int64) + off).clamp(0, k - 1)
            idx = idx * k + pos
        flat.scatter_add_(1, idx, w)
    psf = flat.reshape(psf.shape)
    return psf / psf.sum(dim=tuple(range(1, nd + 1)), keepdim=True)


def motion_blur(x: Tensor, length: Tensor | float, angles: Tensor) -> Tensor:
    """Linear motion blur: convolution with a line-segment PSF (see :func:`motion_psf`).

    Args:
        x: ``(B, C, *spatial)``.
        length: Blur length in pixels, ``(B,)`` or scalar (0 is the identity).
        angles: ``(B,)`` degrees (2D) or ``(B, 2)`` azimuth/elevation degrees (3D).

    Returns:
        The blurred batch (reflect padding; the mean is preserved).
    """
    nd = _spatial(x)
    b, c = x.shape[:2]
    length_t = torch.as_tensor(length, dtype=torch.float64).reshape(-1).expand(b).cpu()
    psf = motion_psf(length_t, angles.cpu(), nd).to(device=x.device, dtype=x.dtype)
    k = psf.shape[-1]
    r = (k - 1) // 2
    pads = [r] * (2 * nd)
    pad_mode = "reflect" if min(x.shape[2:]) > r else "replicate"
    xp = F.pad(x.reshape(1, b * c, *x.shape[2:]), pads, mode=pad_mode)
    w = psf.repeat_interleave(c, dim=0).unsqueeze(1).flip(list(range(2, 2 + nd)))
    conv = F.conv2d if nd == 2 else F.conv3d
    return conv(xp, w, groups=b * c).reshape(x.shape)


# ----------------------------------------------------------------------------- resolution
def downsample(
    x: Tensor,
    factor: float,
    axes: Sequence[int] | None = None,
    *,
    anti_alias: bool = True,
    mode: str = "linear",
) -> Tensor:
    """Loss of resolution: resample to ``1/factor`` of the grid along ``axes`` and back.

    With ``anti_alias`` the signal is first low-pass filtered by a Gaussian whose FWHM equals the new
    pixel size (``sigma = factor / (2 sqrt(2 ln 2))`` pixels), as an acquisition with larger voxels
    would; without it, the result aliases. The output is interpolated back onto the input grid.

    Args:
        x: ``(B, C, *spatial)``, one factor for the whole batch.
        factor: Downsampling factor >= 1 (1 is the identity).
        axes: Spatial axes (0-based among the spatial axes) to degrade; all by default.
        anti_alias: Gaussian pre-filter before decimation.
        mode: ``"nearest"``, ``"linear"`` or ``"cubic"`` (cubic is 2D only) for both resampling steps.

    Returns:
        A batch of the input's shape.
    """
    nd = _spatial(x)
    if factor < 1:
        raise ValueError(f"`factor` must be >= 1, got {factor}.")
    axes = list(range(nd)) if axes is None else [a % nd for a in axes]
    if factor == 1:
        return x
    y = x
    if anti_alias:
        s = factor / (2 * math.sqrt(2 * math.log(2)))
        sig = [s if a in axes else 0.0 for a in range(nd)]
        y = gaussian_blur(y, sig)
    size = list(x.shape[2:])
    small = [max(1, round(n / factor)) if a in axes else n for a, n in enumerate(size)]
    if mode == "nearest":
        im = "nearest-exact"
        kw: dict = {}
    elif mode == "linear":
        im = "bilinear" if nd == 2 else "trilinear"
        kw = {"align_corners": False}
    elif mode == "cubic":
        if nd != 2:
            raise ValueError("`mode='cubic'` is available for 2D inputs only; use 'linear' for 3D.")
        im = "bicubic"
        kw = {"align_corners": False}
    else:
        raise ValueError(f"`mode` must be 'nearest', 'linear' or 'cubic', got {mode!r}.")
    y = F.interpolate(y, size=small, mode=im, **kw)
    return F.interpolate(y, size=size, mode=im, **kw)


# ----------------------------------------------------------------------------- intensity
def gamma(x: Tensor, gamma_: Tensor | float, vmin: Tensor | None = None, vmax: Tensor | None = None) -> Tensor:
    """Gamma curve on the per-sample intensity window ``[vmin, vmax]``.

    $$ y = v_{min} + (v_{max} - v_{min}) \\left(\\frac{x - v_{min}}{v_{max} - v_{min}}\\right)^{\\gamma} $$

    Args:
        x: ``(B, C, *spatial)``.
        gamma_: Exponent per sample (``(B,)`` or scalar), > 0; 1 is the identity.
        vmin: Per-sample window low end ``(B,)``; the sample minimum by default.
        vmax: Per-sample window high end ``(B,)``; the sample maximum by default.

    Returns:
        The remapped batch, within ``[vmin, vmax]`` for inputs inside the window.
    """
    b = x.shape[0]
    flat = x.reshape(b, -1)
    lo = flat.amin(1) if vmin is None else torch.as_tensor(vmin, dtype=x.dtype, device=x.device)
    hi = flat.amax(1) if vmax is None else torch.as_tensor(vmax, dtype=x.dtype, device=x.device)
    lo, hi = _per_sample(lo, x), _per_sample(hi, x)
    span = (hi - lo).clamp_min(torch.finfo(x.dtype).tiny)
    u = ((x - lo) / span).clamp(0.0, 1.0)
    eps = torch.finfo(x.dtype).eps
    g = _per_sample(gamma_, x)
    v = torch.where(u > 0, u.clamp_min(eps) ** g, torch.zeros_like(u))
    y = lo + span * v
    inside = (x >= lo) & (x <= hi)
    return torch.where(inside, y, x)


def contrast(x: Tensor, factor: Tensor | float) -> Tensor:
    """Linear contrast change about the per-sample mean: ``y = m + factor * (x - m)``.

    Args:
        x: ``(B, C, *spatial)``.
        factor: Per-sample factor (``(B,)`` or scalar), >= 0; < 1 reduces contrast, 1 is the identity.

    Returns:
        The batch with its mean kept and its standard deviation scaled by ``factor``.
    """
    m = x.mean(dim=tuple(range(1, x.ndim)), keepdim=True)
    return m + _per_sample(factor, x) * (x - m)
