"""The fused CPU kernel of the focal family (``robustaug/losses/_fused.c``).

Float32 CPU logits of the focal family go through the kernel; float64 logits through the eager
analytic code, which ``test_analytic_grad.py`` checks against autograd of the formulas. So the
kernel is checked here against the float64 eager result of the same loss on the same logits, in
every layout the kernel has (rows of few classes through the transposed blocks, rows of many
classes one at a time, contiguous grids, channels-last grids, copies of other strides), with class
weights, ``ignore_index``, every reduction, saturated logits and several gammas; and a spy asserts
that the kernel really ran.
"""

from __future__ import annotations

import sys

import pytest
import torch

from robustaug.losses import (
    ANL,
    AUL,
    MAE,
    NFL,
    NGCE,
    NNFL,
    ActivePassive,
    BackwardCorrected,
    FocalLoss,
    ForwardCorrected,
    NoiseRobustDice,
    _fused,
    robust_loss,
)

from .helpers import labels, logits

pytestmark = pytest.mark.skipif(_fused.kernel() is None, reason="no C compiler: eager code only")

#: (id, factory, K): K bounds the sum of the loss's coefficients (the scale of its gradient terms)
LOSSES = [
    ("focal", lambda **kw: FocalLoss(**kw), 1.0),
    ("focal_g0.5", lambda **kw: FocalLoss(gamma=0.5, **kw), 1.0),
    ("focal_g1", lambda **kw: FocalLoss(gamma=1.0, **kw), 1.0),
    ("focal_g0.7", lambda **kw: FocalLoss(gamma=0.7, **kw), 1.0),
    ("focal_g0", lambda **kw: FocalLoss(gamma=0.0, **kw), 1.0),
    ("nfl", lambda **kw: NFL(**kw), 1.0),
    ("nfl_g2", lambda **kw: NFL(gamma=2.0, **kw), 1.0),
    ("nfl_g1.5_scale3", lambda **kw: NFL(gamma=1.5, scale=3.0, **kw), 3.0),
    ("nnfl", lambda **kw: NNFL(**kw), 1.0),
    ("nnfl_floor1e-3", lambda **kw: NNFL(gamma=2.0, min_prob=1e-3, **kw), 1.0),
    ("nce", lambda **kw: robust_loss("nce", **kw), 1.0),
    ("nnce", lambda **kw: robust_loss("nnce", **kw), 1.0),
    ("nfl+rce", lambda **kw: robust_loss("nfl+rce", **kw), 10.3),
    ("nce+rce", lambda **kw: robust_loss("nce+rce", **kw), 10.3),
    ("nce+mae", lambda **kw: robust_loss("nce+mae", **kw), 2.0),
    ("anl", lambda **kw: ANL(**kw), 10.0),
    ("anl_fl", lambda **kw: ANL(active="nfl", gamma=0.7, **kw), 10.0),
    ("focal+mae", lambda **kw: ActivePassive("focal", MAE(scale=2.0), 0.5, 2.0, **kw), 4.5),
    ("ngce", lambda **kw: NGCE(**kw), 1.0),
    ("ngce_q0.3_scale2", lambda **kw: NGCE(q=0.3, scale=2.0, **kw), 2.0),
    ("nce+agce", lambda **kw: robust_loss("nce+agce", **kw), 15.0),
    ("nce+aul", lambda **kw: robust_loss("nce+aul", **kw), 12.0),
    ("nfl+agce", lambda **kw: ActivePassive("nfl", "agce", **kw), 2.0),
    ("ngce+aul", lambda **kw: ActivePassive("ngce", AUL(a=3.0, q=0.5), 1.0, 2.0, **kw), 3.0),
    ("bootstrap", lambda **kw: robust_loss("bootstrap", **kw), 1.0),
    ("bootstrap_hard", lambda **kw: robust_loss("bootstrap_hard", **kw), 1.0),
    ("bootstrap_0.3", lambda **kw: robust_loss("bootstrap", beta=0.3, **kw), 1.0),
    ("ce", lambda **kw: robust_loss("ce", **kw), 1.0),
    ("mae_scale2", lambda **kw: MAE(scale=2.0, **kw), 2.0),
    ("rce", lambda **kw: robust_loss("rce", **kw), 9.3),
    ("sce", lambda **kw: robust_loss("sce", **kw), 9.3),
    ("gce", lambda **kw: robust_loss("gce", **kw), 1.0),
    ("gce_q0.3", lambda **kw: robust_loss("gce", q=0.3, **kw), 1.0),
    ("agce", lambda **kw: robust_loss("agce", **kw), 2.0),
    ("aul", lambda **kw: robust_loss("aul", **kw), 20.0),
    ("gce+rce", lambda **kw: ActivePassive("gce", "rce", 1.0, 0.5, **kw), 6.0),
    ("truncated_gce", lambda **kw: robust_loss("truncated_gce", k=0.1, **kw), 1.0),
    ("truncated_gce_k0.5", lambda **kw: robust_loss("truncated_gce", **kw), 1.0),
    ("ael", lambda **kw: robust_loss("ael", **kw), 1.0),
    ("taylor_ce", lambda **kw: robust_loss("taylor_ce", **kw), 2.0),
    ("taylor_ce_6", lambda **kw: robust_loss("taylor_ce", order=6, **kw), 6.0),
    ("nmae", lambda **kw: robust_loss("nmae", **kw), 1.0),
    ("nce+ael", lambda **kw: ActivePassive("nce", "ael", **kw), 2.0),
]

#: (id, shape, memory format transform)
LAYOUTS = [
    ("rows_few", (24, 7), None),  # transposed blocks (C < 160)
    ("rows_block_edge", (70, 3), None),  # more than one block of 64 rows, a partial one
    ("rows_many", (5, 200), None),  # one row at a time (C >= 160)
    ("grid2d", (2, 4, 9, 11), None),  # (N, C, V) with V = 99: a partial block of 64 voxels
    ("grid3d", (2, 3, 4, 5, 6), None),
    ("channels_last", (2, 5, 6, 7), torch.channels_last),  # classes contiguous: rows layout
    ("channels_last_3d", (2, 3, 3, 4, 5), torch.channels_last_3d),
    ("transposed", (9, 6), "t"),  # neither layout: copied
]


def _make(shape, fmt, seed, scale):
    z = logits(shape, seed=seed, scale=scale)
    if fmt == "t":
        z = z.t().contiguous().t()
    elif fmt is not None:
        z = z.contiguous(memory_format=fmt)
    return z


def _run(loss, z, y):
    z = z.clone().requires_grad_(True)
    out = loss(z, y)
    (out if out.dim() == 0 else out.sum()).backward()
    return out.detach(), z.grad


def _spy_on(monkeypatch, name: str) -> list:
    """Records the logits' shape of every call of the kernel wrapper ``_fused.<name>``."""
    calls = []
    real = getattr(_fused, name)

    def wrapped(*a, **k):
        calls.append(a[0].shape)
        return real(*a, **k)

    monkeypatch.setattr(_fused, name, wrapped)
    return calls


@pytest.fixture
def spy(monkeypatch):
    return _spy_on(monkeypatch, "focal_family")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=[x[0] for x in LAYOUTS])
@pytest.mark.parametrize("case", LOSSES, ids=[x[0] for x in LOSSES])
def test_fused_matches_float64_eager(case, layout, reduction, spy):
    _, make, K = case
    _, shape, fmt = layout
    n, c, spatial = shape[0], shape[1], shape[2:]
    for seed, scale in ((0, 1.0), (1, 6.0), (2, 50.0), (3, 200.0)):
        z = _make(shape, fmt, seed, scale)
        y = labels(n, c, spatial, seed=seed)
        loss = make(reduction=reduction)
        v64, g64 = _run(loss, z, y)
        z32 = z.float()
        before = z32.clone()
        ncalls = len(spy)
        v32, g32 = _run(loss, z32, y)
        assert len(spy) == ncalls + 1, "the float32 CPU call did not go through the kernel"
        assert torch.equal(z32, before)
        assert v32.dtype == torch.float32 and v32.shape == v64.shape
        assert g32.shape == z.shape and g32.dtype == torch.float32
        assert torch.isfinite(v32).all() and torch.isfinite(g32).all()
        unit = 1.0 / y.numel() if reduction == "mean" else 1.0
        torch.testing.assert_close(v32.double(), v64, rtol=2e-5, atol=2e-6 * K)
        # float32 rounding of O(K) gradient terms that cancel at saturation: absolute, per element
        torch.testing.assert_close(g32.double(), g64, rtol=1e-4, atol=3e-6 * K * unit)


@pytest.mark.parametrize("case", LOSSES[::3], ids=[x[0] for x in LOSSES[::3]])
@pytest.mark.parametrize("layout", LAYOUTS[:4], ids=[x[0] for x in LAYOUTS[:4]])
def test_fused_weights_and_ignore_index(case, layout, spy):
    _, make, K = case
    _, shape, _ = layout
    n, c, spatial = shape[0], shape[1], shape[2:]
    z = logits(shape, seed=4, scale=8.0)
    y = labels(n, c, spatial, seed=4)
    g = torch.Generator().manual_seed(5)
    y[torch.rand(y.shape, generator=g) < 0.3] = -100  # ignored elements
    w = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
    w[1] = 0.0  # a class of weight 0
    for reduction in ("mean", "sum", "none"):
        loss = make(weight=w, reduction=reduction)
        v64, g64 = _run(loss, z, y)
        v32, g32 = _run(loss, z.float(), y)
        dead = (y == -100) | (y == 1)
        assert (g32.movedim(1, -1)[dead] == 0).all(), "ignored/zero-weight elements get gradient"
        if reduction == "none":
            assert (v32[dead] == 0).all()
        unit = 1.0 / float(w[y.clamp_min(0)][y >= 0].sum()) if reduction == "mean" else 1.5
        torch.testing.assert_close(v32.double(), v64, rtol=2e-5, atol=2e-6 * K)
        torch.testing.assert_close(g32.double(), g64, rtol=1e-4, atol=3e-6 * K * unit)
    assert spy


def test_fused_ties_two_classes_and_no_grad(spy):
    z = torch.zeros(6, 5)  # every class tied: p = 1/C, the first is the "largest"
    z[3] = torch.tensor([2.0, 2.0, -1.0, 2.0, 0.0])
    z2 = torch.tensor([[300.0, -300.0], [-80.0, 80.0], [1.0, 1.0]])  # C = 2, saturated
    for loss in (
        NFL(), NNFL(gamma=2.0), robust_loss("anl"), FocalLoss(gamma=0.5), robust_loss("bootstrap_hard")
    ):
        for zz, yy in ((z, torch.tensor([0, 1, 4, 1, 2, 3])), (z2, torch.tensor([1, 1, 0]))):
            v64, g64 = _run(loss, zz.double(), yy)
            v32, g32 = _run(loss, zz, yy)
            torch.testing.assert_close(v32.double(), v64, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(g32.double(), g64, rtol=1e-4, atol=1e-6)
            with torch.no_grad():  # (no gradient buffer is formed: the value is the same)
                assert torch.equal(loss(zz, yy), v32)
    assert len(spy) >= 20


def test_fused_threads_give_identical_results():
    """Elements are split between threads, never a sum: the per-element losses and the gradient do
    not depend on their number (the reduction is torch's sum)."""
    loss = robust_loss("nfl+rce", reduction="none")
    cases = [
        (logits((4096, 64), seed=6, dtype=torch.float32), labels(4096, 64, seed=6)),
        (logits((8, 3, 128, 128), seed=7, dtype=torch.float32), labels(8, 3, (128, 128), seed=7)),
    ]
    old = torch.get_num_threads()
    try:
        for z, y in cases:
            torch.set_num_threads(1)
            v1, g1 = _run(loss, z, y)
            torch.set_num_threads(2)
            v2, g2 = _run(loss, z, y)
            assert torch.equal(g1, g2) and torch.equal(v1, v2)
    finally:
        torch.set_num_threads(old)


def test_fused_bf16_autocast_matches_float32(spy):
    z = logits((32, 10), seed=8, dtype=torch.float32)
    y = labels(32, 10, seed=8)
    loss = NFL()
    v32, _ = _run(loss, z, y)
    zb = z.bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        vb = loss(zb, y)
    vb.backward()
    assert vb.dtype == torch.float32 and zb.grad.dtype == torch.bfloat16
    torch.testing.assert_close(vb, v32, rtol=1e-2, atol=1e-3)
    assert spy


def test_fallback_without_compiler_or_when_switched_off(monkeypatch):
    z = logits((16, 6), seed=9, dtype=torch.float32)
    y = labels(16, 6, seed=9)
    loss = robust_loss("nfl+rce")
    v_fused, g_fused = _run(loss, z, y)
    monkeypatch.setenv("ROBUSTAUG_FUSED", "0")
    assert _fused._build() is None
    monkeypatch.delenv("ROBUSTAUG_FUSED")
    monkeypatch.setattr(_fused, "_compiler", lambda: None)
    assert _fused._build() is None
    monkeypatch.setitem(_fused._state, "lib", None)  # as on a machine without a compiler
    assert not _fused.usable(z)
    v_eager, g_eager = _run(loss, z, y)
    torch.testing.assert_close(v_eager, v_fused, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_eager, g_fused, rtol=1e-4, atol=1e-6)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CI machines are Linux")
def test_build_into_a_fresh_cache(monkeypatch, tmp_path):
    """The kernel compiles from the shipped source into the cache (no partial files left), and a
    second build loads the cached library instead of compiling again."""
    assert _fused._compiler() is not None, "CI machines have a C compiler: the kernel must build"
    monkeypatch.setenv("ROBUSTAUG_CACHE_DIR", str(tmp_path))
    lib = _fused._build()
    assert lib is not None
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith("rf_kernels_") and files[0].endswith(".so")
    stamp = (tmp_path / files[0]).stat().st_mtime_ns
    assert _fused._build() is not None
    assert (tmp_path / files[0]).stat().st_mtime_ns == stamp


def test_terms_that_cannot_share_a_call_use_the_eager_code(spy):
    z = logits((8, 5), seed=10, dtype=torch.float32)
    y = labels(8, 5, seed=10)
    assert ActivePassive(NFL(gamma=0.5), NNFL(gamma=2.0))._focal_terms() is None
    assert ActivePassive("ngce", NNFL(gamma=0.7), active_kw={"q": 0.7})._focal_terms() is None
    assert ActivePassive("gce", "agce")._focal_terms() is None  # (two column terms)
    assert ActivePassive("ce", "nnfl")._focal_terms() is None  # (gamma 0 and 0.5)
    assert ActivePassive("nce", "nmae")._focal_terms() is None  # (NMAE's depends on C)
    for loss in (
        ActivePassive(NFL(gamma=0.5), NNFL(gamma=2.0)), ActivePassive("gce", "agce"),
        ActivePassive("nce", "nmae"),
    ):
        loss(z, y)
    assert not spy



def _assert_as_accurate_as_eager(monkeypatch, loss, z, y, g32, g64):
    """The fused float32 gradient is at most twice as far from the float64 one as the eager float32
    code's (plus 1e-5 of the largest), which is at rounding level of the terms that cancel."""
    with monkeypatch.context() as m:
        m.setitem(_fused._state, "lib", None)
        _, ge = _run(loss, z.float(), y)
    err, err_eager = (g32.double() - g64).abs().max(), (ge.double() - g64).abs().max()
    assert err <= 2 * err_eager + 1e-5 * g64.abs().max() + 1e-12, (err, err_eager)


DICE_LAYOUTS = [
    ("rows_few", (24, 7)),
    ("rows_block_edge", (70, 3)),
    ("rows_many", (5, 200)),
    ("grid2d", (2, 4, 9, 11)),
    ("grid3d", (3, 3, 4, 5, 6)),
    ("channels_last", (2, 5, 6, 7)),
]


@pytest.fixture
def dice_spy(monkeypatch):
    return _spy_on(monkeypatch, "dice")


@pytest.mark.parametrize("layout", DICE_LAYOUTS, ids=[x[0] for x in DICE_LAYOUTS])
@pytest.mark.parametrize("gamma", [1.0, 1.5, 2.0, 1.3])
def test_fused_dice_matches_float64_eager(layout, gamma, dice_spy, monkeypatch):
    """Values to float32 rounding; gradients at least as accurate as the eager float32 code (where
    saturated rows make the softmax Jacobian cancel, both are at rounding level of their terms)."""
    _, shape = layout
    n, c, spatial = shape[0], shape[1], shape[2:]
    g = torch.Generator().manual_seed(11)
    for seed, scale in ((0, 1.0), (1, 6.0), (2, 50.0), (3, 200.0)):
        z = logits(shape, seed=seed, scale=scale)
        if len(shape) == 4 and layout[0] == "channels_last":
            z = z.contiguous(memory_format=torch.channels_last)
        y = labels(n, c, spatial, seed=seed)
        for kw in ({}, {"weight": torch.rand(c, generator=g) + 0.2}, {"include_background": False}):
            for reduction in ("mean", "sum"):
                loss = NoiseRobustDice(gamma=gamma, reduction=reduction, **kw)
                v64, g64 = _run(loss, z, y)
                ncalls = len(dice_spy)
                v32, g32 = _run(loss, z.float(), y)
                assert len(dice_spy) == ncalls + 1, "the float32 CPU call did not use the kernel"
                assert torch.isfinite(g32).all() and g32.shape == z.shape
                torch.testing.assert_close(v32.double(), v64, rtol=2e-5, atol=1e-6)
                _assert_as_accurate_as_eager(monkeypatch, loss, z, y, g32, g64)


def test_fused_dice_threads_and_paths(dice_spy):
    """Samples are split between threads, each whole: identical per-sample results; masks with
    ``ignore_index`` and soft masks take the eager code."""
    loss = NoiseRobustDice(reduction="sum")
    z = logits((8, 3, 64, 64), seed=12, dtype=torch.float32)
    y = labels(8, 3, (64, 64), seed=12)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        v1, g1 = _run(loss, z, y)
        torch.set_num_threads(2)
        v2, g2 = _run(loss, z, y)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(g1, g2)
    torch.testing.assert_close(v1, v2, rtol=1e-6, atol=0)
    assert len(dice_spy) == 2
    y2 = y.clone()
    y2[0, 0, 0] = -100
    _run(loss, z, y2)
    _run(loss, z, torch.softmax(z, 1))
    assert len(dice_spy) == 2


def _transition(c: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    R = torch.rand(c, c, generator=g, dtype=torch.float64)
    return 0.7 * torch.eye(c, dtype=torch.float64) + 0.3 * R / R.sum(1, keepdim=True)


@pytest.fixture
def corr_spy(monkeypatch):
    return _spy_on(monkeypatch, "correction")


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=[x[0] for x in LAYOUTS])
@pytest.mark.parametrize("cls", [ForwardCorrected, BackwardCorrected])
def test_fused_corrections_match_float64_eager(cls, layout, reduction, corr_spy, monkeypatch):
    """Values to float32 rounding; gradients at least as accurate as the eager float32 code (at
    saturation both cancel to rounding level), with class weights and ignored elements."""
    _, shape, fmt = layout
    n, c, spatial = shape[0], shape[1], shape[2:]
    for seed, scale in ((0, 1.0), (1, 6.0), (2, 50.0)):
        z = _make(shape, fmt, seed, scale)
        y = labels(n, c, spatial, seed=seed)
        kw = {}
        if seed == 1:  # weights and ignored elements
            y[torch.rand(y.shape, generator=torch.Generator().manual_seed(3)) < 0.2] = -100
            kw["weight"] = torch.linspace(0.5, 1.5, c, dtype=torch.float64)
        loss = cls(_transition(c, seed), reduction=reduction, **kw)
        v64, g64 = _run(loss, z, y)
        ncalls = len(corr_spy)
        v32, g32 = _run(loss, z.float(), y)
        assert len(corr_spy) == ncalls + 1, "the float32 CPU call did not use the kernel"
        assert torch.isfinite(g32).all() and g32.shape == z.shape
        assert (g32.movedim(1, -1)[y == -100] == 0).all()
        torch.testing.assert_close(v32.double(), v64, rtol=2e-5, atol=2e-5)
        _assert_as_accurate_as_eager(monkeypatch, loss, z, y, g32, g64)


def test_fused_corrections_check_the_classes():
    for cls in (ForwardCorrected, BackwardCorrected):
        with pytest.raises(ValueError, match="classes"):
            cls(_transition(4, 0))(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))


def test_build_falls_back_to_plainer_flags(monkeypatch, tmp_path):
    """A compiler that rejects the first set of options (e.g. -mprefer-vector-width off x86) gets
    the next set; when every set fails, the losses run their eager code."""
    built = _fused.kernel()._name  # (the library this session already has: nothing compiles here)
    tried = []

    def fake(cc, flags, cache, name):
        tried.append(flags)
        if "-mprefer-vector-width=512" in flags:
            raise _fused.subprocess.CalledProcessError(1, cc)
        return built

    monkeypatch.setenv("ROBUSTAUG_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(_fused, "_compiled", fake)
    assert _fused._build() is not None
    assert "-march=native" in tried[-1] and "-mprefer-vector-width=512" not in tried[-1]
    monkeypatch.setattr(_fused, "_compiled", lambda *a: (_ for _ in ()).throw(OSError("no")))
    assert _fused._build() is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the CI machines are Linux")
def test_posix_thread_build_gives_the_same_results(monkeypatch, tmp_path):
    """Where torch's OpenMP runtime is not GNU's, the kernels split their work over POSIX threads
    instead: the same per-element values and gradients, whatever the number of threads."""
    z = logits((4096, 64), seed=13, dtype=torch.float32)
    y = labels(4096, 64, seed=13)
    zg = logits((4, 3, 96, 96), seed=14, dtype=torch.float32)
    yg = labels(4, 3, (96, 96), seed=14)
    losses = [robust_loss("nfl+rce", reduction="none"), NoiseRobustDice(reduction="sum")]
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        ref = [_run(loss, zz, yy) for loss in losses for zz, yy in ((z, y), (zg, yg))]
        monkeypatch.setenv("ROBUSTAUG_CACHE_DIR", str(tmp_path))
        monkeypatch.setattr(_fused, "_torch_uses_gomp", lambda: False)
        lib = _fused._build()
        assert lib is not None
        monkeypatch.setitem(_fused._state, "lib", lib)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = [_run(loss, zz, yy) for loss in losses for zz, yy in ((z, y), (zg, yg))]
            for (v, g), (v0, g0) in zip(out, ref):
                assert torch.equal(g, g0)
                torch.testing.assert_close(v, v0, rtol=1e-6, atol=0)
    finally:
        torch.set_num_threads(old)


def test_corrections_follow_an_edited_matrix():
    """The float32 matrix the kernel reads is cached on the loss: it must follow in-place edits
    and reloads of T."""
    z = logits((32, 4), seed=15, dtype=torch.float32)
    y = labels(32, 4, seed=15)
    loss = ForwardCorrected(_transition(4, 0))
    first = loss(z, y)
    with torch.no_grad():
        loss.T.copy_(_transition(4, 5))
    again = loss(z, y)
    fresh = ForwardCorrected(_transition(4, 5))(z, y)
    assert not torch.equal(first, again)
    torch.testing.assert_close(again, fresh, rtol=0, atol=0)
    loss.load_state_dict(ForwardCorrected(_transition(4, 6)).state_dict())
    torch.testing.assert_close(loss(z, y), ForwardCorrected(_transition(4, 6))(z, y), rtol=0, atol=0)
