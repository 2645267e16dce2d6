"""Projection radiography (X-ray) artifact kernels in the linear detector domain.

Images are radiographs ``(B, C, H, W)`` in the linear detector domain *before* log/LUT processing:
the primary transmission (1 = unattenuated beam at the nominal exposure, 0 = no photons). Per-sample
parameters are ``(B,)`` tensors; noise comes from recorded seeds. Lengths are in mm on the detector
(``pixel_mm`` per pixel).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..core.rng import new_generator
from .generic import gaussian_blur

__all__ = [
    "collimation",
    "dead_lines",
    "dead_pixels",
    "detector_noise",
    "exposure",
    "grid_lines",
    "heel_effect",
    "scatter",
]


def _b(v: Tensor | float, x: Tensor) -> Tensor:
    t = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    return t.reshape(-1, *([1] * (x.ndim - 1)))


def detector_noise(x: Tensor, photons: Tensor, gain: Tensor, sigma_e: Tensor, seeds: Tensor) -> Tensor:
    """Quantum (Poisson) and electronic (Gaussian) noise of an integrating flat-panel detector.

    The signal in detector units (DN) is ``S = g Poisson(N0 x) + sigma_e n``, so
    ``Var[S] = g E[S] + sigma_e^2`` (the photon-transfer line); the output is ``S / (g N0)``.

    Args:
        x: Transmission ``(B, C, H, W)`` (>= 0; negative values count as zero photons).
        photons: ``(B,)`` photons per pixel ``N0`` for an unattenuated beam.
        gain: ``(B,)`` detector gain ``g`` in DN per photon.
        sigma_e: ``(B,)`` electronic noise in DN.
        seeds: ``(B,)`` noise seeds.

    Returns:
        The noisy transmission (same scale as ``x``).
    """
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        gen = new_generator(int(seeds[i]), x.device)
        lam = (x[i].to(torch.float64).clamp_min(0) * float(photons[i]))
        cnt = torch.poisson(lam, generator=gen)
        e = torch.randn(lam.shape, generator=gen, device=x.device, dtype=torch.float64)
        sig = float(gain[i]) * cnt + float(sigma_e[i]) * e
        out[i] = (sig / (float(gain[i]) * float(photons[i]))).to(x.dtype)
    return out


def scatter(x: Tensor, spr: Tensor, sigma_px: Tensor) -> Tensor:
    """Add scattered radiation: a broad blur of the primary scaled to a scatter-to-primary ratio.

    $$ y = x + \\mathrm{SPR}\\,\\frac{\\bar x}{\\overline{x * G_\\sigma}}\\,(x * G_\\sigma) $$

    so the added mean is exactly ``SPR`` times the primary mean, and the contrast of a detail
    (``dI / I``) falls by ``1 / (1 + SPR)``.

    Args:
        x: Primary transmission ``(B, C, H, W)``.
        spr: ``(B,)`` scatter-to-primary ratio.
        sigma_px: ``(B,)`` scatter kernel standard deviation in pixels.

    Returns:
        Primary plus scatter.
    """
    sig = sigma_px.to(device=x.device, dtype=x.dtype).reshape(-1)
    # one sample at a time so each kernel's support depends on its own sigma only
    blurred = torch.cat([gaussian_blur(x[i : i + 1], sig[i : i + 1], truncate=3.0) for i in range(x.shape[0])])
    dims = tuple(range(1, x.ndim))
    norm = x.mean(dim=dims, keepdim=True) / blurred.mean(dim=dims, keepdim=True).clamp_min(1e-12)
    return x + _b(spr, x) * norm * blurred


def grid_lines(x: Tensor, cycles_per_px: Tensor, depth: Tensor, phase: Tensor, angle_rad: Tensor) -> Tensor:
    """Anti-scatter grid shadow sampled at the pixel pitch (aliasing gives moire).

    $$ y = x\\Big(1 - \\frac{d}{2}\\big(1 - \\cos(2\\pi f u + \\varphi)\\big)\\Big),\\quad
    u = c\\cos\\alpha + r\\sin\\alpha $$

    with ``f`` the grid frequency in cycles per pixel (``lines/cm * pixel_mm / 10``); sampled at
    the pixel centres, a frequency above 0.5 appears at the alias ``|f - round(f)|``.

    Args:
        x: ``(B, C, H, W)``.
        cycles_per_px: ``(B,)`` grid frequency in cycles per pixel.
        depth: ``(B,)`` peak-to-peak modulation depth in [0, 1].
        phase: ``(B,)`` phase in radians.
        angle_rad: ``(B,)`` orientation of the modulation (0: along the width axis).

    Returns:
        The modulated radiograph.
    """
    h, w = x.shape[-2:]
    dt, dev = x.dtype, x.device
    r = torch.arange(h, dtype=dt, device=dev)[:, None]
    c = torch.arange(w, dtype=dt, device=dev)[None, :]
    a = angle_rad.to(dev, dt).reshape(-1, 1, 1)
    u = c[None] * torch.cos(a) + r[None] * torch.sin(a)
    f = cycles_per_px.to(dev, dt).reshape(-1, 1, 1)
    ph = phase.to(dev, dt).reshape(-1, 1, 1)
    d = depth.to(dev, dt).reshape(-1, 1, 1)
    g = 1.0 - 0.5 * d * (1.0 - torch.cos(2 * math.pi * f * u + ph))
    return x * g.unsqueeze(1)


def dead_pixels(x: Tensor, indices: Tensor, values: Tensor) -> Tensor:
    """Set defective pixels (flat indices into ``H*W``, ``-1`` = unused) to fixed values.

    Args:
        x: ``(B, C, H, W)``.
        indices: ``(B, K)`` flat pixel indices (``-1`` entries are ignored).
        values: ``(B, K)`` the defective pixels' output (0 = dead, saturation = hot).

    Returns:
        The image with defects (all channels).
    """
    b, _c, h, w = x.shape
    idx = indices.to(x.device).long()
    ok = idx >= 0
    flat_mask = torch.zeros(b, h * w, dtype=x.dtype, device=x.device)
    flat_val = torch.zeros(b, h * w, dtype=x.dtype, device=x.device)
    safe = idx.clamp_min(0)
    flat_mask = flat_mask.scatter(1, safe, ok.to(x.dtype))
    flat_val = flat_val.scatter(1, safe, torch.where(ok, values.to(x.device, x.dtype), torch.zeros_like(flat_val[:, :1])))
    m = flat_mask.reshape(b, 1, h, w)
    v = flat_val.reshape(b, 1, h, w)
    return x * (1 - m) + v * m


def dead_lines(x: Tensor, lines: Tensor, axes: Tensor, values: Tensor) -> Tensor:
    """Set whole detector rows or columns (gate/readout line defects) to fixed values.

    Args:
        x: ``(B, C, H, W)``.
        lines: ``(B, K)`` line indices (``-1`` = unused).
        axes: ``(B,)`` 0 for rows, 1 for columns.
        values: ``(B, K)`` the lines' output values.

    Returns:
        The image with line defects.
    """
    b, _c, h, w = x.shape
    m = torch.zeros(b, 1, h, w, dtype=x.dtype, device=x.device)
    v = torch.zeros_like(m)
    for i in range(b):
        for k in range(lines.shape[1]):
            li = int(lines[i, k])
            if li < 0:
                continue
            val = float(values[i, k])
            if int(axes[i]) == 0 and li < h:
                m[i, :, li, :] = 1.0
                v[i, :, li, :] = val
            elif int(axes[i]) == 1 and li < w:
                m[i, :, :, li] = 1.0
                v[i, :, :, li] = val
    return x * (1 - m) + v * m


def heel_effect(
    x: Tensor, falloff: Tensor, direction: Tensor, *, pixel_mm: float, sid_mm: float = 1000.0, anode_angle_deg: float = 16.0
) -> Tensor:
    """Anode heel effect: intensity falls towards the anode side along the anode-cathode axis.

    X-rays leaving towards the anode traverse more target material: with anode angle ``alpha``
    and emission angle ``phi = atan(u / SID)`` (``u`` towards the anode), the relative intensity is
    ``g(u) = exp(-k (1/sin(alpha - phi) - 1/sin(alpha)))``, with ``k`` set so that
    ``g = 1 - falloff`` at the anode-side edge of the image.

    Args:
        x: ``(B, C, H, W)``.
        falloff: ``(B,)`` fractional intensity loss at the anode edge relative to the centre.
        direction: ``(B,)`` anode side: 0 = top (-H), 1 = bottom (+H), 2 = left (-W), 3 = right (+W).
        pixel_mm: Detector pixel size in mm.
        sid_mm: Source-to-image distance in mm.
        anode_angle_deg: Anode (target) angle in degrees.

    Returns:
        The radiograph times the heel profile.
    """
    b, _c, h, w = x.shape
    dt, dev = x.dtype, x.device
    alpha = math.radians(anode_angle_deg)
    out = []
    for i in range(b):
        d = int(direction[i])
        n = h if d in (0, 1) else w
        pos = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) * pixel_mm
        if d in (0, 2):
            pos = -pos
        phi_edge = min(math.atan(((n - 1) / 2) * pixel_mm / sid_mm), alpha - math.radians(1.0))
        phi = torch.atan(pos / sid_mm).clamp_max(phi_edge)
        denom = 1.0 / math.sin(alpha - phi_edge) - 1.0 / math.sin(alpha)
        k = -math.log(max(1e-6, 1.0 - float(falloff[i]))) / denom
        g = torch.exp(-k * (1.0 / torch.sin(alpha - phi) - 1.0 / math.sin(alpha))).to(dev, dt)
        out.append(g[:, None].expand(h, w) if d in (0, 1) else g[None, :].expand(h, w))
    return x * torch.stack(out).unsqueeze(1)


def exposure(x: Tensor, factor: Tensor, saturation: float | Tensor = 1.0) -> Tensor:
    """Under- or over-exposure with detector saturation: ``y = min(f x, s)``.

    Args:
        x: ``(B, C, H, W)`` transmission.
        factor: ``(B,)`` exposure relative to the nominal one (``2**stops``).
        saturation: Detector saturation level in the same units (1 = the unattenuated nominal beam).

    Returns:
        The re-exposed radiograph.
    """
    s = _b(saturation, x)
    return torch.minimum(x * _b(factor, x), s)


def collimation(x: Tensor, margins: Tensor, angle_rad: Tensor, *, penumbra_px: float, leak: float) -> Tensor:
    """Collimator blades cut the field: outside a (rotated) rectangle only ``leak`` is transmitted.

    Args:
        x: ``(B, C, H, W)``.
        margins: ``(B, 4)`` blade positions as fractions of the height/width: top, bottom, left,
            right.
        angle_rad: ``(B,)`` rotation of the collimator about the image centre.
        penumbra_px: Edge width (logistic scale) in pixels.
        leak: Transmission through the blades.

    Returns:
        The collimated radiograph.
    """
    h, w = x.shape[-2:]
    dt, dev = x.dtype, x.device
    r = torch.arange(h, dtype=dt, device=dev)[:, None] - (h - 1) / 2
    cc = torch.arange(w, dtype=dt, device=dev)[None, :] - (w - 1) / 2
    a = angle_rad.to(dev, dt).reshape(-1, 1, 1)
    rr = r[None] * torch.cos(a) - cc[None] * torch.sin(a)
    cr = r[None] * torch.sin(a) + cc[None] * torch.cos(a)
    mg = margins.to(dev, dt)
    top = -(h / 2) + mg[:, 0].reshape(-1, 1, 1) * h
    bot = (h / 2) - mg[:, 1].reshape(-1, 1, 1) * h
    lef = -(w / 2) + mg[:, 2].reshape(-1, 1, 1) * w
    rig = (w / 2) - mg[:, 3].reshape(-1, 1, 1) * w
    s = max(penumbra_px, 1e-3)
    m = (
        torch.sigmoid((rr - top) / s)
        * torch.sigmoid((bot - rr) / s)
        * torch.sigmoid((cr - lef) / s)
        * torch.sigmoid((rig - cr) / s)
    )
    return x * (leak + (1 - leak) * m).unsqueeze(1)
