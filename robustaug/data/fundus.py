"""A procedural colour fundus photograph (deterministic from a seed, no downloads).

A circular field of view on a black background; an orange-red retina whose luminance falls off
towards the rim; a bright yellowish optic disc with a paler cup; a darker macula with the fovea;
and dark-red vessels leaving the disc in superior and inferior arcades that taper and branch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["fundus_image"]


def _bezier(p0, p1, p2, n: int) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def fundus_image(shape: tuple[int, int] = (128, 128), *, seed: int = 0, eye: str | None = None) -> dict[str, Any]:
    """Generate a fundus-like RGB image.

    Args:
        shape: ``(H, W)`` in pixels (each >= 8).
        seed: Seed of the anatomy (disc position, vessel paths, texture).
        eye: ``"left"``, ``"right"`` or ``None`` (drawn from the seed); sets the disc side.

    Returns:
        A dict with ``image`` (float32 ``(3, H, W)`` RGB in [0, 1]), boolean ``(H, W)`` masks
        ``fov_mask``, ``vessel_mask``, ``disc_mask``, and ``seed``.

    Examples:
        >>> out = fundus_image((64, 64), seed=0)
        >>> out["image"].shape, bool(out["image"][:, 0, 0].sum() == 0)
        (torch.Size([3, 64, 64]), True)
    """
    h, w = (int(s) for s in shape)
    if h < 8 or w < 8:
        raise ValueError(f"`shape` edges must be >= 8, got {tuple(shape)}.")
    rng = np.random.default_rng(seed)
    if eye is None:
        eye = "left" if rng.uniform() < 0.5 else "right"
    side = -1.0 if eye == "left" else 1.0
    s = min(h, w)
    yy, xx = np.meshgrid((np.arange(h) + 0.5 - h / 2) / s, (np.arange(w) + 0.5 - w / 2) / s, indexing="ij")
    r = np.sqrt(yy**2 + xx**2)
    fov_r = 0.47
    fov = np.clip((fov_r - r) * s + 0.5, 0, 1)

    # Retina background: orange-red, radial fall-off, mottled choroidal texture.
    tex = rng.standard_normal((h, w))
    f = np.fft.fft2(tex)
    fy = np.fft.fftfreq(h).reshape(h, 1)
    fx = np.fft.fftfreq(w).reshape(1, w)
    tex = np.real(np.fft.ifft2(f * np.exp(-2 * math.pi**2 * (0.02 * s) ** 2 * (fy**2 + fx**2))))
    tex = tex / (tex.std() + 1e-12)
    lum = (1.0 - 0.55 * (r / fov_r) ** 2) * (1 + 0.04 * tex)
    base = np.array([0.78, 0.36, 0.16])
    img = lum[None] * base[:, None, None]

    # Macula and fovea (darker), optic disc (bright, yellowish) with a cup.
    dcy, dcx = rng.uniform(-0.04, 0.04), side * rng.uniform(0.17, 0.22)
    mcy, mcx = dcy + rng.uniform(-0.02, 0.03), dcx - side * 0.27
    mac = np.exp(-(((yy - mcy) ** 2 + (xx - mcx) ** 2) / (2 * 0.07**2)))
    img = img * (1 - 0.35 * mac[None])
    drad = rng.uniform(0.065, 0.08)
    dd = np.sqrt(((yy - dcy) / 1.1) ** 2 + (xx - dcx) ** 2)
    disc = np.clip((drad - dd) * s * 0.7 + 0.5, 0, 1)
    cup = np.clip((0.45 * drad - dd) * s * 0.7 + 0.5, 0, 1)
    disc_col = np.array([0.98, 0.78, 0.45])
    img = img * (1 - disc[None]) + disc[None] * disc_col[:, None, None] * (1 + 0.04 * cup[None])

    # Vessels: four arcades from the disc around the macula plus a few nasal branches.
    dist = np.full((h, w), np.inf)
    width = np.zeros((h, w))
    paths = []
    for up in (-1.0, 1.0):
        for spread in (0.16, 0.27):
            p0 = np.array([dcy, dcx])
            p1 = np.array([dcy + up * (spread + rng.uniform(-0.03, 0.03)), dcx - side * 0.05])
            p2 = np.array([mcy + up * (spread * 0.9), mcx - side * rng.uniform(0.1, 0.2)])
            paths.append((p0, p1, p2, 0.012 if spread < 0.2 else 0.009))
        p2n = np.array([dcy + up * rng.uniform(0.1, 0.3), dcx + side * rng.uniform(0.2, 0.3)])
        paths.append((np.array([dcy, dcx]), (np.array([dcy, dcx]) + p2n) / 2 + up * 0.02, p2n, 0.008))
    pts_y, pts_x = yy.reshape(-1), xx.reshape(-1)
    for p0, p1, p2, w0 in paths:
        pts = _bezier(p0, p1, p2, max(24, s // 2))
        taper = np.linspace(1.0, 0.45, len(pts))
        d2 = (pts_y[:, None] - pts[None, :, 0]) ** 2 + (pts_x[:, None] - pts[None, :, 1]) ** 2
        j = d2.argmin(1)
        d = np.sqrt(d2[np.arange(len(j)), j]).reshape(h, w)
        wj = (w0 * taper[j]).reshape(h, w)
        closer = d / wj < np.where(width > 0, dist / np.maximum(width, 1e-9), np.inf)
        dist = np.where(closer, d, dist)
        width = np.where(closer, wj, width)
    vessel = np.clip((width - dist) * s + 0.5, 0, 1) * (1 - 0.6 * cup)
    vcol = np.array([0.55, 0.12, 0.06])
    img = img * (1 - 0.8 * vessel[None]) + 0.8 * vessel[None] * (vcol[:, None, None] * lum[None])
    img = np.clip(img * fov[None], 0.0, 1.0)
    return {
        "image": torch.from_numpy(img).float(),
        "fov_mask": torch.from_numpy(fov > 0.5),
        "vessel_mask": torch.from_numpy(vessel > 0.5),
        "disc_mask": torch.from_numpy(disc > 0.5),
        "seed": seed,
    }
