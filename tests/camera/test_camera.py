"""Physics/property tests for the camera artifacts and the generic completions."""

from __future__ import annotations

import math

import pytest
import torch

from robustaug.artifacts.camera import (
    Overlay,
    Pixelate,
    Quantization,
    SaltPepper,
    SpecularHighlight,
    UnevenIllumination,
    Vignetting,
)
from robustaug.data.fundus import fundus_image
from robustaug.functional import camera as FC


def _radius_grid(h, w):
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5 - h / 2, torch.arange(w) + 0.5 - w / 2, indexing="ij")
    return torch.sqrt(yy**2 + xx**2).double() / (0.5 * math.hypot(h, w))


@pytest.mark.parametrize("gc", [0.8, 0.5, 0.2])
def test_vignetting_follows_cos4_law(gc):
    h = w = 96
    y = Vignetting(corner_gain=gc, center_shift=0.0)(torch.ones(1, 1, h, w, dtype=torch.float64))
    r = _radius_grid(h, w)
    # cos^4(atan(r / f)) with f chosen so that the corner (r = 1) gets gc.
    f = 1 / math.sqrt(gc**-0.5 - 1)
    expected = torch.cos(torch.atan(r / f)) ** 4
    assert torch.allclose(y[0, 0], expected, atol=1e-12)
    # Radial profile is monotone decreasing.
    prof = y[0, 0, h // 2, w // 2 :]
    assert bool((prof.diff() <= 1e-12).all())


def test_vignetting_polynomial_law_and_image():
    h = w = 64
    x = fundus_image((h, w), seed=0)["image"][None].double()
    t = Vignetting(corner_gain=0.5, law="poly", poly_coeffs=(-0.3, -0.1, 0.0), center_shift=0.0)
    y = t(x)
    r = _radius_grid(h, w)
    g = 1 - 0.3 * r**2 - 0.1 * r**4
    assert torch.allclose(y, x * g, atol=1e-12)


def test_uneven_illumination_ratio():
    x = torch.ones(3, 3, 48, 48, dtype=torch.float64)
    y, prm = UnevenIllumination(ratio=(1.5, 3.0), seed=2)(x, return_params=True)
    for i in range(3):
        assert abs(float(y[i].max() / y[i].min()) - float(prm["ratio"][i])) < 1e-9
    # Smooth: no pixel-to-pixel jumps above 10 % of the range.
    assert float(y.diff(dim=-1).abs().max()) < 0.1 * float(y.max() - y.min())


def test_specular_highlights_saturate_only_inside_mask():
    x = fundus_image((64, 64), seed=1)["image"][None].double()
    t = SpecularHighlight(num_spots=3, radius=0.05, intensity=1.0, seed=4)
    y, prm = t(x, return_params=True)
    changed = (y - x).abs().amax(1)[0] > 0
    # Every changed pixel is within 2 radii of a spot centre (the flat-top profile's support).
    yy, xx = torch.meshgrid(torch.arange(64) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    near = torch.zeros(64, 64, dtype=torch.bool)
    for k in range(3):
        cy, cx = (prm["centers"][0, k] * 64).tolist()
        rk = float(prm["radius_px"][0, k] * prm["elongation"][0, k])
        near |= (yy - cy) ** 2 + (xx - cx) ** 2 <= (2 * rk) ** 2
    assert changed.any() and not bool((changed & ~near).any())
    # Spot cores are saturated in every channel.
    cy, cx = (prm["centers"][0, 0] * 64).long().tolist()
    assert float(y[0, :, cy, cx].min()) > 0.99
    assert float(y.max()) <= 1.0 + 1e-12


def test_overlay_font_and_ruler():
    mask = FC.render_overlay_mask((32, 64), 0, torch.tensor([1, 0]), torch.tensor([0.0, 0.0]), 1, 4.0)
    # "10": glyph 1 then glyph 0 starting 4 px later.
    assert mask[:5, :3].sum() == sum(bin(r).count("1") for r in FC.FONT_3X5["1"])
    assert mask[:5, 4:7].sum() == sum(bin(r).count("1") for r in FC.FONT_3X5["0"])
    ruler = FC.render_overlay_mask((48, 100), 1, torch.tensor([0]), torch.tensor([0.0, 0.0]), 1, 10.0)
    assert ruler[-2].sum() == 100  # the ruler line spans the width
    ticks = ruler[-3].nonzero().flatten().tolist()
    assert len(ticks) >= 9 and all((t - 2) % 10 == 0 for t in ticks)
    y = Overlay(kind="both", opacity=1.0, colors=("yellow",), seed=0)(torch.zeros(1, 3, 96, 96))
    drawn = y[0, 0] > 0
    assert drawn.any() and torch.allclose(y[0, :, drawn][:, 0], torch.tensor([1.0, 0.95, 0.2]))


def test_pixelate_blocks_and_mean():
    x = torch.rand(2, 1, 32, 32, dtype=torch.float64)
    y, prm = Pixelate(block=4.0, seed=0)(x, return_params=True)
    assert torch.allclose(y.mean(dim=(1, 2, 3)), x.mean(dim=(1, 2, 3)))
    for i in range(2):
        ph = prm["phase"][i].tolist()
        rows = torch.floor((torch.arange(32) + ph[0]) / 4).long()
        cols = torch.floor((torch.arange(32) + ph[1]) / 4).long()
        r0 = int((rows == rows[0] + 2).nonzero()[0])  # a full interior cell
        c0 = int((cols == cols[0] + 2).nonzero()[0])
        cell, src = y[i, 0, r0 : r0 + 4, c0 : c0 + 4], x[i, 0, r0 : r0 + 4, c0 : c0 + 4]
        assert torch.allclose(cell, torch.full_like(cell, float(src.mean())))
        assert torch.unique(y[i]).numel() <= 81
    # Fractional blocks: cells of floor/ceil size; 3D works.
    yf = Pixelate(block=2.5, seed=1)(torch.rand(1, 1, 20, 20, dtype=torch.float64))
    assert torch.unique(yf).numel() <= 81
    v = Pixelate(block=3.0, seed=1)(torch.rand(1, 1, 12, 12, 12))
    assert v.shape == (1, 1, 12, 12, 12)


def test_salt_pepper_fraction_and_fresh_masks():
    x = torch.full((1, 3, 128, 128), 0.5, dtype=torch.float64)
    x[..., 0, 0] = 0.0
    x[..., 0, 1] = 1.0
    t = SaltPepper(amount=0.1, salt_fraction=0.3, seed=0)
    y1 = t(x)
    y2 = t(x)
    dead = (y1[0, 0] == 0.0).float().mean()
    hot = (y1[0, 0] == 1.0).float().mean()
    assert abs(float(dead) - 0.07) < 0.01 and abs(float(hot) - 0.03) < 0.01
    assert torch.equal(y1[0, 0] == 0, y1[0, 2] == 0)  # a dead pixel is dead in every channel
    assert not torch.equal(y1, y2)  # a fresh mask per call


def test_quantization_levels_and_uint8():
    x = torch.linspace(0, 1, 1000, dtype=torch.float64).reshape(1, 1, 10, 100)
    y, prm = Quantization(bits=3.0, random_phase=False)(x, return_params=True)
    assert int(prm["levels"][0]) == 8
    assert torch.unique(y).numel() == 8
    assert float((y - x).abs().max()) <= 0.5 / 7 + 1e-12
    # A converter offset shifts the thresholds but keeps the step size and the error bound.
    yp, pp = Quantization(bits=3.0, seed=0)(x, return_params=True)
    assert 0 < float(pp["phase"][0]) < 1
    assert float((yp - x).abs().max()) <= 0.5 / 7 + 1e-12
    steps = torch.unique(yp).diff()
    assert torch.allclose(steps[1:-1], torch.full_like(steps[1:-1], 1 / 7))
    x8 = (x * 255).round().to(torch.uint8)
    y8 = Quantization(bits=1.0, random_phase=False)(x8)
    assert set(torch.unique(y8).tolist()) == {0, 255}


def test_camera_uint8_reads_unit_range():
    x = fundus_image((32, 32), seed=0)["image"][None]
    x8 = (x * 255).round().to(torch.uint8)
    y8 = Vignetting(corner_gain=0.5, center_shift=0.0)(x8)
    y = Vignetting(corner_gain=0.5, center_shift=0.0)(x8.float() / 255)
    assert y8.dtype == torch.uint8
    assert int(((y * 255).round() - y8.float()).abs().max()) <= 1
