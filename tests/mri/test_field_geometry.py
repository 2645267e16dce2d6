"""Physics tests for slice thickness, chemical shift and susceptibility distortion."""

from __future__ import annotations

import pytest
import torch

from robustaug.artifacts.mri_field import ChemicalShift, SliceThickness, SusceptibilityDistortion
from robustaug.data import phantom
from robustaug.functional import mri_field as F

pytestmark = pytest.mark.usefixtures("one_thread_fixed_seed")


# ----------------------------------------------------------------------------- slice thickness
def test_slice_thickness_one_voxel_is_identity():
    x = torch.rand(2, 1, 20, 8, 8, dtype=torch.float64)
    y = F.slice_thickness(x, 1.0, 0.0, spacing_mm=1.0, offset_mm=0.0, axis=0)
    assert torch.allclose(y, x, atol=1e-12)


def test_slice_thickness_partial_volume_of_thin_structure():
    # a 1-voxel sheet at index 10; a 4-voxel rect slice centred on it averages it over 4 voxels
    x = torch.zeros(1, 1, 24, 4, 4, dtype=torch.float64)
    x[:, :, 10] = 1.0
    y = F.slice_thickness(x, 4.0, 0.0, offset_mm=10.0, axis=0)
    assert abs(float(y[0, 0, 10, 0, 0]) - 0.25) < 1e-12
    # in mm: 2 mm slices on 0.5 mm voxels are 4 voxels thick
    y2 = F.slice_thickness(x, 2.0, 0.0, spacing_mm=0.5, offset_mm=5.0, axis=0)
    assert torch.allclose(y, y2)
    # Gaussian profile of the same FWHM: same centre weight order, mass spread wider
    yg = F.slice_thickness(x, 4.0, 0.0, offset_mm=10.0, axis=0, profile="gaussian")
    assert 0.15 < float(yg[0, 0, 10, 0, 0]) < 0.3


def test_slice_thickness_gap_misses_tissue_and_in_plane_unchanged():
    x = torch.zeros(1, 1, 30, 6, 6, dtype=torch.float64)
    x[:, :, 3] = 1.0  # inside the gap between slices [-1, 1] and [5, 7]
    y = F.slice_thickness(x, 2.0, 4.0, offset_mm=0.0, axis=0)
    assert float(y.abs().max()) < 1e-12
    # an object that is constant along the slice axis is not changed (only the slice axis is touched)
    z = torch.rand(1, 1, 1, 6, 6, dtype=torch.float64).expand(1, 1, 30, 6, 6)
    yz = F.slice_thickness(z, 5.0, 1.5, offset_mm=1.3, axis=0)
    assert torch.allclose(yz, z, atol=1e-12)


def test_slice_thickness_2d_axis_and_class_params():
    x = phantom((64, 64), seed=0)["image"][None]
    t = SliceThickness(thickness_mm=5.0, gap_mm=1.0, slice_axis=1, seed=0)
    y, p = t(x, return_params=True)
    assert 0 <= float(p["offset_mm"][0]) < 6.0
    assert not torch.allclose(y, x)
    # only axis W (index 1) is mixed: an image constant along W is unchanged
    z = x.mean(-1, keepdim=True).expand_as(x)
    assert torch.allclose(t(z, params=p), z, atol=1e-6)
    with pytest.raises(ValueError, match="thickness_mm"):
        SliceThickness(thickness_mm=0.0)


def test_slice_thickness_mtf_matches_rect_profile():
    # a sinusoid along the slice axis sampled by thin rect slices with no gap is attenuated by sinc(T f)
    n, f, t_mm = 256, 1.0 / 32.0, 6.0
    z = torch.arange(n, dtype=torch.float64)
    x = torch.cos(2 * torch.pi * f * z).reshape(1, 1, n, 1)
    # slices every voxel would make pitch = T; use the acquisition operator before interpolation via
    # offset = 0 and compare the values at slice centres (k * T), which lie on voxel centres
    y = F.slice_thickness(x.expand(1, 1, n, 2), t_mm, 0.0, offset_mm=0.0, axis=0)[0, 0, :, 0]
    centres = torch.arange(0, n, int(t_mm))[8:-8]
    expected = torch.sinc(torch.tensor(t_mm * f, dtype=torch.float64)) * x[0, 0, centres, 0]
    assert torch.allclose(y[centres], expected, atol=0.01)


# ----------------------------------------------------------------------------- chemical shift
def test_chemical_shift_pixels_formula():
    # 3.5 ppm * 42.577 MHz/T * 3 T = 447.1 Hz; at 130 Hz/pixel -> 3.44 pixels
    assert abs(float(F.chemical_shift_pixels(3.0, 130.0)) - 3.5e-6 * 42.577478e6 * 3.0 / 130.0) < 1e-9
    assert abs(float(F.chemical_shift_pixels(1.5, 220.0)) - 1.016) < 1e-3


@pytest.mark.parametrize("b0,bw", [(1.5, 220.0), (3.0, 130.0), (3.0, 90.0)])
def test_chemical_shift_moves_fat_mask_by_computed_pixels(b0, bw):
    ph = phantom((128, 128), seed=0)
    x, fat = ph["image"][None].double(), ph["fat_mask"]
    t = ChemicalShift(field_strength_t=b0, bandwidth_hz_per_px=bw, fat_mask=fat, seed=0)
    y = t(x)
    expected = float(F.chemical_shift_pixels(b0, bw))
    fat_signal_before = x * fat
    fat_signal_after = y - x * (~fat)  # the water part stays in place
    col = torch.arange(128, dtype=torch.float64)
    c0 = (fat_signal_before[0, 0] * col).sum() / fat_signal_before.sum()
    c1 = (fat_signal_after[0, 0] * col).sum() / fat_signal_after.sum()
    assert abs(float(c1 - c0) - expected) <= 0.5
    # only the readout axis (W) moves: row sums are conserved, and so is the total signal
    assert torch.allclose(y.sum(-1), x.sum(-1), atol=1e-9)
    # the displaced mask itself, thresholded, is the original shifted by round(d) (+-1 column)
    moved = fat_signal_after[0, 0] > 0.5 * fat_signal_before.max()
    shifted = torch.roll(fat, round(expected), dims=-1)
    assert (moved & shifted).sum() >= 0.5 * moved.sum()


def test_chemical_shift_polarity_and_threshold_fallback():
    ph = phantom((96, 96), seed=2)
    x, fat = ph["image"][None], ph["fat_mask"]
    t_mask = ChemicalShift(3.0, 130.0, fat_mask=fat, polarity=-1, seed=0)
    t_thr = ChemicalShift(3.0, 130.0, polarity=-1, seed=0)
    _, p = t_thr(x, return_params=True)
    assert float(p["shift_px"][0]) < 0
    # the threshold fallback finds (part of) the fat layer: same direction of change
    d_mask, d_thr = t_mask(x) - x, t_thr(x) - x
    assert float((d_mask * d_thr).sum()) > 0


def test_chemical_shift_subpixel_linear_and_differentiable():
    x = torch.zeros(1, 1, 4, 16, dtype=torch.float64)
    x[..., 5] = 1.0
    y = F.chemical_shift(x, 2.25, torch.ones_like(x))
    assert torch.allclose(y[0, 0, 0, 7:9], torch.tensor([0.75, 0.25], dtype=torch.float64))
    s = torch.tensor([1.3], dtype=torch.float64, requires_grad=True)
    xr = torch.rand(1, 1, 4, 8, dtype=torch.float64)
    f = (torch.rand(1, 1, 4, 8) > 0.5).double()
    assert torch.autograd.gradcheck(lambda v: F.chemical_shift(xr, v, f), (s,))


# ----------------------------------------------------------------------------- susceptibility
def test_susceptibility_constant_field_is_pure_shift_along_pe():
    x = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    x[0, 0, 10, 20] = 1.0
    field = torch.full((1, 1, 32, 32), 50.0, dtype=torch.float64)  # 50 Hz / 20 Hz/px = 2.5 px
    y = F.susceptibility_distortion(x, field, 20.0, pe_axis=-2)
    nz = y[0, 0].nonzero().tolist()
    assert sorted(nz) == [[12, 20], [13, 20]]
    assert torch.allclose(y[0, 0, 12:14, 20], torch.tensor([0.5, 0.5], dtype=torch.float64))


@pytest.mark.parametrize("shape,axis", [((48, 48), -2), ((48, 48), -1), ((20, 24, 28), 0)])
def test_susceptibility_displacement_along_one_axis_conserves_signal(shape, axis):
    ph = phantom(shape, seed=1)
    x = ph["image"][None].double()
    t = SusceptibilityDistortion(max_offset_hz=120.0, bandwidth_pe_hz=20.0, pe_axis=axis, seed=3)
    y = t(x)
    assert not torch.allclose(y, x)
    ax = 2 + (axis % len(shape))
    # every phase-encode line keeps its signal: nothing moves along the other axes
    assert torch.allclose(y.sum(ax), x.sum(ax), atol=1e-9)
    assert abs(float(y.sum() - x.sum())) < 1e-8
    assert float(y.min()) >= 0


def test_susceptibility_point_sources_move_by_field_over_bandwidth():
    n = 64
    t = SusceptibilityDistortion(max_offset_hz=80.0, bandwidth_pe_hz=20.0, pe_axis=-2, seed=1)
    x = torch.zeros(1, 1, n, n, dtype=torch.float64)
    pts = [(20, 10), (32, 32), (45, 50)]
    for r, c in pts:
        x[0, 0, r, c] = 1.0
    y, p = t(x, return_params=True)
    d = t.field(x, p)[0, 0] / 20.0  # displacement in pixels = df / BW
    for r, c in pts:
        col = y[0, 0, :, c]
        assert float(y[0, 0, :, c].sum()) == pytest.approx(1.0)
        # all of the point's signal stays in its column; its centroid moves by df / BW, evaluated
        # (as the voxel's extent is mapped) at the voxel edges: (d[r-1] + 2 d[r] + d[r+1]) / 4; binning
        # the mapped extent (width 1 + dd/dr) into voxels moves the centroid by < 0.02 px here
        centroid = float((col * torch.arange(n, dtype=torch.float64)).sum())
        d_mean = float(d[r - 1, c] + 2 * d[r, c] + d[r + 1, c]) / 4
        assert abs(centroid - (r + d_mean)) < 0.02
        assert abs(d_mean - float(d[r, c])) < 0.1


def test_susceptibility_jacobian_pile_up():
    # linear field along PE: d = a (r - c) compresses/stretches uniformly; intensity scales by 1/(1+a)
    n = 128
    r = torch.arange(n, dtype=torch.float64)
    for a in (-0.3, 0.4, 1.5):
        field = (a * (r - 64) * 20.0).reshape(1, 1, n, 1).expand(1, 1, n, 4)
        x = torch.zeros(1, 1, n, 4, dtype=torch.float64)
        x[0, 0, 54:75] = 1.0
        y = F.susceptibility_distortion(x, field, 20.0, pe_axis=-2)
        centre = y[0, 0, 62:67, 0]
        assert torch.allclose(centre, torch.full_like(centre, 1 / (1 + a)), rtol=0.03)
        assert abs(float(y.sum() - x.sum())) < 1e-9


def test_susceptibility_dropout_follows_sinc_of_gradient():
    n = 64
    r = torch.arange(n, dtype=torch.float64)
    g = 10.0  # Hz per voxel
    field = (g * (r - 32)).reshape(1, 1, n, 1).expand(1, 1, n, n)
    x = torch.ones(1, 1, n, n, dtype=torch.float64)
    y0 = F.susceptibility_distortion(x, field, 1e9, pe_axis=-1)  # no displacement along W
    y = F.susceptibility_distortion(x, field, 1e9, pe_axis=-1, te_ms=30.0)
    assert torch.allclose(y0, x)
    expected = abs(float(torch.sinc(torch.tensor(g * 0.030))))
    assert torch.allclose(y[0, 0, 5:-5], torch.full_like(y[0, 0, 5:-5], expected), atol=1e-9)
    t = SusceptibilityDistortion(max_offset_hz=150.0, te_ms=30.0, seed=0)
    xx = phantom((48, 48), seed=0)["image"][None]
    assert float(t(xx).sum()) < float(xx.sum())


def test_susceptibility_given_field_map_and_errors():
    fm = torch.zeros(32, 32)
    fm[:, :] = 40.0
    t = SusceptibilityDistortion(field_map_hz=fm, bandwidth_pe_hz=20.0, field_scale=1.0, seed=0)
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 5, 5] = 1.0
    y = t(x)
    assert float(y[0, 0, 7, 5]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="field_map_hz"):
        t(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="bandwidth_pe_hz"):
        SusceptibilityDistortion(bandwidth_pe_hz=0.0)
