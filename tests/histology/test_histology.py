"""Physics acceptance tests for the histology artifacts and the H&E tile."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from robustaug.artifacts.histology import (
    Bubble,
    Defocus,
    HEDJitter,
    InkMarker,
    JPEGCompression,
    StainMatrixPerturbation,
    TileSeam,
    TissueFold,
)
from robustaug.data.histology import he_tile
from robustaug.functional import histology as FH
from robustaug.functional.metrics import psnr


def _tiles(n=2, size=64, dtype=torch.float64):
    return torch.stack([he_tile((size, size), seed=i)["image"] for i in range(n)]).to(dtype)


def test_hed_jitter_identity_at_zero_sigma():
    x = _tiles(3)
    y = HEDJitter(scale_sigma=0.0, shift_sigma=0.0)(x)
    assert float((y - x).abs().max()) < 1 / 255
    xu = (x * 255).round().to(torch.uint8)
    assert torch.equal(HEDJitter(scale_sigma=0.0, shift_sigma=0.0)(xu), xu)


def test_hed_jitter_scales_each_stain_within_range():
    x = _tiles(4)
    sigma = 0.2
    t = HEDJitter(scale_sigma=sigma, shift_sigma=0.0, seed=3)
    y, prm = t(x, return_params=True)
    c0, c1 = FH.rgb_to_hed(x), FH.rgb_to_hed(y)
    alpha = prm["alpha"]
    assert bool(((alpha >= 1 - sigma) & (alpha <= 1 + sigma)).all())
    for s in range(2):  # H and E
        mask = c0[:, s] > 0.1
        ratio = torch.stack([(c1[i, s][mask[i]] / c0[i, s][mask[i]]).median() for i in range(4)])
        assert torch.allclose(ratio, alpha[:, s], atol=2e-3), (ratio, alpha[:, s])
        assert bool(((ratio > 1 - sigma - 1e-3) & (ratio < 1 + sigma + 1e-3)).all())


def test_hed_jitter_shift_in_od_units():
    x = torch.ones(1, 3, 8, 8, dtype=torch.float64)  # glass: zero OD
    t = HEDJitter(scale_sigma=0.0, shift_sigma=0.1, seed=0)
    y, prm = t(x, return_params=True)
    c = FH.rgb_to_hed(y)[0, :, 0, 0]
    beta = prm["beta"][0]
    # Only positive concentrations are visible (I <= 1 is clipped).
    od = (beta @ FH.RUIFROK_HED.to(torch.float64)).clamp_min(0)
    assert torch.allclose(FH.rgb_to_od(y)[0, :, 0, 0], od, atol=1e-9)
    del c


def test_macenko_recovers_known_stain_vectors():
    out = he_tile((128, 128), seed=1)
    # The synthetic stroma is lightly stained and the Ruifrok eosin vector has little red OD, so
    # Macenko's default 0.15 OD threshold (per channel) would drop most eosin-only pixels.
    est = FH.macenko_stain_matrix(out["image"], od_threshold=0.05)
    true = out["stain_matrix"].to(torch.float64)
    cos = (est * true).sum(1)
    assert bool((cos > 0.97).all()), cos


def test_stain_matrix_perturbation_identity_and_effect():
    x = _tiles(2)
    assert float((StainMatrixPerturbation(sigma=0.0)(x) - x).abs().max()) < 1e-9
    y, prm = StainMatrixPerturbation(sigma=0.1, seed=0)(x, return_params=True)
    assert prm["stain"].shape == (2, 2, 3) and prm["new_stain"].shape == (2, 2, 3)
    assert torch.allclose(prm["new_stain"].norm(dim=2), torch.ones(2, 2, dtype=torch.float64))
    assert float((y - x).abs().mean()) > 1e-3
    with pytest.raises(ValueError, match="RGB"):
        StainMatrixPerturbation()(torch.rand(1, 1, 16, 16))


def test_defocus_radius_grows_with_z_and_conserves_energy():
    x = torch.zeros(1, 1, 65, 65, dtype=torch.float64)
    x[0, 0, 32, 32] = 1.0
    widths = []
    for z in (0.5, 1.0, 2.0, 4.0):
        y, prm = Defocus(defocus_um=z, na=0.75, pixel_um=0.5)(x, return_params=True)
        assert abs(float(y.sum()) - 1.0) < 1e-9
        r_expected = z * math.tan(math.asin(0.75)) / 0.5
        assert abs(float(prm["radius_px"][0]) - r_expected) < 1e-9
        widths.append(int((y[0, 0, 32] > 1e-12).sum()))
        assert abs(widths[-1] - (2 * math.floor(r_expected + 0.5) + 1)) <= 1
    assert widths == sorted(widths) and widths[0] < widths[-1]


def test_defocus_focus_map_varies_smoothly():
    x = _tiles(1, 64)
    t = Defocus(defocus_um=0.0, focus_variation_um=3.0, seed=1)
    y, prm = t(x, return_params=True)
    fmap = t._focus_map(x, prm)[0]
    assert float(fmap.max()) > 3.0 * math.tan(math.asin(0.75)) / 0.5 * 0.99
    assert float(fmap.diff(dim=0).abs().max()) < 0.5 and float(fmap.diff(dim=1).abs().max()) < 0.5
    # Blur is local: where the map is ~0, the image is ~unchanged.
    sharp = fmap < 0.3
    if sharp.any():
        assert float((y - x)[0, :, sharp].abs().mean()) < float((y - x)[0, :, ~sharp].abs().mean())


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_quality_psnr(channels):
    x = _tiles(2, 64, torch.float32)
    if channels == 1:
        x = x.mean(1, keepdim=True)
    p = {q: float(psnr(JPEGCompression(quality=q)(x), x).mean()) for q in (100, 75, 40, 10, 2)}
    assert p[100] > 40  # default "auto" codes quality >= 90 without chroma subsampling
    full = JPEGCompression(quality=100.0, subsampling="4:4:4")(x)
    assert float(psnr(full, x).min()) > 40
    sub = JPEGCompression(quality=100.0, subsampling="4:2:0")(x)
    if channels == 3:  # chroma subsampling loses colour detail
        assert float(psnr(sub, x).mean()) < float(psnr(full, x).mean())
    if channels == 1:
        assert p[100] > 40  # no chroma: subsampling is irrelevant
    qs = sorted(p, reverse=True)
    assert all(p[a] > p[b] for a, b in itertools.pairwise(qs)), p


def test_jpeg_is_differentiable():
    x = _tiles(1, 16).requires_grad_()
    y = JPEGCompression(quality=50.0)(x)
    y.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_tile_seam_only_at_tile_borders():
    x = torch.full((1, 3, 64, 64), 0.5, dtype=torch.float64)
    t = TileSeam(gain_std=0.1, vignetting=0.0, tile_px=16.0, seed=0)
    y, prm = t(x, return_params=True)
    ratio = y[0, 0] / x[0, 0]
    off = (prm["offset"][0] * 16).tolist()
    row_edges = {math.ceil(k * 16 - off[0]) for k in range(1, 6)}
    col_edges = {math.ceil(k * 16 - off[1]) for k in range(1, 6)}
    dr = (ratio.diff(dim=0).abs() > 1e-12).any(dim=1).nonzero().flatten() + 1
    dc = (ratio.diff(dim=1).abs() > 1e-12).any(dim=0).nonzero().flatten() + 1
    assert set(dr.tolist()) <= row_edges and set(dc.tolist()) <= col_edges
    assert len(dr) >= 3 and len(dc) >= 3


def test_tissue_fold_doubles_od_in_band():
    x = torch.full((1, 3, 64, 64), 0.6, dtype=torch.float64)
    y = TissueFold(width=0.2, extra_layers=1.0, seed=2)(x)
    od_x, od_y = FH.rgb_to_od(x), FH.rgb_to_od(y)
    ratio = (od_y / od_x)[0, 0]
    band = ratio > 1.5
    assert 0.08 < float(band.float().mean()) < 0.4
    assert float((ratio - 2).abs().lt(1e-9).float().sum()) > 0.5 * float(band.sum())
    assert float(ratio.max()) <= 2.0 + 1e-9 and float(ratio.min()) >= 1.0 - 1e-9


def test_bubble_and_ink():
    x = _tiles(1, 64)
    y = Bubble(num_bubbles=1, radius=0.25, haze=0.4, rim_od=0.6, seed=0)(x)
    assert float((y - x).abs().max()) > 0.1
    white = torch.ones(1, 3, 32, 32, dtype=torch.float64)
    yb = InkMarker(width=0.2, density=1.0, colors=("blue",), seed=1)(white)
    inked = yb[0].sum(0) < 2.5
    assert inked.any() and not inked.all()
    od = FH.rgb_to_od(yb)[0][:, inked].mean(1)
    v = torch.tensor(FH.INK_COLORS_OD["blue"], dtype=torch.float64)
    assert float(torch.nn.functional.cosine_similarity(od, v, dim=0)) > 0.99
    with pytest.raises(ValueError, match="colors"):
        InkMarker(colors=("purple",))


def test_tile_statistics():
    out = he_tile((128, 128), seed=3)
    od = FH.rgb_to_od(out["image"][None])[0]
    nuc = out["nuclei_mask"]
    # Beer-Lambert: the optical density is the stain concentrations times the unit stain vectors
    # plus the neutral glass OD (0.03), pixel by pixel
    pred = torch.einsum("shw,sc->chw", out["concentrations"], out["stain_matrix"]) + 0.03
    assert float((od - pred).abs().max()) < 1e-4
    # nuclei carry haematoxylin in the range measured on H&E slides (0.5-1.0 OD), far above stroma
    c_h = out["concentrations"][0]
    assert 0.5 < float(c_h[nuc].mean()) < 1.0
    assert float(c_h[nuc].mean()) > 5 * float(c_h[~nuc].mean())
    od = od.sum(0)
    # a tile with a lumen: its background is bare glass, 0.03 OD per channel
    lum = he_tile((128, 128), seed=0)
    assert lum["background_mask"].any()
    od_bg = FH.rgb_to_od(lum["image"][None])[0].sum(0)[lum["background_mask"]].mean()
    assert abs(float(od_bg) - 0.09) < 0.02
    assert torch.equal(he_tile((32, 32), seed=5)["image"], he_tile((32, 32), seed=5)["image"])
