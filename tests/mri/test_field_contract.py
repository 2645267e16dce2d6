"""A local version of the Transform contract for the MRI noise/field artifacts.

The lead's harness in tests/contract/ runs over every registered artifact; this file checks the same
properties for the six classes of robustaug.artifacts.mri_field so that they hold on their own.
"""

from __future__ import annotations

import itertools
import pickle

import pytest
import torch

from robustaug.artifacts import mri_field as M
from robustaug.core.transform import subset_params
from robustaug.functional.metrics import ssim


@pytest.fixture(autouse=True, scope="module")
def _one_thread_fixed_seed():
    # tiny tensors: avoid OpenMP oversubscription on shared CPUs. Seeded transforms derive their
    # stream from (seed, torch.initial_seed()); pin the latter so these tests do not depend on
    # which tests ran before (global RNG state is restored afterwards).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        yield
    torch.set_num_threads(n)


CLASSES = [getattr(M, n) for n in M.__all__]
IDS = [c.__name__ for c in CLASSES]


def _x(cls, dims, batch=3):
    return cls.example_input(dims, batch=batch, size=32 if dims == 2 else 24)


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_class_metadata(cls):
    assert cls.modality == "mri"
    assert set(cls.dims) == {2, 3}
    assert sorted(cls.severity_table) == [1, 2, 3, 4, 5]
    for lvl in range(1, 6):
        cls.from_severity(lvl, seed=0)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_contract_core(cls, dims):
    x = _x(cls, dims)
    x0 = x.clone()
    t = cls.from_severity(3, seed=0)
    t2 = pickle.loads(pickle.dumps(t))
    y, params = t(x, return_params=True)
    assert torch.equal(x, x0), "input modified"
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()
    assert not torch.equal(y, x)
    # pickled copy gives the same stream
    assert torch.equal(t2(x), y)
    # replay
    assert torch.equal(t(x, params=params), y)
    # batched == per sample with the same params
    for i in range(x.shape[0]):
        sub = subset_params(params, torch.tensor([i]))
        yi = t(x[i : i + 1], params=sub)
        torch.testing.assert_close(yi, y[i : i + 1], rtol=1e-5, atol=1e-6)
    # different seed -> different output, same seed -> same output
    assert torch.equal(cls.from_severity(3, seed=0)(x), y)
    assert not torch.equal(cls.from_severity(3, seed=1)(x), y)
    # empty batch, p=0 and severity 0
    e = x[:0]
    assert t(e).shape == e.shape
    assert torch.equal(cls.from_severity(0, seed=0)(x), x)
    assert torch.equal(cls.from_severity(3, seed=0, p=0.0)(x), x)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16, torch.uint8])
@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_dtypes(cls, dtype):
    x = _x(cls, 2)
    xin = (x * 255).round().to(dtype) if dtype == torch.uint8 else x.to(dtype)
    y = cls.from_severity(3, seed=0)(xin)
    assert y.dtype == dtype and y.shape == xin.shape


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_global_rng_untouched(cls):
    import random

    import numpy as np

    x = _x(cls, 2)
    s_t, s_py = torch.get_rng_state(), random.getstate()
    s_np = np.random.get_state()[1].copy()  # noqa: NPY002
    cls.from_severity(3, seed=0)(x)
    assert torch.equal(torch.get_rng_state(), s_t)
    assert (np.random.get_state()[1] == s_np).all()  # noqa: NPY002
    assert random.getstate() == s_py


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_small_inputs(cls):
    t = cls.from_severity(3, seed=0)
    assert t(cls.example_input(3, 1, 24)).shape == (1, 1, 24, 24, 24)
    assert t(cls.example_input(2, 1, 12)).shape == (1, 1, 12, 12)


@pytest.mark.parametrize("cls", [c for c in CLASSES if c.differentiable], ids=lambda c: c.__name__)
def test_gradcheck(cls):
    x = cls.example_input(2, 1, 12).double()
    t = cls.from_severity(3, seed=0)
    _, params = t(x, return_params=True)
    params = {k: v for k, v in params.items() if k != "apply"}
    xr = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: t.apply(z, params), (xr,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_severity_monotone(cls):
    x = cls.example_input(2, batch=2, size=64)
    scores = []
    for lvl in range(0, 6):
        vals = [ssim(cls.from_severity(lvl, seed=s)(x), x).mean() for s in range(4)]
        scores.append(float(torch.stack(vals).mean()))
    for a, b in itertools.pairwise(scores):
        assert b <= a + 0.01, scores
    assert scores[5] < scores[0] - 0.02, scores
