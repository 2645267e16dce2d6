"""Segmentation injectors: analytic disk Dice, containment, components, ignore_index, 2D/3D."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from robustaug.labelnoise import (
    add_false_positives,
    contour_jitter,
    dice,
    dilate,
    drop_components,
    erode,
    interface_swap,
    slice_sparse,
)

from .conftest import GlobalRNGGuard

R = 40


def disk(R=R, n=128, spacing=(1.0, 1.0)):
    c = (n - 1) / 2
    yy, xx = np.mgrid[:n, :n]
    return ((((yy - c) * spacing[0]) ** 2 + ((xx - c) * spacing[1]) ** 2) <= R * R).astype(np.int64)


@pytest.mark.parametrize("r", [1, 2, 3, 5, 8])
def test_disk_dilate_erode_analytic_dice(r):
    d = disk()
    dd = dilate(d, r).labels
    de = erode(d, r).labels
    assert abs(dice(dd, d) - 2 * R**2 / (R**2 + (R + r) ** 2)) < 0.01
    assert abs(dice(de, d) - 2 * (R - r) ** 2 / (R**2 + (R - r) ** 2)) < 0.01
    assert np.all(dd >= d)  # dilation contains the clean mask
    assert np.all(de <= d)  # erosion is contained in it


def test_disk_anisotropic_spacing_in_mm():
    sp = (0.5, 1.0)  # rows are 0.5 mm: the 40 mm disk is 160 x 80 voxels
    n = 200
    c = (n - 1) / 2
    yy, xx = np.mgrid[:n, :n]
    # physical disk of radius 40 mm on a 0.5 x 1 mm grid
    d = ((((yy - c) * sp[0]) ** 2 + ((xx - c) * sp[1]) ** 2) <= R**2).astype(np.int64)[:, 50:150]
    d = np.pad(d, ((0, 0), (20, 20)))
    for r in (2, 4):
        dd = dilate(d, r, spacing=sp).labels
        de = erode(d, r, spacing=sp).labels
        area = sp[0] * sp[1]
        assert abs(dd.sum() * area - np.pi * (R + r) ** 2) / (np.pi * (R + r) ** 2) < 0.02
        assert abs(de.sum() * area - np.pi * (R - r) ** 2) / (np.pi * (R - r) ** 2) < 0.02


def test_3d_ball_dilate_erode():
    n, Rb = 48, 15
    c = (n - 1) / 2
    zz, yy, xx = np.mgrid[:n, :n, :n]
    d2 = (zz - c) ** 2 + (yy - c) ** 2 + (xx - c) ** 2
    ball = (d2 <= Rb**2).astype(np.int64)
    for r in (1, 3):
        dd, de = dilate(ball, r).labels, erode(ball, r).labels
        # the noisy mask is the digital ball of radius R +- r (morphology of a digital ball)
        # (half-voxel discretisation at R=15 costs up to ~2 % Dice)
        assert dice(dd, d2 <= (Rb + r) ** 2) > 0.97
        assert dice(de, d2 <= (Rb - r) ** 2) > 0.97
        assert np.all(dd >= ball) and np.all(de <= ball)


def test_zero_radius_is_identity_and_torch_roundtrip():
    d = torch.from_numpy(disk(10, 32)).to(torch.uint8)
    before = d.clone()
    for res in (dilate(d, 0), erode(d, 0), contour_jitter(d, 0, 4, seed=0),
                drop_components(d, 0.0, seed=0), add_false_positives(d, 0.0, seed=0)):
        assert torch.equal(res.labels, d) and res.labels.dtype == torch.uint8
        assert not res.mask.any()
        assert torch.allclose(res.transition, torch.eye(2, dtype=torch.float64))
    assert torch.equal(d, before)


def _lesions():
    m = np.zeros((64, 64), np.int64)
    rng = np.random.default_rng(0)
    for _ in range(12):
        cy, cx = rng.integers(5, 59, 2)
        r = rng.integers(1, 4)
        yy, xx = np.ogrid[:64, :64]
        m[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = rng.integers(1, 3)
    return m


@pytest.mark.parametrize("size_dependent", [False, True])
def test_drop_components_whole_components_only(size_dependent):
    m = _lesions()
    res = drop_components(m, 0.5, size_dependent=size_dependent, seed=1)
    out = res.labels
    assert np.all((out == m) | (out == 0))  # never adds or relabels voxels
    for c in (1, 2):
        lab, n = ndimage.label(m == c)
        for j in range(1, n + 1):
            comp = lab == j
            kept = out[comp] == c
            assert kept.all() or (~kept).all()  # whole component kept or removed
    assert res.mask.any()
    assert drop_components(m, 1.0, seed=0).labels.max() == 0


def test_add_false_positives_never_removes():
    m = _lesions()
    res = add_false_positives(m, 5.0, (2.0, 4.0), seed=3, label=3)
    out = res.labels
    assert np.all(out[m > 0] == m[m > 0])
    assert np.all(np.isin(out[res.mask], [3]))
    assert res.mask.sum() > 0


def test_contour_jitter_unbiased_and_seeded():
    d = disk(20, 96)
    vols = []
    with GlobalRNGGuard():
        for s in range(8):
            a = contour_jitter(d, 1.5, 6.0, seed=s)
            vols.append(a.labels.sum() / d.sum())
        b = contour_jitter(d, 1.5, 6.0, seed=0)
    assert abs(np.mean(vols) - 1) < 0.03
    assert np.array_equal(b.labels, contour_jitter(d, 1.5, 6.0, seed=0).labels)
    assert not np.array_equal(b.labels, contour_jitter(d, 1.5, 6.0, seed=1).labels)
    assert 0.85 < dice(b.labels, d) < 1.0


def test_interface_swap_only_in_band_and_between_pair():
    m = np.zeros((64, 64), np.int64)
    m[:, :32] = 1
    m[:, 32:] = 2
    m[:8] = 0
    res = interface_swap(m, [(1, 2)], band_mm=4.0, seed=0)
    out = res.labels
    ch = res.mask
    assert ch.any()
    cols = np.nonzero(ch)[1]
    assert cols.min() >= 32 - 5 and cols.max() <= 32 + 4  # within the band
    assert set(np.unique(out[ch])) <= {1, 2} and np.all(m[:8] == out[:8])
    assert set(np.unique(out)) == set(np.unique(m))


def test_slice_sparse_annotated_slices_unchanged():
    n = 24
    zz, yy, xx = np.mgrid[:n, :32, :32]
    ball = (((zz - 12) ** 2 + (yy - 16) ** 2 + (xx - 16) ** 2) <= 9**2).astype(np.int64)
    res = slice_sparse(ball, 4, offset=1)
    assert np.array_equal(res.labels[1::4], ball[1::4])
    assert dice(res.labels, ball) > 0.9
    assert np.array_equal(slice_sparse(ball, 1).labels, ball)
    with pytest.raises(ValueError, match="3D"):
        slice_sparse(ball[0], 2)


IGN = 255
CASES = [
    lambda m: dilate(m, 3.0, ignore_index=IGN),
    lambda m: erode(m, 2.0, ignore_index=IGN),
    lambda m: contour_jitter(m, 2.0, 4.0, ignore_index=IGN, seed=0),
    lambda m: drop_components(m, 0.7, ignore_index=IGN, seed=0),
    lambda m: add_false_positives(m, 10.0, 5.0, ignore_index=IGN, seed=0),
    lambda m: interface_swap(m, [(1, 2)], 3.0, ignore_index=IGN, seed=0),
]


@pytest.mark.parametrize("fn", CASES)
@pytest.mark.parametrize("dim", [2, 3])
def test_ignore_index_untouched(fn, dim):
    if dim == 2:
        m = _lesions()
        m[20:30, :] = IGN
    else:
        m = np.zeros((16, 32, 32), np.int64)
        m[4:12, 8:20, 8:20] = 1
        m[4:12, 20:28, 8:20] = 2
        m[:, :, 14:17] = IGN
    res = fn(m)
    out = res.labels
    assert np.array_equal(out == IGN, m == IGN)
    assert not res.mask[m == IGN].any()
    assert res.transition.shape[0] < IGN  # ignore voxels excluded from T


def test_spacing_and_shape_errors():
    with pytest.raises(ValueError, match="spacing"):
        dilate(disk(5, 16), 1.0, spacing=(1.0, -1.0))
    with pytest.raises(ValueError, match="2D"):
        dilate(np.zeros((2, 2, 2, 2), int), 1.0)
    with pytest.raises(ValueError, match="radius_mm"):
        erode(disk(5, 16), -1.0)
