"""Procedural CT phantoms in Hounsfield units (2D slices and 3D volumes) and DRR radiographs.

A thorax/upper-abdomen-like body, generated from a seed with no downloads: an elliptical body
outline with a subcutaneous fat layer, muscle/soft tissue, two lungs, liver, aorta, a vertebral
body (cortical shell around cancellous bone), ribs, lesions (liver hypodense and lung nodules, with
masks) and optional metal inserts. A digitally reconstructed radiograph (DRR) is computed from
the volume by line integrals of the linear attenuation coefficient.

HU to attenuation: ``mu = mu_water (1 + HU / 1000)`` with ``mu_water = 0.01929 / mm`` (water at an
effective energy of 70 keV, NIST XCOM 0.1929 cm^2/g).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["CT_TISSUES", "MU_WATER", "ct_phantom", "drr"]

#: Linear attenuation coefficient of water at 70 keV in 1/mm (NIST XCOM 0.1929 cm^2/g).
MU_WATER = 0.01929

#: Tissue label codes and their HU values in :func:`ct_phantom`.
CT_TISSUES: dict[str, tuple[int, float]] = {
    "air": (0, -1000.0),
    "fat": (1, -100.0),
    "soft": (2, 40.0),
    "lung": (3, -850.0),
    "liver": (4, 60.0),
    "blood": (5, 45.0),
    "cancellous": (6, 250.0),
    "cortical": (7, 1000.0),
    "lesion": (8, 15.0),
    "nodule": (9, 0.0),
    "metal": (10, 3071.0),
}


def _grid(shape: Sequence[int]) -> list[np.ndarray]:
    axes = [np.linspace(-1.0, 1.0, n, dtype=np.float64) if n > 1 else np.zeros(1) for n in shape]
    return list(np.meshgrid(*axes, indexing="ij"))


def _ellipse(y: np.ndarray, x: np.ndarray, z: np.ndarray | None, cy: float, cx: float, ay: float, ax: float,
             az: float | None = None, cz: float = 0.0) -> np.ndarray:
    r = ((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2
    if z is not None and az is not None:
        r = r + ((z - cz) / az) ** 2
    return r <= 1.0


def ct_phantom(
    shape: Sequence[int] = (128, 128),
    *,
    seed: int = 0,
    lesions: int | None = None,
    metal: bool = False,
    fov_mm: float = 350.0,
    smooth: float = 0.5,
) -> dict[str, Any]:
    """Generate a body CT phantom in HU.

    Args:
        shape: ``(H, W)`` for an axial slice or ``(D, H, W)`` for a volume (D = cranio-caudal);
            each in-plane edge >= 12.
        seed: Seed of the anatomy (sizes, positions, lesions).
        lesions: Number of lesions (liver and lung); ``None`` draws 1-3 from the seed.
        metal: Add one or two metal inserts (spinal/hip hardware, 3071 HU, the 12-bit maximum).
        fov_mm: Field of view along H and W in mm (sets ``spacing``; slices are 2.5 mm apart in 3D).
        smooth: Gaussian partial-volume blur (pixels) applied to the HU image.

    Returns:
        A dict with ``image`` (float32 ``(1, *shape)`` in HU), ``labels`` (int64, codes in
        :data:`CT_TISSUES`), boolean ``body_mask``, ``lung_mask``, ``bone_mask``, ``lesion_mask``,
        ``metal_mask``, ``spacing`` (mm per pixel, one per axis) and ``seed``.

    Examples:
        >>> out = ct_phantom((64, 64), seed=1)
        >>> out["image"].shape, round(float(out["image"].min()))
        (torch.Size([1, 64, 64]), -1000)
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape[-2:]) < 12:
        raise ValueError(f"`shape` must be (H, W) or (D, H, W) with H, W >= 12, got {shape}.")
    rng = np.random.default_rng(int(seed))
    grids = _grid(shape)
    if len(shape) == 2:
        y, x = grids
        z = None
    else:
        z, y, x = grids
    j = lambda s: 1.0 + s * (2 * rng.random() - 1)  # noqa: E731  (relative jitter)
    labels = np.zeros(shape, dtype=np.int64)
    # body outline and fat layer (anterior = -y)
    by, bx = 0.62 * j(0.06), 0.86 * j(0.05)
    taper = 1.0 if z is None else (1.0 - 0.12 * z**2 - 0.05 * z)
    fy, fx = 0.06 * j(0.3), 0.07 * j(0.3)
    body = _ellipse(y / taper, x / taper, None, 0.02, 0.0, by, bx)
    inner = _ellipse(y / taper, x / taper, None, 0.02, 0.0, by - fy, bx - fx)
    labels[body] = CT_TISSUES["fat"][0]
    labels[inner] = CT_TISSUES["soft"][0]
    zz = z if z is not None else None
    # lungs (ellipsoids in 3D, lower in the volume = more abdomen)
    lung_mask = np.zeros(shape, bool)
    for side in (-1, 1):
        lm = _ellipse(y, x, zz, -0.06 * j(0.3), side * 0.36 * j(0.06), 0.32 * j(0.08), 0.23 * j(0.08),
                      az=1.3, cz=-0.6)
        lung_mask |= lm & inner
    labels[lung_mask] = CT_TISSUES["lung"][0]
    # liver (right side of the patient = image left), below/beside the right lung
    liver = _ellipse(y, x, zz, 0.12 * j(0.3), -0.32 * j(0.1), 0.3 * j(0.1), 0.36 * j(0.1), az=1.2, cz=0.7)
    liver &= inner & ~lung_mask
    labels[liver] = CT_TISSUES["liver"][0]
    # aorta, anterior-left of the spine
    aorta = _ellipse(y, x, None, 0.22, 0.08 * j(0.3), 0.07, 0.07) & inner
    labels[aorta] = CT_TISSUES["blood"][0]
    # vertebra: cortical shell + cancellous core, posterior midline
    vy = 0.42 * j(0.04)
    vert_out = _ellipse(y, x, None, vy, 0.0, 0.12 * j(0.1), 0.12 * j(0.1)) & inner
    vert_in = _ellipse(y, x, None, vy, 0.0, 0.085, 0.085)
    if z is not None:  # intervertebral discs every ~30 mm
        vert_out &= np.cos(z * math.pi * shape[0] * 2.5 / 30.0) < 0.8
    labels[vert_out] = CT_TISSUES["cortical"][0]
    labels[vert_in & vert_out] = CT_TISSUES["cancellous"][0]
    bone = vert_out.copy()
    # ribs around the periphery
    for ang in np.deg2rad(np.array([-150, -120, -60, -30, 30, 60, 120, 150]) + rng.normal(0, 4, 8)):
        ry, rx = (by - fy - 0.045) * math.sin(ang) + 0.02, (bx - fx - 0.05) * math.cos(ang)
        rib = _ellipse(y, x, None, ry, rx, 0.03, 0.04) & inner
        if z is not None:  # ribs run obliquely: present in bands along z
            rib &= np.cos(z * math.pi * shape[0] * 2.5 / 25.0 + ang) > 0.0
        labels[rib] = CT_TISSUES["cortical"][0]
        bone |= rib
    # lesions
    n_les = int(rng.integers(1, 4)) if lesions is None else int(lesions)
    lesion_mask = np.zeros(shape, bool)
    for k in range(n_les):
        in_lung = k % 2 == 1
        region = lung_mask if in_lung else liver
        pts = np.argwhere(region)
        if len(pts) == 0:
            continue
        c = pts[rng.integers(len(pts))]
        rad = (0.025 + 0.04 * rng.random()) if in_lung else (0.04 + 0.05 * rng.random())
        cen = [g[tuple(c)] for g in grids]
        d2 = sum((g - cc) ** 2 for g, cc in zip(grids, cen))
        les = (d2 <= rad**2) & region
        labels[les] = CT_TISSUES["nodule" if in_lung else "lesion"][0]
        lesion_mask |= les
    metal_mask = np.zeros(shape, bool)
    if metal:
        n_met = 1 + int(rng.random() < 0.5)
        for side in (-1, 1)[:n_met] if n_met == 2 else (int(rng.choice([-1, 1])),):
            mm_ = _ellipse(y, x, None, 0.3 * j(0.2), side * 0.45 * j(0.1), 0.05 * j(0.2), 0.05 * j(0.2)) & inner
            metal_mask |= mm_
        labels[metal_mask] = CT_TISSUES["metal"][0]
    hu_of = np.zeros(max(v[0] for v in CT_TISSUES.values()) + 1)
    for code, hu in CT_TISSUES.values():
        hu_of[code] = hu
    img = hu_of[labels]
    if smooth > 0:
        from scipy.ndimage import gaussian_filter

        sig = [0.0] + [smooth] * 2 if len(shape) == 3 else [smooth] * 2
        img = gaussian_filter(img, sig, mode="nearest")
        img[metal_mask] = CT_TISSUES["metal"][1]
    sp_ = fov_mm / shape[-1]
    spacing = (sp_, sp_) if len(shape) == 2 else (2.5, sp_, sp_)
    return {
        "image": torch.from_numpy(img.astype(np.float32))[None],
        "labels": torch.from_numpy(labels),
        "body_mask": torch.from_numpy(body),
        "lung_mask": torch.from_numpy(lung_mask),
        "bone_mask": torch.from_numpy(bone | (labels == CT_TISSUES["cancellous"][0])),
        "lesion_mask": torch.from_numpy(lesion_mask),
        "metal_mask": torch.from_numpy(metal_mask),
        "spacing": spacing,
        "seed": int(seed),
    }


def drr(volume_hu: torch.Tensor, spacing_mm: float, *, axis: int = -2, mu_water: float = MU_WATER) -> torch.Tensor:
    """Digitally reconstructed radiograph: transmission ``exp(-integral of mu)`` along ``axis``.

    $$ T = \\exp\\Big(-\\sum_k \\mu_w (1 + HU_k / 1000)\\,\\Delta\\Big) $$

    Args:
        volume_hu: HU volume ``(..., D, H, W)`` (a 2D slice gives a 1D profile).
        spacing_mm: Path length per voxel along ``axis`` in mm.
        axis: The beam axis (default ``-2``: anterior-posterior for :func:`ct_phantom` volumes).
        mu_water: Attenuation of water in 1/mm.

    Returns:
        The primary transmission in the linear detector domain, in ``(0, 1]`` (1 = unattenuated).

    Examples:
        >>> v = ct_phantom((16, 32, 32))["image"]
        >>> t = drr(v, 350 / 32)
        >>> t.shape, bool((t > 0).all() and (t <= 1).all())
        (torch.Size([1, 16, 32]), True)
    """
    mu = (mu_water * (1.0 + volume_hu.to(torch.float64) / 1000.0)).clamp_min(0.0)
    p = mu.sum(dim=axis) * float(spacing_mm)
    return torch.exp(-p).to(volume_hu.dtype if volume_hu.is_floating_point() else torch.float32)
