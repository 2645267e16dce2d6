"""Physics tests for the bias field (intensity non-uniformity)."""

from __future__ import annotations

import pytest
import torch

from robustaug.artifacts.mri_field import BiasField
from robustaug.data import phantom
from robustaug.functional import mri_field as F

pytestmark = pytest.mark.usefixtures("one_thread_fixed_seed")


def _field(t, ph):
    x = ph["image"][None]
    y = t(x)
    inside = x > 0.05
    b = torch.where(inside, y / torch.where(inside, x, torch.ones_like(x)), torch.ones_like(x))
    return b[0, 0], inside[0, 0]


@pytest.mark.parametrize("shape", [(96, 96), (40, 40, 40)])
@pytest.mark.parametrize("ptp", [10.0, 20.0, 40.0, 60.0])
def test_bias_range_inside_brain_mask_and_mean_one(shape, ptp):
    for s in range(4):
        ph = phantom(shape, seed=s)
        b, _ = _field(BiasField(peak_to_peak_percent=ptp, seed=s), ph)
        brain = b[ph["brain_mask"]]
        rng = float(brain.max() - brain.min())
        assert rng <= ptp / 100 + 1e-5
        assert rng >= 0.5 * ptp / 100  # the field is not degenerate inside the brain
        # the mean is exactly 1 over the normalisation region (the head); the brain is a part of it
        assert abs(float(brain.mean()) - 1) <= ptp / 100 / 4
        assert float(b.min()) > 0


@pytest.mark.parametrize("center", ["mean", "midrange"])
def test_bias_range_exact_over_foreground(center):
    ph = phantom((80, 80), seed=1)
    x = ph["image"][None]
    t = BiasField(peak_to_peak_percent=40.0, center=center, stats_stride=1, seed=2)
    y = t(x)
    fg = x > 0.1 * x.max()
    b = (y / x.clamp_min(1e-12))[fg]
    assert abs(float(b.max() - b.min()) - 0.4) < 1e-5
    if center == "mean":
        assert abs(float(b.mean()) - 1) < 2e-3
    else:
        assert abs(float(b.max() + b.min()) / 2 - 1) < 1e-5


def test_bias_fov_normalisation_brainweb_levels():
    # BrainWeb: 20 % INU -> 0.90 ... 1.10; 40 % -> 0.80 ... 1.20 (mid-range convention)
    for ptp, lo, hi in [(20.0, 0.9, 1.1), (40.0, 0.8, 1.2)]:
        t = BiasField(peak_to_peak_percent=ptp, normalize_over="fov", center="midrange", seed=0,
                      stats_stride=1)
        b = t(torch.ones(3, 1, 64, 64))
        for i in range(3):
            assert abs(float(b[i].min()) - lo) < 1e-5 and abs(float(b[i].max()) - hi) < 1e-5


def test_bias_is_smooth_low_frequency():
    import numpy as np
    from scipy.fft import dctn

    for s in range(3):
        t = BiasField(peak_to_peak_percent=40.0, normalize_over="fov", seed=s)
        log_b = torch.log(t(torch.ones(1, 1, 128, 128))[0, 0].double()).numpy()
        spec = dctn(log_b - log_b.mean(), norm="ortho") ** 2  # even extension: no edge leakage
        k = np.arange(128)
        high = (k[:, None] > 13) | (k[None, :] > 13)  # above 0.05 cycles/pixel
        assert spec[high].sum() / spec.sum() < 0.01


def test_bias_zero_amplitude_is_identity_and_scale_free():
    x = torch.rand(2, 1, 32, 32) * 100 + 1
    assert torch.allclose(BiasField(peak_to_peak_percent=0.0, seed=0)(x), x)
    # multiplicative: the field does not depend on the intensity scale with normalize_over="fov"
    t = BiasField(peak_to_peak_percent=30.0, normalize_over="fov", seed=0)
    _, p = t(x, return_params=True)
    assert torch.allclose(t(x * 10, params=p), 10 * t(x, params=p), rtol=1e-5)


def test_bspline_partition_of_unity_and_bounds():
    c = torch.full((1, 1, 5, 6, 4), 0.7, dtype=torch.float64)
    assert torch.allclose(F.bspline_upsample(c, (20, 17, 9)), torch.full((1, 1, 20, 17, 9), 0.7,
                                                                           dtype=torch.float64))
    c = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    up = F.bspline_upsample(c, (50, 40))
    assert float(up.max()) <= float(c.max()) + 1e-12 and float(up.min()) >= float(c.min()) - 1e-12


def test_bias_field_functional_differentiable_in_coefficients():
    x = torch.rand(1, 1, 10, 12, dtype=torch.float64) + 0.1
    c = (0.1 * torch.randn(1, 1, 4, 4, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: F.bias_field(x, v), (c,))
    assert torch.allclose(F.bias_field(x, torch.zeros(1, 1, 4, 4, dtype=torch.float64)), x)
    full = torch.zeros(1, 1, 10, 12, dtype=torch.float64)
    assert torch.equal(F.bias_field(x, full), x)


def test_bias_errors():
    with pytest.raises(ValueError, match="peak_to_peak_percent"):
        BiasField(peak_to_peak_percent=250.0)
    with pytest.raises(ValueError, match="n_control"):
        BiasField(n_control=3)
    with pytest.raises(ValueError, match="log_field"):
        F.bias_field(torch.rand(1, 1, 8, 8), torch.zeros(4, 4))


def test_bias_subsampled_statistics_stay_within_range():
    # large volumes measure range and mean on a stride-2 grid, over the region dilated by one
    # sample: the foreground and the brain stay within p (up to a second-order 1e-3)
    ph = phantom((48, 56, 40), seed=0)
    x = ph["image"][None]
    assert BiasField()._stride((160, 192, 160)) == 3
    assert BiasField()._stride((48, 56, 40)) == 1
    assert BiasField(stats_stride=1)._stride((160, 192, 160)) == 1
    fg = (x > 0.1 * x.max())[0, 0]
    for s in range(6):
        y = BiasField(peak_to_peak_percent=40.0, stats_stride=2, seed=s)(x)
        b = (y / x.clamp_min(1e-12))[0, 0]
        brain = b[ph["brain_mask"]]
        assert float(brain.max() - brain.min()) <= 0.4
        assert 0.4 * 0.5 <= float(b[fg].max() - b[fg].min()) <= 0.4 * (1 + 1e-3)
        assert abs(float(b[fg].mean()) - 1) < 0.02


def test_bias_multichannel_same_field_on_every_channel():
    x = torch.rand(2, 3, 24, 24) + 0.5
    y = BiasField(peak_to_peak_percent=30.0, normalize_over="fov", seed=0)(x)
    ratio = y / x
    assert torch.allclose(ratio[:, 0], ratio[:, 2], atol=1e-6)
    assert abs(float(ratio[0].max() - ratio[0].min()) - 0.3) < 1e-5
