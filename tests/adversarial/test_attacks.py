"""Attack invariants (on_step), determinism, normalisation, autocast, shapes, losses."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cnn, make_data
from torch import nn

import robustaug.adversarial as adv

THREATS = [adv.Linf(0.1, steps=6), adv.L2(0.5, steps=6), adv.L1(2.0, steps=6, restarts=2)]


@pytest.mark.parametrize("threat", THREATS, ids=lambda t: t.norm)
@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_every_iterate_feasible_and_best_monotone(threat, attack):
    model = make_cnn()
    x, y = make_data()
    rec = []
    if attack == "pgd":
        res = adv.pgd(model, x, y, threat, on_step=rec.append)
        assert len(rec) == threat.steps * threat.restarts
    else:
        res = adv.apgd(model, x, y, threat, n_iter=8, on_step=rec.append)
        assert len(rec) == 8
    for info in rec:
        d = info["x_adv"] - x
        assert (threat.size(d) <= threat.eps * (1 + 1e-6)).all()
        assert info["x_adv"].min() >= 0 and info["x_adv"].max() <= 1
    for r in {i["restart"] for i in rec}:
        best = torch.stack([i["best_loss"] for i in rec if i["restart"] == r])
        assert (best[1:] >= best[:-1]).all()
    assert (threat.size(res.x_adv - x) <= threat.eps * (1 + 1e-6)).all()


def test_pgd_increases_loss_and_beats_fgsm():
    model = make_cnn()
    x, y = make_data(32)
    ce = lambda xa: nn.functional.cross_entropy(model.eval()(xa), y, reduction="none")  # noqa: E731
    r = adv.pgd(model, x, y, adv.Linf(0.2, steps=10))
    f = adv.fgsm(model, x, y, 0.2)
    with torch.no_grad():
        assert ce(r.x_adv).mean() > ce(x).mean()
        assert ce(r.x_adv).mean() >= ce(f.x_adv).mean() - 1e-4
        # best-iterate: returned loss equals the loss at x_adv
        assert torch.allclose(ce(r.x_adv), r.loss, atol=1e-5)


def test_fgsm_formula():
    model = make_cnn().eval()
    x, y = make_data()
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(xr), y, reduction="sum"), xr)
    expected = (x + 0.05 * g.sign()).clamp(0, 1)
    assert torch.allclose(adv.fgsm(model, x, y, 0.05).x_adv, expected, atol=1e-7)


def test_same_seed_bit_identical_and_rng_free():
    model = make_cnn()
    x, y = make_data()
    th = adv.Linf(0.1, steps=4, restarts=2)
    torch.manual_seed(0)
    a = adv.pgd(model, x, y, th, seed=3).x_adv
    torch.manual_seed(999)
    _ = torch.rand(10)
    b = adv.pgd(model, x, y, th, seed=3).x_adv
    c = adv.pgd(model, x, y, th, seed=4).x_adv
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    assert torch.equal(adv.perturb(model, x, y, th, generator=g1, attack="apgd", n_iter=3),
                       adv.perturb(model, x, y, th, generator=g2, attack="apgd", n_iter=3))


class Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).reshape(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).reshape(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


@pytest.mark.parametrize("attack", ["pgd", "apgd", "square", "fab_t", "apgd_t"])
def test_normalize_inside_equals_argument(attack):
    mean, std = [0.3, 0.5, 0.4], [0.2, 0.25, 0.3]
    core = make_cnn(in_ch=3)
    inside = nn.Sequential(Normalize(mean, std), core)
    x, y = make_data(shape=(3, 8, 8))
    kw = {"pgd": {}, "apgd": {"n_iter": 5}, "square": {"n_queries": 20},
          "fab_t": {"n_iter": 3, "n_target_classes": 2},
          "apgd_t": {"n_iter": 3, "n_target_classes": 2}}[attack]
    th = adv.Linf(0.1, steps=4)
    a = adv.perturb(inside, x, y, th, attack=attack, seed=1, **kw)
    b = adv.perturb(core, x, y, th, attack=attack, seed=1, normalize=(mean, std), **kw)
    assert torch.allclose(a, b, atol=1e-6)
    assert (a - x).abs().max() <= 0.1 * (1 + 1e-6)


def test_autocast_bf16_cpu():
    model = make_cnn()
    x, y = make_data()
    rec = []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r = adv.pgd(model, x, y, adv.Linf(0.1, steps=4), on_step=rec.append)
    assert r.x_adv.dtype == torch.float32
    assert torch.isfinite(r.x_adv).all()
    assert all(i["theta"].dtype == torch.float32 for i in rec)
    assert all((i["x_adv"] - x).abs().max() <= 0.1 * (1 + 1e-6) for i in rec)
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1


def test_user_loss_callable_and_targeted():
    model = make_cnn()
    x, y = make_data(16)
    seen = {}

    def my_loss(logits, t):
        seen["called"] = True
        return nn.functional.cross_entropy(logits.float(), t, reduction="none")

    r = adv.pgd(model, x, y, adv.Linf(0.3, steps=10), loss=my_loss)
    assert seen["called"]
    target = (y + 1) % 5
    t = adv.pgd(model, x, target, adv.Linf(0.5, steps=20), targeted=True)
    with torch.no_grad():
        ce_adv = nn.functional.cross_entropy(model.eval()(t.x_adv), target)
        ce0 = nn.functional.cross_entropy(model(x), target)
    assert ce_adv < ce0  # moved towards the target
    assert r.x_adv.shape == x.shape


def test_early_stop_freezes_successful_samples():
    model = make_cnn()
    x, y = make_data(16)
    rec = []
    adv.pgd(model, x, y, adv.Linf(0.3, steps=6), early_stop=True, on_step=rec.append)
    with torch.no_grad():
        pred0 = model.eval()(x).argmax(1)
    wrong0 = pred0 != y  # already misclassified: never moved after the first step
    if wrong0.any():
        th = torch.stack([i["theta"][wrong0] for i in rec])
        assert torch.equal(th[0], th[-1])


def test_losses_formulas():
    z = torch.tensor([[2.0, 1.0, 0.5, -1.0], [0.0, 3.0, 1.0, 2.0]])
    y = torch.tensor([0, 2])
    assert torch.allclose(adv.margin_loss(z, y), torch.tensor([1.0 - 2.0, 3.0 - 1.0]))
    dlr = adv.dlr_loss(z, y)
    assert torch.allclose(dlr, torch.tensor([-(2 - 1) / (2 - 0.5), -(1 - 3) / (3 - 1)]))
    assert torch.allclose(adv.ce_loss(z, y), nn.functional.cross_entropy(z, y, reduction="none"))
    # DLR is invariant to shift and positive scaling of the logits
    assert torch.allclose(adv.dlr_loss(3 * z + 7, y), dlr, atol=1e-6)
    with pytest.raises(ValueError, match="loss"):
        adv.get_loss("hinge")


def test_l1_projection_exact():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(5, 30, generator=g)
    from robustaug.adversarial.threats import project_l1_ball

    p = project_l1_ball(v, 1.5)
    assert torch.allclose(p.abs().sum(1), torch.full((5,), 1.5), atol=1e-5)
    # optimality: projection is closer than a scaled-down version
    s = v * (1.5 / v.abs().sum(1, keepdim=True))
    assert ((p - v).norm(dim=1) <= (s - v).norm(dim=1) + 1e-6).all()


@pytest.mark.parametrize("attack", ["pgd", "fgsm", "fgsm_rs", "apgd", "apgd_t", "square", "fab_t"])
def test_all_attacks_on_3d_volumes(attack):
    model = make_cnn(dims=3)
    x, y = make_data(4, shape=(1, 6, 8, 8))
    kw = {"apgd": {"n_iter": 3}, "apgd_t": {"n_iter": 2, "n_target_classes": 2},
          "square": {"n_queries": 10}, "fab_t": {"n_iter": 2, "n_target_classes": 2}}.get(attack, {})
    xa = adv.perturb(model, x, y, adv.Linf(0.1, steps=2), attack=attack, **kw)
    assert xa.shape == x.shape
    assert (xa - x).abs().max() <= 0.1 * (1 + 1e-6)
    assert xa.min() >= 0 and xa.max() <= 1


def test_errors_are_actionable():
    with pytest.raises(ValueError, match="eps"):
        adv.Linf(eps=-1)
    with pytest.raises(ValueError, match="restarts"):
        adv.L2(restarts=0)
    with pytest.raises(ValueError, match="attack"):
        adv.perturb(make_cnn(), *make_data(), attack="deepfool")
    with pytest.raises(NotImplementedError):
        adv.square(make_cnn(), *make_data(), adv.L2(0.5))
