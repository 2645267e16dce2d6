"""The Transform contract beyond the registry harness: errors, layouts, compositions, seeding."""

from __future__ import annotations

import json
import math
import pickle
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import robustaug as ra
from robustaug.core.checks import check_range
from robustaug.core.rng import mix_seeds

# ----------------------------------------------------------------------------- errors


def test_unknown_keyword_raises_type_error_naming_it():
    with pytest.raises(TypeError, match="stdd"):
        ra.GaussianNoise(stdd=0.1)


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_p_outside_unit_interval(p):
    with pytest.raises(ValueError, match="`p` must be in \\[0, 1\\]"):
        ra.GaussianNoise(p=p)


def test_p_wrong_type():
    with pytest.raises(TypeError, match="`p`"):
        ra.GaussianNoise(p="always")


@pytest.mark.parametrize("s", [-1, 6])
def test_severity_out_of_range(s):
    with pytest.raises(ValueError, match="`severity` must be in 0..5"):
        ra.GaussianNoise.from_severity(s)
    with pytest.raises(ValueError, match="severity"):
        ra.create("GaussianNoise", severity=s)


def test_severity_not_int():
    with pytest.raises(TypeError, match="severity"):
        ra.GaussianNoise.from_severity(2.5)


def test_wrong_rank_has_tip():
    with pytest.raises(ValueError, match="Tip: a single-channel 2D image needs a channel axis"):
        ra.GaussianNoise()(torch.zeros(16, 16))
    with pytest.raises(ValueError, match="must have 3, 4 or 5 dimensions"):
        ra.GaussianNoise()(torch.zeros(1, 1, 1, 1, 4, 4))


def test_non_tensor_input():
    with pytest.raises(TypeError, match="torch.Tensor.*from_numpy"):
        ra.GaussianNoise()(np.zeros((1, 8, 8)))
    with pytest.raises(TypeError, match="torch.Tensor"):
        ra.GaussianNoise()([[0.0]])


def test_complex_and_bool_inputs_rejected():
    with pytest.raises(TypeError, match="complex"):
        ra.GaussianNoise()(torch.zeros(1, 4, 4, dtype=torch.complex64))
    with pytest.raises(TypeError, match="dtype"):
        ra.GaussianNoise()(torch.zeros(1, 4, 4, dtype=torch.bool))


@pytest.mark.parametrize("bad", [float("nan"), (0.0, float("nan")), float("inf")])
def test_nan_parameter(bad):
    with pytest.raises(ValueError, match="`std` must be a finite number"):
        ra.GaussianNoise(std=bad)


def test_reversed_and_out_of_bounds_ranges():
    with pytest.raises(ValueError, match="lo <= hi"):
        ra.GaussianBlur(sigma=(2.0, 1.0))
    with pytest.raises(ValueError, match="`std` must lie in"):
        ra.GaussianNoise(std=-0.1)
    with pytest.raises(TypeError, match="`factor` must be a number or a \\(lo, hi\\) pair"):
        ra.Downsample(factor="2x")


def test_sigma_mm_needs_spacing():
    with pytest.raises(ValueError, match="spacing"):
        ra.GaussianBlur(sigma_mm=1.0)


def test_unknown_artifact_suggests():
    with pytest.raises(KeyError, match="Did you mean GaussianNoise"):
        ra.create("GausianNoise")


def test_params_wrong_batch_size():
    t = ra.GaussianNoise(seed=0)
    _, params = t(torch.zeros(2, 1, 8, 8), return_params=True)
    with pytest.raises(ValueError, match="leading dimension 3"):
        t(torch.zeros(3, 1, 8, 8), params=params)


def test_unsupported_dims():
    class Only3D(ra.GaussianNoise):
        dims = (3,)

    with pytest.raises(ValueError, match="supports 3D only.*spatial_dims=3"):
        Only3D()(torch.zeros(2, 1, 8, 8))


# ----------------------------------------------------------------------------- layout


def test_four_d_ambiguity_resolved_by_spatial_dims():
    x = torch.zeros(2, 1, 8, 8)
    t2 = ra.GaussianNoise(std=1.0, seed=0)
    _, p2 = t2(x, return_params=True)
    assert p2["std"].shape == (2,)  # a batch of two 2D images
    t3 = ra.GaussianNoise(std=1.0, seed=0, spatial_dims=3)
    _, p3 = t3(x, return_params=True)
    assert p3["std"].shape == (1,)  # one volume (C=2, D=1, H=8, W=8)


def test_integer_input_rounded_and_clipped():
    x = torch.full((1, 16, 16), 250, dtype=torch.uint8)
    y = ra.GaussianNoise(std=40.0, seed=0)(x)
    assert y.dtype == torch.uint8 and int(y.max()) == 255 and int(y.min()) < 250
    xi = torch.full((1, 16, 16), -1000, dtype=torch.int16)  # CT air in HU
    yi = ra.GaussianNoise(std=10.0, seed=0)(xi)
    assert yi.dtype == torch.int16 and abs(float(yi.float().mean()) + 1000) < 3


def test_half_precision_computed_in_float32():
    x = torch.rand(2, 1, 16, 16)
    y16 = ra.GaussianBlur(sigma=1.0)(x.half())
    y32 = ra.GaussianBlur(sigma=1.0)(x)
    assert y16.dtype == torch.float16
    assert torch.allclose(y16.float(), y32, atol=2e-3)


# ----------------------------------------------------------------------------- physics of generics


def test_gaussian_noise_statistics():
    y = ra.GaussianNoise(std=0.2, seed=3)(torch.zeros(4, 1, 128, 128))
    assert abs(float(y.mean())) < 3 * 0.2 / 256
    assert abs(float(y.std()) - 0.2) < 0.005


def test_gaussian_noise_relative_to_range():
    x = torch.linspace(-1000, 1000, 64 * 64).reshape(1, 64, 64)
    y = ra.GaussianNoise(std=0.01, reference="range", seed=0)(x)
    assert abs(float((y - x).std()) - 20.0) < 1.0


def test_poisson_noise_mean_and_variance():
    x = torch.full((2, 1, 128, 128), 0.3)
    y = ra.PoissonNoise(photons=200.0, seed=0)(x)
    assert abs(float(y.mean()) - 0.3) < 0.003
    assert abs(float(y.var()) / (0.3 / 200.0) - 1) < 0.05


def test_gaussian_blur_matches_scipy_and_preserves_mass():
    from scipy.ndimage import gaussian_filter

    x = torch.rand(1, 1, 40, 40, dtype=torch.float64)
    y = ra.GaussianBlur(sigma=1.7)(x)
    ref = gaussian_filter(x[0, 0].numpy(), 1.7, mode="mirror", truncate=3.0)
    inner = (slice(8, -8), slice(8, -8))
    assert np.allclose(y[0, 0].numpy()[inner], ref[inner], atol=2e-3)
    delta = torch.zeros(1, 1, 41, 41, dtype=torch.float64)
    delta[0, 0, 20, 20] = 1
    psf = ra.GaussianBlur(sigma=2.0)(delta)[0, 0]
    assert abs(float(psf.sum()) - 1) < 1e-9
    # second moment of the PSF along one axis equals sigma^2 (within kernel truncation)
    t = torch.arange(41, dtype=torch.float64) - 20
    var = float((psf.sum(0) * t**2).sum())
    assert abs(var - 4.0) < 0.05


def test_gaussian_blur_mm_uses_spacing():
    delta = torch.zeros(1, 1, 41, 41, dtype=torch.float64)
    delta[0, 0, 20, 20] = 1
    psf = ra.GaussianBlur(sigma_mm=2.0, spacing=(1.0, 0.5))(delta)[0, 0]
    t = torch.arange(41, dtype=torch.float64) - 20
    var_h = float((psf.sum(1) * t**2).sum())
    var_w = float((psf.sum(0) * t**2).sum())
    assert abs(var_h - 4.0) < 0.1 and abs(var_w - 16.0) < 0.4


def test_motion_blur_psf_is_a_line_of_requested_length():
    delta = torch.zeros(1, 1, 41, 41, dtype=torch.float64)
    delta[0, 0, 20, 20] = 1
    psf = ra.MotionBlur(length=11.0, angle=0.0)(delta)[0, 0]
    assert abs(float(psf.sum()) - 1) < 1e-9
    rows = psf.sum(1)
    assert float(rows[20]) > 0.99  # horizontal: all mass on one row
    t = torch.arange(41, dtype=torch.float64) - 20
    var = float((psf.sum(0) * t**2).sum())
    # uniform segment of length L has variance L^2/12 (+ interpolation smoothing)
    assert abs(var - 11.0**2 / 12) < 0.5
    vert = ra.MotionBlur(length=11.0, angle=90.0)(delta)[0, 0]
    assert float(vert.sum(0)[20]) > 0.99


def test_downsample_removes_high_frequencies():
    n = 64
    t = torch.arange(n, dtype=torch.float64)
    stripes = torch.cos(2 * math.pi * 0.4 * t).reshape(1, 1, 1, n).expand(1, 1, n, n)
    low = torch.cos(2 * math.pi * 0.05 * t).reshape(1, 1, 1, n).expand(1, 1, n, n)
    d = ra.Downsample(factor=4.0)
    assert float(d(stripes).std()) < 0.05 * float(stripes.std())  # above new Nyquist: gone
    assert float(d(low).std()) > 0.6 * float(low.std())  # well below: kept
    assert torch.equal(ra.Downsample(factor=1.0)(low), low)


def test_gamma_and_contrast_formulas():
    x = torch.linspace(0, 1, 100, dtype=torch.float64).reshape(1, 10, 10)
    y = ra.Gamma(log_gamma=math.log(2.0))(x)
    assert torch.allclose(y, x**2, atol=1e-9)
    c = ra.Contrast(factor=0.25)(x)
    assert torch.allclose(c, x.mean() + 0.25 * (x - x.mean()), atol=1e-12)


# ----------------------------------------------------------------------------- seeding


def test_seeded_transform_never_touches_global_rng():
    torch.manual_seed(0)
    np.random.seed(0)  # noqa: NPY002
    random.seed(0)
    x = torch.rand(3, 1, 16, 16)
    s = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())  # noqa: NPY002
    t = ra.Compose([ra.GaussianNoise(), ra.OneOf([ra.GaussianBlur(), ra.Gamma()])], seed=5)
    t(x)
    assert torch.equal(s[0], torch.get_rng_state())
    assert np.array_equal(s[1], np.random.get_state()[1])  # noqa: NPY002
    assert s[2] == random.getstate()


def test_unseeded_follows_torch_manual_seed():
    x = torch.zeros(1, 8, 8)
    torch.manual_seed(7)
    a = ra.GaussianNoise()(x)
    torch.manual_seed(7)
    b = ra.GaussianNoise()(x)
    assert torch.equal(a, b)


def test_set_random_state_reseeds():
    t = ra.GaussianNoise(seed=1)
    x = torch.zeros(1, 8, 8)
    a = t.set_random_state(11)(x)
    b = t.set_random_state(11)(x)
    assert torch.equal(a, b)
    assert t.seed == 11


def test_generator_rederived_when_initial_seed_changes():
    t = ra.GaussianNoise(seed=1)
    x = torch.zeros(1, 8, 8)
    torch.manual_seed(100)
    a = t(x)
    torch.manual_seed(200)  # what a new DataLoader worker/epoch does to initial_seed()
    b = t(x)
    torch.manual_seed(100)
    c = t(x)
    assert not torch.equal(a, b)
    assert torch.equal(a, c)


def test_mix_seeds_stable_and_spread():
    assert mix_seeds(1, 2) == mix_seeds(1, 2)
    assert mix_seeds(1, 2) != mix_seeds(2, 1)
    assert len({mix_seeds(0, k) for k in range(1000)}) == 1000


def test_seed_type_checked():
    with pytest.raises(TypeError, match="`seed`"):
        ra.GaussianNoise(seed="0")


# ----------------------------------------------------------------------------- compositions


def _comps():
    return [
        ra.Compose([ra.GaussianBlur(), ra.GaussianNoise()], seed=0),
        ra.RandomApply([ra.Gamma(), ra.GaussianNoise()], p=0.5, seed=0),
        ra.OneOf([ra.GaussianBlur(), ra.GaussianNoise(), ra.Contrast()], weights=[1, 2, 1], seed=0),
        ra.SomeOf([ra.GaussianBlur(), ra.GaussianNoise(), ra.Contrast()], n=(1, 2), seed=0),
    ]


@pytest.mark.parametrize("t", _comps(), ids=lambda t: type(t).__name__)
def test_composition_replay_pickle_and_identity(t):
    x = torch.rand(6, 1, 16, 16)
    ref = x.clone()
    y, params = t(x, return_params=True)
    assert torch.equal(x, ref)
    assert torch.equal(t(x, params=params), y)
    js = json.loads(json.dumps(ra.params_to_json(params)))
    assert torch.allclose(t(x, params=js), y, atol=1e-6)
    t2 = pickle.loads(pickle.dumps(t))
    assert isinstance(t2, type(t))
    t.p = 0.0
    assert torch.equal(t(x), x)


def test_oneof_applies_exactly_one():
    t = ra.OneOf([ra.GaussianNoise(std=0.1), ra.Contrast(factor=0.5)], seed=0)
    x = torch.rand(64, 1, 8, 8)
    _, params = t(x, return_params=True)
    choice = params["choice"]
    assert set(choice.tolist()) == {0, 1}
    assert params["transforms"][0]["std"].shape[0] == int((choice == 0).sum())


def test_oneof_weights_respected():
    t = ra.OneOf([ra.GaussianNoise(), ra.Contrast()], weights=[3, 1], seed=0)
    _, params = t(torch.rand(4000, 1, 2, 2), return_params=True)
    frac = float((params["choice"] == 0).double().mean())
    assert abs(frac - 0.75) < 0.03


def test_someof_counts():
    t = ra.SomeOf([ra.GaussianNoise(), ra.Contrast(), ra.Gamma()], n=2, seed=0)
    _, params = t(torch.rand(50, 1, 4, 4), return_params=True)
    assert (params["chosen"].sum(1) == 2).all()


def test_random_apply_rate():
    t = ra.RandomApply(ra.GaussianNoise(std=0.1), p=0.3, seed=0)
    _, params = t(torch.rand(4000, 1, 2, 2), return_params=True)
    assert abs(float(params["apply"].double().mean()) - 0.3) < 0.03


def test_composition_rejects_non_transforms():
    with pytest.raises(TypeError, match=r"`transforms\[1\]` must be a robustaug Transform"):
        ra.Compose([ra.GaussianNoise(), lambda x: x])
    with pytest.raises(ValueError, match="weights"):
        ra.OneOf([ra.GaussianNoise()], weights=[1, 2])


def test_compose_dims_are_intersection():
    class Only3D(ra.GaussianNoise):
        dims = (3,)

    c = ra.Compose([ra.GaussianNoise(), Only3D()])
    assert c.dims == (3,)


# ----------------------------------------------------------------------------- registry


def test_list_and_create():
    names = ra.list_artifacts(modality="any")
    assert {"GaussianNoise", "PoissonNoise", "GaussianBlur", "MotionBlur", "Downsample", "Gamma"} <= set(names)
    assert set(ra.list_artifacts(dims=3)) <= set(ra.list_artifacts())
    t = ra.create("gaussiannoise", std=0.3)
    assert isinstance(t, ra.GaussianNoise) and t.std == (0.3, 0.3)
    with pytest.raises(ValueError, match="dims"):
        ra.list_artifacts(dims=4)


def test_check_range_forms():
    assert check_range(0.5, "a") == (0.5, 0.5)
    assert check_range((1, 2), "a") == (1.0, 2.0)
    assert check_range(torch.tensor([1.0, 2.0]), "a") == (1.0, 2.0)


# ----------------------------------------------------------------------------- hypothesis


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(["GaussianNoise", "GaussianBlur", "MotionBlur", "Downsample", "Gamma", "Contrast", "PoissonNoise"]),
    b=st.integers(0, 3),
    c=st.integers(1, 3),
    h=st.integers(4, 40),
    w=st.integers(4, 40),
    severity=st.integers(0, 5),
)
def test_any_shape_keeps_shape(name, b, c, h, w, severity):
    x = torch.rand(b, c, h, w)
    y = ra.create(name, severity=severity, seed=0)(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_targets_pass_through_untouched():
    img = torch.rand(2, 1, 16, 16)
    mask = torch.randint(0, 3, (2, 16, 16))
    t = ra.GaussianNoise(std=0.1, seed=0)
    out = t({"image": img, "mask": mask, "label": 1})
    assert out["mask"] is mask and out["label"] == 1
    assert not torch.equal(out["image"], img)
    y, m = t((img, mask))
    assert m is mask and y.shape == img.shape
    ref, params = t(img, return_params=True)
    replay, _ = t({"image": img}, params=params, return_params=True)
    assert torch.equal(replay["image"], ref)
    with pytest.raises(KeyError, match="'image' entry"):
        t({"img": img})


def test_seeded_global_rng_restores_everything():
    from robustaug.core.rng import seeded_global_rng

    torch.manual_seed(123)
    torch.rand(3)
    init, state = torch.initial_seed(), torch.get_rng_state()
    with seeded_global_rng(7):
        a = torch.rand(2)
        assert torch.initial_seed() == 7
    assert torch.initial_seed() == init and torch.equal(torch.get_rng_state(), state)
    with seeded_global_rng(7):
        assert torch.equal(torch.rand(2), a)


def test_explicit_generator_overrides_seed_and_process_state():
    x = torch.zeros(2, 1, 8, 8)
    t = ra.GaussianNoise(std=1.0, seed=5)
    torch.manual_seed(1)
    a = t(x, generator=torch.Generator().manual_seed(9))
    torch.manual_seed(2)  # changes initial_seed(), which re-derives the seeded stream...
    b = t(x, generator=torch.Generator().manual_seed(9))  # ...but not an explicit generator's
    assert torch.equal(a, b)
