"""Physical threats: parameters inside their set at every step, identity at 0, bounds, severities."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cnn

import robustaug.adversarial as adv

THREATS = [
    adv.BiasField(eps_b=0.3, control=3, steps=4),
    adv.Gamma(log_gamma=0.3, steps=4),
    adv.IntensityShift(steps=4),
    adv.Affine(degrees=5, translation_mm=2, steps=4),
    adv.Motion(degrees=2, translation_mm=2, segments=3, steps=4),
    adv.Ghosting(amplitude=0.5, steps=4),
    adv.Spike(amplitude=0.1, steps=4),
]


def _x(shape):
    g = torch.Generator().manual_seed(0)
    return 0.1 + 0.8 * torch.rand(shape, generator=g), torch.randint(0, 5, (shape[0],), generator=g)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("threat", THREATS, ids=lambda t: type(t).__name__)
@pytest.mark.parametrize("attack", ["pgd", "apgd"])
def test_params_inside_set_every_step(threat, dims, attack):
    shape = (3, 1, 12, 12) if dims == 2 else (2, 1, 6, 8, 8)
    x, y = _x(shape)
    model = make_cnn(dims=dims)
    rec = []
    if attack == "pgd":
        res = adv.pgd(model, x, y, threat, on_step=rec.append)
    else:
        res = adv.apgd(model, x, y, threat, n_iter=4, on_step=rec.append)
    assert rec
    for info in rec:
        assert threat.contains(info["theta"], x)
        assert info["x_adv"].min() >= 0 and info["x_adv"].max() <= 1
    assert res.x_adv.shape == x.shape
    # identity at theta = 0 (k-space threats up to FFT round-off on x >= 0)
    ident = threat.apply(x, threat.zeros(x), (0.0, 1.0))
    assert torch.allclose(ident, x, atol=1e-5)


def test_bias_field_bound_holds_everywhere():
    x, _ = _x((2, 1, 20, 20))
    th = adv.BiasField(eps_b=0.2, control=4)
    theta = th.init(x, torch.Generator().manual_seed(1))
    theta = th.project(theta * 5, x, None)  # pushed to the box faces
    b = th.field(x, theta)
    assert (b - 1).abs().max() <= 0.2 + 1e-6
    assert (b - 1).abs().max() > 0.15


def test_noise_budget_units():
    x, y = _x((3, 1, 10, 10))
    th = adv.NoiseBudget(sigma=0.05, steps=3)
    rec = []
    adv.pgd(make_cnn(), x, y, th, on_step=rec.append)
    for info in rec:
        assert (th.size(info["theta"]) <= 0.05 * (1 + 1e-5)).all()
    snr = adv.NoiseBudget(snr=10)
    s = snr.sigma_for(x)
    assert s.shape == (3,) and (s > 0).all()
    ct = adv.NoiseBudget(dose_fraction=0.25, sigma_ref=10.0)
    assert ct.sigma_for(x)[0] == pytest.approx(10 * 3**0.5)
    with pytest.raises(ValueError, match="exactly one"):
        adv.NoiseBudget(sigma=1.0, snr=10)


def test_motion_translation_is_a_phase_ramp():
    # one segment, integer translation: a circular shift of the image
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 5:9, 6:10] = 1.0
    th = adv.Motion(segments=1, degrees=0.0, translation_mm=3.0)
    theta = torch.tensor([[[0.0, 2.0, 3.0]]])  # rot, t_H, t_W (mm, spacing 1)
    out = th.apply(x, theta, None)
    assert torch.allclose(out, torch.roll(x, shifts=(2, 3), dims=(2, 3)), atol=1e-4)


@pytest.mark.parametrize("cls", [adv.BiasField, adv.Gamma, adv.Affine, adv.Motion, adv.Ghosting,
                                 adv.Spike, adv.IntensityShift, adv.NoiseBudget])
def test_from_severity_monotone_budgets(cls):
    threats = [cls.from_severity(k) for k in range(1, 6)]
    assert all(t.severity_source.startswith(("builtin", "artifact:")) for t in threats)
    with pytest.raises(ValueError, match="severity"):
        cls.from_severity(0)


def test_spike_threat_covers_the_random_artifact_samples():
    import math

    import robustaug

    if "Spike" not in robustaug.list_artifacts():
        pytest.skip("Spike artifact not registered")
    x, _ = _x((64, 1, 16, 16))
    for k in (1, 3, 5):
        art = robustaug.create("Spike", severity=k)
        th = adv.Spike.from_severity(k)
        assert th.severity_source == "artifact:Spike"
        p = art.sample_params(x, torch.Generator().manual_seed(k))
        kv = p["k"].float()  # (B, S, 2) cycles per FOV
        half = torch.tensor([8.0, 8.0])
        dist = (kv / half).norm(dim=-1)
        ang = torch.atan2(kv[..., 1], kv[..., 0]) % (2 * math.pi)
        theta = torch.stack([p["amplitude"].float(), p["phase"].float(), dist, ang], -1)
        assert th.contains(theta, x, tol=1e-5)
        # same image as the artifact for the same parameters
        assert torch.allclose(th.apply(x, theta, None), art.apply(x, p), atol=1e-4)
