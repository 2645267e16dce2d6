"""Physics acceptance tests of the X-ray (radiography) artifacts."""

import numpy as np
import pytest
import torch

from robustaug.artifacts.xray import (
    Collimation,
    DeadLines,
    DeadPixels,
    DetectorNoise,
    Exposure,
    GridLines,
    HeelEffect,
    Scatter,
)
from robustaug.data.ct import ct_phantom, drr


def test_detector_noise_photon_transfer_line():
    gain, n0, sig_e = 2.5, 800.0, 6.0
    levels = torch.tensor([0.05, 0.15, 0.3, 0.6, 1.0], dtype=torch.float64)
    x = levels[:, None, None, None].expand(5, 1, 128, 128).clone()
    y = DetectorNoise(photons=n0, gain=gain, sigma_e=sig_e, seed=0)(x)
    dn = y * gain * n0  # back to detector units
    mean = dn.mean(dim=(1, 2, 3)).numpy()
    var = dn.var(dim=(1, 2, 3)).numpy()
    slope, intercept = np.polyfit(mean, var, 1)
    assert slope == pytest.approx(gain, rel=0.03)
    assert intercept == pytest.approx(sig_e**2, abs=0.5 * sig_e**2 + 20)


def test_scatter_mean_and_step_contrast():
    x = torch.full((1, 1, 64, 64), 0.2, dtype=torch.float64)
    x[..., 32:] = 0.6
    for spr in (0.5, 1.0, 3.0):
        y = Scatter(spr=spr, fwhm_mm=5000.0, pixel_mm=1.0)(x)
        assert float((y - x).mean()) == pytest.approx(spr * float(x.mean()), rel=0.03)
        c0 = float((x[..., 40:56].mean() - x[..., 8:24].mean()) / x.mean())
        c1 = float((y[..., 40:56].mean() - y[..., 8:24].mean()) / y.mean())
        assert c1 / c0 == pytest.approx(1.0 / (1.0 + spr), rel=0.03)


@pytest.mark.parametrize(("lpcm", "pixel_mm"), [(70.0, 0.15), (40.0, 0.15), (60.0, 0.1), (36.0, 0.2)])
def test_grid_lines_peak_at_aliased_frequency(lpcm, pixel_mm):
    n = 128
    x = torch.ones(1, 1, n, n, dtype=torch.float64)
    y = GridLines(lines_per_cm=lpcm, depth=0.1, pixel_mm=pixel_mm, seed=1)(x)
    spec = torch.fft.rfft(y[0, 0].mean(0) - y[0, 0].mean()).abs()
    f = lpcm * pixel_mm / 10.0  # cycles per pixel
    f_alias = abs(f - round(f))
    assert abs(int(torch.argmax(spec)) - f_alias * n) <= 1


def test_dead_pixels_and_lines_recorded_positions():
    x = torch.rand(2, 1, 32, 32, dtype=torch.float64) * 0.5 + 0.25
    t = DeadPixels(rate=0.01, hot_fraction=0.5, seed=3)
    y = t(x)
    idx, val = t.last_params["indices"], t.last_params["values"]
    for i in range(2):
        changed = set((y[i, 0] != x[i, 0]).flatten().nonzero().flatten().tolist())
        assert changed == set(idx[i][idx[i] >= 0].tolist())
        flat = y[i, 0].flatten()
        for k, v in zip(idx[i].tolist(), val[i].tolist()):
            if k >= 0:
                assert float(flat[k]) == v
    t = DeadLines(n_lines=3, axis="random", hot_fraction=0.0, seed=4)
    y = t(x)
    for i in range(2):
        ax = int(t.last_params["axes"][i])
        dead = (y[i, 0] == 0).all(dim=1 - ax).nonzero().flatten().tolist()
        assert sorted(dead) == sorted(t.last_params["lines"][i][t.last_params["lines"][i] >= 0].tolist())


def test_heel_exposure_collimation():
    ones = torch.ones(1, 1, 64, 64, dtype=torch.float64)
    y = HeelEffect(falloff=0.3, direction="left")(ones)[0, 0, 32]
    assert float(y[0]) == pytest.approx(0.7, abs=1e-6)
    assert bool((y[1:] >= y[:-1]).all())  # monotone along the anode-cathode axis
    x = drr(ct_phantom((32, 32, 32), seed=0)["image"], 350 / 32)[None]
    over = Exposure(stops=2.0, direction="over")(x)
    assert float(over.max()) == 1.0 and float((over == 1.0).float().mean()) > float((x >= 1.0).float().mean())
    under = Exposure(stops=1.0, direction="under")(x)
    assert torch.allclose(under, x / 2)
    c = Collimation(margin=0.2, angle_deg=0.0, leak=0.05, penumbra_mm=0.01)(ones)
    assert float(c[0, 0, 2, 2]) == pytest.approx(0.05, abs=1e-3) and float(c[0, 0, 32, 32]) == pytest.approx(1.0)


def test_example_input_is_a_radiograph():
    x = Scatter.example_input(2, batch=2, size=24)
    assert x.shape == (2, 1, 24, 24) and float(x.min()) > 0 and float(x.max()) <= 1.0
