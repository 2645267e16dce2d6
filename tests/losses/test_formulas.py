"""Closed-form identities of the individual losses, and the anchors' bugs as regression tests."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from robustaug.losses import (
    AEL,
    AGCE,
    ANL,
    AUL,
    ELR,
    GCE,
    MAE,
    NCE,
    NFL,
    NGCE,
    NMAE,
    NNCE,
    NNFL,
    RCE,
    SCE,
    SCE_A_CODE,
    SCE_A_PAPER,
    ActivePassive,
    BackwardCorrected,
    Bootstrap,
    CrossEntropy,
    FocalLoss,
    ForwardCorrected,
    NoiseRobustDice,
    TaylorCE,
    TruncatedGCE,
    check_transition_matrix,
    l1_penalty,
)

from .helpers import labels, logits, random_T

N, C = 16, 10


@pytest.fixture
def zt():
    return logits((N, C), seed=21, scale=2.0), labels(N, C, seed=21)


def p_y(z, t):
    return torch.softmax(z, 1).gather(1, t[:, None]).squeeze(1)


def none(loss_cls, z, t, **kw):
    return loss_cls(reduction="none", **kw)(z, t)


def class_sum(loss, z):
    """sum_k L(z, k) per sample."""
    return sum(loss(z, torch.full((z.shape[0],), k)) for k in range(z.shape[1]))


def test_ce_matches_torch_everywhere():
    z = logits((3, 5, 4, 4), seed=1)
    t = labels(3, 5, (4, 4), seed=1)
    t[0, 0, :2] = 7
    w = torch.rand(5, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.1
    for red in ("mean", "sum", "none"):
        ours = CrossEntropy(weight=w, ignore_index=7, reduction=red)(z, t)
        ref = F.cross_entropy(z, t, weight=w, ignore_index=7, reduction=red)
        torch.testing.assert_close(ours, ref)
        q = torch.softmax(logits((3, 5, 4, 4), seed=2), 1)
        torch.testing.assert_close(
            CrossEntropy(reduction=red)(z, q), F.cross_entropy(z, q, reduction=red)
        )


def test_gce_limits(zt):
    z, t = zt
    ce = F.cross_entropy(z, t, reduction="none")
    # (1 - p^q)/q = CE - q CE^2/2 + O(q^2): the gap is q CE^2 / 2 (< 1e-4 for CE < 4.4)
    gap = (ce - none(GCE, z, t, q=1e-5)).abs()
    assert (gap <= 1e-5 * ce**2 / 2 * 1.001 + 1e-12).all()
    z1 = logits((N, C), seed=22)
    assert (GCE(q=1e-5)(z1, t) - F.cross_entropy(z1, t)).abs() < 1e-4
    torch.testing.assert_close(none(GCE, z, t, q=1.0), 1 - p_y(z, t))
    assert none(GCE, z, t, q=0.7).max() <= 1 / 0.7


def test_gce_gradient_is_p_to_q_times_ce_gradient(zt):
    z, t = zt
    z1 = z.clone().requires_grad_(True)
    GCE(q=0.7, reduction="sum")(z1, t).backward()
    z2 = z.clone().requires_grad_(True)
    F.cross_entropy(z2, t, reduction="none").mul(p_y(z, t) ** 0.7).sum().backward()
    torch.testing.assert_close(z1.grad, z2.grad)


def test_truncated_gce(zt):
    z, t = zt
    k, q = 0.3, 0.7
    out = none(TruncatedGCE, z, t, q=q, k=k)
    py = p_y(z, t)
    expect = torch.where(py > k, (1 - py**q) / q, torch.full_like(py, (1 - k**q) / q))
    torch.testing.assert_close(out, expect)


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_mae_symmetric_sum(zt, scale):
    z, _ = zt
    s = class_sum(MAE(scale=scale, reduction="none"), z)
    torch.testing.assert_close(s, torch.full_like(s, scale * (C - 1)))
    # scale 2 is the L1 distance between p and the one-hot
    t = zt[1]
    l1 = (torch.softmax(z, 1) - F.one_hot(t, C)).abs().sum(1)
    torch.testing.assert_close(none(MAE, z, t, scale=2.0), l1)


@pytest.mark.parametrize("loss", [NCE, NFL, NGCE, NMAE])
def test_normalised_losses_sum_to_one(zt, loss):
    z, _ = zt
    s = class_sum(loss(reduction="none"), z)
    torch.testing.assert_close(s, torch.ones_like(s))


@pytest.mark.parametrize("loss", [NNCE, NNFL])
def test_negative_losses_sum_to_c_minus_one(zt, loss):
    z, _ = zt
    s = class_sum(loss(reduction="none"), z)
    torch.testing.assert_close(s, torch.full_like(s, C - 1.0))


@pytest.mark.parametrize("A", [SCE_A_CODE, SCE_A_PAPER])
def test_rce_and_sce(zt, A):
    z, t = zt
    assert math.isclose(SCE_A_CODE, math.log(1e-4)) and SCE_A_PAPER == -4
    torch.testing.assert_close(none(RCE, z, t, A=A), -A * (1 - p_y(z, t)))
    s = class_sum(RCE(A=A, reduction="none"), z)
    torch.testing.assert_close(s, torch.full_like(s, -A * (C - 1)))
    torch.testing.assert_close(
        none(SCE, z, t, alpha=1.0, beta=0.0, A=A), F.cross_entropy(z, t, reduction="none")
    )
    both = none(SCE, z, t, alpha=0.1, beta=1.0, A=A)
    torch.testing.assert_close(
        both, 0.1 * F.cross_entropy(z, t, reduction="none") - A * (1 - p_y(z, t))
    )
    assert pytest.approx(-9.2103, abs=1e-4) == RCE().A  # the code's A, not the paper's -4


@pytest.mark.parametrize("cls", [AGCE, AUL])
def test_agce_aul_q1_is_mae(zt, cls):
    z, t = zt
    torch.testing.assert_close(none(cls, z, t, q=1.0), 1 - p_y(z, t))


def test_asymmetric_formulas(zt):
    z, t = zt
    py = p_y(z, t)
    torch.testing.assert_close(none(AGCE, z, t, a=6, q=1.5), ((7**1.5) - (6 + py) ** 1.5) / 1.5)
    torch.testing.assert_close(none(AUL, z, t, a=5.5, q=3), ((5.5 - py) ** 3 - 4.5**3) / 3)
    torch.testing.assert_close(none(AEL, z, t, a=2.5), torch.exp(-py / 2.5))


def test_taylor_ce(zt):
    z, t = zt
    py = p_y(z, t)
    torch.testing.assert_close(none(TaylorCE, z, t, order=1), 1 - py)
    torch.testing.assert_close(
        none(TaylorCE, z, t, order=3), sum((1 - py) ** k / k for k in (1, 2, 3))
    )
    ce = F.cross_entropy(z, t, reduction="none")
    gaps = [(ce - none(TaylorCE, z, t, order=o)).abs().mean().item() for o in (1, 2, 5, 20, 200)]
    assert all(a > b for a, b in itertools.pairwise(gaps))
    # the remainder sum_{k>t} u^k/k is bounded by u^(t+1) / ((t+1)(1-u)), u = 1 - p_y
    u = 1 - py
    for order in (5, 50):
        rem = ce - none(TaylorCE, z, t, order=order)
        assert (rem >= -1e-12).all() and (
            rem <= u ** (order + 1) / ((order + 1) * (1 - u)) + 1e-12
        ).all()


def test_focal_and_nfl_formulas(zt):
    z, t = zt
    py, ce = p_y(z, t), F.cross_entropy(z, t, reduction="none")
    torch.testing.assert_close(none(FocalLoss, z, t, gamma=2.0), (1 - py) ** 2 * ce)
    p = torch.softmax(z, 1)
    fl = -((1 - p) ** 0.5) * torch.log(p)
    torch.testing.assert_close(
        none(NFL, z, t, gamma=0.5), fl.gather(1, t[:, None]).squeeze(1) / fl.sum(1)
    )


def test_nfl_nan_regression_saturated_logits():
    """Autograd through (1-p)^gamma, gamma<1, gives NaN at p == 1; ours stays finite and exact."""
    z = torch.tensor([[200.0, 0.0, -200.0], [0.0, 1.0, 2.0]], requires_grad=True)
    t = torch.tensor([0, 2])
    # the naive formula reproduces the anchor's bug
    zn = z.detach().clone().requires_grad_(True)
    p = torch.softmax(zn, 1)
    fl = -((1 - p) ** 0.5) * torch.log_softmax(zn, 1)
    naive = (fl.gather(1, t[:, None]).squeeze(1) / fl.sum(1)).mean()
    naive.backward()
    assert torch.isnan(zn.grad).any()
    for loss in (NFL(gamma=0.5), FocalLoss(gamma=0.5), NNFL(gamma=0.5), ANL(active="nfl")):
        z.grad = None
        loss(z, t).backward()
        assert torch.isfinite(z.grad).all(), type(loss).__name__
    # and the gradient is the true one where it is well defined (row 1, float64 reference)
    z64 = z.detach().double()[1:].requires_grad_(True)
    NFL(gamma=0.5, reduction="sum")(z64, t[1:]).backward()
    z.grad = None
    NFL(gamma=0.5, reduction="none")(z, t)[1].backward()
    torch.testing.assert_close(z.grad[1].double(), z64.grad[0], rtol=1e-4, atol=1e-6)


def test_active_passive_is_weighted_sum(zt):
    z, t = zt
    ap = ActivePassive("nce", "rce", alpha=2.0, beta=0.5, reduction="none")(z, t)
    torch.testing.assert_close(ap, 2.0 * none(NCE, z, t) + 0.5 * none(RCE, z, t))
    p = ActivePassive.preset("nce+agce", reduction="none")
    assert (p.alpha, p.beta, p.passive.a, p.passive.q) == (1.0, 4.0, 6.0, 1.5)
    torch.testing.assert_close(p(z, t), none(NCE, z, t) + 4 * none(AGCE, z, t, a=6, q=1.5))
    anl = ANL(reduction="none")(z, t)
    torch.testing.assert_close(anl, 5 * none(NCE, z, t) + 5 * none(NNCE, z, t))
    with pytest.raises(ValueError, match="unknown preset"):
        ActivePassive.preset("nce+xyz")


def test_l1_penalty():
    with torch.random.fork_rng():
        m = torch.nn.Linear(3, 2)
    expect = 1e-3 * (m.weight.abs().sum() + m.bias.abs().sum())
    torch.testing.assert_close(l1_penalty(m, 1e-3), expect)
    torch.testing.assert_close(l1_penalty(m, 1e-3, only_weights=True), 1e-3 * m.weight.abs().sum())


def test_bootstrap(zt):
    z, t = zt
    ce = F.cross_entropy(z, t, reduction="none")
    torch.testing.assert_close(none(Bootstrap, z, t, beta=1.0), ce)
    p = torch.softmax(z, 1)
    ent = -(p * torch.log(p)).sum(1)
    torch.testing.assert_close(none(Bootstrap, z, t, beta=0.95), 0.95 * ce + 0.05 * ent)
    hard = none(Bootstrap, z, t, hard=True)
    torch.testing.assert_close(
        hard, 0.8 * ce + 0.2 * F.cross_entropy(z, z.argmax(1), reduction="none")
    )
    assert Bootstrap().beta == 0.95 and Bootstrap(hard=True).beta == 0.8


def test_forward_backward_correction(zt):
    z, t = zt
    ce = F.cross_entropy(z, t, reduction="none")
    eye = torch.eye(C, dtype=torch.float64)
    torch.testing.assert_close(none(ForwardCorrected, z, t, T=eye), ce)
    torch.testing.assert_close(none(BackwardCorrected, z, t, T=eye), ce)
    T = random_T(C, diag=0.6)
    noisy = torch.softmax(z, 1) @ T
    torch.testing.assert_close(
        none(ForwardCorrected, z, t, T=T), -torch.log(noisy.gather(1, t[:, None]).squeeze(1))
    )
    # backward correction is unbiased: E_{noisy | true}[loss] = clean CE
    lb = torch.stack([none(BackwardCorrected, z, torch.full((N,), k), T=T) for k in range(C)], 1)
    torch.testing.assert_close((lb * T[t]).sum(1), ce)


def test_transition_matrix_validation():
    with pytest.raises(ValueError, match="square"):
        check_transition_matrix(torch.ones(2, 3) / 3)
    with pytest.raises(ValueError, match="non-negative"):
        check_transition_matrix(torch.tensor([[1.5, -0.5], [0.0, 1.0]]))
    col = torch.tensor([[0.9, 0.3], [0.1, 0.7]])
    with pytest.raises(ValueError, match="cleanlab"):
        check_transition_matrix(col)
    check_transition_matrix(col.T)
    with pytest.raises(ValueError, match="invertible"):
        BackwardCorrected(T=torch.full((3, 3), 1 / 3))


def test_elr_lam0_is_ce_and_update_rule():
    n_ex, c = 6, 4
    z = logits((3, c), seed=31)
    t = labels(3, c, seed=31)
    idx = torch.tensor([4, 1, 5])
    elr0 = ELR(n_ex, c, lam=0.0, reduction="none")
    torch.testing.assert_close(elr0(z, t, idx), F.cross_entropy(z, t, reduction="none"))
    elr = ELR(n_ex, c, beta=0.7, lam=3.0, reduction="none")
    out1 = elr(z, t, idx)
    p = torch.softmax(z, 1).clamp(1e-4, 1 - 1e-4)
    t1 = 0.3 * (p / p.sum(1, keepdim=True))
    torch.testing.assert_close(elr.targets[idx].double(), t1, rtol=1e-6, atol=1e-7)
    assert elr.targets[[0, 2, 3]].abs().sum() == 0
    expect = F.cross_entropy(z, t, reduction="none") + 3.0 * torch.log(
        1 - (t1.float().double() * p).sum(1)
    )
    torch.testing.assert_close(out1, expect, rtol=1e-6, atol=1e-6)
    out2 = elr(z, t, idx)  # second update: t <- 0.7 t + 0.3 p
    t2 = 0.7 * t1 + 0.3 * (p / p.sum(1, keepdim=True))
    torch.testing.assert_close(elr.targets[idx].double(), t2, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(out1, out2)
    # eval mode freezes the state; state_dict round-trips it
    elr.eval()
    before = elr.targets.clone()
    elr(z, t, idx)
    assert torch.equal(before, elr.targets)
    other = ELR(n_ex, c)
    other.load_state_dict(elr.state_dict())
    assert torch.equal(other.targets, elr.targets)
    # error flagging: disagreement between running target and label, only for seen samples
    flags = elr.flag_errors(torch.zeros(n_ex, dtype=torch.long))
    expect_flags = torch.zeros(n_ex, dtype=torch.bool)
    expect_flags[idx] = elr.targets[idx].argmax(1) != 0
    assert torch.equal(flags, expect_flags)
    with pytest.raises(ValueError, match="index"):
        elr(z, t)
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        elr(z, t, torch.tensor([0, 1, 6]))


def test_elr_segmentation_state():
    elr = ELR(4, 3, spatial_shape=(5, 5), reduction="none")
    z = logits((2, 3, 5, 5), seed=33)
    t = labels(2, 3, (5, 5), seed=33)
    out = elr(z, t, torch.tensor([0, 3]))
    assert out.shape == (2, 5, 5)
    assert elr.targets.shape == (4, 3, 5, 5) and elr.targets[[0, 3]].abs().sum() > 0


def _soft_dice_squared(p, g, eps):
    red = tuple(range(2, p.dim()))
    inter = (p * g).sum(red)
    den = (p * p).sum(red) + (g * g).sum(red)
    return (1 - 2 * inter / (den + eps) - eps / (den + eps)).mean(1)


@pytest.mark.parametrize("spatial", [(6, 6), (3, 4, 5)], ids=["2d", "3d"])
def test_nr_dice_gamma2_is_soft_dice(spatial):
    z = logits((2, 3, *spatial), seed=41)
    g = torch.softmax(3 * logits((2, 3, *spatial), seed=42), 1)  # soft masks
    p = torch.softmax(z, 1)
    eps = 1e-5
    ours = NoiseRobustDice(gamma=2.0, eps=eps, reduction="mean")(z, g)
    # sum|p-g|^2 = sum p^2 + sum g^2 - 2 sum pg  =>  NR-Dice(2) = 1 - 2 sum pg / (sum p^2 + sum g^2)
    ref = _soft_dice_squared(p, g, eps).mean()
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    # the linear denominator used by PyMIC is a different quantity
    red = tuple(range(2, p.dim()))
    pymic = (((p - g) ** 2).sum(red) / ((p + g).sum(red) + eps)).mean()
    assert (pymic - ours).abs() > 1e-3


def test_nr_dice_formula_and_background():
    z = logits((2, 3, 8, 8), seed=43)
    t = labels(2, 3, (8, 8), seed=43)
    p = torch.softmax(z, 1)
    g = F.one_hot(t, 3).movedim(-1, 1).double()
    num = ((p - g).abs() ** 1.5).sum((2, 3))
    den = (p**2).sum((2, 3)) + (g**2).sum((2, 3)) + 1e-5
    torch.testing.assert_close(NoiseRobustDice()(z, t), (num / den).mean())
    torch.testing.assert_close(
        NoiseRobustDice(include_background=False, reduction="none")(z, t).mean((1, 2)),
        (num / den)[:, 1:].mean(1),
    )
    with pytest.raises(ValueError, match="gamma"):
        NoiseRobustDice(gamma=2.5)


@pytest.mark.parametrize(
    ("cls", "kw", "match"),
    [
        (GCE, {"q": 0.0}, "q"),
        (GCE, {"q": 1.5}, "q"),
        (AUL, {"a": 1.0}, "a"),
        (RCE, {"A": 1.0}, "A"),
        (TaylorCE, {"order": 0}, "order"),
        (TruncatedGCE, {"k": 1.0}, "k"),
        (Bootstrap, {"beta": 2.0}, "beta"),
        (CrossEntropy, {"weight": torch.ones(2, 2)}, "weight"),
        (ELR, {"num_examples": 0, "num_classes": 3}, "num"),
    ],
)
def test_bad_parameters(cls, kw, match):
    with pytest.raises(ValueError, match=match):
        cls(**kw)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_nnfl_largest_class_keeps_its_true_one_minus_p(gamma, dtype):
    """Regression: NNFL's ``1 - p`` of the largest class was the sum of the other classes'
    probabilities after flooring them at ``min_prob``, off by up to ``C min_prob``. Checked against
    ``f_k = A - FL(max(log p_k, -A))``, ``FL(c) = -(1 - e^c)^gamma c``, evaluated per class in float64
    with ``expm1`` (no sum over classes), and autograd of it."""
    mp = 1e-2
    A = -torch.log(torch.tensor(mp, dtype=torch.float64))
    z = torch.tensor([[6.0, -3.0, -4.0, 1.0, -6.0], [0.5, 0.2, -8.0, 4.0, -9.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])

    def reference(z):
        c = torch.clamp(torch.log_softmax(z, 1), min=-A)
        fl = -((-torch.expm1(c)) ** gamma) * c
        f = A - fl
        return (1 - f.gather(1, y[:, None]).squeeze(1) / f.sum(1)).sum()

    zr = z.clone().requires_grad_(True)
    ref = reference(zr)
    ref.backward()
    assert float(torch.softmax(z, 1).amax()) > 0.97  # a saturated largest class, dead classes
    loss = NNFL(gamma=gamma, min_prob=mp, reduction="sum")
    zz = z.to(dtype).requires_grad_(True)
    v = loss(zz, y)
    v.backward()
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(v.double(), ref.detach(), rtol=tol, atol=tol)
    torch.testing.assert_close(zz.grad.double(), zr.grad, rtol=tol * 10, atol=tol)
    cl = loss.class_losses(torch.log_softmax(z, 1)).gather(1, y[:, None]).sum()
    torch.testing.assert_close(cl, ref.detach(), rtol=1e-12, atol=1e-12)
