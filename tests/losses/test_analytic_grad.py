"""The analytic (custom autograd Function) path of integer targets against autograd of the formula.

Integer targets go through ``_IndexLossFn`` (one ``exp`` pass, closed-form gradient); the reference
is the same loss with that path switched off, i.e. autograd through the per-class formulas on
``log_softmax`` (the path soft targets take).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustaug.losses import (
    NFL,
    NNFL,
    ActivePassive,
    Bootstrap,
    FocalLoss,
    NoiseRobustDice,
    robust_loss,
)

from .helpers import ALL_LOSSES, build, labels, logits

ANALYTIC = [n for n in ALL_LOSSES if build(n, 4)._has_analytic()]
# the fast path must cover every non-stateful softmax loss but Dice (not per element)
EXPECTED_OTHERS = {"elr", "nr_dice"}


def _reference(loss):
    loss._has_analytic = lambda: False  # instance attribute: the autograd path
    return loss


def _value_and_grad(loss, z, t):
    z = z.detach().clone().requires_grad_(True)
    out = loss(z, t)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=out.dtype)
    (out * g).sum().backward()
    return out.detach(), z.grad


def test_every_stateless_loss_has_the_analytic_path():
    assert set(ALL_LOSSES) - set(ANALYTIC) == EXPECTED_OTHERS


@pytest.mark.parametrize("name", ANALYTIC)
@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 3, 5)], ids=["NC", "NC35"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_analytic_value_and_grad_match_autograd(name, shape, reduction, scale):
    c = shape[1]
    w = torch.linspace(0.5, 2.0, c, dtype=torch.float64)
    kw = {"reduction": reduction, "weight": w, "ignore_index": 2}
    z = logits(shape, seed=3, scale=scale)
    t = labels(shape[0], c, shape[2:], seed=3)
    t.view(-1)[::4] = 2  # some ignored elements
    fast = build(name, c, **kw)
    ref = _reference(build(name, c, **kw))
    v1, g1 = _value_and_grad(fast, z, t)
    v2, g2 = _value_and_grad(ref, z, t)
    torch.testing.assert_close(v1, v2, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-11)
    if reduction == "none":
        assert fast(z.requires_grad_(True), t).grad_fn.name().startswith("_IndexLossFn")


@pytest.mark.parametrize(
    "loss",
    [FocalLoss(gamma=0.5), NFL(gamma=0.5), NNFL(gamma=0.5), NFL(gamma=2.0), FocalLoss(gamma=0.0)],
    ids=["focal0.5", "nfl0.5", "nnfl0.5", "nfl2", "focal0"],
)
def test_focal_gradient_near_saturation(loss):
    """p_y -> 1 with gamma < 1: the closed form uses the other classes' mass for 1 - p_y."""
    z = torch.tensor(
        [[12.0, 0.0, -3.0], [25.0, 1.0, 0.5], [0.0, 1.0, 2.0], [40.0, -40.0, 0.0]],
        dtype=torch.float64,
    )
    t = torch.tensor([0, 0, 2, 0])
    loss.reduction = "sum"
    v1, g1 = _value_and_grad(loss, z, t)
    ref = _reference(type(loss)(gamma=loss.gamma, reduction="sum"))
    v2, g2 = _value_and_grad(ref, z, t)
    torch.testing.assert_close(v1, v2, rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(g1, g2, rtol=1e-7, atol=1e-15)
    # float32 at full saturation: finite, and exactly 0 where p_y == 1 in floating point
    z32 = torch.tensor([[200.0, 0.0, -200.0]], requires_grad=True)
    loss(z32, torch.tensor([0])).backward()
    assert torch.isfinite(z32.grad).all()


def test_channels_last_and_noncontiguous_inputs():
    z = logits((2, 3, 5, 4), seed=1, dtype=torch.float32)
    t = labels(2, 3, (5, 4), seed=1)
    for name in ("ce", "nfl", "nce+rce", "bootstrap_hard"):
        loss = robust_loss(name)
        v1, g1 = _value_and_grad(loss, z, t)
        zc = z.to(memory_format=torch.channels_last)
        v2, g2 = _value_and_grad(loss, zc, t)
        torch.testing.assert_close(v1, v2)
        torch.testing.assert_close(g1, g2)


def test_hard_bootstrap_uses_detached_prediction():
    z = logits((4, 3, 2, 2), seed=2)
    t = labels(4, 3, (2, 2), seed=2)
    b = Bootstrap(hard=True, reduction="sum")
    v1, g1 = _value_and_grad(b, z, t)
    v2, g2 = _value_and_grad(_reference(Bootstrap(hard=True, reduction="sum")), z, t)
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(g1, g2)


def test_active_passive_falls_back_when_a_part_has_no_closed_form():
    class NoClosed(NFL):
        def _has_analytic(self) -> bool:
            return False

    ap = ActivePassive(NoClosed(), "rce")
    z = logits((3, 4), seed=4).requires_grad_(True)
    ap.reduction = "none"
    out = ap(z, labels(3, 4, seed=4))
    assert not out.grad_fn.name().startswith("_IndexLossFn")


@pytest.mark.parametrize("gamma", [1.0, 1.5, 2.0])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("soft", [False, True])
def test_dice_closed_form_gradient_matches_autograd(gamma, reduction, soft):
    z = logits((3, 4, 5, 3), seed=6)
    t = labels(3, 4, (5, 3), seed=6)
    kw = {"gamma": gamma, "reduction": reduction, "include_background": False}
    if soft:
        t = torch.softmax(logits((3, 4, 5, 3), seed=7, scale=2.0), 1)
    else:
        t[0, :2] = 1
        t[1, 0] = -100
        kw["weight"] = torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=torch.float64)
    fast = NoiseRobustDice(**kw)
    ref = NoiseRobustDice(**kw)
    ref._analytic = False
    v1, g1 = _value_and_grad(fast, z, t)
    v2, g2 = _value_and_grad(ref, z, t)
    torch.testing.assert_close(v1, v2, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("gamma", [0.7, 1.5, 3.0])
@pytest.mark.parametrize("cls", [FocalLoss, NFL, NNFL], ids=["focal", "nfl", "nnfl"])
@pytest.mark.parametrize("scale", [0.3, 30.0], ids=["no_p_above_half", "saturated"])
def test_focal_family_other_gammas_match_autograd(cls, gamma, scale):
    """exp/log path (0.7), sqrt times products (1.5), products only (3); with and without a
    class above p = 1/2 (the exact ``1 - p_max`` branch)."""
    z = logits((5, 6, 3, 2), seed=8, scale=scale)
    t = labels(5, 6, (3, 2), seed=8)
    if scale < 1:
        assert float(torch.softmax(z, 1).amax()) <= 0.5  # precondition of the cheap branch
    kw = {"gamma": gamma, "reduction": "none"}
    v1, g1 = _value_and_grad(cls(**kw), z, t)
    v2, g2 = _value_and_grad(_reference(cls(**kw)), z, t)
    torch.testing.assert_close(v1, v2, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_keep_mask_is_the_exact_step(dtype):
    from robustaug.losses.robust import _keep_mask, _pow_gamma

    half = torch.tensor(0.5, dtype=dtype)
    below = torch.nextafter(half, torch.tensor(0.0, dtype=dtype))
    above = torch.nextafter(half, torch.tensor(1.0, dtype=dtype))
    p = torch.stack([torch.zeros((), dtype=dtype), below, half, above, torch.ones((), dtype=dtype)])
    p = torch.cat([p, torch.rand(50, generator=torch.Generator().manual_seed(0), dtype=dtype)])
    p = p.view(1, -1)
    assert torch.equal(_keep_mask(p), (p <= 0.5).to(dtype))
    u = p[:, 1:] + 0.1
    for gamma in (0.5, 1.0, 1.5, 2.0, 2.5, 0.7, 4.5):
        torch.testing.assert_close(_pow_gamma(u, gamma), u**gamma)


def test_integer_targets_fast_check_keeps_ignore_semantics():
    z = logits((6, 4), seed=9)
    t = labels(6, 4, seed=9)
    t[0] = 1
    for ignore in (1, 3, -100):
        loss = robust_loss("nce+rce", ignore_index=ignore, reduction="none")
        out = loss(z, t)
        kept = t != ignore
        assert bool((out[~kept] == 0).all())
        ref = _reference(robust_loss("nce+rce", reduction="none"))(z, t)
        torch.testing.assert_close(out[kept], ref[kept])
    with pytest.raises(ValueError, match="class indices"):
        robust_loss("ce")(z, torch.full((6,), 4))


@pytest.mark.parametrize("gamma", [1.0, 1.3, 1.5, 2.0])
@pytest.mark.parametrize(
    "shape", [(6, 5), (3, 4, 5, 3), (2, 3, 1, 1), (2, 18, 3, 2)], ids=["NC", "NC53", "NC11", "C18"]
)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_dice_integer_fast_path_matches_autograd(gamma, shape, reduction):
    """Integer masks with nothing ignored take ``_DiceIndexFn`` (from the logits)."""
    c = shape[1]
    z = logits(shape, seed=10, scale=3.0)
    t = labels(shape[0], c, shape[2:], seed=10)
    kw = {"gamma": gamma, "reduction": reduction, "weight": torch.linspace(0.5, 2.0, c).double()}
    for include_background in (True, False):
        fast = NoiseRobustDice(include_background=include_background, **kw)
        ref = NoiseRobustDice(include_background=include_background, **kw)
        ref._analytic = False
        v1, g1 = _value_and_grad(fast, z, t)
        v2, g2 = _value_and_grad(ref, z, t)
        torch.testing.assert_close(v1, v2, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-12)
    zc = z.to(memory_format=torch.channels_last) if z.dim() == 4 else z.t().contiguous().t()
    g3 = _value_and_grad(NoiseRobustDice(include_background=False, **kw), zc, t)[1]
    torch.testing.assert_close(g3, g1)


@pytest.mark.parametrize("gamma", [1.3, 1.5])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dice_integer_fast_path_saturated_grid(gamma, dtype):
    """Saturated logits on a grid: ``d = p - g`` is exactly 0 at many voxels (``p_y = 1``, ``p = 0``
    off the label), where ``|d|^(gamma-1) sign(d)`` must be 0 (not 0 * inf), and tiny elsewhere."""
    shape = (2, 3, 6, 5)
    t = labels(shape[0], shape[1], shape[2:], seed=13)
    z = logits(shape, seed=13, scale=2.0)
    z = z + 800.0 * F.one_hot(t, shape[1]).movedim(-1, 1).double()  # p_y = 1 exactly
    z[0, :, 0, :] = 0.0  # and some undecided voxels
    z = z.to(dtype)
    fast = NoiseRobustDice(gamma=gamma, reduction="sum")
    ref = NoiseRobustDice(gamma=gamma, reduction="sum")
    ref._analytic = False
    v1, g1 = _value_and_grad(fast, z, t)
    v2, g2 = _value_and_grad(ref, z, t)
    assert torch.isfinite(g1).all()
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(v1, v2, **tol)
    torch.testing.assert_close(g1, g2, **tol)


@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 3, 3)], ids=["NC", "NC33"])
def test_hard_bootstrap_ties_take_the_first_maximum(shape):
    g = torch.Generator().manual_seed(11)
    z = torch.randint(0, 3, shape, generator=g).double()  # many tied maxima
    t = labels(shape[0], shape[1], shape[2:], seed=11)
    v1, g1 = _value_and_grad(Bootstrap(hard=True, reduction="sum"), z, t)
    v2, g2 = _value_and_grad(_reference(Bootstrap(hard=True, reduction="sum")), z, t)
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(g1, g2)
    z = logits(shape, seed=12)  # no ties: the one-hot is built without an index
    v1, g1 = _value_and_grad(Bootstrap(hard=True, reduction="none"), z, t)
    v2, g2 = _value_and_grad(_reference(Bootstrap(hard=True, reduction="none")), z, t)
    torch.testing.assert_close(v1, v2)
    torch.testing.assert_close(g1, g2)


def test_hard_bootstrap_detects_logits_modified_in_place():
    z = logits((4, 3), seed=13).requires_grad_(True)
    x = z * 1.0
    out = Bootstrap(hard=True)(x, labels(4, 3, seed=13))
    with torch.no_grad():
        x.add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        out.backward()


@pytest.mark.parametrize("shape", [(5, 3), (2, 3, 4, 2), (2, 20, 3, 2)], ids=["NC", "few", "many"])
def test_rows_for_labels_layout(shape):
    from robustaug.losses._common import rows_for_labels

    c = shape[1]
    M = torch.arange(c * c, dtype=torch.float64).view(c, c)
    y = labels(shape[0], c, shape[2:], seed=14)
    like = torch.zeros(shape, dtype=torch.float32)
    R = rows_for_labels(M, y, like)
    assert R.shape == like.shape and R.dtype == like.dtype and R.is_contiguous()
    torch.testing.assert_close(R, M[y].movedim(-1, 1).float())


@pytest.mark.parametrize("name", ["ce", "nce_plus_rce", "nfl", "ngce", "bootstrap_hard", "nr_dice"])
def test_backward_twice_with_retained_graph(name):
    """Nothing saved for the backward is modified by it (retain_graph gives the same gradient)."""
    z = logits((3, 4, 3, 2), seed=15).requires_grad_(True)
    out = robust_loss(name)(z, labels(3, 4, (3, 2), seed=15))
    (g1,) = torch.autograd.grad(out, z, retain_graph=True)
    (g2,) = torch.autograd.grad(out, z)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)


@pytest.mark.parametrize("name", [*ANALYTIC, "nr_dice"])
def test_branches_of_other_devices_match(name, monkeypatch):
    """GPUs skip the host-side shortcuts (no synchronisation): the general branches give the same
    values and gradients (run here on the CPU with the shortcuts switched off)."""
    import robustaug.losses._common as common

    c = 4
    z = logits((3, c, 3, 2), seed=16, scale=4.0)
    t = labels(3, c, (3, 2), seed=16)
    v1, g1 = _value_and_grad(build(name, c), z, t)
    monkeypatch.setattr(common, "host_checks", lambda t: False)
    v2, g2 = _value_and_grad(build(name, c), z, t)
    torch.testing.assert_close(v1, v2, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-14)


DENSE_FOLDED = ["nfl", "nnfl", "nfl_plus_rce", "ngce", "focal", "forward", "nr_dice"]


@pytest.mark.parametrize("name", DENSE_FOLDED)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_plain_backward_returns_the_reduced_gradient(name, reduction):
    """``loss.backward()`` (incoming gradient exactly 1) takes the branch that hands the saved
    gradient buffer to autograd; with weights and ignored elements it must still equal autograd of
    the formula, also for a non-unit incoming gradient, a leaf whose ``.grad`` accumulates, and a
    second backward through a retained graph after ``.grad`` was modified in place."""
    c = 4
    kw = {"reduction": reduction}
    if name != "nr_dice":
        kw |= {"weight": torch.linspace(0.5, 2.0, c, dtype=torch.float64), "ignore_index": 2}
    z0 = logits((3, c, 3, 2), seed=21, scale=3.0)
    t = labels(3, c, (3, 2), seed=21)
    if name != "nr_dice":
        t.view(-1)[::5] = 2
    ref = _reference(build(name, c, **kw))
    if name == "nr_dice":
        ref._analytic = False  # Dice's switch for the autograd path
    zr = z0.clone().requires_grad_(True)
    ref(zr, t).backward()
    z = z0.clone().requires_grad_(True)
    out = build(name, c, **kw)(z, t)
    assert out.grad_fn.name().startswith(("_IndexLossFn", "_DiceIndexFn"))
    out.backward(retain_graph=True)
    torch.testing.assert_close(z.grad, zr.grad, rtol=1e-8, atol=1e-11)
    z.grad.mul_(0.0)  # in place on .grad: the retained graph must not see it
    out.backward(retain_graph=True)
    torch.testing.assert_close(z.grad, zr.grad, rtol=1e-8, atol=1e-11)
    (3.0 * out).backward()  # non-unit incoming gradient, accumulated into .grad
    torch.testing.assert_close(z.grad, 4.0 * zr.grad, rtol=1e-8, atol=1e-11)


def test_plain_backward_with_the_logits_used_twice():
    """Two losses on the same logits: autograd sums the two returned buffers (in place into one of
    them when nothing else holds it), which must give the sum of the two gradients."""
    c = 5
    z0 = logits((6, c), seed=22, scale=2.0)
    t1, t2 = labels(6, c, (), seed=22), labels(6, c, (), seed=23)
    ref = [_reference(robust_loss("nfl")), _reference(robust_loss("ngce"))]
    zr = z0.clone().requires_grad_(True)
    (ref[0](zr, t1) + ref[1](zr, t2)).backward()
    z = z0.clone().requires_grad_(True)
    (robust_loss("nfl")(z, t1) + robust_loss("ngce")(z, t2)).backward()
    torch.testing.assert_close(z.grad, zr.grad, rtol=1e-8, atol=1e-11)
    # a non-leaf input: the returned buffer flows on through the graph (chain rule: x 2)
    w = z0.clone().requires_grad_(True)
    robust_loss("nfl")(w * 2.0, t1).backward()
    wr = z0.clone().requires_grad_(True)
    ref[0](wr * 2.0, t1).backward()
    torch.testing.assert_close(w.grad, wr.grad, rtol=1e-8, atol=1e-11)
