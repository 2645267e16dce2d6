"""Contract checks for the k-space MRI artifacts (mirrors tests/contract for these classes)."""

from __future__ import annotations

import pickle

import pytest
import torch

from robustaug.artifacts import mri as A
from robustaug.functional.metrics import ssim

CLASSES = [
    A.Motion,
    A.Ghosting,
    A.NyquistGhost,
    A.Spike,
    A.Zipper,
    A.Gibbs,
    A.Undersampling,
    A.WrapAround,
]
CASES = [(cls, d) for cls in CLASSES for d in cls.dims]
IDS = [f"{c.__name__}-{d}d" for c, d in CASES]


def _x(cls, dims, batch=3):
    return cls.example_input(dims, batch=batch, size=32 if dims == 2 else 24)


@pytest.mark.parametrize(("cls", "dims"), CASES, ids=IDS)
def test_basic_contract(cls, dims):
    x = _x(cls, dims)
    x0 = x.clone()
    t = cls.from_severity(3, seed=0)
    y = t(x)
    assert torch.equal(x, x0)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()
    assert not torch.allclose(y, x)
    # replay
    y2 = t(x, params=t.last_params)
    torch.testing.assert_close(y, y2)
    # batched == per-sample with the same params
    from robustaug.core.transform import subset_params

    rec = t.last_params
    for i in range(x.shape[0]):
        yi = t(x[i : i + 1], params=subset_params(rec, torch.tensor([i])))
        torch.testing.assert_close(yi, y[i : i + 1], atol=1e-5, rtol=1e-5)
    # seeding
    a = cls.from_severity(3, seed=1)(x)
    b = cls.from_severity(3, seed=1)(x)
    c = cls.from_severity(3, seed=2)(x)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    # pickling
    t2 = pickle.loads(pickle.dumps(t))
    torch.testing.assert_close(t2(x, params=rec), y)
    # p=0 and severity 0
    assert torch.equal(cls.from_severity(0)(x), x)
    assert torch.equal(cls.from_severity(3, p=0.0)(x), x)
    # empty batch
    e = x[:0]
    assert cls.from_severity(3)(e).shape == e.shape


@pytest.mark.parametrize(("cls", "dims"), CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16, torch.uint8])
def test_dtypes(cls, dims, dtype):
    x = _x(cls, dims, batch=2)
    x = (x * 255).round().to(dtype) if dtype == torch.uint8 else x.to(dtype)
    y = cls.from_severity(3, seed=0)(x)
    assert y.shape == x.shape and y.dtype == x.dtype


@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_gradcheck(cls):
    if not cls.differentiable:
        pytest.skip("not declared differentiable")
    x = cls.example_input(2, batch=1, size=12).double()
    t = cls.from_severity(3, seed=0)
    t(x)
    params = t.last_params
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: t.apply(z, params), (xg,), eps=1e-6, atol=1e-5, fast_mode=True
    )


@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_severity_monotone(cls):
    x = cls.example_input(2, batch=2, size=64)
    scores = []
    for s in range(6):
        vals = [ssim(x, cls.from_severity(s, seed=k)(x), data_range=1.0).mean() for k in range(3)]
        scores.append(float(torch.stack(vals).mean()))
    for k in range(5):
        assert scores[k + 1] <= scores[k] + 0.01, scores


@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_global_rng_untouched(cls):
    x = _x(cls, 2)
    state = torch.get_rng_state()
    cls.from_severity(3, seed=0)(x)
    assert torch.equal(state, torch.get_rng_state())


def test_bad_arguments():
    with pytest.raises(ValueError, match="amplitude"):
        A.Ghosting(amplitude=-1.0)
    with pytest.raises(ValueError, match="fraction"):
        A.Gibbs(fraction=0.0)
    with pytest.raises(ValueError, match="pattern"):
        A.Undersampling(pattern="poisson")
    with pytest.raises(ValueError, match="pe_axis"):
        A.Ghosting(pe_axis=5)
    with pytest.raises(ValueError, match="moved_energy"):
        A.Motion(moved_energy=1.5)
    with pytest.raises(TypeError):
        A.Spike(bogus=1)
