"""Procedural, brain-like MRI phantoms in 2D and 3D (deterministic from a seed, no downloads).

The head is a set of nested, gently perturbed ellipsoids: scalp with a subcutaneous fat layer, skull,
CSF, cortical grey matter with a gyral (folded) inner boundary, white matter, two lateral ventricles,
and optional lesions in white matter. Intensities follow a chosen contrast (T1-, T2- or PD-like,
normalised so the brightest tissue is 1). Label maps and masks come with the image, so tests can use
known tissue regions (background, fat, brain) and lesion masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["TISSUES", "phantom", "tissue_intensities"]

#: Tissue label codes used in ``phantom(...)["tissues"]``.
TISSUES: dict[str, int] = {
    "background": 0,
    "skin": 1,
    "fat": 2,
    "skull": 3,
    "csf": 4,
    "gm": 5,
    "wm": 6,
    "lesion": 7,
}

# Relative signal per tissue, loosely after typical 1.5-3 T spin-echo/gradient-echo contrasts
# (fat bright on T1 and PD, CSF bright on T2, lesions T1-hypo/T2-hyperintense).
_CONTRASTS: dict[str, dict[str, float]] = {
    "t1": {"skin": 0.55, "fat": 1.0, "skull": 0.08, "csf": 0.18, "gm": 0.55, "wm": 0.78, "lesion": 0.35},
    "t2": {"skin": 0.45, "fat": 0.65, "skull": 0.05, "csf": 1.0, "gm": 0.62, "wm": 0.45, "lesion": 0.88},
    "pd": {"skin": 0.6, "fat": 0.9, "skull": 0.06, "csf": 1.0, "gm": 0.82, "wm": 0.7, "lesion": 0.9},
}


def tissue_intensities(contrast: str = "t1") -> dict[str, float]:
    """The intensity of each tissue for a contrast (``"t1"``, ``"t2"`` or ``"pd"``)."""
    if contrast not in _CONTRASTS:
        raise ValueError(f"`contrast` must be one of {sorted(_CONTRASTS)}, got {contrast!r}.")
    return {"background": 0.0, **_CONTRASTS[contrast]}


def _grid(shape: Sequence[int]) -> list[np.ndarray]:
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float64) if n > 1 else np.zeros(1) for n in shape]
    return list(np.meshgrid(*axes, indexing="ij"))


def phantom(
    shape: Sequence[int] = (128, 128),
    *,
    seed: int = 0,
    contrast: str = "t1",
    lesions: int | None = None,
    fov_mm: float = 220.0,
    smooth: float = 0.6,
    lesion_radius: tuple[float, float] = (0.05, 0.1),
) -> dict[str, Any]:
    """Generate a brain-like MRI phantom.

    Args:
        shape: ``(H, W)`` for 2D (an axial slice) or ``(D, H, W)`` for 3D; each edge >= 8.
        seed: Seed of the anatomy (shape perturbation, gyral pattern, lesion placement).
        contrast: ``"t1"``, ``"t2"`` or ``"pd"``.
        lesions: Number of white-matter lesions; ``None`` draws 0-3 from the seed.
        fov_mm: Field of view along each axis in mm (sets ``spacing``).
        smooth: Gaussian partial-volume blur in pixels applied to the image (0 disables it).
        lesion_radius: Range of lesion radii as a fraction of the half field of view.

    Returns:
        A dict with ``image`` (float32, ``(1, *shape)``, in [0, 1]), ``tissues`` (int64 label map,
        codes in :data:`TISSUES`), boolean ``brain_mask``, ``head_mask``, ``fat_mask``,
        ``lesion_mask`` and ``csf_mask`` (each ``shape``), ``spacing`` (mm per pixel) and ``seed``.

    Examples:
        >>> out = phantom((64, 64), seed=1)
        >>> out["image"].shape, float(out["image"].max()) <= 1.0
        (torch.Size([1, 64, 64]), True)
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 8:
        raise ValueError(f"`shape` must be (H, W) or (D, H, W) with edges >= 8, got {shape}.")
    inten = tissue_intensities(contrast)
    rng = np.random.default_rng(seed)
    g = _grid(shape)
    if len(shape) == 2:
        y, x = g
        z = np.zeros_like(x)
    else:
        z, y, x = g
    # Random rigid in-plane rotation and small scale jitter of the whole head.
    theta = rng.uniform(-0.15, 0.15)
    c, s = math.cos(theta), math.sin(theta)
    xr, yr = c * x + s * y, -s * x + c * y
    sx, sy, sz = rng.uniform(0.95, 1.05, size=3)
    a, b, cz = 0.72 * sx, 0.88 * sy, 0.78 * sz

    def rad(scale: float) -> np.ndarray:
        return np.sqrt((xr / (a * scale)) ** 2 + (yr / (b * scale)) ** 2 + (z / (cz * scale)) ** 2)

    r = rad(1.0)
    tissues = np.zeros(shape, dtype=np.int64)
    tissues[r <= 1.0] = TISSUES["skin"]
    tissues[r <= 0.975] = TISSUES["fat"]
    tissues[r <= 0.935] = TISSUES["skull"]
    tissues[r <= 0.885] = TISSUES["csf"]
    # Cortex: outer boundary smooth, inner boundary folded (gyri).
    ang = np.arctan2(yr, xr)
    elev = np.arctan2(z, np.sqrt(xr**2 + yr**2) + 1e-9)
    k, phase = rng.integers(9, 14), rng.uniform(0, 2 * np.pi)
    fold = 0.045 * np.sin(k * ang + phase) * np.cos(3 * elev)
    tissues[r <= 0.865] = TISSUES["gm"]
    tissues[r <= 0.76 + fold] = TISSUES["wm"]
    # Lateral ventricles (CSF), mirror images about the midline.
    for sgn in (-1.0, 1.0):
        vx, vy = sgn * 0.12 * a, 0.05 * b
        rv = np.sqrt(((xr - vx) / (0.07 * a)) ** 2 + ((yr - vy) / (0.28 * b)) ** 2 + (z / 0.2) ** 2)
        tissues[rv <= 1.0] = TISSUES["csf"]
    # Lesions inside white matter.
    n_les = int(rng.integers(0, 4)) if lesions is None else int(lesions)
    lesion_mask = np.zeros(shape, dtype=bool)
    wm = tissues == TISSUES["wm"]
    placed, tries = 0, 0
    while placed < n_les and tries < 200:
        tries += 1
        cx, cy = rng.uniform(-0.55, 0.55) * a, rng.uniform(-0.6, 0.6) * b
        czl = rng.uniform(-0.4, 0.4) * cz if len(shape) == 3 else 0.0
        rl = rng.uniform(*lesion_radius)
        d = np.sqrt((xr - cx) ** 2 + (yr - cy) ** 2 + (z - czl) ** 2)
        blob = d <= rl
        if blob.sum() == 0 or (wm & blob).sum() < 0.9 * blob.sum():
            continue
        lesion_mask |= blob
        placed += 1
    tissues[lesion_mask] = TISSUES["lesion"]

    lut = np.zeros(len(TISSUES), dtype=np.float32)
    for name, code in TISSUES.items():
        lut[code] = inten[name]
    img = lut[tissues]
    if smooth > 0:
        from scipy.ndimage import gaussian_filter

        img = gaussian_filter(img, sigma=smooth, mode="constant").astype(np.float32)
        img = np.clip(img, 0.0, 1.0)
    spacing = tuple(fov_mm / n for n in shape)
    to_t = torch.from_numpy
    return {
        "image": to_t(np.ascontiguousarray(img))[None],
        "tissues": to_t(tissues),
        "head_mask": to_t(tissues > 0),
        "brain_mask": to_t(np.isin(tissues, [TISSUES[t] for t in ("csf", "gm", "wm", "lesion")])),
        "fat_mask": to_t(tissues == TISSUES["fat"]),
        "csf_mask": to_t(tissues == TISSUES["csf"]),
        "lesion_mask": to_t(lesion_mask),
        "spacing": spacing,
        "seed": seed,
    }
