"""Sigmoid (binary / multi-label) variants and the co-teaching step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustaug.losses import (
    GCE,
    BinaryCE,
    BinaryFocal,
    BinaryGCE,
    BinaryMAE,
    BinarySCE,
    CoTeaching,
    SigmoidLoss,
    keep_ratio,
    robust_loss,
)

from .helpers import SIGMOID_LOSSES, logits


def _bin_targets(shape, seed=0, soft=False):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(shape, generator=g, dtype=torch.float64)
    return t if soft else (t > 0.5).double()


@pytest.mark.parametrize("name", SIGMOID_LOSSES)
@pytest.mark.parametrize("shape", [(6, 3), (2, 1, 3, 3, 3)], ids=["multilabel", "mask3d"])
def test_sigmoid_gradcheck_and_extremes(name, shape):
    loss = robust_loss(name)
    z = logits(shape, seed=1).requires_grad_(True)
    t = _bin_targets(shape, seed=1, soft=True)
    assert torch.autograd.gradcheck(lambda x: loss(x, t), (z,), eps=1e-6, atol=1e-5)
    for scale in (50.0, 200.0):
        zz = logits(shape, seed=2, scale=scale, dtype=torch.float32).requires_grad_(True)
        out = loss(zz, _bin_targets(shape, seed=2).float())
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(zz.grad).all()


@pytest.mark.parametrize("name", SIGMOID_LOSSES)
def test_sigmoid_reduction_bf16_and_shape(name):
    z = logits((8, 5), seed=3, scale=2.0, dtype=torch.float32)
    t = _bin_targets((8, 5), seed=3).float()
    none = robust_loss(name, reduction="none")(z, t)
    assert none.shape == z.shape
    torch.testing.assert_close(none.mean(), robust_loss(name)(z, t))
    torch.testing.assert_close(none.sum(), robust_loss(name, reduction="sum")(z, t))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = robust_loss(name)(z.bfloat16(), t)
    ref = robust_loss(name)(z, t)
    assert out.dtype == torch.float32 and (out - ref).abs() / ref.abs() < 1e-2


def test_binary_ce_is_bce_with_logits():
    z = logits((7, 4), seed=4)
    t = _bin_targets((7, 4), seed=4, soft=True)
    w = torch.rand(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    pw = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64)
    for red in ("mean", "sum", "none"):
        ours = BinaryCE(weight=w, pos_weight=pw, reduction=red)(z, t)
        ref = F.binary_cross_entropy_with_logits(z, t, weight=w, pos_weight=pw, reduction=red)
        torch.testing.assert_close(ours, ref)


def test_binary_formulas():
    z = logits((9, 3), seed=5, scale=2.0)
    t = _bin_targets((9, 3), seed=5)
    p = torch.sigmoid(z)
    pt = torch.where(t > 0, p, 1 - p)
    bce = F.binary_cross_entropy_with_logits(z, t, reduction="none")
    torch.testing.assert_close(BinaryGCE(q=1.0, reduction="none")(z, t), 1 - pt)
    assert (BinaryGCE(q=1e-5, reduction="none")(z, t) - bce).abs().max() < 1e-4
    torch.testing.assert_close(BinaryMAE(reduction="none")(z, t), 1 - pt)
    torch.testing.assert_close(BinarySCE(alpha=1.0, beta=0.0, reduction="none")(z, t), bce)
    torch.testing.assert_close(BinaryFocal(gamma=2.0, reduction="none")(z, t), (1 - pt) ** 2 * bce)
    # a two-class softmax loss over (0, z) is the sigmoid loss
    z2 = torch.stack([torch.zeros_like(z), z], 1)
    torch.testing.assert_close(
        SigmoidLoss(GCE(q=0.5), reduction="none")(z, t), GCE(q=0.5, reduction="none")(z2, t.long())
    )
    with pytest.raises(ValueError, match="shape"):
        BinaryGCE()(z, t[:, :2])


def test_keep_ratio_schedule():
    tau, tk = 0.4, 10
    for e in [0, 1, 5, 9, 10, 11, 50]:
        assert keep_ratio(e, tau, tk) == pytest.approx(1 - tau * min(e / tk, 1))
    assert keep_ratio(2, 0.5, 10, exponent=2) == pytest.approx(1 - 0.5 * 4 / 10)
    with pytest.raises(ValueError, match="forget_rate"):
        keep_ratio(0, 1.0)


def _models(seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        m1 = torch.nn.Linear(6, 3).double()
        m2 = torch.nn.Linear(6, 3).double()
    return m1, m2


def test_coteaching_loss_is_mean_over_peer_selected_samples():
    m1, m2 = _models()
    step = CoTeaching(m1, m2, forget_rate=0.5, num_gradual=10)
    x = logits((20, 6), seed=6)
    y = torch.randint(0, 3, (20,), generator=torch.Generator().manual_seed(6))
    out = step(x, y, epoch=5, index=torch.arange(100, 120))
    assert out["keep_ratio"] == pytest.approx(0.75) and out["num_keep"] == 15
    l1 = F.cross_entropy(m1(x), y, reduction="none")
    l2 = F.cross_entropy(m2(x), y, reduction="none")
    assert set(out["kept1"].tolist()) == set(torch.argsort(l2)[:15].tolist())
    assert set(out["kept2"].tolist()) == set(torch.argsort(l1)[:15].tolist())
    torch.testing.assert_close(out["loss1"], l1[out["kept1"]].mean().float())
    torch.testing.assert_close(out["loss2"], l2[out["kept2"]].mean().float())
    assert torch.equal(out["kept_index1"], out["kept1"] + 100)
    out["loss"].backward()  # one backward fills both models
    assert m1.weight.grad is not None and m2.weight.grad is not None


def test_coteaching_with_optimizers_and_robust_criterion():
    m1, m2 = _models(1)
    o1 = torch.optim.SGD(m1.parameters(), lr=0.1)
    o2 = torch.optim.SGD(m2.parameters(), lr=0.1)
    step = CoTeaching(m1, m2, o1, o2, forget_rate=0.2, criterion=GCE(reduction="none"))
    w0 = m1.weight.detach().clone()
    x = logits((10, 6), seed=7)
    y = torch.randint(0, 3, (10,), generator=torch.Generator().manual_seed(7))
    step.set_epoch(20)
    out = step(x, y)
    assert out["num_keep"] == 8 and not out["loss"].requires_grad
    assert not torch.equal(w0, m1.weight)
    with pytest.raises(ValueError, match="per-sample"):
        CoTeaching(m1, m2, forget_rate=0.2, criterion=GCE())(x, y)
    with pytest.raises(ValueError, match="both"):
        CoTeaching(m1, m2, o1, forget_rate=0.2)
