"""Seeded annotation noise for 2D and 3D segmentation masks, in physical units (mm).

A mask is one label map: ``(H, W)`` (2D) or ``(D, H, W)`` (3D) integer class indices, as a torch tensor
or numpy array. ``spacing`` is the voxel size in mm along each axis (default 1 mm isotropic), so a radius
of 2 mm is an ellipsoid of ``2 / spacing`` voxels along each axis. Voxels equal to ``ignore_index`` are
never changed and never grow into. Each function returns :class:`NoiseResult`
``(labels, mask, transition)``: the noisy mask (same type, dtype, device), the changed voxels and the
realised voxel-wise row-stochastic transition matrix over classes ``0..C-1`` (ignore voxels excluded).

Morphology uses Euclidean distance transforms in mm (``scipy.ndimage.distance_transform_edt`` with
``sampling=spacing``): dilation by ``r`` = every voxel within ``r`` mm of the structure, i.e. dilation
with the ellipsoidal structuring element ``sum_k (dx_k s_k / r)^2 <= 1`` (in voxels), exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ._common import (
    NoiseResult,
    bool_like,
    check_rate,
    float_like,
    from_numpy_like,
    make_rng,
    realised_transition,
    to_numpy,
)

__all__ = [
    "add_false_positives",
    "contour_jitter",
    "dice",
    "dilate",
    "drop_components",
    "erode",
    "interface_swap",
    "slice_sparse",
]

ArrayLike = Any


# --------------------------------------------------------------------------------------------- helpers
def _prep(
    mask: ArrayLike, spacing: float | Sequence[float] | None, ignore_index: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = to_numpy(mask, "mask")
    if m.ndim not in (2, 3):
        raise ValueError(f"`mask` must be 2D (H, W) or 3D (D, H, W), got shape {m.shape}")
    if m.dtype.kind == "b":
        m = m.astype(np.int64)
    if m.dtype.kind not in "iu":
        if m.dtype.kind == "f" and np.all(np.mod(m, 1) == 0):
            m = m.astype(np.int64)
        else:
            raise TypeError(f"`mask` must hold integer class indices, got dtype {m.dtype}")
    m = m.astype(np.int64)
    if spacing is None:
        sp = np.ones(m.ndim)
    else:
        sp = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (m.ndim,)).copy()
    if np.any(sp <= 0):
        raise ValueError(f"`spacing` must be positive (mm per voxel), got {sp.tolist()}")
    ign = (m == ignore_index) if ignore_index is not None else np.zeros(m.shape, bool)
    return m, sp, ign


def _classes(m: np.ndarray, ign: np.ndarray, classes: Iterable[int] | None, background: int):
    if classes is not None:
        return [int(c) for c in classes]
    return [int(c) for c in np.unique(m[~ign]) if c != background]


def _num_classes(*arrs: np.ndarray, ign: np.ndarray) -> int:
    mx = 0
    for a in arrs:
        v = a[~ign]
        if v.size:
            mx = max(mx, int(v.max()))
    return mx + 1


def _result(orig: np.ndarray, noisy: np.ndarray, like: ArrayLike, ign: np.ndarray) -> NoiseResult:
    noisy = np.where(ign, orig, noisy)
    C = _num_classes(orig, noisy, ign=ign)
    T = realised_transition(orig[~ign], noisy[~ign], C)
    if isinstance(like, np.ndarray) and like.dtype.kind == "b":
        out = from_numpy_like(noisy.astype(bool), like)
    else:
        out = from_numpy_like(noisy, like)
    return NoiseResult(out, bool_like(noisy != orig, like), float_like(T, like))


def _dist_to(region: np.ndarray, sp: np.ndarray) -> np.ndarray:
    """Distance (mm) from every voxel to the nearest voxel of ``region`` (inf if region is empty)."""
    if not region.any():
        return np.full(region.shape, np.inf)
    return ndimage.distance_transform_edt(~region, sampling=sp)


def _radius(r: float, name: str) -> float:
    r = float(r)
    if r < 0:
        raise ValueError(f"`{name}` must be >= 0 mm, got {r}")
    return r


def dice(a: ArrayLike, b: ArrayLike) -> float:
    """Dice overlap ``2|A n B| / (|A| + |B|)`` of two binary masks (1.0 if both empty)."""
    a = to_numpy(a).astype(bool)
    b = to_numpy(b).astype(bool)
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2.0 * np.logical_and(a, b).sum() / s)


# ------------------------------------------------------------------------------------------ injectors
def dilate(
    mask: ArrayLike,
    radius_mm: float,
    spacing: float | Sequence[float] | None = None,
    *,
    classes: Iterable[int] | None = None,
    background: int = 0,
    ignore_index: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> NoiseResult:
    """Over-segmentation: grow each foreground class by ``radius_mm`` into the background.

    Model: ``noisy = clean u {v : dist_mm(v, clean_c) <= r}`` restricted to background voxels, i.e.
    binary dilation by a ball of radius ``r`` mm (an ellipsoid in voxels for anisotropic spacing).
    Classes are processed in ascending order; a background voxel reached by two classes takes the
    nearest one. For a disk of radius ``R`` the Dice with the clean mask is ``2R^2 / (R^2 + (R+r)^2)``.

    Args:
        mask: ``(H, W)`` or ``(D, H, W)`` label map.
        radius_mm: Dilation radius in mm (>= 0).
        spacing: Voxel size in mm, scalar or one value per axis (default 1).
        classes: Classes to dilate (default: all but ``background`` and ``ignore_index``).
        background: Background class that foreground may grow into.
        ignore_index: Label of voxels that are never changed.
        seed: Accepted for a uniform injector signature; unused (deterministic).
        generator: Accepted for a uniform signature; unused.

    Returns:
        :class:`NoiseResult`. Deterministic (no RNG).

    References:
        Zhang et al., "Disentangling human error from the ground truth in segmentation of medical
        images", NeurIPS 2020 (morphological over-segmentation raters).
    """
    r = _radius(radius_mm, "radius_mm")
    m, sp, ign = _prep(mask, spacing, ignore_index)
    out = m.copy()
    if r > 0:
        best = np.full(m.shape, np.inf)
        for c in _classes(m, ign, classes, background):
            d = _dist_to(m == c, sp)
            grow = (m == background) & ~ign & (d <= r) & (d < best)
            out[grow] = c
            best = np.where(grow, d, best)
    return _result(m, out, mask, ign)


def erode(
    mask: ArrayLike,
    radius_mm: float,
    spacing: float | Sequence[float] | None = None,
    *,
    classes: Iterable[int] | None = None,
    background: int = 0,
    ignore_index: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> NoiseResult:
    """Under-segmentation: shrink each foreground class by ``radius_mm``.

    Model: a voxel of class ``c`` is kept iff its distance (mm) to the nearest voxel *not* of class
    ``c`` exceeds ``r`` (binary erosion by a ball of radius ``r``); removed voxels become
    ``background``. Voxels at the array border are not eroded from outside the field of view. For a disk
    of radius ``R`` the Dice is ``2(R-r)^2 / (R^2 + (R-r)^2)``. Small structures vanish entirely.

    Args:
        mask: ``(H, W)`` or ``(D, H, W)`` label map.
        radius_mm: Erosion radius in mm (>= 0).
        spacing: Voxel size in mm.
        classes: Classes to erode (default: all foreground classes).
        background: Class given to removed voxels.
        ignore_index: Label of voxels that are never changed (they count as "not class c").
        seed: Accepted for a uniform injector signature; unused (deterministic).
        generator: Accepted for a uniform signature; unused.

    Returns:
        :class:`NoiseResult`. Deterministic.

    References:
        Zhang et al., NeurIPS 2020 (under-segmentation raters).
    """
    r = _radius(radius_mm, "radius_mm")
    m, sp, ign = _prep(mask, spacing, ignore_index)
    out = m.copy()
    if r > 0:
        for c in _classes(m, ign, classes, background):
            inside = m == c
            if inside.all():
                continue
            d = ndimage.distance_transform_edt(inside, sampling=sp)
            out[inside & (d <= r)] = background
    return _result(m, out, mask, ign)


def _smooth_field(
    shape: tuple[int, ...], sigma_vox: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=sigma_vox, mode="wrap")
    s = f.std()
    return f / s if s > 0 else f


def contour_jitter(
    mask: ArrayLike,
    amplitude_mm: float,
    smoothness_mm: float,
    spacing: float | Sequence[float] | None = None,
    *,
    ignore_index: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> NoiseResult:
    """Smooth random boundary perturbation (a tired rater's wobbly contour).

    Model: a random displacement field ``u(v)`` (one Gaussian-smoothed white-noise field per axis,
    smoothing ``sigma = smoothness_mm``, scaled to RMS ``amplitude_mm`` per axis) warps the label map
    with nearest-neighbour sampling: ``noisy(v) = clean(v + u(v))``. Volumes are unbiased on average;
    topology is kept when ``amplitude_mm`` is well below the structure size.

    Args:
        mask: ``(H, W)`` or ``(D, H, W)`` label map.
        amplitude_mm: RMS displacement per axis in mm.
        smoothness_mm: Correlation length (Gaussian sigma) of the field in mm.
        spacing: Voxel size in mm.
        ignore_index: Voxels never changed; a voxel would-be copied from an ignore voxel keeps its label.
        seed: Integer seed (exclusive with ``generator``).
        generator: ``torch.Generator`` used to derive the seed.

    Returns:
        :class:`NoiseResult`.

    References:
        Simulated-rater boundary noise in e.g. Vorontsov & Kadoury, "Label noise in segmentation
        networks: mitigation must deal with bias", DGM4MICCAI 2021.
    """
    a = _radius(amplitude_mm, "amplitude_mm")
    s = _radius(smoothness_mm, "smoothness_mm")
    m, sp, ign = _prep(mask, spacing, ignore_index)
    rng = make_rng(seed, generator)
    if a == 0:
        return _result(m, m.copy(), mask, ign)
    grid = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in m.shape], indexing="ij")
    coords = []
    for k in range(m.ndim):
        u = _smooth_field(m.shape, s / sp, rng) * a / sp[k]
        coords.append(grid[k] + u)
    warped = ndimage.map_coordinates(m, coords, order=0, mode="nearest")
    if ignore_index is not None:
        warped = np.where(warped == ignore_index, m, warped)
    return _result(m, warped, mask, ign)


def drop_components(
    mask: ArrayLike,
    p_miss: float,
    *,
    size_dependent: bool | float = False,
    classes: Iterable[int] | None = None,
    background: int = 0,
    connectivity: int = 1,
    ignore_index: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> NoiseResult:
    """Missed lesions: delete whole connected components with probability ``p_miss``.

    Model: components of each class (``scipy.ndimage.label``, ``connectivity`` 1 = faces,
    ``ndim`` = full) are removed independently. With ``size_dependent`` (``True`` = exponent 0.5, or a
    float exponent ``g``) the probability is ``min(1, p_miss * (median_size / size)^g)``: small lesions
    are missed more often. Removed voxels become ``background``; no voxel is ever added.

    Args:
        mask: ``(H, W)`` or ``(D, H, W)`` label map.
        p_miss: Miss probability in [0, 1] (for a component of median size when size-dependent).
        size_dependent: ``False``, ``True`` or the exponent ``g`` >= 0.
        classes: Classes whose components may be missed (default: all foreground).
        background: Class given to removed voxels.
        connectivity: Neighbourhood for components (1 .. ndim).
        ignore_index: Voxels never changed.
        seed: Integer seed (exclusive with ``generator``).
        generator: ``torch.Generator`` used to derive the seed.

    Returns:
        :class:`NoiseResult`.
    """
    p = check_rate(p_miss, "p_miss")
    g = 0.5 if size_dependent is True else float(size_dependent or 0.0)
    if g < 0:
        raise ValueError(f"`size_dependent` exponent must be >= 0, got {g}")
    m, _, ign = _prep(mask, None, ignore_index)
    if not 1 <= connectivity <= m.ndim:
        raise ValueError(f"`connectivity` must be in [1, {m.ndim}], got {connectivity}")
    rng = make_rng(seed, generator)
    st = ndimage.generate_binary_structure(m.ndim, connectivity)
    out = m.copy()
    for c in _classes(m, ign, classes, background):
        lab, n = ndimage.label(m == c, structure=st)
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:].astype(np.float64)
        probs = np.full(n, p)
        if g > 0:
            probs = np.minimum(1.0, p * (np.median(sizes) / sizes) ** g)
        drop = rng.random(n) < probs
        if drop.any():
            out[np.isin(lab, np.flatnonzero(drop) + 1)] = background
    return _result(m, out, mask, ign)


def add_false_positives(
    mask: ArrayLike,
    rate: float,
    size_mm: float | tuple[float, float] = (2.0, 5.0),
    spacing: float | Sequence[float] | None = None,
    *,
    label: int = 1,
    background: int = 0,
    ignore_index: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> NoiseResult:
    """Spurious lesions: paint ``Poisson(rate)`` random balls of class ``label`` onto the background.

    Model: the number of false-positive blobs is ``K ~ Poisson(rate)``; each is a ball (ellipsoid in
    voxels) of radius ``~ U(size_mm)`` mm centred on a uniformly drawn background voxel, painted on
    background voxels only (no voxel of another class or ``ignore_index`` is ever removed).

    Args:
        mask: ``(H, W)`` or ``(D, H, W)`` label map.
        rate: Expected number of spurious components per mask (>= 0).
        size_mm: Radius in mm, fixed or a ``(lo, hi)`` range sampled uniformly.
        spacing: Voxel size in mm.
        label: Class of the spurious components.
        background: Class that may be overwritten.
        ignore_index: Voxels never changed.
        seed: Integer seed (exclusive with ``generator``).
        generator: ``torch.Generator`` used to derive the seed.

    Returns:
        :class:`NoiseResult`.
    """
    rate = float(rate)
    if rate < 0:
        raise ValueError(f"`rate` must be >= 0, got {rate}")
    lo, hi = (size_mm, size_mm) if np.isscalar(size_mm) else tuple(size_mm)
    if not 0 < lo <= hi:
        raise ValueError(f"`size_mm` must be > 0 (or a (lo, hi) range), got {size_mm}")
    m, sp, ign = _prep(mask, spacing, ignore_index)
    rng = make_rng(seed, generator)
    out = m.copy()
    bg = np.flatnonzero((m == background) & ~ign)
    k = int(rng.poisson(rate))
    if k and bg.size:
        centres = np.unravel_index(rng.choice(bg, size=k, replace=True), m.shape)
        radii = rng.uniform(lo, hi, size=k)
        grid = np.ogrid[tuple(slice(0, n) for n in m.shape)]
        for i in range(k):
            d2 = sum(((grid[a] - centres[a][i]) * sp[a]) ** 2 for a in range(m.ndim))
            blob = d2 <= radii[i] ** 2
            out[blob & (m == background) & ~ign] = label
    return _result(m, out, mask, ign)


def interface_swap(
    mask: ArrayLike,
    pairs: Sequence[tuple[int, int]],
    band_mm: float,
    spacing: float | Sequence[float] | None = None,
    *,
    smoothness_mm: float | None = None,
    ignore_index: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> NoiseResult:
    """Class confusion at interfaces: the border between classes ``a`` and ``b`` drifts.

    Model: for each pair ``(a, b)`` a smooth random field ``g(v)`` in [-1, 1] (Gaussian-smoothed noise,
    sigma ``smoothness_mm``, default ``2 * band_mm``) shifts the interface: ``a``-voxels with
    ``dist_mm(v, b) <= band_mm * max(g, 0)`` become ``b`` and ``b``-voxels with
    ``dist_mm(v, a) <= band_mm * max(-g, 0)`` become ``a``. Only voxels within ``band_mm`` of the other
    class can change, and only between the two classes of the pair.

    Args:
        mask: ``(H, W)`` or ``(D, H, W)`` label map.
        pairs: Class pairs ``[(a, b), ...]``.
        band_mm: Maximum boundary displacement in mm.
        spacing: Voxel size in mm.
        smoothness_mm: Correlation length of the field (default ``2 * band_mm``).
        ignore_index: Voxels never changed.
        seed: Integer seed (exclusive with ``generator``).
        generator: ``torch.Generator`` used to derive the seed.

    Returns:
        :class:`NoiseResult`.
    """
    band = _radius(band_mm, "band_mm")
    m, sp, ign = _prep(mask, spacing, ignore_index)
    rng = make_rng(seed, generator)
    sm = 2.0 * band if smoothness_mm is None else _radius(smoothness_mm, "smoothness_mm")
    out = m.copy()
    for pair in pairs:
        a, b = (int(v) for v in pair)
        if a == b:
            raise ValueError(f"`pairs` entries must be two different classes, got {pair}")
        g = _smooth_field(m.shape, np.maximum(sm / sp, 1e-6), rng)
        mx = np.abs(g).max()
        g = g / mx if mx > 0 else g
        da, db = _dist_to(m == a, sp), _dist_to(m == b, sp)
        a2b = (m == a) & ~ign & (db <= band * np.maximum(g, 0))
        b2a = (m == b) & ~ign & (da <= band * np.maximum(-g, 0))
        out[a2b] = b
        out[b2a] = a
    return _result(m, out, mask, ign)


def slice_sparse(
    mask: ArrayLike,
    k: int,
    spacing: float | Sequence[float] | None = None,
    *,
    axis: int = 0,
    offset: int = 0,
    background: int = 0,
    ignore_index: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> NoiseResult:
    """Sparse annotation: only every ``k``-th slice is drawn, the rest is interpolated.

    Model: slices ``offset, offset + k, ...`` along ``axis`` keep their labels. In between, shape-based
    interpolation: the in-plane signed distance map (mm, positive inside) of every class is linearly
    interpolated between the two nearest annotated slices and each voxel takes the class with the
    largest positive value (``background`` if none). Slices outside the first/last annotated slice copy
    the nearest annotated slice.

    Args:
        mask: ``(D, H, W)`` label map (3D only).
        k: Annotation period (>= 1; 1 = identity).
        spacing: Voxel size in mm (in-plane spacing is used for the distance maps).
        axis: Slice axis.
        offset: Index of the first annotated slice (0 <= offset < k).
        background: Class of voxels outside every structure.
        ignore_index: Voxels never changed (excluded from the distance maps).
        seed: Accepted for a uniform injector signature; unused (deterministic).
        generator: Accepted for a uniform signature; unused.

    Returns:
        :class:`NoiseResult`. Deterministic.

    References:
        Raya & Udupa, "Shape-based interpolation of multidimensional objects", IEEE TMI 1990.
    """
    m, sp, ign = _prep(mask, spacing, ignore_index)
    if m.ndim != 3:
        raise ValueError(f"`slice_sparse` needs a 3D mask (D, H, W), got shape {m.shape}")
    k = int(k)
    if k < 1:
        raise ValueError(f"`k` must be >= 1, got {k}")
    if not 0 <= offset < k:
        raise ValueError(f"`offset` must be in [0, k), got {offset}")
    ax = axis % 3
    mv = np.moveaxis(m, ax, 0)
    igv = np.moveaxis(ign, ax, 0)
    sp_in = np.delete(sp, ax)
    n = mv.shape[0]
    ann = np.arange(offset, n, k)
    if k == 1 or ann.size == 0:
        return _result(m, m.copy(), mask, ign)
    classes = [int(c) for c in np.unique(mv[~igv]) if c != background]

    def sdf(sl: np.ndarray, c: int) -> np.ndarray:
        inside = sl == c
        # an empty slice is "just outside everywhere", so structures taper towards it
        if not inside.any():
            return np.full(sl.shape, -float(sp_in.max()))
        if inside.all():
            return np.full(sl.shape, float(sp_in.max()))
        return ndimage.distance_transform_edt(inside, sampling=sp_in) - ndimage.distance_transform_edt(
            ~inside, sampling=sp_in
        )

    cache = {int(i): np.stack([sdf(mv[i], c) for c in classes]) if classes else None for i in ann}
    outv = mv.copy()
    for z in range(n):
        if z in cache:
            continue
        lo = ann[ann < z]
        hi = ann[ann > z]
        if lo.size == 0 or hi.size == 0:
            outv[z] = mv[int(hi[0] if lo.size == 0 else lo[-1])]
            continue
        z0, z1 = int(lo[-1]), int(hi[0])
        if not classes:
            outv[z] = background
            continue
        w = (z - z0) / (z1 - z0)
        f = (1 - w) * cache[z0] + w * cache[z1]
        best = np.argmax(f, axis=0)
        lab = np.asarray(classes)[best]
        outv[z] = np.where(f.max(0) > 0, lab, background)
    out = np.moveaxis(outv, 0, ax)
    return _result(m, out, mask, ign)
