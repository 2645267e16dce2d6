"""Physics acceptance tests for the ultrasound artifacts and phantom."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch

from robustaug.artifacts.ultrasound import (
    AcousticShadow,
    DepthAttenuation,
    Enhancement,
    LogCompression,
    Reverberation,
    Speckle,
)
from robustaug.data.ultrasound import ultrasound_phantom
from robustaug.functional import ultrasound as FU

RAYLEIGH_SNR = math.sqrt(math.pi / (4 - math.pi))  # 1.913


def _flat(size=256, batch=3, value=0.5):
    return torch.full((batch, 1, size, size), value, dtype=torch.float64)


def test_rayleigh_snr_homogeneous():
    t = Speckle(nakagami_m=1.0, axial_fwhm_mm=0.3, lateral_fwhm_mm=0.45, spacing_mm=0.15, seed=3)
    y = t(_flat())
    for i in range(y.shape[0]):
        snr = float(y[i].mean() / y[i].std())
        assert abs(snr / RAYLEIGH_SNR - 1) < 0.03, snr
    assert float(y.min()) >= 0.0


@pytest.mark.parametrize("m", [0.5, 0.75, 2.0, 4.0])
def test_nakagami_m_recovered(m):
    y = Speckle(nakagami_m=m, axial_fwhm_mm=0.2, lateral_fwhm_mm=0.3, seed=1)(_flat(batch=2))
    inten = (y / 0.5) ** 2
    m_hat = float(inten.mean() ** 2 / inten.var())
    assert abs(m_hat / m - 1) < 0.10, (m, m_hat)
    assert abs(float(inten.mean()) - 1) < 0.05  # unit power: E[A^2] = 1


def _fwhm(profile: np.ndarray) -> float:
    """Full width at half maximum of a symmetric profile peaked at index 0 (circular)."""
    p = profile / profile[0]
    i = int(np.argmax(p < 0.5))
    x0, x1 = i - 1, i
    frac = (p[x0] - 0.5) / (p[x0] - p[x1])
    return 2 * (x0 + frac)


def test_speckle_autocorrelation_fwhm_matches_psf():
    spacing, ax_mm, lat_mm = 0.1, 0.5, 1.0
    t = Speckle(nakagami_m=1.0, axial_fwhm_mm=ax_mm, lateral_fwhm_mm=lat_mm, spacing_mm=spacing, seed=5)
    y = t(_flat(size=256, batch=4)).numpy()[:, 0]
    inten = y**2
    acov = np.zeros_like(inten[0])
    for im in inten:
        f = np.fft.fft2(im - im.mean())
        acov += np.real(np.fft.ifft2(np.abs(f) ** 2))
    axial = _fwhm(acov[:, 0]) * spacing
    lateral = _fwhm(acov[0, :]) * spacing
    assert abs(axial / ax_mm - 1) < 0.2, axial
    assert abs(lateral / lat_mm - 1) < 0.2, lateral
    # An i.i.d. (MedMNIST-C style) field would have an FWHM below one pixel.
    assert lateral > 5 * spacing


def test_speckle_differs_per_seed_and_keeps_rng():
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())  # noqa: NPY002
    a = Speckle(seed=1)(_flat(32, 1))
    b = Speckle(seed=2)(_flat(32, 1))
    assert not torch.equal(a, b)
    assert torch.equal(states[0], torch.get_rng_state())
    assert np.array_equal(states[1], np.random.get_state()[1])  # noqa: NPY002
    assert states[2] == random.getstate()


@pytest.mark.parametrize("apex", [None, 20.0])
def test_acoustic_shadow_only_distal(apex):
    x = ultrasound_phantom((96, 96), seed=2)["envelope"][None].double().clamp_min(1e-3)
    att = 18.0
    t = AcousticShadow(attenuation_db=att, depth=0.4, center=0.5, width=0.3, apex_mm=apex, edge_px=2.0)
    y = t(x)
    ratio_db = 20 * torch.log10(y / x)[0, 0]
    # Proximal to the source: untouched (rows above the source depth 0.4 * 96 = 38.4).
    assert torch.equal(y[0, 0, :38], x[0, 0, :38])
    # Beside the source, at every depth: untouched.
    assert torch.equal(y[0, 0, :, :25], x[0, 0, :, :25])
    assert torch.equal(y[0, 0, :, 72:], x[0, 0, :, 72:])
    # Distal core along the central beams: -att dB within 0.5 dB.
    core = ratio_db[45:, 44:52]
    assert float((core + att).abs().max()) < 0.5


def test_enhancement_gain_and_bmode_domain():
    x = torch.full((1, 1, 64, 64), 0.2, dtype=torch.float64)
    y = Enhancement(gain_db=6.0, depth=0.5, center=0.5, width=0.5)(x)
    assert abs(20 * math.log10(float(y[0, 0, 60, 32]) / 0.2) - 6.0) < 1e-6
    # In the B-mode domain a 12 dB shadow lowers the display value by 12 / DR.
    xb = FU.log_compression(x, 60.0)
    yb = AcousticShadow(attenuation_db=12.0, depth=0.5, center=0.5, width=0.5, domain="bmode",
                        dynamic_range_db=60.0)(xb)
    assert abs(float(xb[0, 0, 60, 32] - yb[0, 0, 60, 32]) - 12.0 / 60.0) < 1e-6


@pytest.mark.parametrize("comp", [0.0, 0.5])
def test_depth_attenuation_slope(comp):
    alpha, f, spacing = 0.5, 5.0, 0.3
    speck = Speckle(nakagami_m=1.0, axial_fwhm_mm=0.3, lateral_fwhm_mm=0.6, spacing_mm=spacing, seed=0)
    x = speck(_flat(size=128, batch=4))
    t = DepthAttenuation(alpha_db_cm_mhz=alpha, freq_mhz=f, compensation=comp, tgc_error_db=0.0,
                         spacing_mm=spacing)
    y = t(x)
    logi = (20 * torch.log10(y.clamp_min(1e-12))).mean(dim=(0, 1, 3)).numpy()
    depth_cm = (np.arange(128) + 0.5) * spacing / 10
    slope = np.polyfit(depth_cm, logi, 1)[0]
    expected = -2 * alpha * f * (1 - comp)
    assert abs(slope / expected - 1) < 0.05, (slope, expected)


def test_depth_attenuation_perfect_tgc_identity_and_sliders():
    x = ultrasound_phantom((64, 64), seed=0)["envelope"][None]
    t = DepthAttenuation(compensation=1.0, tgc_error_db=0.0)
    assert torch.allclose(t(x), x, atol=1e-6)
    t2 = DepthAttenuation(compensation=1.0, tgc_error_db=3.0, seed=0)
    y, prm = t2(x, return_params=True)
    assert prm["tgc_offsets_db"].shape == (1, 8)
    ratio = 20 * torch.log10(y[0, 0, 0, 0] / x[0, 0, 0, 0])
    assert abs(float(ratio) - float(prm["tgc_offsets_db"][0, 0])) < 0.5


def test_reverberation_echoes_at_integer_multiples():
    h, r0 = 128, 14
    x = torch.zeros(1, 1, h, 32, dtype=torch.float64)
    x[0, 0, r0] = 1.0
    decay = 6.0
    t = Reverberation(decay_db=decay, num_echoes=4, center=0.5, width=1.0)  # auto-detected interface
    y, prm = t(x, return_params=True)
    d0 = float(prm["interface_depth"][0]) * h
    assert abs(d0 - (r0 + 0.5)) < 1e-9
    prof = y[0, 0, :, 16]
    peaks = []
    for k in range(2, 6):
        c = k * d0 - 0.5  # pixel index of depth k * d0
        lo, hi = int(c) - 3, int(c) + 4
        peaks.append((lo + int(prof[lo:hi].argmax()), float(prof[lo:hi].sum())))
    for k, (pos, _) in enumerate(peaks, start=2):
        assert abs(pos - (k * d0 - 0.5)) <= 1.0, (k, pos)
    # Each echo is `decay` dB weaker than the previous one; nothing between echoes.
    for (_, e1), (_, e2) in itertools.pairwise(peaks):
        assert abs(20 * math.log10(e1 / e2) - decay) < 0.3
    assert float(prof[r0 + 4 : int(2 * d0) - 4].abs().max()) < 1e-3
    assert torch.equal(y[0, 0, :r0], x[0, 0, :r0])


def test_reverberation_sector_geometry_along_rays():
    h, w = 96, 96
    x = torch.zeros(1, 1, h, w, dtype=torch.float64)
    t = Reverberation(decay_db=0.0, num_echoes=1, interface_depth=0.2, center=0.5, width=1.0,
                      apex_mm=0.0, spacing_mm=1.0)
    # A bright arc at 20 mm from the apex (phased array): echo is the arc at 40 mm.
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5 - w / 2, indexing="ij")
    rho = torch.sqrt(yy**2 + xx**2)
    x[0, 0] = torch.exp(-0.5 * ((rho - 20.0) / 0.7) ** 2)
    y = t(x) - x
    echo_rho = rho[y[0, 0] > 0.5 * float(y.max())]
    assert abs(float(echo_rho.mean()) - 40.0) < 1.0


def test_log_compression_values_and_inverse():
    x = torch.tensor([[[[1.0, 0.1, 1e-3, 1e-4]]]], dtype=torch.float64)
    y = LogCompression(dynamic_range_db=60.0)(x)
    assert torch.allclose(y, torch.tensor([[[[1.0, 2 / 3, 0.0, 0.0]]]], dtype=torch.float64))
    back = FU.log_decompression(y[..., :2], 60.0)
    assert torch.allclose(back, x[..., :2])


def test_phantom_statistics_and_determinism():
    a = ultrasound_phantom((128, 128), seed=4)
    b = ultrasound_phantom((128, 128), seed=4)
    assert torch.equal(a["envelope"], b["envelope"])
    env, tis, cyst = a["envelope"][0], a["tissue_mask"], a["cyst_mask"]
    assert float(env[cyst].mean()) < 0.3 * float(env[tis].mean())
    assert float(env[a["reflector_mask"]].mean()) > 2 * float(env[tis].mean())
    # Envelope formed from complex circular Gaussian scatterers: divided by the echogenicity (the
    # RMS scatterer amplitude) it is Rayleigh, E[r]^2 / E[r^2] = pi/4 and SNR = 1/sqrt(4/pi - 1)
    # = 1.913 (a real-part or half-normal envelope gives 2/pi and 1.32). Tolerances cover the
    # PSF-correlated samples of one 128x128 image (seeds 0-11: within 1 % and 2.5 %).
    r = (env / a["echogenicity"][0].clamp_min(1e-8))[tis]
    assert abs(float(r.mean() ** 2 / (r**2).mean()) / (math.pi / 4) - 1) < 0.02
    assert abs(float(r.mean() / r.std()) / (1 / math.sqrt(4 / math.pi - 1)) - 1) < 0.05
    assert a["bmode"].min() >= 0 and a["bmode"].max() <= 1


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="nakagami_m"):
        Speckle(nakagami_m=0.2)
    with pytest.raises(ValueError, match="spacing_mm"):
        Speckle(spacing_mm=(0.1, -1))
    with pytest.raises(ValueError, match="domain"):
        AcousticShadow(domain="rf")
    with pytest.raises(ValueError, match="2D"):
        Speckle.example_input(3)
