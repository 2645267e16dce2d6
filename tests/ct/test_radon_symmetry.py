"""The dihedral-symmetry fast path must reproduce the full system matrices exactly."""

import math

import numpy as np
import pytest
import torch

from robustaug.functional import radon as R


def _full_forward(x, g):
    n = g.size
    y = R._apply_matrix(x, ("par_fwd", g), R._parallel_forward_builder(g), n * n)
    return y.reshape(*x.shape[:-2], g.num_views, g.num_det)


def _full_backproject(q, g):
    n = g.size
    key = ("par_bp", g, True)
    y = R._apply_matrix(q, key, R._parallel_backproject_builder(g, True), g.num_views * (g.num_det + 2))
    return y.reshape(*q.shape[:-2], n, n)


GEOMS = [
    R.ParallelBeam(32, n_views=40),  # even size, uniform over 180 deg
    R.ParallelBeam(33, n_views=36),  # odd size
    R.ParallelBeam(24, n_views=60, circle=False),  # whole square, wider detector
    R.ParallelBeam(20, n_views=24, n_det=31),  # odd detector
    R.ParallelBeam(28, n_views=20, angle_range_deg=120.0),  # limited angle
    # irregular angles in all four octant classes, a duplicate, and the 45/90 deg boundaries
    R.ParallelBeam(32, angles_deg=(0.0, 10.0, 45.0, 80.0, 90.0, 90.0, 135.0, 170.0, 100.0, 30.0, 179.5)),
]


@pytest.mark.parametrize("g", GEOMS, ids=lambda g: f"{g.size}-{g.num_views}-{g.circle}-{g.num_det}")
def test_symmetric_path_equals_full_matrix(g):
    plan = R._sym_plan(g)
    assert plan is not None  # these geometries take the fast path
    assert len(plan.base) <= 0.6 * g.num_views
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, g.size, g.size, dtype=torch.float64, generator=gen)
    ref = _full_forward(x, g)
    out = R.forward_project(x, g)
    assert out.shape == ref.shape
    assert float((out - ref).abs().max()) <= 1e-12 * float(ref.abs().max())
    q = torch.rand(2, 3, g.num_views, g.num_det + 2, dtype=torch.float64, generator=gen)
    ref_b = _full_backproject(q, g)
    out_b = R._backproject_guarded(q, g)
    assert float((out_b - ref_b).abs().max()) <= 1e-12 * float(ref_b.abs().max())


def test_symmetric_path_float32_batches_and_gradients():
    g = R.ParallelBeam(24, n_views=48)
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(9, 1, 24, 24, generator=gen)  # 9 slices x 4 transforms > one 16-column block
    s = R.forward_project(x, g)
    assert s.dtype == torch.float32
    s1 = torch.cat([R.forward_project(x[i : i + 1], g) for i in range(9)])
    assert torch.allclose(s, s1, rtol=1e-5, atol=1e-4)
    rec = R.fbp(s, g)
    rec1 = torch.cat([R.fbp(s[i : i + 1], g) for i in range(9)])
    assert torch.allclose(rec, rec1, rtol=1e-5, atol=1e-5)
    # adjointness of the forward operator through autograd (float64)
    xd = x[:2].double().requires_grad_()
    y = torch.rand(2, 1, 48, g.num_det, dtype=torch.float64, generator=gen)
    (R.forward_project(xd, g) * y).sum().backward()
    lhs = float((R.forward_project(x[:2].double(), g) * y).sum())
    assert lhs == pytest.approx(float((x[:2].double() * xd.grad).sum()), rel=1e-10)
    xs = torch.rand(1, 1, 10, 10, dtype=torch.float64, generator=gen, requires_grad=True)
    gs = R.ParallelBeam(10, n_views=12)
    assert R._sym_plan(gs) is not None
    assert torch.autograd.gradcheck(lambda z: R.fbp(R.forward_project(z, gs), gs, "ramp"), (xs,))


@pytest.mark.parametrize(
    "g",
    [
        R.ParallelBeam(30, n_views=60, n_det=20),  # truncating detector: back-projection cut-off
        R.ParallelBeam(16, n_views=10, angle_range_deg=30.0),  # no symmetric partners
        R.ParallelBeam(16, angles_deg=(-10.0, 0.0, 45.0, 90.0, 135.0, 200.0)),  # outside [0, 180)
    ],
)
def test_geometries_without_symmetry_fall_back_and_stay_consistent(g):
    assert R._sym_plan(g) is None
    x = torch.rand(1, 1, g.size, g.size, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(R.forward_project(x, g), _full_forward(x, g))


def test_base_angles_cover_a_quarter_for_uniform_scans():
    plan = R._sym_plan(R.ParallelBeam(64, n_views=180))
    assert len(plan.base) == 46  # 0..45 deg
    assert max(plan.base) == pytest.approx(math.pi / 4)
    assert plan.ks == (0, 1, 2, 3)
    assert np.all(np.diff(plan.base) > 0)


@pytest.mark.parametrize(
    "g",
    [
        R.FanBeam(32, n_views=40, detector="equiangular"),
        R.FanBeam(33, n_views=36, detector="flat", circle=False),
        R.FanBeam(20, n_views=42, detector="flat"),  # 42 % 4 != 0: full matrix
    ],
    ids=["equiangular-even", "flat-odd-square", "not-quarterable"],
)
def test_fan_quarter_matrix_equals_full_matrix(g):
    n = g.size
    x = torch.rand(2, 1, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    y = R._apply_matrix(x, ("fan_fwd", g), R._fan_forward_builder(g), n * n)
    ref = y.reshape(2, 1, g.num_views, g.num_det)
    out = R.forward_project(x, g)
    assert out.shape == ref.shape
    assert float((out - ref).abs().max()) <= 1e-12 * float(ref.abs().max())


def test_repeated_angles_use_the_summing_path_and_distinct_use_a_gather():
    assert R._sym_plan(GEOMS[-1]).bp_gather is None  # 90 degrees twice
    assert R._sym_plan(GEOMS[0]).bp_gather is not None


def test_empty_batch_needs_no_matrix():
    R.clear_cache()
    g = R.ParallelBeam(40, n_views=20)
    s = R.forward_project(torch.zeros(0, 1, 40, 40), g)
    assert s.shape == (0, 1, 20, 40)
    assert R.fbp(s, g).shape == (0, 1, 40, 40)
    fg = R.FanBeam(40, n_views=24)
    assert R.forward_project(torch.zeros(0, 40, 40), fg).shape == (0, 24, fg.num_det)
    assert len(R._NP_CACHE) == 0
