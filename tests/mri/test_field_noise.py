"""Physics tests for Rician and multi-coil (noncentral chi) noise."""

from __future__ import annotations

import math

import pytest
import torch

from robustaug.artifacts.mri_field import MultiCoilNoise, RicianNoise
from robustaug.functional import mri_field as F

pytestmark = pytest.mark.usefixtures("one_thread_fixed_seed")


SEEDS = torch.tensor([11, 12], dtype=torch.int64)


def test_rician_on_zeros_is_rayleigh():
    sigma = 0.1
    y = RicianNoise(sigma=sigma, seed=0)(torch.zeros(2, 1, 512, 512))
    assert float(y.min()) >= 0.0
    mean, std = float(y.mean()), float(y.std())
    assert abs(mean / (sigma * math.sqrt(math.pi / 2)) - 1) < 0.01
    assert abs(std / (sigma * math.sqrt(2 - math.pi / 2)) - 1) < 0.02


def test_rician_sigma_is_exact_not_an_upper_bound():
    # MONAI's default draws std uniformly in [0, std]; ours must hit sigma itself in every sample.
    y = RicianNoise(sigma=0.05, seed=3)(torch.zeros(8, 1, 128, 128))
    per_sample = y.reshape(8, -1).mean(1) / (0.05 * math.sqrt(math.pi / 2))
    assert torch.all((per_sample - 1).abs() < 0.02)


def test_rician_high_snr_is_gaussian_with_std_sigma():
    sigma = 0.02
    x = torch.full((1, 1, 512, 512), 1.0)
    y = F.rician_noise(x, sigma, SEEDS[:1])
    assert abs(float(y.std()) / sigma - 1) < 0.02
    assert abs(float(y.mean()) - math.sqrt(1 + sigma**2)) < 1e-3


def test_rician_mean_matches_closed_form_at_low_snr():
    from scipy.special import i0e, i1e

    sigma, a = 0.1, 0.15  # SNR 1.5: neither Rayleigh nor Gaussian
    y = F.rician_noise(torch.full((1, 1, 512, 512), a, dtype=torch.float64), sigma, SEEDS[:1])
    t = a * a / (4 * sigma * sigma)
    # E[y] = sigma sqrt(pi/2) L_{1/2}(-a^2 / 2 sigma^2), with the Laguerre polynomial via Bessel functions
    lag = (1 + 2 * t) * i0e(t) + 2 * t * i1e(t)
    expected = sigma * math.sqrt(math.pi / 2) * lag
    assert abs(float(y.mean()) / expected - 1) < 0.005


def test_rician_seeded_per_sample_and_non_negative_for_negative_input():
    x = torch.randn(2, 1, 16, 16)
    y = F.rician_noise(x, torch.tensor([0.1, 0.2]), SEEDS)
    y1 = F.rician_noise(x[1:], torch.tensor([0.2]), SEEDS[1:])
    assert torch.equal(y[1:], y1)
    assert float(y.min()) >= 0


def test_rician_gradients_finite_and_wrt_sigma():
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([0.0], dtype=torch.float64, requires_grad=True)
    F.rician_noise(x, s, SEEDS[:1]).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(s.grad).all()
    s2 = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    xx = torch.rand(1, 1, 6, 6, dtype=torch.float64) + 0.5
    assert torch.autograd.gradcheck(lambda v: F.rician_noise(xx, v, SEEDS[:1]), (s2,))


def test_rician_reference_max_and_float():
    x = torch.zeros(2, 1, 16, 16)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 2.0, 4.0
    t = RicianNoise(sigma=0.05, reference="max", seed=0)
    _, p = t(x, return_params=True)
    assert torch.allclose(p["sigma"], torch.tensor([0.1, 0.2], dtype=torch.float64))
    _, p = RicianNoise(sigma=0.05, reference=0.78, seed=0)(x, return_params=True)
    assert torch.allclose(p["sigma"], torch.full((2,), 0.05 * 0.78, dtype=torch.float64))
    with pytest.raises(ValueError, match="reference"):
        RicianNoise(reference="tissue")
    with pytest.raises(ValueError, match="sigma"):
        RicianNoise(sigma=-0.1)


def _chi_mean(n: int) -> float:
    return math.sqrt(2) * math.exp(math.lgamma(n + 0.5) - math.lgamma(n))


@pytest.mark.parametrize("n", [2, 8, 32])
def test_multicoil_on_zeros_is_central_chi(n):
    sigma = 0.1
    y = MultiCoilNoise(sigma=sigma, n_coils=n, seed=0)(torch.zeros(2, 1, 256, 256))
    assert float(y.min()) >= 0
    assert abs(float(y.mean()) / (sigma * _chi_mean(n)) - 1) < 0.01
    # E[y^2] = 2 n sigma^2 exactly for a central chi with 2n degrees of freedom
    assert abs(float((y.double() ** 2).mean()) / (2 * n * sigma**2) - 1) < 0.01


def test_multicoil_n8_mean_value():
    assert abs(_chi_mean(8) - 3.938) < 1e-3  # the number quoted in the docs


def test_multicoil_n1_reduces_to_rician_exactly():
    x = torch.rand(2, 1, 32, 32)
    assert torch.equal(F.multicoil_noise(x, 0.1, SEEDS, 1), F.rician_noise(x, 0.1, SEEDS))
    a = MultiCoilNoise(sigma=0.05, n_coils=1, seed=5)(x)
    b = RicianNoise(sigma=0.05, seed=5)(x)
    assert torch.equal(a, b)


def test_multicoil_high_snr_std_is_sigma():
    sigma = 0.02
    y = F.multicoil_noise(torch.full((1, 1, 512, 512), 2.0), sigma, SEEDS[:1], 8)
    assert abs(float(y.std()) / sigma - 1) < 0.02
    # noncentral chi: E[y^2] = x^2 + 2 n sigma^2
    assert abs(float((y.double() ** 2).mean()) - (4.0 + 16 * sigma**2)) < 2e-3


def test_multicoil_g_factor_scales_noise_locally():
    g = torch.ones(256, 256)
    g[:, 128:] = 2.0
    t = MultiCoilNoise(sigma=0.1, n_coils=4, g_factor_map=g, seed=0)
    y = t(torch.zeros(1, 1, 256, 256))
    left, right = float(y[..., :128].mean()), float(y[..., 128:].mean())
    assert abs(left / (0.1 * _chi_mean(4)) - 1) < 0.02
    assert abs(right / left - 2.0) < 0.03


def test_synthetic_g_factor_map():
    g = F.synthetic_g_factor((64, 48), torch.tensor([1.0, 2.5]), pe_axis=-2)
    assert g.shape == (2, 1, 64, 48)
    assert torch.allclose(g[0], torch.ones_like(g[0]))
    assert float(g[1].min()) >= 1.0 and abs(float(g[1].max()) - 2.5) < 0.05
    # peaked at the centre, falls faster along phase-encode (axis -2) than along readout
    c = g[1, 0]
    assert c[32, 24] > c[0, 24] and c[32, 24] > c[32, 0]
    assert c[0, 24] < c[32, 0]
    y = MultiCoilNoise(sigma=0.1, n_coils=4, g_max=2.0, seed=0)(torch.zeros(1, 1, 64, 64))
    assert y[..., 24:40, 24:40].mean() > 1.5 * y[..., :6, :6].mean()
