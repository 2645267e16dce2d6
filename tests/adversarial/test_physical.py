"""Physical threats: parameters inside their set at every step, identity at 0, bounds, severities."""

from __future__ import annotations

import pytest
import torch
from conftest import make_cnn

import robustaug.adversarial as adv
import robustaug.adversarial.physical as P

THREATS = [
    adv.BiasField(eps_b=0.3, steps=4),
    adv.BiasField(peak_to_peak_percent=(10.0, 40.0), n_control=4, steps=4),
    adv.Gamma(log_gamma=(-0.3, 0.3), steps=4),
    adv.IntensityShift(steps=4),
    adv.Affine(degrees=5, translation_mm=2, steps=4),
    adv.Motion(degrees=2, translation_mm=2, num_events=(1, 3), moved_energy=(0.05, 0.3), steps=4),
    adv.Motion(degrees=(1, 3), translation_mm=(0.5, 2), num_events=2, steps=4),
    adv.Ghosting(amplitude=(0.0, 0.5), steps=4),
    adv.Spike(amplitude=0.1, steps=4),
    P.RicianNoise(sigma=(0.02, 0.08), steps=4),
]


def _x(shape):
    g = torch.Generator().manual_seed(0)
    return 0.1 + 0.8 * torch.rand(shape, generator=g), torch.randint(0, 5, (shape[0],), generator=g)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("threat", THREATS, ids=lambda t: f"{type(t).__name__}-{id(t) % 997}")
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
    th = adv.BiasField(eps_b=0.2)
    theta = th.init(x, torch.Generator().manual_seed(1))
    theta = th.project(theta * 5, x, None)  # pushed to the box faces
    theta[:, 0] = 0.4  # the largest peak-to-peak of the set
    b = th.field(x, theta)
    assert (b - 1).abs().max() <= 0.2 + 1e-6
    assert (b - 1).abs().max() > 0.15


@pytest.mark.parametrize("k", [1, 3, 5])
def test_bias_field_peak_to_peak_is_the_severity_at_every_step(k):
    import robustaug

    x, y = _x((3, 1, 16, 16))
    th = adv.BiasField.from_severity(k, steps=3, normalize_over="fov")
    p = robustaug.create("BiasField", severity=k).peak_to_peak_percent[1] / 100
    rec = []
    adv.pgd(make_cnn(), x, y, th, data_range=None, on_step=rec.append)
    for info in rec:
        b = th.field(x, info["theta"]).flatten(1)
        assert torch.allclose(b.amax(1) - b.amin(1), torch.full((3,), p), atol=1e-5)
        assert torch.allclose(b.mean(1), torch.ones(3), atol=1e-5)


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
    # one event at the start of the acquisition, integer translation: a circular shift of the image
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 5:9, 6:10] = 1.0
    th = adv.Motion(num_events=1, degrees=0.0, translation_mm=3.0, moved_energy=1.0)
    # rot, t_H, t_W (mm, spacing 1), time, moved energy, number of events
    theta = torch.tensor([[[0.0, 2.0, 3.0, 0.0, 1.0, 1.0]]])
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

    assert "Spike" in robustaug.list_artifacts()
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


# ------------------------------------------------------------ threats that are the artifact itself
ARTIFACT_THREATS = ["BiasField", "Gamma", "Motion", "Ghosting"]


def _image(dims, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (3, 1, 16, 16) if dims == 2 else (2, 1, 8, 10, 10)
    x = 0.1 + 0.8 * torch.rand(shape, generator=g)
    x[:, :, :2] = 0.0  # a dark band: foreground regions and soft magnitudes matter
    return x


def _random_feasible(th, x, g):
    """Discrete / timing entries from a random artifact draw, continuous ones uniform in the set."""
    theta = th.project(th.init(x, g), x, None)
    lo, hi = th.bounds(x)
    free = torch.as_tensor(th.free(x)).bool()
    u = torch.rand(theta.shape, generator=g)
    theta = torch.where(free, lo + (hi - lo) * u, theta)
    return th.project(theta, x, None)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("name", ARTIFACT_THREATS)
def test_threat_equals_artifact_on_random_feasible_params(name, k, dims):
    import robustaug

    art = robustaug.create(name, severity=k)  # an independent instance of the artifact
    th = getattr(P, name).from_severity(k, steps=3)
    assert th.severity_source == f"artifact:{name}"
    x = _image(dims, k)
    g = torch.Generator().manual_seed(10 * k + dims)
    for _ in range(3):
        theta = _random_feasible(th, x, g)
        assert th.contains(theta, x)
        y_threat = th.apply(x, theta, None)
        y_art = art.apply(x, th.to_params(x, theta))
        assert torch.allclose(y_threat, y_art, atol=1e-5), float((y_threat - y_art).abs().max())
    # every random draw of the artifact is a feasible theta and gives the artifact's image
    for s in range(3):
        p = art.sample_params(x, torch.Generator().manual_seed(s))
        theta = th.from_params(x, p)
        assert th.contains(theta, x, tol=1e-5)
        assert torch.allclose(th.apply(x, theta, None), art.apply(x, p), atol=1e-5)


@pytest.mark.parametrize("name", [*ARTIFACT_THREATS, "RicianNoise"])
def test_attack_moves_only_the_continuous_parameters(name):
    x = _image(2)
    y = torch.randint(0, 5, (3,), generator=torch.Generator().manual_seed(0))
    th = getattr(P, name).from_severity(3, steps=3)
    rec = []
    adv.pgd(make_cnn(), x, y, th, data_range=None, on_step=rec.append, seed=1)
    th0 = th.project(th.init(x, torch.Generator().manual_seed(1)), x, None)  # the start of restart 0
    fixed = ~torch.as_tensor(th.free(x)).bool().expand_as(th0)
    for info in rec:
        assert th.contains(info["theta"], x)
        assert torch.equal(info["theta"][fixed], th0[fixed])
    # the continuous parameters get a gradient through the artifact's kernel
    theta = th0.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(make_cnn()(th.apply(x, theta, None)).square().sum(), theta)
    free = torch.as_tensor(th.free(x)).bool().expand_as(g)
    lo, hi = th.bounds(x)
    movable = free & ((hi - lo) > 0).expand_as(g)
    assert torch.isfinite(g).all() and g[movable].abs().sum() > 0


@pytest.mark.parametrize("k", [1, 3, 5])
def test_rician_threat_is_the_artifact_at_its_noise_power(k):
    import robustaug
    from robustaug.functional.mri_field import rician_noise

    art = robustaug.create("RicianNoise", severity=k)
    th = P.RicianNoise.from_severity(k)
    assert th.severity_source == "artifact:RicianNoise"
    x = _image(2, k)
    # the artifact's own draws are feasible (inside the 3-sigma RMS ball) and reproduced exactly
    for s in range(4):
        p = art.sample_params(x, torch.Generator().manual_seed(s))
        theta = th.from_params(x, p)
        assert th.contains(theta, x)
        assert torch.allclose(th.apply(x, theta, None), art.apply(x, p), atol=1e-5)
        assert torch.allclose(th.apply(x, theta, None), rician_noise(x, p["sigma"].float(), p["seed"]),
                              atol=1e-5)
    # any feasible theta: the Rician formula with sigma = s * max(x) and the chosen realisation
    g = torch.Generator().manual_seed(k)
    theta = th.project(th.init(x, g) * 3, x, None)  # pushed onto the ball's surface
    assert th.contains(theta, x)
    assert torch.allclose(th.size(theta), torch.full((3,), th.rho(x)), atol=1e-5)
    sig = th.to_params(x, theta)["sigma"].float().reshape(-1, 1, 1, 1)
    n = theta[:, 1:].reshape(3, 2, *x.shape[1:])
    ref = ((x + sig * n[:, 0]) ** 2 + (sig * n[:, 1]) ** 2).sqrt()
    assert torch.allclose(th.apply(x, theta, None), ref, atol=1e-5)
    lo = art.sigma[0]
    assert torch.allclose(sig.flatten(), lo * x.flatten(1).amax(1), rtol=1e-6)


@pytest.mark.parametrize("name", [*ARTIFACT_THREATS, "RicianNoise", "Spike"])
def test_study_lookup_and_perturb(name):
    from robustaug.evaluate.sweeps import physical_threat

    th = physical_threat(name, 2, steps=2)
    assert type(th).artifact == name and th.steps == 2
    x = _image(2)
    y = torch.randint(0, 5, (3,), generator=torch.Generator().manual_seed(0))
    state = torch.get_rng_state()
    xa = adv.perturb(make_cnn(), x, y, threat=th, attack="pgd", data_range=None, seed=3)
    xb = adv.perturb(make_cnn(), x, y, threat=th, attack="pgd", data_range=None, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert xa.shape == x.shape and torch.equal(xa, xb) and torch.isfinite(xa).all()
