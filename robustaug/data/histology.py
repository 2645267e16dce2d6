"""A procedural H&E-stained tissue tile (deterministic from a seed, no downloads).

The tile is built in stain-concentration space and rendered with the Beer-Lambert law and the
Ruifrok-Johnston stain vectors: fibrous eosinophilic stroma, cells with pink cytoplasm and
haematoxylin-dense nuclei with chromatin texture, and white lumen/background. Optical densities
follow those measured on H&E slides (nuclei ~0.5-1.0, stroma ~0.2-0.5, glass ~0.02-0.05 OD).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["RUIFROK_HED", "he_tile"]

#: Ruifrok & Johnston (2001) optical-density vectors (rows: haematoxylin, eosin, DAB), unit norm.
RUIFROK_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
RUIFROK_HED = RUIFROK_HED / np.linalg.norm(RUIFROK_HED, axis=1, keepdims=True)


def _filtered(rng: np.random.Generator, shape, sig_y: float, sig_x: float, angle: float) -> np.ndarray:
    h, w = shape
    n = rng.standard_normal((h, w))
    fy = np.fft.fftfreq(h).reshape(h, 1)
    fx = np.fft.fftfreq(w).reshape(1, w)
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = ca * fx + sa * fy, -sa * fx + ca * fy
    tf = np.exp(-2 * math.pi**2 * (sig_x**2 * u**2 + sig_y**2 * v**2))
    out = np.real(np.fft.ifft2(np.fft.fft2(n) * tf))
    return out / (out.std() + 1e-12)


def he_tile(
    shape: tuple[int, int] = (128, 128),
    *,
    seed: int = 0,
    pixel_um: float = 0.5,
    nuclei_per_mm2: float = 5000.0,
) -> dict[str, Any]:
    """Generate an H&E-like RGB tile.

    Args:
        shape: ``(H, W)`` in pixels (each >= 8).
        seed: Seed of the tissue layout.
        pixel_um: Pixel size in micrometres (0.5 is a 20x scan; nuclei are 6-10 um across).
        nuclei_per_mm2: Nuclear density.

    Returns:
        A dict with ``image`` (float32 ``(3, H, W)`` RGB in [0, 1]), ``concentrations`` (float32
        ``(2, H, W)``: haematoxylin and eosin in OD units along the unit stain vectors),
        ``nuclei_mask`` and ``background_mask`` (bool ``(H, W)``), ``stain_matrix`` (float32 ``(2, 3)``),
        ``pixel_um`` and ``seed``.

    Examples:
        >>> out = he_tile((64, 64), seed=0)
        >>> out["image"].shape, bool(out["image"].max() <= 1.0)
        (torch.Size([3, 64, 64]), True)
    """
    h, w = (int(s) for s in shape)
    if h < 8 or w < 8:
        raise ValueError(f"`shape` edges must be >= 8, got {tuple(shape)}.")
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")

    # Stroma: eosin with oriented collagen fibres; sparse haematoxylin.
    ang = rng.uniform(0, math.pi)
    fib = _filtered(rng, (h, w), 0.6 / pixel_um, 6.0 / pixel_um, ang)
    low = _filtered(rng, (h, w), 12.0 / pixel_um, 12.0 / pixel_um, 0.0)
    c_e = np.clip(0.32 + 0.1 * fib + 0.06 * low, 0.05, None)
    c_h = np.clip(0.05 + 0.02 * low, 0.0, None)

    # Lumen / background: one or two smooth white regions.
    bg = np.zeros((h, w), bool)
    for _ in range(int(rng.integers(0, 3))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.1, 0.25) * h, rng.uniform(0.1, 0.25) * w
        edge = 0.15 * _filtered(rng, (h, w), 4.0, 4.0, 0.0)
        bg |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1 + edge

    # Cells: pink cytoplasm around dark, textured nuclei.
    n_nuc = max(1, round(nuclei_per_mm2 * h * w * (pixel_um * 1e-3) ** 2))
    chrom = _filtered(rng, (h, w), 0.5 / pixel_um, 0.5 / pixel_um, 0.0)
    nuc = np.zeros((h, w))
    cyto = np.zeros((h, w))
    for _ in range(n_nuc):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(3.0, 5.0) / pixel_um
        ecc = rng.uniform(0.6, 1.0)
        th = rng.uniform(0, math.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * math.cos(th) + dy * math.sin(th)) / r
        v = (-dx * math.sin(th) + dy * math.cos(th)) / (r * ecc)
        rr = np.sqrt(u**2 + v**2)
        nuc = np.maximum(nuc, np.clip((1.0 - rr) * r + 0.5, 0, 1))
        cyto = np.maximum(cyto, np.clip((1.8 - rr) * r * 0.5 + 0.5, 0, 1))
    nuc_strength = 0.75 + 0.15 * chrom
    c_h = c_h * (1 - nuc) + nuc * nuc_strength
    c_e = c_e * (1 - cyto) + cyto * 0.38
    c_e = c_e * (1 - nuc) + nuc * 0.12
    keep = ~bg
    soft = np.where(keep, 1.0, 0.0)
    # Soften the lumen border a little.
    f = np.fft.fft2(soft)
    fy = np.fft.fftfreq(h).reshape(h, 1)
    fx = np.fft.fftfreq(w).reshape(1, w)
    soft = np.clip(np.real(np.fft.ifft2(f * np.exp(-2 * math.pi**2 * 1.0 * (fy**2 + fx**2)))), 0, 1)
    c_h, c_e = c_h * soft, c_e * soft
    glass = 0.03  # slide + mounting medium OD, roughly neutral
    od = c_h[..., None] * RUIFROK_HED[0] + c_e[..., None] * RUIFROK_HED[1] + glass
    rgb = np.clip(10.0 ** (-od), 0.0, 1.0).transpose(2, 0, 1)
    return {
        "image": torch.from_numpy(rgb).float(),
        "concentrations": torch.from_numpy(np.stack([c_h, c_e])).float(),
        "nuclei_mask": torch.from_numpy(nuc > 0.5),
        "background_mask": torch.from_numpy(soft < 0.05),
        "stain_matrix": torch.from_numpy(RUIFROK_HED[:2]).float(),
        "pixel_um": float(pixel_um),
        "seed": seed,
    }
