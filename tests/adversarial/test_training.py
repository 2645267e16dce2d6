"""RobustLoss: formulas on fixed tensors, AWP restore, Free replay rule, determinism, methods."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import make_cnn, make_data
from torch import nn

import robustaug.adversarial as adv

Z_NAT = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0]])
Z_ADV = torch.tensor([[0.5, 1.5, -0.5], [1.0, -0.2, 0.3], [0.0, 0.5, 2.0]])
Y = torch.tensor([0, 2, 1])


def test_trades_formula():
    beta = 6.0
    got = adv.trades_loss(Z_NAT, Z_ADV, Y, beta, nn.CrossEntropyLoss())
    kl = F.kl_div(F.log_softmax(Z_ADV, 1), F.softmax(Z_NAT, 1), reduction="batchmean")
    assert torch.allclose(got, F.cross_entropy(Z_NAT, Y) + beta * kl, atol=1e-6)


def test_mart_formula_matches_reference():
    beta = 6.0
    # reference (Wang et al. 2020 code, rewritten): BCE + beta * KL * (1 - p_y)
    adv_probs = F.softmax(Z_ADV, 1)
    tmp = torch.argsort(adv_probs, 1)[:, -2:]
    new_y = torch.where(tmp[:, -1] == Y, tmp[:, -2], tmp[:, -1])
    loss_adv = F.cross_entropy(Z_ADV, Y) + F.nll_loss(torch.log(1.0001 - adv_probs + 1e-12), new_y)
    nat = F.softmax(Z_NAT, 1)
    true_p = nat.gather(1, Y[:, None]).squeeze(1)
    kl = nn.KLDivLoss(reduction="none")(torch.log(adv_probs + 1e-12), nat).sum(1)
    ref = loss_adv + beta * (kl * (1.0000001 - true_p)).sum() / 3
    assert torch.allclose(adv.mart_loss(Z_NAT, Z_ADV, Y, beta), ref, atol=1e-6)


def test_trades_inner_maximisation_is_kl_not_ce():
    # the KL inner loss is label-free: changing the labels must not change x_adv
    x, y = make_data()
    # two identical models (the training forward updates BN statistics of a train-mode model)
    r1 = adv.RobustLoss(make_cnn(), method="trades", threat=adv.Linf(0.1, steps=3), seed=0)
    r2 = adv.RobustLoss(make_cnn(), method="trades", threat=adv.Linf(0.1, steps=3), seed=0)
    r1(x, y)
    r2(x, (y + 1) % 5)
    assert torch.equal(r1.last["x_adv"], r2.last["x_adv"])
    assert not torch.equal(r1.last["x_adv"], x)


def test_fgsm_rs_update_rule():
    model = make_cnn()
    x, y = make_data()
    eps = 0.1
    rl = adv.RobustLoss(model, method="fgsm_rs", threat=adv.Linf(eps), seed=5)
    rl(x, y)
    g = torch.Generator().manual_seed(5)
    d0 = (torch.rand(x.shape, generator=g) * 2 - 1) * eps
    d0 = (x + d0).clamp(0, 1) - x
    m = make_cnn().eval()  # same weights (seed 0), eval mode as bn_mode="eval"
    xr = (x + d0).requires_grad_(True)
    (gr,) = torch.autograd.grad(F.cross_entropy(m(xr), y, reduction="sum"), xr)
    d = (d0 + 1.25 * eps * gr.sign()).clamp(-eps, eps)
    expected = (x + d).clamp(0, 1)
    assert torch.allclose(rl.last["x_adv"], expected, atol=1e-6)
    assert (rl.last["x_adv"] - x).abs().max() <= eps * (1 + 1e-6)


def test_free_keeps_delta_across_replays():
    model = make_cnn().train()
    x, y = make_data()
    eps = 0.1
    rl = adv.RobustLoss(model, method="free", threat=adv.Linf(eps), seed=0)
    loss = rl(x, y)
    d1 = rl.last["delta"]
    assert torch.equal(d1, torch.zeros_like(x))
    loss.backward()
    g1 = d1.grad.clone()
    rl(x, y).backward()
    d2 = rl.last["delta"]
    expected = ((d1.detach() + eps * g1.sign()).clamp(-eps, eps) + x).clamp(0, 1) - x
    assert torch.allclose(d2.detach(), expected, atol=1e-7)
    g2 = d2.grad.clone()
    rl(x, y)
    d3 = rl.last["delta"]
    expected3 = ((d2.detach() + eps * g2.sign()).clamp(-eps, eps) + x).clamp(0, 1) - x
    assert torch.allclose(d3.detach(), expected3, atol=1e-7)
    assert list(adv.replay([1, 2], 3)) == [1, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("method", ["pgd_at", "trades", "mart"])
def test_awp_restores_weights_and_uses_perturbed_gradient(method):
    model = make_cnn().eval()  # eval: BN buffers fixed, so the manual check is exact
    x, y = make_data()
    sd0 = {k: v.clone() for k, v in model.state_dict().items()}
    rl = adv.RobustLoss(model, method=method, threat=adv.Linf(0.1, steps=2), awp=0.01, seed=0)
    loss = rl(x, y)
    loss.backward()
    assert all(torch.equal(sd0[k], v) for k, v in model.state_dict().items())
    assert rl.last["awp_norm"] > 0
    # gradient equals the gradient of the plain loss evaluated at w + v
    if method == "pgd_at":
        x_adv = rl.last["x_adv"]
        names = [n for n, p in model.named_parameters() if p.ndim > 1]
        params = dict(model.named_parameters())
        lv = F.cross_entropy(model(x_adv), y)
        gs = torch.autograd.grad(lv, [params[n] for n in names])
        pert = {n: 0.01 * params[n].detach().norm() / g.norm() * g for n, g in zip(names, gs)}
        pp = {n: p.detach() + pert.get(n, 0) for n, p in params.items()}
        pp = {n: v.requires_grad_(True) for n, v in pp.items()}
        out = torch.func.functional_call(model, {**pp, **dict(model.named_buffers())}, (x_adv,))
        ref = torch.autograd.grad(F.cross_entropy(out, y), list(pp.values()))
        for (n, p), r in zip(params.items(), ref):
            assert torch.allclose(p.grad, r, atol=1e-5), n


def test_determinism_one_step():
    x, y = make_data()
    out = []
    for _ in range(2):
        model = make_cnn().train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        rl = adv.RobustLoss(model, method="pgd_at", threat=adv.Linf(0.1, steps=3), seed=7)
        loss = rl(x, y)
        loss.backward()
        opt.step()
        out.append((loss.detach(), rl.last["x_adv"], [p.detach().clone() for p in model.parameters()]))
    assert torch.equal(out[0][0], out[1][0])
    assert torch.equal(out[0][1], out[1][1])
    assert all(torch.equal(a, b) for a, b in zip(out[0][2], out[1][2]))


def test_graph_only_to_parameters_and_user_mode_kept():
    model = make_cnn().train()
    x, y = make_data()
    rl = adv.RobustLoss(model, method="trades", threat=adv.Linf(0.1, steps=2))
    loss = rl(x, y)
    assert loss.ndim == 0 and loss.requires_grad
    assert model.training
    assert not rl.last["x_adv"].requires_grad
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_eps_curriculum_and_clean_mix():
    model = make_cnn()
    x, y = make_data()
    rl = adv.RobustLoss(model, method="pgd_at", threat=adv.Linf(0.2, steps=2), eps_warmup=4)
    eps = []
    for _ in range(5):
        rl(x, y)
        eps.append(rl.last["eps"])
        assert (rl.last["x_adv"] - x).abs().max() <= rl.last["eps"] * (1 + 1e-6)
    assert eps == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2])
    m = make_cnn().eval()
    r0 = adv.RobustLoss(m, method="pgd_at", threat=adv.Linf(0.1, steps=2), clean_weight=0.0, seed=1)
    r1 = adv.RobustLoss(m, method="pgd_at", threat=adv.Linf(0.1, steps=2), clean_weight=0.25, seed=1)
    la, lm = r0(x, y), r1(x, y)
    lc = F.cross_entropy(m(x), y)
    assert torch.allclose(lm, 0.75 * la + 0.25 * lc, atol=1e-6)


def test_fgsm_guard_warns_on_collapse():
    model = make_cnn()
    x, y = make_data()
    rl = adv.RobustLoss(model, method="fgsm_rs", threat=adv.Linf(0.3), guard_every=1)
    rl._guard_best = 0.9  # pretend the model was robust at an earlier check
    with pytest.warns(adv.CatastrophicOverfittingWarning):
        rl(x, y)
    assert rl.co_events == 1
    for v in ("n_fgsm", "gradalign"):
        r = adv.RobustLoss(model, method="fgsm_rs", threat=adv.Linf(0.1), fgsm_variant=v)
        loss = r(x, y)
        loss.backward()
        assert torch.isfinite(loss)
    # N-FGSM: not projected to the eps ball (noise 2 eps + step eps), only to data_range
    r = adv.RobustLoss(model, method="fgsm_rs", threat=adv.Linf(0.1), fgsm_variant="n_fgsm")
    r(x, y)
    assert (r.last["x_adv"] - x).abs().max() <= 0.3 + 1e-6


def test_physical_and_augment_methods_segmentation():
    from conftest import TinyUNet

    net = TinyUNet(k=3)
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    y = (x[:, 0] > 0.5).long()
    rl = adv.RobustLoss(net, nn.CrossEntropyLoss(), method="physical",
                        threat=[adv.BiasField(eps_b=0.3, steps=2), adv.Motion(steps=2)])
    loss = rl(x, y)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)

    def noise(z, generator=None):
        return (z + 0.05 * torch.randn(z.shape, generator=generator)).clamp(0, 1)

    ra = adv.RobustLoss(net, nn.CrossEntropyLoss(), method="augment", artifacts=[noise], seed=0)
    rb = adv.RobustLoss(net, nn.CrossEntropyLoss(), method="augment", artifacts=[noise], seed=0)
    la, lb = ra(x, y), rb(x, y)
    assert torch.equal(la, lb)
    # JSD of identical predictions is zero
    z = torch.randn(4, 3)
    assert adv.jsd_consistency(z, z, z).abs() < 1e-6


def test_augment_with_registered_artifacts():
    import robustaug

    names = ["GaussianNoise", "GaussianBlur"]
    assert set(names) <= set(robustaug.list_artifacts())
    model = make_cnn()
    x, y = make_data()
    rl = adv.RobustLoss(model, method="augment", artifacts=names, severity=2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = rl(x, y)
    loss.backward()
    assert torch.isfinite(loss)


def test_bad_arguments():
    m = make_cnn()
    with pytest.raises(ValueError, match="method"):
        adv.RobustLoss(m, method="madry")
    with pytest.raises(ValueError, match="awp"):
        adv.RobustLoss(m, method="fgsm_rs", awp=0.01)
    with pytest.raises(ValueError, match="artifacts"):
        adv.RobustLoss(m, method="augment")
    with pytest.raises(ValueError, match="data_range"):
        adv.RobustLoss(m)(torch.full((2, 1, 8, 8), 2.0), torch.zeros(2, dtype=torch.long))
