"""Physics acceptance tests of the projection-domain CT artifacts."""

import math
import random

import numpy as np
import pytest
import torch

from robustaug.artifacts.ct import (
    BeamHardening,
    CTMotion,
    LimitedAngle,
    LowDose,
    MetalArtifact,
    RingArtifact,
    SparseView,
    Truncation,
)
from robustaug.data.ct import ct_phantom

N = 64


def _radius(n=N):
    rr, cc = torch.meshgrid(torch.arange(n) - n // 2, torch.arange(n) - n // 2, indexing="ij")
    return torch.sqrt((rr**2 + cc**2).double()), torch.atan2(rr.double(), cc.double())


def water_cylinder(batch=1, n=N, radius_frac=0.3):
    r, _ = _radius(n)
    x = torch.where(r <= radius_frac * n, 0.0, -1000.0).double()
    return x.expand(batch, 1, n, n).clone()


def test_low_dose_variance_scales_inverse_dose():
    x = water_cylinder(batch=12)
    r, _ = _radius()
    roi = r <= 12
    doses = [0.1, 0.2, 0.4, 1.0]
    var = []
    for d in doses:
        y = LowDose(dose_fraction=d, i0=2e4, sigma_e=0.0, seed=7)(x)
        var.append(float((y - x)[:, 0][:, roi].var()))
    slope = np.polyfit(np.log(doses), np.log(var), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.05)


@pytest.mark.parametrize("dose", [0.25, 0.5, 1.0])
def test_low_dose_mean_hu_unbiased(dose):
    x = water_cylinder(batch=8)
    r, _ = _radius()
    roi = r <= 14
    y = LowDose(dose_fraction=dose, i0=1e5, sigma_e=3.0, seed=3)(x)
    assert abs(float((y - x)[:, 0][:, roi].mean())) < 2.0


def test_low_dose_full_dose_zeng_is_reconstruction_only():
    x = ct_phantom((N, N), seed=2)["image"][None].double()
    t = LowDose(dose_fraction=1.0, sigma_e=0.0, model="zeng", seed=0)
    assert torch.allclose(t(x), x, atol=1e-6)
    full = LowDose(dose_fraction=1.0, sigma_e=0.0, model="zeng", reconstruct="full", seed=0)(x)
    ref = BeamHardening(strength=1e-12, reconstruct="full")(x)  # plain FBP(A x) up to 1e-12
    assert torch.allclose(full, ref, atol=1e-3)
    # and total noise of a noisy "full-dose" scan scales as 1/dose under the Zeng model
    noisy = LowDose(dose_fraction=1.0, i0=2e4, sigma_e=0.0, seed=1)(water_cylinder(batch=12))
    r, _ = _radius()
    roi = r <= 12
    v1 = float((noisy - water_cylinder(12))[:, 0][:, roi].var())
    ld = LowDose(dose_fraction=0.25, i0=2e4, sigma_e=0.0, model="zeng", seed=2)(noisy)
    v4 = float((ld - water_cylinder(12))[:, 0][:, roi].var())
    assert v4 / v1 == pytest.approx(4.0, rel=0.15)


def _polar(img, radii, n_ang=256):
    """Bilinear samples of ``img`` (N, N) on circles about the rotation centre: (len(radii), n_ang)."""
    n = img.shape[-1]
    ang = torch.arange(n_ang, dtype=torch.float64) * (2 * math.pi / n_ang)
    rr = torch.as_tensor(radii, dtype=torch.float64)[:, None]
    col = n // 2 + rr * torch.cos(ang)
    row = n // 2 + rr * torch.sin(ang)
    grid = torch.stack([2 * col / (n - 1) - 1, 2 * row / (n - 1) - 1], -1)[None]
    return torch.nn.functional.grid_sample(img[None, None], grid, align_corners=True)[0, 0]


def test_ring_artifact_concentric_at_channel_radii():
    from robustaug.functional.generic import gaussian_blur

    x = water_cylinder(n=N, radius_frac=0.45)
    t = RingArtifact(n_channels=3, gain_error=0.03, fraction=0.7, seed=5)
    params = {
        "channels": torch.tensor([[N // 2 + 8, N // 2 - 15, N // 2 + 21]]),
        "gains": torch.tensor([[1.03, 0.97, 1.03]], dtype=torch.float64),
        "offsets": torch.zeros(1, 3, dtype=torch.float64),
    }
    d = gaussian_blur(t(x, params=params) - x, 1.0)[0, 0]
    radii = torch.arange(2.0, N // 2 - 3, 0.25)
    pol = _polar(d, radii)
    prof = pol.mean(1)
    ang_var = float(pol.var(1).mean())
    rad_var = float(prof.var())
    assert ang_var < 0.05 * rad_var
    ch_r = sorted({abs(int(c) - N // 2) for c in params["channels"][0]})
    # local maxima of |profile| at the channels' radii
    for c in ch_r:
        near = (radii - c).abs() <= 1.0
        assert float(prof.abs()[near].max()) > 0.5 * float(prof.abs().max()) / len(ch_r)
    top = radii[torch.argmax(prof.abs())]
    assert min(abs(float(top) - c) for c in ch_r) <= 1.0


def test_beam_hardening_cupping_grows_and_zero_is_identity():
    x = water_cylinder(n=N, radius_frac=0.4)
    r, _ = _radius()
    centre, edge = r <= 5, (r >= 0.3 * N) & (r <= 0.37 * N)
    assert torch.equal(BeamHardening(strength=0.0)(x), x)
    cup = []
    for s in (0.01, 0.02, 0.04):
        y = BeamHardening(strength=s)(x)[0, 0]
        cup.append(float(y[edge].mean() - y[centre].mean()))
    assert 0 < cup[0] < cup[1] < cup[2]
    ys = BeamHardening(strength=1.0, model="spectrum", kvp=120)(x)[0, 0]
    assert float(ys[edge].mean() - ys[centre].mean()) > 0  # polychromatic spectrum also cups


def _two_metal_mask(n=N):
    rr, cc = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    m = (((rr - 32) ** 2 + (cc - 20) ** 2) <= 9) | (((rr - 32) ** 2 + (cc - 44) ** 2) <= 9)
    return m


def test_metal_streaks_grow_as_i0_falls_and_follow_metal_lines():
    x = water_cylinder(batch=2, n=N, radius_frac=0.42)
    m = _two_metal_mask()
    rr, cc = torch.meshgrid(torch.arange(N), torch.arange(N), indexing="ij")
    far = torch.ones(N, N, dtype=torch.bool)
    for c in (20, 44):
        far &= ((rr - 32) ** 2 + (cc - c) ** 2) > 36
    r, _ = _radius()
    body = (r <= 0.38 * N) & far
    band = body & ((rr - 32).abs() <= 2) & (cc > 24) & (cc < 40)
    off = body & ((rr - 32).abs() >= 10)
    energies = []
    for i0 in (1e7, 1e5, 2e4):
        y = MetalArtifact(mask=m, material="titanium", i0=i0, sigma_e=3.0, seed=4)(x)
        d2 = ((y - x) ** 2)[:, 0]
        energies.append(float(d2[:, body].mean()))
        if i0 == 1e5:
            assert float(d2[:, band].mean()) > 2.0 * float(d2[:, off].mean())
    assert energies[0] < energies[1] < energies[2]


def test_sparse_view_streaks_grow_as_views_fall():
    x = ct_phantom((N, N), seed=1)["image"][None].double()
    r, _ = _radius()
    roi = r <= 0.45 * N
    e = [float(((SparseView(views=v, seed=0)(x) - x)[0, 0][roi] ** 2).mean()) for v in (90, 45, 20)]
    assert e[0] < e[1] < e[2]
    assert torch.allclose(SparseView(views=101, n_views=101)(x), x, atol=1e-6)


def test_limited_angle_truncation_motion_behave():
    x = ct_phantom((N, N), seed=1)["image"][None].double()
    r, _ = _radius()
    roi = r <= 0.45 * N
    e = [float(((LimitedAngle(range_deg=a, seed=0)(x) - x)[0, 0][roi] ** 2).mean()) for a in (170, 120, 60)]
    assert e[0] < e[1] < e[2]
    y = Truncation(fov_fraction=0.6)(x)
    assert bool((y[0, 0][r > 0.3 * N + 1] == -1000).all())
    m = [float(((CTMotion(translation_mm=t, rotation_deg=0.0, seed=0)(x) - x)[0, 0] ** 2).mean()) for t in (0.0, 3.0, 10.0)]
    assert m[0] < 1e-6 < m[1] < m[2]


def test_volumes_are_processed_slice_wise_along_axis():
    v = ct_phantom((6, 32, 32), seed=0)["image"][None].double()
    t = BeamHardening(strength=0.02)
    y = t(v)
    per_slice = torch.stack([t(v[:, :, k]) for k in range(6)], dim=2)
    assert torch.allclose(y, per_slice, atol=1e-8)
    t2 = BeamHardening(strength=0.02, axis=2)
    y2 = t2(v)
    per_col = torch.stack([BeamHardening(strength=0.02)(v[..., k]) for k in range(32)], dim=-1)
    assert torch.allclose(y2, per_col, atol=1e-8)


def test_sinogram_domain_and_rng_untouched():
    s = torch.rand(2, 1, 40, 32, generator=torch.Generator().manual_seed(0)).double() * 3
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002
    random.seed(0)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())  # noqa: NPY002
    y = LowDose(dose_fraction=0.2, domain="sinogram", seed=0)(s)
    assert y.shape == s.shape and not torch.equal(y, s)
    r = RingArtifact(n_channels=2, gain_error=0.05, domain="sinogram", seed=0)(s)
    assert ((r - s).abs().amax(dim=-2) > 1e-9).sum() == 8  # two channels + mirrors per sample
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]  # noqa: NPY002


def test_bad_arguments():
    with pytest.raises(ValueError, match="dose_fraction"):
        LowDose(dose_fraction=1.5)
    with pytest.raises(ValueError, match="material"):
        MetalArtifact(material="gold")
    with pytest.raises(ValueError, match="filter"):
        SparseView(filter="bogus")
    assert math.isfinite(float(MetalArtifact.from_severity(5, seed=0)(MetalArtifact.example_input(2, 1, 24)).mean()))
