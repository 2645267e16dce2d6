"""A procedural B-mode ultrasound phantom (deterministic from a seed, no downloads).

The phantom is a scatterer-strength (echogenicity) map of a linear-array view: a bright skin line,
a hypoechoic fat layer, a fascia line, textured soft tissue, anechoic cysts, a hyperechoic
inclusion and a bright specular reflector. It is turned into an envelope image the way a scanner
forms one: complex circular Gaussian scatterers weighted by the echogenicity are convolved with a
Gaussian pulse-echo PSF (FWHM in mm) and the envelope is the magnitude; the B-mode image is the
log-compressed envelope.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..functional.ultrasound import FWHM_TO_SIGMA, log_compression

__all__ = ["ultrasound_phantom"]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    h, w = shape
    n = rng.standard_normal((h, w))
    fy = np.fft.fftfreq(h).reshape(h, 1)
    fx = np.fft.fftfreq(w).reshape(1, w)
    tf = np.exp(-2 * math.pi**2 * sigma_px**2 * (fy**2 + fx**2))
    out = np.real(np.fft.ifft2(np.fft.fft2(n) * tf))
    return out / (out.std() + 1e-12)


def ultrasound_phantom(
    shape: tuple[int, int] = (128, 128),
    *,
    seed: int = 0,
    spacing_mm: float | tuple[float, float] = 0.15,
    psf_fwhm_mm: tuple[float, float] = (0.3, 0.6),
    dynamic_range_db: float = 60.0,
    cysts: int | None = None,
) -> dict[str, Any]:
    """Generate a B-mode ultrasound phantom.

    Args:
        shape: ``(H, W)``: depth (rows, row 0 at the probe) and lateral width; each edge >= 8.
        seed: Seed of the anatomy and of the scatterers.
        spacing_mm: Pixel size in mm, a float or ``(axial, lateral)``.
        psf_fwhm_mm: Pulse-echo PSF FWHM ``(axial, lateral)`` in mm used to form the envelope.
        dynamic_range_db: Dynamic range of the log-compressed ``bmode`` image.
        cysts: Number of anechoic cysts; ``None`` draws 1-3 from the seed.

    Returns:
        A dict with float32 ``(1, H, W)`` images ``echogenicity`` (speckle-free RMS scatterer
        amplitude in [0, 1]), ``envelope`` (speckled envelope, clipped to [0, 1], 1 = full scale) and
        ``bmode`` (log-compressed, [0, 1]); boolean ``(H, W)`` masks ``cyst_mask``,
        ``reflector_mask`` and ``tissue_mask`` (homogeneous soft tissue); ``spacing_mm`` and ``seed``.

    Examples:
        >>> out = ultrasound_phantom((64, 64), seed=1)
        >>> out["envelope"].shape, float(out["envelope"].max()) <= 1.0
        (torch.Size([1, 64, 64]), True)
    """
    h, w = (int(s) for s in shape)
    if h < 8 or w < 8:
        raise ValueError(f"`shape` edges must be >= 8, got {tuple(shape)}.")
    sp = (float(spacing_mm),) * 2 if isinstance(spacing_mm, (int, float)) else tuple(map(float, spacing_mm))
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")

    # Layers (depth fractions, gently undulating boundaries).
    wob = 0.01 * np.sin(2 * math.pi * (xx * rng.uniform(0.5, 1.5) + rng.uniform()))
    skin = 0.04 + wob
    fat = 0.16 + rng.uniform(-0.03, 0.03) + 1.5 * wob
    echo = np.full((h, w), 0.36)
    echo = echo * (1 + 0.12 * _smooth_noise(rng, (h, w), max(2.0, 0.08 * min(h, w))))
    echo[yy < fat] = 0.18
    line = lambda y0, t: np.exp(-0.5 * ((yy - y0) / t) ** 2)  # noqa: E731
    thick = max(0.6 / h, 0.006)
    echo = np.maximum(echo, 0.8 * line(skin, thick))
    echo = np.maximum(echo, 0.65 * line(fat, thick))
    tissue = yy > fat + 0.04

    # Anechoic cysts, a hyperechoic inclusion and a specular reflector.
    n_cysts = int(rng.integers(1, 4)) if cysts is None else int(cysts)
    cyst_mask = np.zeros((h, w), bool)
    for _ in range(n_cysts):
        cy, cx = rng.uniform(0.45, 0.85), rng.uniform(0.2, 0.8)
        r = rng.uniform(0.06, 0.11)
        dist = np.sqrt((yy - cy) ** 2 + ((xx - cx) * w / h) ** 2)
        wgt = np.clip((r - dist) * min(h, w) + 0.5, 0, 1)
        echo = echo * (1 - wgt) + 0.02 * wgt
        cyst_mask |= dist < r
    iy, ix, ir = rng.uniform(0.5, 0.85), rng.uniform(0.15, 0.85), rng.uniform(0.05, 0.08)
    dist = np.sqrt((yy - iy) ** 2 + ((xx - ix) * w / h) ** 2)
    inc = np.clip((ir - dist) * min(h, w) + 0.5, 0, 1) * ~cyst_mask
    echo = echo * (1 - inc) + 0.7 * inc
    ry, rx0, rx1 = rng.uniform(0.28, 0.4), rng.uniform(0.15, 0.35), rng.uniform(0.6, 0.85)
    curve = ry + 0.04 * np.sin(math.pi * (xx - rx0) / max(rx1 - rx0, 1e-3))
    refl = line(curve, thick) * ((xx > rx0) & (xx < rx1))
    echo = np.maximum(echo, refl)
    reflector_mask = refl > 0.5
    tissue &= ~cyst_mask & (inc < 0.01) & (refl < 0.01)
    echo = np.clip(echo, 0.0, 1.0)

    # Envelope: complex scatterers weighted by the echogenicity, convolved with the PSF.
    n = (rng.standard_normal((h, w)) + 1j * rng.standard_normal((h, w))) * math.sqrt(0.5)
    fy = np.fft.fftfreq(h).reshape(h, 1)
    fx = np.fft.fftfreq(w).reshape(1, w)
    sa = psf_fwhm_mm[0] * FWHM_TO_SIGMA / sp[0]
    sl = psf_fwhm_mm[1] * FWHM_TO_SIGMA / sp[1]
    tf = np.exp(-2 * math.pi**2 * (sa**2 * fy**2 + sl**2 * fx**2))
    z = np.fft.ifft2(np.fft.fft2(echo * n) * tf) / math.sqrt(float((tf**2).mean()))
    env = np.clip(np.abs(z) * 0.75, 0.0, 1.0)

    env_t = torch.from_numpy(env).float()[None]
    return {
        "echogenicity": torch.from_numpy(echo).float()[None],
        "envelope": env_t,
        "bmode": log_compression(env_t[None], dynamic_range_db)[0],
        "cyst_mask": torch.from_numpy(cyst_mask),
        "reflector_mask": torch.from_numpy(reflector_mask),
        "tissue_mask": torch.from_numpy(tissue),
        "spacing_mm": sp,
        "seed": seed,
    }
