"""The CPU fast path of BiasField (numpy statistics and field) against the torch path, and the
cached B-spline operators against the uncached formula."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from robustaug.artifacts import mri_field as M
from robustaug.artifacts.mri_field import BiasField
from robustaug.data import phantom
from robustaug.functional import mri_field as F

pytestmark = pytest.mark.usefixtures("one_thread_fixed_seed")


def _batch(shape, b, c, dtype=torch.float32):
    x = torch.stack([phantom(shape, seed=i)["image"] for i in range(b)]).to(dtype)
    if c > 1:
        x = torch.cat([x, (0.5 * x.flip(-1))][:c], 1)
    return x


def _torch_field(t, x, params):
    """The reference: the differentiable torch path (used by the physical threat)."""
    ctrl = torch.exp(params["log_field"].to(dtype=x.dtype))
    return t.field_from_control(t.rescale_control(x, ctrl, params["peak_to_peak"]), tuple(x.shape[2:]))


CASES = list(itertools.product(
    [(64, 64), (90, 70), (20, 18, 22)],  # strides 1, 2 (default) and 1 in 3D
    [1, 3],  # batch
    [1, 2],  # channels
    ["foreground", "fov"],
    ["mean", "midrange"],
    [None, 3],  # stats_stride
))


@pytest.mark.parametrize(("shape", "b", "c", "norm", "center", "stride"), CASES)
def test_numpy_field_equals_torch_path(shape, b, c, norm, center, stride):
    x = _batch(shape, b, c)
    t = BiasField(peak_to_peak_percent=(10.0, 150.0), normalize_over=norm, center=center,
                  stats_stride=stride, seed=0)
    p = t.sample_params(x, torch.Generator().manual_seed(len(shape) + b + c))
    fast, ref = t._field_numpy(x, p), _torch_field(t, x, p)
    assert fast.shape == ref.shape == (b, 1, *shape) and fast.dtype == x.dtype
    assert torch.allclose(fast, ref, rtol=0, atol=2e-6)
    # and the artifact's output is the input times that field
    assert torch.allclose(t.apply(x, p), x * ref, rtol=0, atol=2e-6 * float(x.abs().max()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_field_dtype_and_large_field_branch(dtype, monkeypatch):
    x = _batch((48, 40), 2, 1, dtype)
    t = BiasField(peak_to_peak_percent=60.0, seed=1)
    p = t.sample_params(x, torch.Generator().manual_seed(0))
    small = t._field_numpy(x, p)
    monkeypatch.setattr(M, "_NUMPY_FIELD_MAX", 16)  # force the torch evaluation of the full field
    large = t._field_numpy(x, p)
    ref = _torch_field(t, x, p)
    tol = 2e-6 if dtype == torch.float32 else 1e-12
    assert small.dtype == large.dtype == dtype
    assert torch.allclose(small, ref, rtol=0, atol=tol) and torch.allclose(large, ref, rtol=0, atol=tol)


def test_numpy_region_equals_torch_region():
    g = torch.Generator().manual_seed(0)
    for shape, stride in [((64, 64), 4), ((33, 50), 3), ((17, 12, 15), 2), ((40, 40), 1)]:
        # piecewise-constant images with exact ties at the threshold, and a noisy one
        x = torch.randint(0, 5, (3, 2, *shape), generator=g).float() / 4
        x[2] = torch.rand(2, *shape, generator=g)
        t = BiasField(stats_stride=stride, foreground_threshold=0.25)
        ref = t.region_mask(x, stride)
        xs = x.numpy()[(slice(None), slice(None), *([slice(None, None, stride)] * len(shape)))].max(1)
        lo = xs.reshape(3, -1).min(1)
        hi = xs.reshape(3, -1).max(1)
        thr = (lo + 0.25 * (hi - lo)).reshape(3, *([1] * len(shape)))
        got = M._region_np(xs, thr, stride > 1).reshape(3, -1)
        assert np.array_equal(got, ref.numpy())


def test_constant_and_degenerate_inputs_agree():
    t = BiasField(peak_to_peak_percent=40.0, seed=0)
    for x in (torch.ones(1, 1, 64, 64), torch.zeros(2, 1, 40, 40), torch.full((1, 2, 32, 32), 3.0)):
        p = t.sample_params(x, torch.Generator().manual_seed(0))
        fast, ref = t._field_numpy(x, p), _torch_field(t, x, p)
        assert torch.isfinite(fast).all() and torch.allclose(fast, ref, atol=2e-6)
    # zero amplitude: the identity
    x = _batch((64, 64), 1, 1)
    y = BiasField(peak_to_peak_percent=0.0, seed=0)(x)
    assert torch.allclose(y, x)


def test_positivity_clamp_far_outside_the_region():
    # a small foreground, p close to 2 and a steep field: extrapolation outside the region would
    # go below 0; both paths clamp at 1e-3 and agree
    x = torch.zeros(1, 1, 64, 64)
    x[..., 28:36, 28:36] = 1.0
    t = BiasField(peak_to_peak_percent=190.0, n_control=8, seed=0)
    p = {"peak_to_peak": torch.tensor([1.9], dtype=torch.float64),
         "log_field": 2.0 * torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(3),
                                        dtype=torch.float64)}
    fast, ref = t._field_numpy(x, p), _torch_field(t, x, p)
    assert float(fast.min()) >= 1e-3 - 1e-9
    assert torch.allclose(fast, ref, atol=2e-6)


def test_gradient_path_uses_the_same_field():
    x = _batch((32, 32), 1, 1, torch.float64)
    t = BiasField(peak_to_peak_percent=30.0, seed=0)
    p = t.sample_params(x, torch.Generator().manual_seed(0))
    xg = x.clone().requires_grad_(True)
    y = t.apply(xg, p)
    y.sum().backward()
    field = _torch_field(t, x, p)
    assert torch.allclose(y.detach(), x * field, atol=1e-12)
    assert torch.allclose(xg.grad, field, atol=1e-12)  # d(x b)/dx = b (the field is constant in x)
    assert torch.equal(t.apply(x, p), y.detach())


def test_log_field_given_as_float32_or_with_grad():
    x = _batch((40, 40), 1, 1)
    t = BiasField(peak_to_peak_percent=30.0, seed=0)
    p = t.sample_params(x, torch.Generator().manual_seed(0))
    ref = t.apply(x, p)
    for lf in (p["log_field"].float(), p["log_field"].clone().requires_grad_(True)):
        y = t.apply(x, {**p, "log_field": lf})
        assert torch.allclose(y, ref, atol=1e-6)


def test_sample_params_same_stream_as_uniform_and_randn():
    x = torch.zeros(4, 1, 16, 16)
    t = BiasField(peak_to_peak_percent=(10.0, 40.0), n_control=6)
    p = t.sample_params(x, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    ptp = t.uniform((10.0, 40.0), 4, g) / 100.0
    c = 0.5 * torch.randn((4, 1, 6, 6), generator=g, dtype=torch.float64)
    assert torch.allclose(p["peak_to_peak"], ptp, rtol=0, atol=1e-15)
    assert torch.equal(p["log_field"], c)
    assert p["peak_to_peak"].dtype == p["log_field"].dtype == torch.float64


# ----------------------------------------------------------------------------- cached operators
def _uncached(n_out, n_ctrl):
    u = torch.linspace(0.0, n_ctrl - 3.0, n_out, dtype=torch.float64) if n_out > 1 else \
        torch.full((1,), (n_ctrl - 3) / 2.0, dtype=torch.float64)
    t = (u[:, None] + 1.0 - torch.arange(n_ctrl, dtype=torch.float64)[None, :]).abs()
    return torch.where(t < 1, 2 / 3 - t**2 + t**3 / 2, (2 - t).clamp_min(0) ** 3 / 6)


@pytest.mark.parametrize(("n", "k", "stride"), [(256, 5, 1), (256, 5, 4), (97, 7, 3), (1, 4, 1)])
def test_cached_matrix_equals_formula(n, k, stride):
    ref = _uncached(n, k)[::stride]
    for dtype in (torch.float32, torch.float64):
        m = F._bspline_matrix(n, k, dtype, "cpu", stride)
        assert m.dtype == dtype and m.is_contiguous()
        assert torch.allclose(m.double(), ref, atol=1e-7 if dtype == torch.float32 else 1e-15)
        assert torch.allclose(m.sum(1), torch.ones(m.shape[0], dtype=dtype))
    for dt in ("float32", "float64"):
        a, at = F._bspline_matrix_np(n, k, stride, dt), F._bspline_matrix_np(n, k, stride, dt, True)
        assert a.dtype == np.dtype(dt) and not a.flags.writeable and at.flags.c_contiguous
        assert np.array_equal(at, a.T) and np.allclose(a, ref.numpy(), atol=1e-7)


def test_cache_is_keyed_by_dtype_device_and_stride():
    a = F._bspline_matrix(50, 5, torch.float32, "cpu")
    assert F._bspline_matrix(50, 5, torch.float32, torch.device("cpu")) is a  # cached
    b = F._bspline_matrix(50, 5, torch.float64, "cpu")
    assert b.dtype == torch.float64 and b is not a
    assert F._bspline_matrix(50, 5, torch.float32, "cpu", 2).shape == (25, 5)
    if torch.cuda.is_available():  # pragma: no cover - no GPU in CI
        c = F._bspline_matrix(50, 5, torch.float32, "cuda")
        assert c.device.type == "cuda" and torch.equal(c.cpu(), a)


def test_cached_matrix_built_in_inference_mode_works_with_autograd():
    F._bspline_matrix_cached.cache_clear()
    F._bspline_matrix64.cache_clear()
    with torch.inference_mode():
        F.bspline_upsample(torch.rand(1, 1, 5, 5, dtype=torch.float64), (23, 19))
    c = torch.rand(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: F.bspline_upsample(v, (23, 19)), (c,))


def test_bspline_upsample_unchanged_by_cache():
    c = torch.rand(2, 1, 5, 6, dtype=torch.float64)
    out = F.bspline_upsample(c, (31, 17))
    ref = torch.einsum("ik,bckl,jl->bcij", _uncached(31, 5), c, _uncached(17, 6))
    assert torch.allclose(out, ref, atol=1e-14)
    ev = F.bspline_eval(c, (31, 17), 3)
    assert torch.allclose(ev, ref[..., ::3, ::3], atol=1e-14)
