"""Dense prediction: SegPGD vs PGD, ignore_index, 3D, sliding window, metrics, targeted masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import TinyUNet

import robustaug.adversarial as adv


def _blobs(n: int, size: int = 16, seed: int = 0, dims: int = 2):
    """Images with a bright disc (class 1) and a dim square (class 2) on noise."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, 1) + (size,) * dims
    x = 0.1 + 0.1 * torch.rand(shape, generator=g)
    y = torch.zeros((n,) + (size,) * dims, dtype=torch.long)
    coords = torch.meshgrid(*[torch.arange(size)] * dims, indexing="ij")
    for i in range(n):
        c = torch.randint(size // 4, size - size // 4, (dims,), generator=g)
        r2 = sum((coords[d] - c[d]) ** 2 for d in range(dims))
        disc = r2 <= 9
        s = torch.randint(2, size - 5, (dims,), generator=g)
        sq = torch.ones_like(disc)
        for d in range(dims):
            sq &= (coords[d] >= s[d]) & (coords[d] < s[d] + 4)
        y[i][sq] = 2
        y[i][disc] = 1
        x[i, 0][sq] = 0.45
        x[i, 0][disc] = 0.85
    return x, y


@pytest.fixture(scope="module")
def trained_unet():
    net = TinyUNet(k=3, seed=0)
    x, y = _blobs(32, seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def test_segpgd_lower_miou_than_pgd(trained_unet):
    x, y = _blobs(16, seed=1)
    th = adv.Linf(eps=0.06, steps=5)
    res = {}
    for m in ("pgd", "segpgd", "cospgd"):
        xa = adv.seg_attack(trained_unet, x, y, th, m, seed=0).x_adv
        with torch.no_grad():
            pred = trained_unet(xa).argmax(1)
        res[m] = adv.mean_iou(adv.confusion_matrix(pred, y, 3))
    with torch.no_grad():
        clean = adv.mean_iou(adv.confusion_matrix(trained_unet(x).argmax(1), y, 3))
    assert clean > 0.8
    assert res["pgd"] < clean
    assert res["segpgd"] <= res["pgd"]


def test_ignore_index_pixels_never_contribute():
    # pixel-wise model (1x1 conv): a pixel's input only affects its own logits
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = torch.nn.Conv2d(1, 3, 1)
    x, y = _blobs(4)
    y = y.clone()
    y[:, :8] = 255
    for loss in (adv.SegPGDLoss(255), adv.CosPGDLoss(255),
                 lambda z, t: adv.dice_attack_loss(z, t, 255), adv.get_loss("ce", 255)):
        z = net(x).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(loss(z, y).sum(), z)
        assert g[:, :, :8].abs().max() == 0
        assert g[:, :, 8:].abs().max() > 0
    for m in ("pgd", "segpgd", "cospgd", "dice"):
        r = adv.seg_attack(net, x, y, adv.Linf(0.1, steps=3, random_start=False), m,
                           ignore_index=255)
        assert (r.x_adv - x)[:, :, :8].abs().max() == 0
    # labels at ignored pixels do not matter
    y2 = y.clone()
    y2[:, :8] = 0
    l1 = adv.SegPGDLoss(255)(net(x), y)
    assert torch.isfinite(l1).all()


def test_3d_segmentation_and_sliding_window():
    net = TinyUNet(k=3, dims=3, width=4)
    x, y = _blobs(2, size=8, dims=3)
    th = adv.Linf(0.05, steps=2)
    for m in ("pgd", "segpgd", "cospgd", "dice"):
        r = adv.seg_attack(net, x, y, th, m)
        assert r.x_adv.shape == x.shape
        assert (r.x_adv - x).abs().max() <= 0.05 * (1 + 1e-6)
    whole = adv.seg_attack(net, x, y, th, "pgd", seed=3).x_adv
    sw = adv.sliding_window_attack(net, x, y, th, roi_size=(8, 8, 8), seed=3)
    assert torch.equal(whole, sw)
    tiled = adv.sliding_window_attack(net, x, y, th, roi_size=(4, 8, 8), overlap=0.5, seed=3)
    assert tiled.shape == x.shape
    assert (tiled - x).abs().max() <= 0.05 * (1 + 1e-6)
    assert tiled.min() >= 0 and tiled.max() <= 1


def test_targeted_mask_attack_moves_towards_target(trained_unet):
    x, y = _blobs(4, seed=2)
    target = torch.zeros_like(y)  # erase all structures
    r = adv.seg_attack(trained_unet, x, y, adv.Linf(0.2, steps=10), "targeted", target=target)
    with torch.no_grad():
        agree0 = (trained_unet(x).argmax(1) == target).float().mean()
        agree1 = (trained_unet(r.x_adv).argmax(1) == target).float().mean()
    assert agree1 > agree0


def test_dice_metrics_and_evaluate_segmentation(trained_unet):
    cm = torch.tensor([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    d = adv.dice_per_class(cm)
    assert d[0] == pytest.approx(2 * 5 / (2 * 5 + 2 + 1))
    assert d[1] == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    assert torch.isnan(d[2])
    x, y = _blobs(4, seed=3)
    out = adv.evaluate_segmentation(trained_unet, [(x, y)], 3, adv.Linf(0.06, steps=3),
                                    methods=("pgd", "segpgd"))
    assert set(out) == {"clean", "pgd", "segpgd", "worst"}
    assert out["worst"]["miou"] <= min(out["pgd"]["miou"], out["segpgd"]["miou"]) + 1e-9
    assert len(out["clean"]["dice"]) == 3
