"""Side-effect contract: modes, BN buffers, requires_grad, .grad, global RNG, input, x_adv detached."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import make_cnn, make_data, rng_equal, rng_snapshot
from torch import nn

import robustaug.adversarial as adv

ATTACKS = {
    "pgd": lambda m, x, y: adv.pgd(m, x, y, adv.Linf(0.1, steps=3)),
    "pgd_l2_train_bn": lambda m, x, y: adv.pgd(m, x, y, adv.L2(0.5, steps=3), bn_mode="train"),
    "pgd_keep": lambda m, x, y: adv.pgd(m, x, y, adv.L1(1.0, steps=3), bn_mode="keep"),
    "fgsm_rs": lambda m, x, y: adv.fgsm_rs(m, x, y, 0.1),
    "apgd": lambda m, x, y: adv.apgd(m, x, y, adv.Linf(0.1), "dlr", n_iter=4),
    "apgd_t": lambda m, x, y: adv.apgd_targeted(m, x, y, adv.Linf(0.1), n_iter=3,
                                                n_target_classes=2),
    "fab_t": lambda m, x, y: adv.fab_targeted(m, x, y, adv.Linf(0.1), n_iter=3, n_target_classes=2),
    "square": lambda m, x, y: adv.square(m, x, y, adv.Linf(0.1), n_queries=10),
    "bias_field": lambda m, x, y: adv.pgd(m, x, y, adv.BiasField(steps=2)),
}


def snapshot(model: nn.Module):
    return {
        "modes": [m.training for m in model.modules()],
        "buffers": [b.clone() for b in model.buffers()],
        "req": [p.requires_grad for p in model.parameters()],
        "grads": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "grad_ids": [id(p.grad) for p in model.parameters()],
        "params": [p.detach().clone() for p in model.parameters()],
    }


def assert_same(a, b):
    assert a["modes"] == b["modes"]
    assert all(torch.equal(u, v) for u, v in zip(a["buffers"], b["buffers"]))
    assert a["req"] == b["req"]
    assert a["grad_ids"] == b["grad_ids"]
    for u, v in zip(a["grads"], b["grads"]):
        assert (u is None and v is None) or torch.equal(u, v)
    assert all(torch.equal(u, v) for u, v in zip(a["params"], b["params"]))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_no_side_effects(name):
    model = make_cnn().train()
    model[1].eval()  # one frozen BN (fine-tuning pattern)
    model[0].weight.requires_grad_(False)  # a frozen layer
    x, y = make_data()
    # pre-accumulated grads on the trainable parameters
    nn.functional.cross_entropy(model(x), y).backward()
    # reset BN buffers' change from that forward so we measure the attack only
    before = snapshot(model)
    x0 = x.clone()
    torch.manual_seed(123)
    np.random.seed(5)  # noqa: NPY002 (the global state is what we check)
    random.seed(7)
    rng0 = rng_snapshot()
    res = ATTACKS[name](model, x, y)
    assert rng_equal(rng0, rng_snapshot())
    assert_same(before, snapshot(model))
    assert torch.equal(x, x0)
    assert not res.x_adv.requires_grad
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype


def test_isolated_context_manager_restores_and_yields_inner():
    model = make_cnn().train()
    dp = nn.DataParallel(model)  # a wrapper: attacks run on .module
    x, _ = make_data()
    before = snapshot(model)
    with adv.isolated(dp, bn_mode="train") as inner:
        assert inner is model
        assert all(m.training for m in inner.modules())
        assert not any(p.requires_grad for p in inner.parameters())
        inner(x)  # would update BN running stats
    assert_same(before, snapshot(model))


def test_isolated_restores_on_exception():
    model = make_cnn().train()
    before = snapshot(model)
    with pytest.raises(RuntimeError), adv.isolated(model) as inner:
        inner(torch.rand(2, 1, 8, 8))
        raise RuntimeError("boom")
    assert_same(before, snapshot(model))


def test_user_graph_survives_attack():
    # an eval-mode BN forward saves the running stats; the attack must not invalidate that graph
    model = make_cnn().eval()
    x, y = make_data()
    loss = nn.functional.cross_entropy(model(x), y)
    adv.pgd(model, x, y, adv.Linf(0.1, steps=2), bn_mode="train")
    loss.backward()


def test_out_of_range_raises_and_names_range():
    model = make_cnn()
    x, y = make_data()
    with pytest.raises(ValueError, match="data_range"):
        adv.pgd(model, x * 2 - 1, y, adv.Linf(0.1, steps=1))
    # explicit range accepted, budget kept in its units
    xs = x * 2 - 1
    r = adv.pgd(model, xs, y, adv.Linf(0.2, steps=3), data_range=(-1, 1))
    assert (r.x_adv - xs).abs().max() <= 0.2 * (1 + 1e-6)
    with pytest.raises(ValueError, match="bn_mode"):
        adv.pgd(model, x, y, adv.Linf(0.1, steps=1), bn_mode="frozen")
    with pytest.raises(ValueError, match="samples"):
        adv.pgd(model, x, y[:3], adv.Linf(0.1, steps=1))
