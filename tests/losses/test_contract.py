"""The CE-compatible contract, checked for every registered softmax loss (new ones included)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from robustaug.losses import NoiseRobustDice

from .helpers import ALL_LOSSES, build, call, labels, logits

SHAPES = [(5, 4), (2, 3, 4, 4, 4)]
IDS = ["NC", "NC444"]


def _spatial(shape):
    return tuple(shape[2:])


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_gradcheck_float64(name, shape):
    c = shape[1]
    loss = build(name, c, _spatial(shape), n=shape[0])
    z = logits(shape).requires_grad_(True)
    t = labels(shape[0], c, _spatial(shape))
    # fast mode (random projections of the Jacobian) keeps the 384-input volume case quick
    fast = len(shape) > 2
    assert torch.autograd.gradcheck(
        lambda x: call(loss, x, t), (z,), eps=1e-6, atol=1e-5, fast_mode=fast
    )


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_gradcheck_soft_targets(name):
    loss = build(name, 4, (), n=5)
    z = logits((5, 4)).requires_grad_(True)
    q = torch.softmax(logits((5, 4), seed=3), dim=1)
    assert torch.autograd.gradcheck(lambda x: call(loss, x, q), (z,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("scale", [50.0, 200.0])
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_extreme_logits_finite(name, scale, shape):
    c = shape[1]
    loss = build(name, c, _spatial(shape), n=shape[0])
    z = logits(shape, seed=2, scale=scale, dtype=torch.float32)
    t = labels(shape[0], c, _spatial(shape), seed=2)
    # make some predictions saturate on the label (p_y == 1 in float32), others on a wrong class
    zz = z.clone()
    zz.view(shape[0], c, -1)[0, :, :] = -scale
    zz.view(shape[0], c, -1)[0].scatter_(0, t.view(shape[0], 1, -1)[0], scale)
    zz = zz.requires_grad_(True)
    out = call(loss, zz, t)
    out.backward()
    assert torch.isfinite(out), f"{name}: loss {out}"
    assert torch.isfinite(zz.grad).all(), f"{name}: non-finite gradient"


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_bf16_autocast_close_to_fp32(name, shape):
    c = shape[1]
    loss = build(name, c, _spatial(shape), n=shape[0])
    z = logits(shape, seed=4, scale=2.0, dtype=torch.float32)
    t = labels(shape[0], c, _spatial(shape), seed=4)
    ref = call(loss, z, t)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = call(loss, z.to(torch.bfloat16), t)
    assert out.dtype == torch.float32
    assert torch.isfinite(out)
    rel = (out - ref).abs() / ref.abs().clamp_min(1e-6)
    assert rel < 1e-2, f"{name}: bf16 {out.item()} vs fp32 {ref.item()}"


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
@pytest.mark.parametrize("soft", [False, True], ids=["index", "soft"])
def test_reduction_none_shape_and_mean(name, shape, soft):
    c = shape[1]
    t = labels(shape[0], c, _spatial(shape), seed=5)
    if soft:
        t = torch.softmax(logits(shape, seed=6), dim=1)
    z = logits(shape, seed=5)
    none = call(build(name, c, _spatial(shape), n=shape[0], reduction="none"), z, t)
    mean = call(build(name, c, _spatial(shape), n=shape[0], reduction="mean"), z, t)
    total = call(build(name, c, _spatial(shape), n=shape[0], reduction="sum"), z, t)
    assert none.shape == (shape[0], *_spatial(shape))
    torch.testing.assert_close(none.mean(), mean, rtol=1e-10, atol=1e-12)
    if name != "nr_dice":  # Dice's "sum" is over samples (documented)
        torch.testing.assert_close(none.sum(), total, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
@pytest.mark.parametrize("ignore_index", [-100, 255])
def test_zero_grad_at_ignore_index(name, shape, ignore_index):
    c = shape[1]
    loss = build(name, c, _spatial(shape), n=shape[0], ignore_index=ignore_index)
    z = logits(shape, seed=7).requires_grad_(True)
    t = labels(shape[0], c, _spatial(shape), seed=7)
    g = torch.Generator().manual_seed(7)
    ignored = torch.rand(t.shape, generator=g) < 0.4
    ignored.view(-1)[0] = True
    ignored.view(-1)[1] = False
    t = t.masked_fill(ignored, ignore_index)
    out = call(loss, z, t)
    assert torch.isfinite(out)
    out.backward()
    grad = z.grad.movedim(1, -1)[ignored]
    assert torch.equal(grad, torch.zeros_like(grad))
    assert z.grad.movedim(1, -1)[~ignored].abs().sum() > 0


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_ignored_rows_same_as_dropping_them(name):
    c, n = 4, 6
    z = logits((n, c), seed=8)
    t = labels(n, c, seed=8)
    keep = torch.tensor([True, False, True, True, False, True])
    t_ign = t.masked_fill(~keep, -100)
    if name == "elr":
        loss = build(name, c, n=n, reduction="sum")
        a = loss(z, t_ign, torch.arange(n))
        b = loss(z[keep], t[keep], torch.arange(n)[keep])
    else:
        a = call(build(name, c, n=n, reduction="sum"), z, t_ign)
        b = call(build(name, c, n=n, reduction="sum"), z[keep], t[keep])
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ALL_LOSSES)
@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_soft_one_hot_equals_integer_targets(name, shape, reduction, weighted):
    c = shape[1]
    kw = {"reduction": reduction}
    if weighted:
        kw["weight"] = torch.linspace(0.5, 2.0, c, dtype=torch.float64)
    loss = build(name, c, _spatial(shape), n=shape[0], **kw)
    z = logits(shape, seed=9)
    t = labels(shape[0], c, _spatial(shape), seed=9)
    q = F.one_hot(t, c).movedim(-1, 1).double()
    torch.testing.assert_close(call(loss, z, q), call(loss, z, t), rtol=1e-12, atol=1e-12)


# NR-Dice weights the class average, not the elements, so the weighted-mean rule does not apply.
@pytest.mark.parametrize("name", [n for n in ALL_LOSSES if n != "nr_dice"])
def test_weighted_mean_divides_by_weight_sum(name):
    c, n = 4, 7
    w = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    z = logits((n, c), seed=10)
    t = labels(n, c, seed=10)
    t[2] = -100
    none = call(build(name, c, n=n, weight=w, reduction="none"), z, t)
    unweighted = call(build(name, c, n=n, reduction="none"), z, t)
    mean = call(build(name, c, n=n, weight=w, reduction="mean"), z, t)
    valid = t != -100
    torch.testing.assert_close(none, unweighted * torch.where(valid, w[t.clamp_min(0)], 0.0))
    torch.testing.assert_close(mean, none.sum() / w[t[valid]].sum())


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_all_ignored_batch_like_torch(name):
    c, n = 4, 3
    z = logits((n, c), seed=11)
    t = torch.full((n,), -100)
    if name == "nr_dice":  # documented: a fully ignored sample contributes a loss of 0
        assert call(build(name, c, n=n), z, t) == 0
    else:
        assert torch.isnan(call(build(name, c, n=n), z, t))  # torch: 0/0 for "mean"
    assert call(build(name, c, n=n, reduction="sum"), z, t) == 0


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_input_untouched_dtype_device_and_copy(name):
    c = 4
    loss = build(name, c, n=5)
    z = logits((5, c), seed=12, dtype=torch.float32)
    t = labels(5, c, seed=12)
    z0, t0 = z.clone(), t.clone()
    out = call(loss, z, t)
    assert torch.equal(z, z0) and torch.equal(t, t0)
    assert out.dtype == torch.float32 and out.device == z.device and out.dim() == 0
    assert call(loss, z.double(), t).dtype == torch.float64
    assert call(loss, z.half(), t).dtype == torch.float32
    clone = copy.deepcopy(loss)
    clone.load_state_dict(loss.state_dict())
    torch.testing.assert_close(call(clone, z, t), out)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_bad_inputs_raise_clear_errors(name):
    c = 4
    loss = build(name, c, n=5)
    z = logits((5, c))
    with pytest.raises(ValueError, match="target"):
        call(loss, z, torch.zeros(5, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="input's shape"):
        call(loss, z, torch.ones(5, c + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        call(loss, z, torch.tensor([0, 1, 2, 3, 4]))
    with pytest.raises(ValueError, match="reduction"):
        build(name, c, n=5, reduction="avg")


def test_registry_covers_every_loss_class():
    import inspect

    import robustaug.losses as L
    from robustaug.losses import RobustLoss, robust_loss

    classes = {
        obj
        for obj in vars(L).values()
        if inspect.isclass(obj) and issubclass(obj, RobustLoss) and obj is not RobustLoss
    }
    built = {type(build(n, 4)) for n in ALL_LOSSES}
    assert classes <= built, f"not registered: {classes - built}"
    assert isinstance(robust_loss("NCE+RCE"), L.ActivePassive)
    assert isinstance(robust_loss("Truncated-GCE"), L.TruncatedGCE)
    with pytest.raises(KeyError, match="Did you mean"):
        robust_loss("gcee")


def test_dice_is_a_contract_member():
    assert isinstance(build("nr_dice", 3), NoiseRobustDice)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 4),
    c=st.integers(2, 6),
    spatial=st.lists(st.integers(1, 3), min_size=0, max_size=3),
    name=st.sampled_from(ALL_LOSSES),
    seed=st.integers(0, 2**16),
)
def test_any_shape_soft_equals_index_and_none_shape(n, c, spatial, name, seed):
    shape = (n, c, *spatial)
    loss = build(name, c, tuple(spatial), n=n, reduction="none")
    z = logits(shape, seed=seed)
    t = labels(n, c, tuple(spatial), seed=seed)
    q = F.one_hot(t, c).movedim(-1, 1).double()
    out = call(loss, z, t)
    assert out.shape == t.shape and torch.isfinite(out).all()
    torch.testing.assert_close(call(loss, z, q), out, rtol=1e-12, atol=1e-12)
    if name == "ce":
        torch.testing.assert_close(out, F.cross_entropy(z, t, reduction="none"))
