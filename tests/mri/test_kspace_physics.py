"""Physics acceptance tests for the k-space MRI artifacts (issue 3)."""

from __future__ import annotations

import itertools
import math

import torch

from robustaug.data import phantom
from robustaug.functional import mri as F
from robustaug.functional.kspace import fftc, freq_index, ifftc
from robustaug.functional.metrics import ssim


def _head(n=64, dtype=torch.float64):
    return phantom((n, n), seed=3)["image"][None].to(dtype)


# ----------------------------------------------------------------------------- motion
def test_motion_zero_is_identity():
    x = _head(64, torch.float32)
    z = torch.zeros(1, 2, 1)
    tz = torch.zeros(1, 2, 2)
    times = torch.tensor([[0.3, 0.6]])
    assert (F.motion(x, z, tz, times) - x).abs().max() < 1e-5
    # the rotation path (grid_sample + PE-only FFTs) too
    zr = z.clone().requires_grad_(True)
    assert (F.motion(x, zr, tz, times) - x).abs().max() < 1e-5
    x3 = phantom((24, 24, 24), seed=1)["image"][None]
    y3 = F.motion(x3, torch.zeros(1, 1, 3), torch.zeros(1, 1, 3), torch.tensor([[0.5]]))
    assert (y3 - x3).abs().max() < 1e-5


def _closed_form_translation(x, trans_vox, times):
    """Independent closed form with centred FFTs: each k-line takes the phase ramp of its pose."""
    n_pe, n_ro = x.shape[-2:]
    k = fftc(x.to(torch.complex128), dims=(-2, -1))
    ky = (
        torch.arange(n_pe, dtype=torch.float64) - n_pe // 2
    )  # centred order = linear acquisition order
    kx = torch.arange(n_ro, dtype=torch.float64) - n_ro // 2
    t_line = (torch.arange(n_pe, dtype=torch.float64) + 0.5) / n_pe
    out = torch.zeros_like(k)
    for i in range(n_pe):
        pose = int(sum(t_line[i] >= t for t in times))
        ty, tx = (0.0, 0.0) if pose == 0 else trans_vox[pose - 1]
        ramp = torch.exp(-2j * math.pi * (ky[i] * ty / n_pe + kx * tx / n_ro))
        out[..., i, :] = k[..., i, :] * ramp
    return ifftc(out, dims=(-2, -1))


def test_motion_translation_matches_closed_form_and_keeps_dc():
    x = _head(48)
    trans_mm = torch.tensor([[[3.0, -2.5], [1.25, 4.0]]], dtype=torch.float64)
    spacing = (0.5, 1.0)
    times = [0.35, 0.7]
    z = F.motion(
        x,
        torch.zeros(1, 2, 1, dtype=torch.float64),
        trans_mm,
        torch.tensor([times]),
        spacing=spacing,
        complex_output=True,
    )
    vox = [(3.0 / 0.5, -2.5 / 1.0), (1.25 / 0.5, 4.0 / 1.0)]
    ref = _closed_form_translation(x, vox, times)
    assert (z - ref).abs().max() < 1e-10
    y = F.motion(
        x,
        torch.zeros(1, 2, 1, dtype=torch.float64),
        trans_mm,
        torch.tensor([times]),
        spacing=spacing,
    )
    assert torch.allclose(y, ref.abs(), atol=1e-9)
    # DC (k-space centre) preserved
    assert abs(complex(z.sum()) - float(x.sum())) < 1e-8 * float(x.sum())
    assert y.min() >= 0


def test_motion_rotation_path_consistent_with_phase_ramps_for_integer_shifts():
    # an object away from the FOV edge (grid_sample pads with zeros, phase ramps are circular)
    x = torch.nn.functional.pad(_head(32), (8, 8, 8, 8))
    tr = torch.tensor([[[3.0, -2.0], [1.0, 4.0]]], dtype=torch.float64)
    times = torch.tensor([[0.3, 0.6]])
    a = F.motion(x, torch.zeros(1, 2, 1, dtype=torch.float64), tr, times)
    b = F.motion(x, torch.zeros(1, 2, 1, dtype=torch.float64, requires_grad=True), tr, times)
    assert (a - b).abs().max() < 1e-9


def test_motion_3d_crop_to_object_support_is_exact():
    # the two-pass 3D warp resamples only the box of the warped non-zero voxels; it must equal the
    # uncropped warp for objects inside the FOV, touching its border, with negative values, two
    # channels, and for an all-zero volume
    g = torch.Generator().manual_seed(0)
    base = phantom((30, 36, 28), seed=1)["image"][None]
    cases = [
        base,
        torch.roll(base, (9, -11, 8), (2, 3, 4)),  # wrapped onto the borders
        torch.cat([base, -0.3 * base.flip(-1)], 1),
        torch.zeros(1, 1, 30, 36, 28),
    ]
    for k, x in enumerate(cases):
        for _ in range(6):
            rot = (torch.rand(3, generator=g) - 0.5) * 40
            tr = (torch.rand(3, generator=g) - 0.5) * 30
            a = F._rigid_resample_3d(x, rot, tr, [1.0, 1.2, 0.9], crop=True)
            b = F._rigid_resample_3d(x, rot, tr, [1.0, 1.2, 0.9], crop=False)
            assert a.shape == x.shape and (a - b).abs().max() < 1e-5, k
    # gradients with respect to the pose flow through the cropped warp like the uncropped one
    rot = torch.tensor([4.0, -6.0, 3.0], requires_grad=True)
    tr = torch.tensor([2.0, -1.5, 1.0], requires_grad=True)
    w = torch.rand(base.shape, generator=g)
    ga = torch.autograd.grad((F._rigid_resample_3d(base, rot, tr, [1.0] * 3) * w).sum(), (rot, tr))
    gb = torch.autograd.grad(
        (F._rigid_resample_3d(base, rot, tr, [1.0] * 3, crop=False) * w).sum(), (rot, tr)
    )
    for u, v in zip(ga, gb):
        assert torch.allclose(u, v, rtol=1e-4, atol=1e-4)


def test_motion_3d_inference_path_matches_autograd_path():
    # no grad: line runs copied per pose (no where), in-place magnitude, cropped warps; with a
    # pose requiring grad: the masked autograd assembly. Two samples with different events, two
    # channels (the spectrum per sample is above the run-copy threshold).
    x = torch.cat([phantom((40, 48, 40), seed=s)["image"][None] for s in (2, 3)])
    x = torch.cat([x, 0.5 * x.flip(-2)], 1)
    assert x[0].numel() // 2 >= F._RUN_MIN
    rot = torch.tensor([[[5.0, -3.0, 2.0], [-4.0, 6.0, 1.0]], [[0.0, 0.0, 0.0], [7.0, 2.0, -5.0]]])
    tr = torch.tensor([[[2.0, -1.0, 3.0], [1.0, 2.0, -2.0]], [[1.5, 0.0, 0.0], [0.0, -3.0, 1.0]]])
    times = torch.tensor([[0.35, 0.7], [0.1, 0.55]])
    x0 = x.clone()
    for order in ("linear", "centric"):
        fast = F.motion(x, rot, tr, times, order=order)
        slow = F.motion(x, rot.clone().requires_grad_(True), tr, times, order=order).detach()
        assert fast.min() >= 0 and (fast - slow).abs().max() < 2e-5, order
    assert torch.equal(x, x0)


def test_nonzero_box_2d_3d():
    x2 = torch.zeros(2, 10, 12)
    x2[1, 3, 4] = -1.0
    x2[0, 7, 9] = 2.0
    assert F._nonzero_box(x2) == [(3, 8), (4, 10)]
    x3 = torch.zeros(1, 6, 7, 8)
    x3[0, 2, 5, 1] = float("nan")
    assert F._nonzero_box(x3) == [(2, 3), (5, 6), (1, 2)]
    assert F._nonzero_box(torch.zeros(1, 5, 5)) is None


def test_motion_2d_inference_path_matches_autograd_path():
    # no grad: NumPy pose coefficients, planar grids, line runs; must equal the autograd path for
    # objects inside the FOV, touching its border, with negative values, an all-zero sample, and
    # large rotations
    base = phantom((56, 48), seed=6)["image"][None]
    x = torch.cat([base, torch.roll(base, (20, -17), (2, 3)), -0.4 * base.flip(-1),
                   torch.zeros_like(base)])
    g = torch.Generator().manual_seed(5)
    rot = (torch.rand(4, 2, 1, generator=g) - 0.5) * 70
    tr = (torch.rand(4, 2, 2, generator=g) - 0.5) * 16
    times = torch.tensor([[0.2, 0.6], [0.0, 0.5], [0.3, 0.35], [0.1, 0.9]])
    fast = F.motion(x, rot, tr, times)
    slow = F.motion(x, rot.clone().requires_grad_(True), tr, times).detach()
    assert (fast - slow).abs().max() < 1e-5


def test_motion_large_batch_in_groups_equals_per_sample(monkeypatch):
    # a batch is processed in cache-sized groups of samples; each sample must come out as if it
    # were alone, with its own events, moved-energy fraction and pose (also complex output)
    x = torch.cat([phantom((192, 192), seed=s)["image"][None] for s in range(11)])
    per = 4  # groups of 4, 4 and 3 samples, whatever the default chunk size is
    monkeypatch.setattr(F, "_MOTION_CHUNK", per * x[0].numel())
    sizes = []
    motion = F.motion
    monkeypatch.setattr(F, "motion", lambda xx, *a, **k: sizes.append(xx.shape[0]) or motion(xx, *a, **k))
    g = torch.Generator().manual_seed(3)
    rot = (torch.rand(11, 2, 1, generator=g) - 0.5) * 20
    tr = (torch.rand(11, 2, 2, generator=g) - 0.5) * 10
    times = torch.sort(torch.rand(11, 2, generator=g), 1).values
    times[:, 0] = 0
    me = 0.1 + 0.3 * torch.rand(11, generator=g)
    for cplx in (False, True):
        sizes.clear()
        y = F.motion(x, rot, tr, times, moved_energy=me, complex_output=cplx)
        assert sizes == [11, 4, 4, 3]  # the batch really went through in groups
        for i in (0, per - 1, per, 10):
            yi = F.motion(x[i : i + 1], rot[i : i + 1], tr[i : i + 1], times[i : i + 1],
                          moved_energy=me[i : i + 1], complex_output=cplx)
            assert (y[i : i + 1] - yi).abs().max() < 1e-5


def test_motion_rotation_dc_and_nonnegative():
    x = _head(64)
    rot = torch.tensor([[[6.0], [-8.0]]], dtype=torch.float64)
    tr = torch.tensor([[[2.0, 1.0], [-3.0, 2.0]]], dtype=torch.float64)
    z = F.motion(x, rot, tr, torch.tensor([[0.2, 0.6]]), complex_output=True)
    assert abs(complex(z.sum()) - float(x.sum())) < 2e-3 * float(x.sum())  # interpolation only
    y = F.motion(x, rot, tr, torch.tensor([[0.2, 0.6]]))
    assert y.min() >= 0 and (y - x).abs().mean() > 1e-3


def test_motion_damage_rises_with_moved_energy():
    x = _head(64, torch.float32)
    rot = torch.tensor([[[5.0], [-4.0]]])
    tr = torch.tensor([[[4.0, -3.0], [2.0, 5.0]]])
    rel = torch.tensor([[0.0, 0.5]])
    dmg = []
    for f in (0.0, 0.002, 0.005, 0.01, 0.04, 0.1):
        y = F.motion(x, rot, tr, rel, moved_energy=torch.tensor([f]))
        dmg.append(1 - float(ssim(x, y, data_range=1.0)))
    # energy is quantised by k-line, so neighbouring fractions may select the same line
    assert all(b >= a - 1e-6 for a, b in itertools.pairwise(dmg)), dmg
    assert dmg[0] < 1e-4 and dmg[-1] > dmg[1] + 0.1, dmg


def test_motion_moved_energy_fraction_is_met():
    x = _head(64)
    k = torch.fft.fft(x, dim=-2)
    e = (k.abs() ** 2).sum(-1).flatten()  # energy per PE line, unshifted order
    t_line = F.acquisition_times(64)
    times = F._times_from_energy(
        e[None],
        t_line,
        torch.tensor([0.2], dtype=torch.float64),
        torch.tensor([[0.0]], dtype=torch.float64),
    )
    moved = float(e[t_line >= times[0, 0]].sum() / e.sum())
    # nearest achievable fraction: within the energy of one line of it
    assert abs(moved - 0.2) <= float(e.max() / e.sum())


def test_motion_multislice_moves_only_late_slices():
    x = phantom((24, 32, 32), seed=0)["image"][None].double()
    rot = torch.tensor([[[0.0, 0.0, 0.0]]], dtype=torch.float64)
    tr = torch.tensor([[[0.0, 3.0, 0.0]]], dtype=torch.float64)
    y = F.motion(x, rot, tr, torch.tensor([[0.5]]), acquisition="multislice")
    assert torch.allclose(y[..., :12, :, :], x[..., :12, :, :])
    assert torch.allclose(y[..., 12:, 3:, :], x[..., 12:, :-3, :], atol=1e-9)


# ----------------------------------------------------------------------------- ghosting
def _square(n=64, lo=28, hi=36, dtype=torch.float64):
    x = torch.zeros(1, 1, n, n, dtype=dtype)
    x[..., lo:hi, lo:hi] = 1.0
    return x


def test_ghosting_positions_amplitude_background():
    x = _square()
    a = 0.4
    for phi in (0.0, 0.7, 2.0):
        y = F.ghosting(x, a, 4.0, phi)
        assert y.min() >= 0
        col = y[0, 0, :, 32]
        # ghosts centred at +-FOV/4 = +-16 px from the object (rows 28..35 -> 12..19 and 44..51)
        above, below = col[12:20], col[44:52]
        assert torch.allclose(above, torch.full_like(above, a / 2), rtol=0.02)
        assert torch.allclose(below, torch.full_like(below, a / 2), rtol=0.02)
        bg = torch.cat([col[:12], col[20:28], col[36:44], col[52:]])
        assert bg.max() < 1e-3
        assert torch.allclose(col[28:36], torch.ones(8, dtype=x.dtype), atol=1e-12)
    # ghost centroid within +-1 voxel of +-FOV/4
    y = F.ghosting(x, a, 4.0, 0.0)[0, 0, :, 32]
    rows = torch.arange(64, dtype=x.dtype)
    c_up = float((y[:24] * rows[:24]).sum() / y[:24].sum())
    assert abs(c_up - (31.5 - 16)) <= 1.0


def test_ghosting_first_harmonic_amplitude_in_kspace():
    x = _square()
    y = F.ghosting(x, 0.3, 4.0, 0.0)
    # the magnitude profile along PE has its first ghost harmonic at 1/4 cycles per pixel
    col = y[0, 0, :, 32]
    ghosts = col.clone()
    ghosts[28:36] = 0
    assert abs(float(ghosts.sum()) / 8.0 - 0.3) < 0.3 * 0.02  # two ghosts of a/2


def test_ghosting_fractional_period_matches_fft_model():
    x = _square(60)
    a, n, phi = 0.3, 7.0, 0.4
    y = F.ghosting(x, a, n, phi)
    m = freq_index(60, dtype=torch.float64)
    k = torch.fft.fft(x, dim=-2) * (1 + a * torch.cos(2 * math.pi * m / n + phi))[:, None]
    ref = torch.fft.ifft(k, dim=-2).abs()
    # identical up to the Nyquist-bin convention of the real FFT
    assert (y - ref).abs().max() < 5e-3


def test_nyquist_ghost_half_fov():
    x = _square(64, 4, 12)
    th = math.radians(20.0)
    y = F.nyquist_ghost(x, th)
    assert torch.allclose(
        y[0, 0, 4 + 32 : 12 + 32, 8], torch.full((8,), math.sin(th / 2), dtype=x.dtype)
    )
    assert torch.allclose(y[0, 0, 4:12, 8], torch.full((8,), math.cos(th / 2), dtype=x.dtype))
    assert y[0, 0, 14:34].max() < 1e-12 and y.min() >= 0
    # energy is conserved (unitary modulation)
    assert torch.isclose((y**2).sum(), (x**2).sum())


# ----------------------------------------------------------------------------- spike, zipper
def test_spike_stripe_period_and_orientation():
    n = 64
    x = torch.ones(1, 1, n, n, dtype=torch.float64)
    k = torch.tensor([[4.0, 8.0]], dtype=torch.float64)  # cycles per FOV along (H, W)
    y = F.spike(x, k, torch.tensor([0.3], dtype=torch.float64), 0.0)
    assert y.min() >= 0
    spec = torch.fft.fft2(y[0, 0] - y.mean()).abs()
    peak = divmod(int(spec.argmax()), n)
    freqs = {
        (peak[0] - n if peak[0] > n // 2 else peak[0]),
    }
    assert {tuple(v if v <= n // 2 else v - n for v in peak)} <= {(4, 8), (-4, -8)}
    assert freqs  # period along k is N/|k|
    period = n / math.hypot(4, 8)
    # constant along the direction perpendicular to k: (dy, dx) = (8, -4)
    img = y[0, 0]
    assert torch.allclose(img, torch.roll(img, shifts=(8, -4), dims=(0, 1)), atol=1e-12)
    # one period along k brings the pattern back: shift by k/|k| * period -> (4, 8) * n/|k|^2
    assert abs(period - n / math.sqrt(80)) < 1e-12
    assert torch.allclose(img, torch.roll(img, shifts=(16, 32), dims=(0, 1)), atol=1e-12)
    assert not torch.allclose(img, torch.roll(img, shifts=(2, 4), dims=(0, 1)), atol=1e-3)


def test_spike_amplitude_relative_to_kspace_max():
    x = torch.full((1, 1, 32, 32), 2.0, dtype=torch.float64)
    y = F.spike(
        x,
        torch.tensor([[0.0, 5.0]], dtype=torch.float64),
        torch.tensor([0.25], dtype=torch.float64),
    )
    # |K(0)| = sum x; the spike's image-domain amplitude is 0.25 * mean(x) = 0.5
    assert math.isclose(float(y.max()), 2.5, rel_tol=1e-9) and math.isclose(
        float(y.min()), 1.5, rel_tol=1e-9
    )


def test_zipper_confined_to_one_readout_column():
    x = _head(64)
    y = F.zipper(
        x, torch.tensor([[20]]), torch.tensor([[0.5]], dtype=torch.float64), torch.tensor([7])
    )
    diff = (y - x).abs()[0, 0]
    energy_per_col = (diff**2).sum(0)
    assert float(energy_per_col[19:22].sum()) >= 0.999 * float(energy_per_col.sum())
    assert int((energy_per_col > 0).sum()) == 1
    # extends across the whole phase-encode axis
    assert int((diff[:, 20] > 0).sum()) >= 60
    assert y.min() >= 0


# ----------------------------------------------------------------------------- Gibbs
def test_gibbs_overshoot_and_identity():
    x = torch.zeros(1, 1, 4, 512, dtype=torch.float64)
    x[..., 128:384] = 1.0
    y = F.gibbs(x, 0.1, axes=(-1,))
    assert abs(float(y.max()) - 1.0 - 0.0895) < 0.005
    x2 = _head(48)
    assert torch.equal(F.gibbs(x2, 1.0), x2)
    # separable, per-axis fractions: a rectangular box in k-space
    both = F.gibbs(x2, torch.tensor([[0.5, 0.7]]), axes=(-2, -1))
    m = freq_index(48, dtype=torch.float64).abs()
    box = ((m[:, None] <= 12) & (m[None, :] <= 16)).to(torch.float64)
    ref = torch.fft.ifft2(torch.fft.fft2(x2) * box).abs()
    assert torch.allclose(both, ref, atol=1e-12)


def test_gibbs_equals_kspace_box():
    x = _head(32)
    y = F.gibbs(x, 0.5)
    m = freq_index(32, dtype=torch.float64).abs()
    box = ((m[:, None] <= 8) & (m[None, :] <= 8)).to(torch.float64)
    ref = torch.fft.ifft2(torch.fft.fft2(x) * box).abs()
    assert torch.allclose(y, ref, atol=1e-12)


# ----------------------------------------------------------------------------- undersampling
def test_undersampling_mask_fraction_and_acs():
    for pattern in ("random", "equispaced", "variable_density"):
        for r, acs in ((4, 0.08), (8, 0.04), (3, 0.1)):
            mk = F.undersampling_mask(256, r, acs, pattern, seed=1)
            assert abs(int(mk.sum()) - 256 / r) <= 1
            m = freq_index(256)
            n_acs = round(acs * 256)
            centre = (m >= -(n_acs // 2)) & (m < n_acs - n_acs // 2)
            assert bool(mk[centre].all())


def test_undersampling_equispaced_replicas_and_random_incoherent():
    n = 64
    x = torch.zeros(1, 1, n, n, dtype=torch.float64)
    x[..., 30:34, 30:34] = 1.0
    r = 4
    mk = F.undersampling_mask(n, r, 0.0, "equispaced")
    y = F.undersampling(x, mk)
    col = y[0, 0, :, 31]
    # R-1 coherent replicas at multiples of FOV/R (16 px), each 1/R of the object
    for j in range(1, r):
        rows = [(30 + 16 * j + i) % n for i in range(4)]
        assert torch.allclose(col[rows], torch.full((4,), 1 / r, dtype=x.dtype), atol=1e-9)
    others = torch.ones(n, dtype=torch.bool)
    for j in range(r):
        others[[(30 + 16 * j + i) % n for i in range(4)]] = False
    assert col[others].max() < 1e-9
    assert y.min() >= 0
    # equispaced: the replicas are as bright as the object (coherent); random: the largest
    # aliasing peak stays well below the object (incoherent, noise-like)
    n = 256
    x = torch.zeros(1, 1, n, 8, dtype=torch.float64)
    x[..., 126:130, 2:6] = 1.0
    for seed in range(5):
        yr = F.undersampling(x, F.undersampling_mask(n, r, 0.0, "random", seed=seed))[0, 0]
        main = float(yr[126:130, 3].mean())
        outside = yr.clone()
        outside[126:130] = 0
        assert float(outside.max()) < 0.75 * main
        assert yr.min() >= 0


# ----------------------------------------------------------------------------- wrap-around
def test_wrap_around_conserves_signal_and_folds():
    x = _head(64)
    for f, off in ((0.7, 0.0), (0.55, 3.0), (0.9, -2.0)):
        y = F.wrap_around(x, f, off)
        assert torch.isclose(y.sum(), x.sum())
    x = torch.zeros(1, 1, 20, 4, dtype=torch.float64)
    x[..., 1, :] = 1.0  # outside the central 10-row FOV (rows 5..14)
    y = F.wrap_around(x, 0.5)
    assert float(y[0, 0, 11, 0]) == 1.0 and float(y[0, 0, 1, 0]) == 0.0


def test_soft_magnitude_exact_above_delta_smooth_below():
    r = torch.linspace(0, 3e-3, 301, dtype=torch.float64)
    m = F.soft_magnitude(r * r, 1e-3)
    above = r >= 1e-3
    assert torch.equal(m[above], r[above])
    below = ~above
    assert (m[below] <= r[below] + 1e-18).all() and (r - m).max() <= 0.175e-3
    assert m[0] == 0
    z = torch.tensor([1e-7, -3e-7, 5e-4, 2e-3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: F.soft_magnitude(v * v, 1e-3), (z,), eps=1e-6)


def test_ghosting_chunked_inference_path_matches_autograd_path():
    # a volume above the cache-chunk size takes the slab path under no_grad
    x = phantom((40, 64, 56), seed=2)["image"][None].double()
    assert x.numel() > F._CHUNK
    for n in (4.0, 5.0):  # integer (sliced rolls) and fractional (rFFT) shifts
        fast = F.ghosting(x, 0.5, n, 0.7)
        slow = F.ghosting(x.clone().requires_grad_(True), 0.5, n, 0.7).detach()
        assert (fast - slow).abs().max() < 1e-12


def test_ghosting_inference_path_matches_autograd_path_all_shift_kinds():
    # slab path (> _CHUNK voxels) for whole-FOV (k = 0), integer and fractional shifts, in float32,
    # with a zero background (soft magnitude below delta) and a non-trivial phase
    x = phantom((40, 64, 56), seed=3)["image"][None]
    x0 = x.clone()
    assert x.numel() > F._CHUNK and (x == 0).any()
    for n in (1.0, 8.0, 5.0, 7.3):
        fast = F.ghosting(x, 0.6, n, 2.1)
        slow = F.ghosting(x.clone().requires_grad_(True), 0.6, n, 2.1).detach()
        assert fast.dtype == x.dtype and fast.min() >= 0
        assert (fast - slow).abs().max() < 1e-5
    assert torch.equal(x, x0)
    # zero amplitude is the identity (|x| for x >= 0, the soft magnitude only below delta)
    y = F.ghosting(x, 0.0, 5.0, 0.3)
    big = x >= 1e-3
    assert torch.allclose(y[big], x[big], rtol=1e-6, atol=1e-6)


def test_ghosting_slab_path_soft_magnitude_region_matches_autograd_path():
    # a third of the voxels replaced by values in [0, 2e-3]: a large share of the output lies in
    # the soft-magnitude region 0 < |z| < delta (delta = 1e-3 here), which the slab path evaluates
    # from the unscaled |z|^2 (whole-pixel shifts) or the 1/delta-scaled one (fractional shifts)
    g = torch.Generator().manual_seed(0)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-6)):
        x = phantom((40, 64, 56), seed=3)["image"][None].to(dtype)
        mask = torch.rand(x.shape, generator=g) < 0.3
        x[mask] = (torch.rand(int(mask.sum()), generator=g) * 2e-3).to(dtype)
        assert x.numel() > F._CHUNK
        for n in (1.0, 4.0, 8.0, 5.0):
            fast = F.ghosting(x, 0.6, n, 2.1)
            slow = F.ghosting(x.clone().requires_grad_(True), 0.6, n, 2.1).detach()
            assert ((slow > 0) & (slow < 1e-3)).float().mean() > 0.1
            assert (fast - slow).abs().max() < tol


def test_ghosting_any_intensity_scale():
    # float32 images whose |z|^2 or delta^2 leave float32's normal range (peaks 1e-25 ... 1e25):
    # every path (2D NumPy, 3D slab, autograd) works at the power-of-two scale of the peak; the
    # float64 computation of the same input (whose range holds these squares) is the reference
    for x in (phantom((40, 64, 56), seed=3)["image"][None], phantom((64, 64), seed=1)["image"][None]):
        for n in (4.0, 1.0, 5.0):
            for scale in (1e-25, 1e-17, 1.0, 1e15, 1e25):
                xs = x * scale
                ref = F.ghosting(xs.double(), 0.6, n, 2.1) / scale
                got = F.ghosting(xs, 0.6, n, 2.1).double() / scale
                assert torch.isfinite(got).all()
                assert (got - ref).abs().max() < 1e-6
                xg = xs.clone().requires_grad_(True)
                out = F.ghosting(xg, 0.6, n, 2.1)
                out.sum().backward()
                assert (out.detach().double() / scale - ref).abs().max() < 1e-6
                assert torch.isfinite(xg.grad).all()


def test_ghosting_fractional_inference_path_zero_lines_axes_and_signs():
    # The fractional no-grad path crops to the box of non-zero phase-encode lines and transposes
    # slabs so PE is last. It must equal the autograd path for every PE axis (PE last = no
    # transpose), with zero lines inside and around the object, negative values (the min/max
    # line test instead of sums), several channels and samples.
    g = torch.Generator().manual_seed(7)
    base = phantom((24, 40, 36), seed=5)["image"][None]
    x = torch.cat([base, -0.5 * base.flip(-1)], 1)  # (1, 2, 24, 40, 36), second channel negative
    x = torch.cat([x, torch.randn(x.shape, generator=g)], 0)  # a dense sample without zero lines
    x[:, :, 10] = 0  # a zero slab inside the box
    x[0, :, :, :, 5] = 0  # zero lines along every PE axis
    x0 = x.clone()
    for pe in (-1, -2, -3):
        for n in (5.0, 7.3):
            fast = F.ghosting(x, torch.tensor([0.6, 0.4]), n, 1.3, pe_axis=pe)
            slow = F.ghosting(x.clone().requires_grad_(True), torch.tensor([0.6, 0.4]), n, 1.3,
                              pe_axis=pe).detach()
            assert (fast - slow).abs().max() < 2e-5, (pe, n)
            assert fast.min() >= 0
    assert torch.equal(x, x0)
    # lines that are zero in the input stay exactly zero (ghosting acts along each PE line)
    y = F.ghosting(x, 0.6, 5.0, 0.3, pe_axis=-2)
    assert (y[:, :, 10] == 0).all() and (y[0, :, :, :, 5] == 0).all()
    assert (y[1, :, 10] == 0).all()
    # 2D, batch of mixed integer/fractional periods, one all-zero sample
    x2 = torch.cat([phantom((48, 40), seed=s)["image"][None] for s in (1, 2)] + [torch.zeros(1, 1, 48, 40)])
    per = torch.tensor([5.5, 8.0, 5.0])  # 48/8 = 6 whole pixels; 48/5.5 and 48/5 fractional
    fast = F.ghosting(x2, 0.5, per, 0.2)
    slow = F.ghosting(x2.clone().requires_grad_(True), 0.5, per, 0.2).detach()
    assert (fast - slow).abs().max() < 2e-5 and (fast[2] == 0).all()


def test_gibbs_inference_path_matches_autograd_path():
    # no grad: the zero-filled spectrum is written in place; with grad: zeros + cat
    # (an outer axis that keeps most of its bins is truncated in place too: 0.8, [0.9, 0.4, 0.7])
    x = phantom((20, 24, 18), seed=4)["image"][None].double()
    for f in (
        0.3,
        0.55,
        0.8,
        torch.tensor([[0.4, 0.9, 0.7]], dtype=torch.float64),
        torch.tensor([[0.9, 0.4, 0.7]], dtype=torch.float64),
    ):
        fast = F.gibbs(x, f)
        slow = F.gibbs(x.clone().requires_grad_(True), f).detach()
        assert (fast - slow).abs().max() < 1e-12


def test_gibbs_3d_equals_kspace_box():
    x = phantom((20, 24, 18), seed=5)["image"][None].double()
    for f in (0.35, 0.8):
        y = F.gibbs(x, f)
        box = torch.ones((), dtype=torch.float64)
        for n in x.shape[2:]:
            k = math.floor(f * n / 2 + 1e-9)
            box = box[..., None] * (freq_index(n, dtype=torch.float64).abs() <= k)
        ref = torch.fft.ifftn(torch.fft.fftn(x, dim=(2, 3, 4)) * box, dim=(2, 3, 4)).abs()
        assert torch.allclose(y, ref, atol=1e-12)


def test_spike_inference_path_matches_autograd_path():
    # one spike, no grad: separable cos(theta) in slabs; must equal the direct formula
    x = torch.cat([phantom((40, 64, 56), seed=s)["image"][None] for s in (4, 5)], 1).double()
    x0 = x.clone()
    k = torch.tensor([[[3.0, -7.5, 11.25]]], dtype=torch.float64)
    for axes, kk in ((None, k), ((-1, -3), k[..., :2])):
        fast = F.spike(x, kk, torch.tensor([[1.7]]), 0.9, axes=axes)
        slow = F.spike(x.clone().requires_grad_(True), kk, torch.tensor([[1.7]]), 0.9, axes=axes)
        assert fast.shape == x.shape and fast.min() >= 0
        assert (fast - slow.detach()).abs().max() < 1e-10
    assert torch.equal(x, x0)
    # small 2D batch (whole batch at once): two samples with their own spikes, two channels,
    # spike along both axes or one
    x2 = torch.stack([torch.cat([phantom((48, 40), seed=s)["image"], 0.5 * phantom((48, 40), seed=s + 9)["image"]])
                      for s in (1, 2)]).double()
    k2 = torch.tensor([[[5.0, -3.5]], [[-2.25, 7.0]]], dtype=torch.float64)
    amp2, ph2 = torch.tensor([[1.3], [0.4]]), torch.tensor([[0.2], [2.5]])
    for axes, kk in ((None, k2), ((-2,), k2[..., :1]), ((-1,), k2[..., 1:])):
        fast = F.spike(x2, kk, amp2, ph2, axes=axes)
        slow = F.spike(x2.clone().requires_grad_(True), kk, amp2, ph2, axes=axes).detach()
        assert fast.shape == x2.shape and fast.min() >= 0
        assert (fast - slow).abs().max() < 1e-10


def test_small_image_numpy_paths_match_autograd_paths(monkeypatch):
    # 2D images on the CPU take NumPy inference paths (whole-pixel and fractional ghosting, one
    # spike): same
    # values as the autograd paths, in float64 and float32, for several channels, negative values,
    # a zero background, a whole-FOV shift (n = 1) and batches with different parameters
    calls = []
    for name in ("_ghost_int_np", "_ghost_frac_np", "_spike1_np"):
        fn = getattr(F, name)
        monkeypatch.setattr(F, name, lambda *a, _f=fn, _n=name, **k: calls.append(_n) or _f(*a, **k))
    base = torch.stack([torch.cat([phantom((48, 40), seed=s)["image"],
                                   -0.5 * phantom((48, 40), seed=s + 4)["image"]]) for s in (1, 2)])
    for dt, tol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
        x = base.to(dt)
        x0 = x.clone()
        for per, pe in ((torch.tensor([4.0, 8.0]), -2), (torch.tensor([1.0, 6.0]), -2), (5.0, -1),
                        (torch.tensor([5.0, 7.3]), -2)):
            fast = F.ghosting(x, torch.tensor([0.6, 0.3]), per, torch.tensor([0.4, 2.0]), pe_axis=pe)
            slow = F.ghosting(x.clone().requires_grad_(True), torch.tensor([0.6, 0.3]), per,
                              torch.tensor([0.4, 2.0]), pe_axis=pe).detach()
            assert fast.dtype == dt and fast.shape == x.shape and fast.min() >= 0
            assert (fast - slow).abs().max() < tol * 10, (dt, per, pe)
        k = torch.tensor([[[5.0, -3.5]], [[-2.25, 7.0]]], dtype=torch.float64)
        for axes, kk in ((None, k), ((-1,), k[..., 1:])):
            fast = F.spike(x, kk, torch.tensor([[1.3], [0.4]]), torch.tensor([[0.2], [2.5]]), axes=axes)
            slow = F.spike(x.clone().requires_grad_(True), kk, torch.tensor([[1.3], [0.4]]),
                           torch.tensor([[0.2], [2.5]]), axes=axes).detach()
            assert fast.dtype == dt and fast.min() >= 0
            assert (fast - slow).abs().max() < tol * 10, (dt, axes)
        assert torch.equal(x, x0)
    assert calls.count("_ghost_int_np") == 12 and calls.count("_spike1_np") == 4
    assert calls.count("_ghost_frac_np") == 4  # 48 / 5 and 48 / 7.3: two dtypes x two samples


def test_ghosting_large_sample_line_path_and_fallbacks(monkeypatch):
    # samples above the NumPy-image size on the CPU: non-negative ones with phase encode not last
    # take the line-by-line path (only non-zero lines transformed), negative ones and phase encode
    # last the slab path; all equal the autograd path, and zero lines stay exactly zero
    calls = []
    for name in ("_ghost_lines_np", "_ghost_fractional"):
        fn = getattr(F, name)
        monkeypatch.setattr(F, name, lambda *a, _f=fn, _n=name, **k: calls.append(_n) or _f(*a, **k))
    x = phantom((40, 64, 56), seed=6)["image"][None]
    assert x[0].numel() > F._CHUNK
    x[..., :, 30] = 0  # zero phase-encode lines (all of readout column 30) inside the object
    cases = ((x, -2, "_ghost_lines_np"), (x, -1, "_ghost_fractional"),
             (x - 0.2 * x.flip(-1), -2, "_ghost_fractional"))
    for xx, pe, path in cases:
        calls.clear()
        fast = F.ghosting(xx, 0.6, 5.3, 0.7, pe_axis=pe)
        slow = F.ghosting(xx.clone().requires_grad_(True), 0.6, 5.3, 0.7, pe_axis=pe).detach()
        assert calls[-1] == path and calls.count(path) == 1, (pe, calls)  # (negative: a fallback)
        assert (fast - slow).abs().max() < 2e-5 and fast.min() >= 0
    y = F.ghosting(x, 0.6, 5.3, 0.7, pe_axis=-2)
    assert (y[..., :, 30] == 0).all() and (y[..., :, 0] == 0).all()  # inside and outside the box
