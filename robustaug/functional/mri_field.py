"""MRI noise and field-imperfection kernels: Rician and multi-coil noise, bias field, slice profile,
chemical shift and susceptibility (B0) distortion.

Every kernel takes a float batch ``(B, C, *spatial)`` (2 or 3 spatial axes) of *magnitude* images and
per-sample parameters as ``(B,)`` tensors (or Python scalars, broadcast to the batch). Kernels are
deterministic: noise comes from recorded integer seeds (:func:`robustaug.core.rng.per_sample_noise`).
None writes into its input, none clips, and all are differentiable with respect to the image and to
their continuous parameters (``sigma``, ``log_field``, shifts, field maps) wherever the physics is
smooth, so they can serve as attack spaces.

Physical constants: the proton gyromagnetic ratio ``gamma / 2 pi = 42.577 MHz/T`` and the fat-water
chemical shift of 3.5 ppm (main methylene peak, Dixon 1984).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core.rng import new_generator, per_sample_noise
from .generic import _per_sample, _spatial

__all__ = [
    "FAT_WATER_PPM",
    "GAMMA_BAR_MHZ_PER_T",
    "bias_field",
    "bspline_eval",
    "bspline_upsample",
    "chemical_shift",
    "chemical_shift_pixels",
    "multicoil_noise",
    "rician_noise",
    "shift_along_axis",
    "slice_profile_matrix",
    "slice_thickness",
    "susceptibility_distortion",
    "synthetic_g_factor",
]

#: Proton gyromagnetic ratio gamma / (2 pi), in MHz per tesla.
GAMMA_BAR_MHZ_PER_T = 42.577478
#: Fat-water chemical shift of the main (methylene) fat peak, in ppm.
FAT_WATER_PPM = 3.5


def _axis(axis: int, nd: int, name: str = "axis") -> int:
    if not -nd <= axis < nd:
        raise ValueError(f"`{name}` must be a spatial axis in [-{nd}, {nd - 1}], got {axis}.")
    return axis % nd


# ============================================================================= noise
class _SafeHypot(torch.autograd.Function):
    """``sqrt(a^2 + b^2)`` whose gradient is 0 (not NaN) at the origin."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        r = torch.hypot(a, b)
        ctx.save_for_backward(a, b, r)
        return r

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        a, b, r = ctx.saved_tensors
        inv = torch.where(r > 0, g / torch.where(r > 0, r, torch.ones_like(r)), torch.zeros_like(r))
        return inv * a, inv * b


def _hypot(a: Tensor, b: Tensor) -> Tensor:
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return _SafeHypot.apply(a, b)
    return torch.hypot(a, b)


def rician_noise(x: Tensor, sigma: Tensor | float, seeds: Tensor) -> Tensor:
    """Rician noise: the magnitude of a complex image with white Gaussian noise in both channels.

    The scanner measures a complex signal with i.i.d. Gaussian noise of standard deviation ``sigma`` in
    the real and imaginary channels; the magnitude image is then Rician distributed (Rayleigh where
    the signal is zero: mean ``sigma sqrt(pi/2)``, std ``sigma sqrt(2 - pi/2)``; nearly Gaussian with
    std ``sigma`` where ``x >> sigma``).

    $$ y = \\sqrt{(x + \\sigma n_1)^2 + (\\sigma n_2)^2},\\quad n_1, n_2 \\sim \\mathcal N(0, 1) $$

    Args:
        x: ``(B, C, *spatial)`` magnitude images (>= 0; a negative value is read as a signal of that
            real part, so its sign is lost in the magnitude).
        sigma: Noise standard deviation per channel in intensity units, ``(B,)``, a scalar, or a
            tensor broadcastable to ``x`` (a spatial noise map). Differentiable.
        seeds: ``(B,)`` int64 seeds of the per-sample noise fields.

    Returns:
        The noisy magnitude batch (>= 0).

    References:
        Gudbjartsson & Patz, "The Rician distribution of noisy MRI data", MRM 34(6):910-914, 1995.
    """
    s = _sigma_like(sigma, x)
    n = per_sample_noise(seeds, (2, *x.shape[1:]), device=x.device, dtype=x.dtype)
    return _hypot(torch.addcmul(x, s, n[:, 0]), s * n[:, 1])


def _sigma_like(sigma: Tensor | float, x: Tensor) -> Tensor:
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim <= 1:
        return _per_sample(s, x)
    return s


def _standard_gamma(conc: float, shape: Sequence[int], seed: int, device: torch.device,
                    dtype: torch.dtype) -> Tensor:
    g = new_generator(seed, device)
    alpha = torch.full(tuple(shape), conc, device=device, dtype=dtype)
    try:
        return torch._standard_gamma(alpha, generator=g)
    except (TypeError, RuntimeError, AttributeError):  # pragma: no cover - private API fallback
        k = round(2 * conc)
        z = torch.randn((k, *shape), generator=g, device=device, dtype=dtype)
        return 0.5 * (z * z).sum(0)


def multicoil_noise(
    x: Tensor,
    sigma: Tensor | float,
    seeds: Tensor,
    n_coils: int,
    g_factor: Tensor | float | None = None,
) -> Tensor:
    """Noise of an ``n``-coil sum-of-squares (SoS) reconstruction: noncentral chi statistics.

    Each of the ``n`` coils adds i.i.d. complex Gaussian noise (std ``sigma`` per channel); the SoS
    magnitude has a noncentral chi distribution with ``2n`` degrees of freedom and noncentrality
    ``x``. It only depends on the total coil signal ``x``, so it is sampled exactly as one Gaussian
    channel carrying the signal plus a chi-square with ``2n - 1`` degrees of freedom (drawn as a
    Gamma variate, so the cost does not grow with ``n``). In parallel imaging the noise is amplified
    locally by the geometry factor ``g`` (``sigma -> g sigma``). With ``n = 1`` the draws are exactly
    those of :func:`rician_noise` for the same seeds.

    $$ y = \\sqrt{(x + g\\sigma n_1)^2 + (g\\sigma)^2 Q},\\quad Q \\sim \\chi^2_{2n-1},
    \\quad E[y \\mid x = 0] = g\\sigma\\sqrt 2\\,\\frac{\\Gamma(n + 1/2)}{\\Gamma(n)} $$

    Args:
        x: ``(B, C, *spatial)`` magnitude images (>= 0).
        sigma: Per-coil, per-channel noise std in intensity units: ``(B,)``, scalar or a map
            broadcastable to ``x``. Differentiable.
        seeds: ``(B,)`` int64 seeds.
        n_coils: Number of receive coils ``n`` >= 1.
        g_factor: Optional g-factor map (>= 1) broadcastable to ``x``, or a scalar.

    Returns:
        The noisy SoS magnitude batch (>= 0).

    References:
        Constantinides, Atalar & McVeigh, "Signal-to-noise measurements in magnitude images from NMR
        phased arrays", MRM 38(5):852-857, 1997; Pruessmann et al., "SENSE: sensitivity encoding for
        fast MRI", MRM 42(5):952-962, 1999 (g-factor).
    """
    n_coils = int(n_coils)
    if n_coils < 1:
        raise ValueError(f"`n_coils` must be an int >= 1, got {n_coils}.")
    s = _sigma_like(sigma, x)
    if g_factor is not None:
        s = s * torch.as_tensor(g_factor, dtype=x.dtype, device=x.device)
    if n_coils == 1:
        return rician_noise(x, s, seeds)
    n = per_sample_noise(seeds, x.shape[1:], device=x.device, dtype=x.dtype)
    q = torch.stack([
        _standard_gamma(n_coils - 0.5, x.shape[1:], (int(sd) + 0x5DEECE66D) & ((1 << 62) - 1),
                        x.device, x.dtype)
        for sd in seeds.tolist()
    ]) if len(seeds) else torch.zeros_like(x)
    # Q = 2 * Gamma(n - 1/2, 1) ~ chi^2_{2n-1}
    a = torch.addcmul(x, s, n)
    b = s * torch.sqrt(2.0 * q)
    return _hypot(a, b)


def synthetic_g_factor(
    shape: Sequence[int],
    g_max: Tensor | float,
    pe_axis: int = -2,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> Tensor:
    """A smooth, centre-peaked g-factor map for a parallel-imaging acquisition (a heuristic model).

    SENSE/GRAPPA unfold signal that aliased along phase-encode; the noise amplification is largest
    where aliased voxels have similar coil sensitivities, typically the centre of the FOV, and falls
    to ~1 at the periphery. This map is ``1 + (g_max - 1) exp(-u_pe^2 / 0.18 - r_other^2 / 0.5)``
    with coordinates ``u`` in [-1, 1]; it is not computed from coil sensitivities.

    Args:
        shape: Spatial shape.
        g_max: Peak g-factor (>= 1), scalar or ``(B,)``.
        pe_axis: Phase-encode axis among the spatial axes.
        dtype: Output dtype.
        device: Output device.

    Returns:
        ``(B or 1, 1, *shape)`` map with minimum >= 1.

    References:
        Pruessmann et al., MRM 42(5):952-962, 1999; Breuer et al., "Controlled aliasing in parallel
        imaging (CAIPIRINHA)", MRM 53(3):684-691, 2005 (typical g maps, g_max 1.1-2 for R = 2-4).
    """
    nd = len(shape)
    ax = _axis(pe_axis, nd, "pe_axis")
    coords = [torch.linspace(-1, 1, n, dtype=dtype, device=device) if n > 1
              else torch.zeros(1, dtype=dtype, device=device) for n in shape]
    expo = torch.zeros((), dtype=dtype, device=device)
    for i, c in enumerate(coords):
        view = [1] * nd
        view[i] = -1
        w = 0.18 if i == ax else 0.5
        expo = expo + (c.reshape(view) ** 2) / w
    bump = torch.exp(-expo)
    g = torch.as_tensor(g_max, dtype=dtype, device=device).reshape(-1, *([1] * (nd + 1)))
    return 1.0 + (g - 1.0) * bump[None, None]


# ============================================================================= smooth fields
def _bspline3(t: Tensor) -> Tensor:
    a = t.abs()
    inner = 2.0 / 3.0 - a * a + 0.5 * a**3
    outer = (2.0 - a).clamp_min(0.0) ** 3 / 6.0
    return torch.where(a < 1, inner, outer)


def _bspline_matrix(n_out: int, n_ctrl: int, dtype: torch.dtype, device: torch.device | str,
                    stride: int = 1) -> Tensor:
    """``(ceil(n_out / stride), n_ctrl)`` cubic B-spline weights (every ``stride``-th output row).

    Rows sum to 1 (partition of unity). The matrix is a per-shape constant: it is built once in
    float64 and cached per ``(n_out, n_ctrl, stride, dtype, device)``; callers must not modify it.
    """
    return _bspline_matrix_cached(int(n_out), int(n_ctrl), int(stride), dtype, torch.device(device))


@functools.lru_cache(maxsize=128)
def _bspline_matrix_cached(n_out: int, n_ctrl: int, stride: int, dtype: torch.dtype,
                           device: torch.device) -> Tensor:
    # a normal (not an inference) tensor even when first built under torch.inference_mode(), so
    # that later autograd-recording calls can use it
    with torch.inference_mode(False), torch.no_grad():
        m = _bspline_matrix64(n_out, n_ctrl)[::stride].contiguous()
        return m.to(device=device, dtype=dtype, copy=True)


@functools.lru_cache(maxsize=128)
def _bspline_matrix_np(n_out: int, n_ctrl: int, stride: int, dtype: str,
                       transpose: bool = False) -> np.ndarray:
    """:func:`_bspline_matrix` as a read-only numpy array (CPU fast paths), cached.

    With ``transpose`` the C-contiguous transpose ``(n_ctrl, rows)``: a right factor that BLAS
    reads without a copy.
    """
    m = _bspline_matrix64(n_out, n_ctrl).numpy()[::stride]
    m = np.array(m.T if transpose else m, dtype=dtype, order="C")  # a fresh copy
    m.setflags(write=False)
    return m


@functools.lru_cache(maxsize=64)
def _bspline_matrix64(n_out: int, n_ctrl: int) -> Tensor:
    if n_ctrl < 4:
        raise ValueError(f"A cubic B-spline needs >= 4 control points per axis, got {n_ctrl}.")
    with torch.inference_mode(False), torch.no_grad():
        if n_out == 1:
            u = torch.full((1,), (n_ctrl - 3) / 2.0, dtype=torch.float64)
        else:
            u = torch.linspace(0.0, n_ctrl - 3.0, n_out, dtype=torch.float64)
        k = torch.arange(n_ctrl, dtype=torch.float64)
        return _bspline3(u[:, None] + 1.0 - k[None, :])


def bspline_upsample(coeffs: Tensor, size: Sequence[int]) -> Tensor:
    """Evaluate a tensor-product cubic B-spline with control grid ``coeffs`` on a ``size`` grid.

    The control points span the field of view uniformly (the first and last lie one knot outside),
    the result is C2-smooth, lies within the range of the coefficients (convex-hull property) and is
    linear in ``coeffs`` (differentiable). Cost: one small matrix product per axis.

    Args:
        coeffs: ``(B, C, *ctrl)`` control coefficients, >= 4 per axis.
        size: Output spatial size (same number of axes).

    Returns:
        ``(B, C, *size)``.
    """
    nd = coeffs.ndim - 2
    if len(size) != nd:
        raise ValueError(f"`size` needs {nd} entries for coefficients {tuple(coeffs.shape)}, got {size}.")
    mats = [_bspline_matrix(int(n), coeffs.shape[2 + i], coeffs.dtype, coeffs.device)
            for i, n in enumerate(size)]
    return _apply_mats(coeffs, mats)


def _apply_mats(coeffs: Any, mats: Sequence[Any]) -> Any:
    """Apply one matrix per spatial axis of ``coeffs`` ``(B, C, *ctrl)``: torch tensors or numpy arrays."""
    nd = len(mats)
    y = coeffs
    shape = list(coeffs.shape)
    # Last axis first (a plain right-multiplication), then the others as left-multiplications so that
    # every intermediate and the output are contiguous.
    for ax in reversed(range(nd)):
        d = 2 + ax
        w = mats[ax]
        if ax == nd - 1:
            y = y.reshape(-1, shape[d]) @ w.T
        else:
            p = math.prod(shape[:d])
            q = math.prod(shape[d + 1:])
            y = w @ y.reshape(p, shape[d], q)
        shape[d] = w.shape[0]
        y = y.reshape(shape)
    return y


def bias_field(x: Tensor, log_field: Tensor) -> Tensor:
    """Multiply by a smooth positive bias field, given at full resolution or by a coarse control grid.

    The receive-coil sensitivity (and B1 transmit inhomogeneity) multiplies the true signal by a
    smooth, positive field. A full-resolution ``log_field`` ``l`` gives ``b = exp(l)``. A coarser
    ``log_field`` holds the logs ``c`` of positive control values: the field is the cubic B-spline
    through ``exp(c)`` (:func:`bspline_upsample`), positive and smooth by the B-spline's convex-hull
    property, and cheap (no full-resolution ``exp``). Both are differentiable in ``x`` and
    ``log_field``, so the control values can be optimised directly (an adversarial bias field).

    $$ y = x \\cdot b,\\quad b = e^{l}\\ \\text{(full resolution)}\\quad\\text{or}\\quad
    b = \\mathcal B\\big(e^{c}\\big)\\ \\text{(control grid)} $$

    Args:
        x: ``(B, C, *spatial)``.
        log_field: ``(B or 1, 1 or C, *ctrl)``: the same spatial size as ``x``, or a control grid
            with >= 4 points per axis.

    Returns:
        The biased batch.

    References:
        Sled, Zijdenbos & Evans, "A nonparametric method for automatic correction of intensity
        nonuniformity in MRI data (N3)", IEEE TMI 17(1):87-97, 1998 (smooth B-spline bias fields);
        Van Leemput et al., IEEE TMI 18(10):885-896, 1999.
    """
    _spatial(x)
    if log_field.ndim != x.ndim:
        raise ValueError(
            f"`log_field` must have shape (B, 1|C, *ctrl) with {x.ndim - 2} spatial axes, "
            f"got {tuple(log_field.shape)}."
        )
    lf = log_field.to(dtype=x.dtype, device=x.device)
    if tuple(lf.shape[2:]) == tuple(x.shape[2:]):
        return x * torch.exp(lf)
    return x * bspline_upsample(torch.exp(lf), x.shape[2:])


def bspline_eval(coeffs: Tensor, size: Sequence[int], stride: int = 1) -> Tensor:
    """:func:`bspline_upsample` evaluated on every ``stride``-th voxel of a ``size`` grid only."""
    if stride == 1:
        return bspline_upsample(coeffs, size)
    mats = [_bspline_matrix(int(n), coeffs.shape[2 + i], coeffs.dtype, coeffs.device, stride)
            for i, n in enumerate(size)]
    return _apply_mats(coeffs, mats)


# ============================================================================= slice profile
def slice_profile_matrix(
    n: int,
    thickness_px: Tensor,
    gap_px: Tensor,
    offset_px: Tensor,
    profile: str = "rect",
) -> Tensor:
    """Per-sample linear operators ``(B, n, n)``: thick-slice acquisition, then linear interpolation back.

    Voxel ``i`` covers ``[i - 1/2, i + 1/2]`` (pixels along the slice axis). Slice ``k`` is centred
    at ``c_k = offset + k (T + gap)`` and integrates the object with the slice profile of FWHM ``T``
    (``"rect"``: ideal box; ``"gaussian"``: Gaussian of that FWHM), each voxel weighted by the part of
    the profile that falls inside it (exact partial volume) and normalised over the voxels inside the
    FOV. The slice values are interpolated linearly back onto the voxel centres (nearest slice beyond
    the first/last). Rows sum to 1, so constants are preserved.

    Returns:
        float64 ``(B, n, n)`` matrices ``M`` with ``y = M x`` along the slice axis.
    """
    dt = torch.float64
    tk = thickness_px.to(dt).reshape(-1, 1, 1)
    gp = gap_px.to(dt).reshape(-1, 1, 1)
    if bool((tk <= 0).any()) or bool((tk + gp <= 0).any()):
        raise ValueError("`thickness` must be > 0 and `thickness + gap` > 0 (slice pitch).")
    pitch = tk + gp
    off = torch.remainder(offset_px.to(dt).reshape(-1, 1, 1), pitch)
    kmax = math.ceil(float((n + 2) / pitch.min())) + 2 if pitch.numel() else 2
    k = torch.arange(-2, kmax + 1, dtype=dt).reshape(1, -1, 1)
    centres = off + k * pitch  # (B, K, 1)
    i = torch.arange(n, dtype=dt).reshape(1, 1, -1)
    lo, hi = i - 0.5, i + 0.5
    if profile == "rect":
        a = torch.maximum(lo, centres - tk / 2)
        b = torch.minimum(hi, centres + tk / 2)
        w = (b - a).clamp_min(0.0)
    elif profile == "gaussian":
        sd = (tk / (2.0 * math.sqrt(2.0 * math.log(2.0)))).clamp_min(1e-6)
        cdf = lambda z: 0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))  # noqa: E731
        w = cdf((hi - centres) / sd) - cdf((lo - centres) / sd)
    else:
        raise ValueError(f"`profile` must be 'rect' or 'gaussian', got {profile!r}.")
    tot = w.sum(-1, keepdim=True)
    valid = tot > 1e-12
    acq = torch.where(valid, w / torch.where(valid, tot, torch.ones_like(tot)), torch.zeros_like(w))
    # Interpolation from slice centres back to voxel centres (only slices that saw the FOV).
    c = centres.squeeze(-1)  # (B, K)
    vmask = valid.squeeze(-1)
    pos = torch.arange(n, dtype=dt).reshape(1, -1)  # (1, n)
    big = torch.full_like(c, math.inf)
    c_valid_lo = torch.where(vmask, c, big)
    c_valid_hi = torch.where(vmask, c, -big)
    first = c_valid_lo.amin(1, keepdim=True)
    last = c_valid_hi.amax(1, keepdim=True)
    p = torch.minimum(torch.maximum(pos, first), last)
    kf = ((p - off.reshape(-1, 1)) / pitch.reshape(-1, 1)).floor()  # slice index below (k value)
    t = (p - (off.reshape(-1, 1) + kf * pitch.reshape(-1, 1))) / pitch.reshape(-1, 1)
    j0 = (kf + 2).long().clamp(0, c.shape[1] - 1)
    j1 = (j0 + 1).clamp(max=c.shape[1] - 1)
    interp = torch.zeros((c.shape[0], n, c.shape[1]), dtype=dt)
    interp.scatter_add_(2, j0.unsqueeze(-1), (1.0 - t).unsqueeze(-1))
    interp.scatter_add_(2, j1.unsqueeze(-1), t.unsqueeze(-1))
    return interp @ acq


def slice_thickness(
    x: Tensor,
    thickness_mm: Tensor | float,
    gap_mm: Tensor | float = 0.0,
    *,
    spacing_mm: float = 1.0,
    offset_mm: Tensor | float = 0.0,
    axis: int = 0,
    profile: str = "rect",
) -> Tensor:
    """Thick-slice (2D multi-slice) acquisition along one axis: slice profile, thickness and gap.

    The object is sampled by slices of thickness ``T`` centred every ``T + gap``; each slice value is
    the profile-weighted average of the object across the slice (partial volume). Tissue inside a
    gap is not seen. The slice stack is interpolated linearly back onto the input grid.

    $$ v_k = \\frac{\\int x(z)\\,P\\big((z - c_k)/T\\big)\\,dz}{\\int P},\\quad
    c_k = z_0 + k\\,(T + g),\\quad y(z) = \\mathrm{lerp}_k\\, v_k $$

    Args:
        x: ``(B, C, *spatial)``.
        thickness_mm: Slice thickness ``T`` (FWHM of the profile), ``(B,)`` or scalar.
        gap_mm: Inter-slice gap ``g``, ``(B,)`` or scalar (negative = overlapping slices).
        spacing_mm: Input voxel size along ``axis`` in mm.
        offset_mm: Position of the first slice centre ``z_0`` relative to voxel 0, ``(B,)`` or scalar.
        axis: Slice axis among the spatial axes.
        profile: ``"rect"`` (ideal) or ``"gaussian"``.

    Returns:
        The batch on its original grid. Linear in ``x`` (differentiable).

    References:
        Haacke et al., *Magnetic Resonance Imaging: Physical Principles and Sequence Design*, ch. 10
        (slice profile); Greenspan, "Super-resolution in medical imaging", Comput. J. 52(1), 2009.
    """
    nd = _spatial(x)
    ax = _axis(axis, nd)
    b = x.shape[0]
    n = x.shape[2 + ax]

    def px(v: Tensor | float) -> Tensor:
        return torch.as_tensor(v, dtype=torch.float64).detach().cpu().reshape(-1).expand(b) / spacing_mm

    m = slice_profile_matrix(n, px(thickness_mm), px(gap_mm), px(offset_mm), profile)
    m = m.to(device=x.device, dtype=x.dtype)
    moved = x.movedim(2 + ax, -1)
    shp = moved.shape
    flat = moved.reshape(b, -1, n)
    out = torch.bmm(flat, m.transpose(1, 2))
    return out.reshape(shp).movedim(-1, 2 + ax)


# ============================================================================= chemical shift
def chemical_shift_pixels(field_strength_t: Tensor | float, bandwidth_hz_per_px: Tensor | float,
                          ppm: float = FAT_WATER_PPM) -> Tensor:
    """Fat displacement in pixels along readout: ``ppm * 1e-6 * gamma_bar * B0 / BW_px``.

    Examples:
        >>> round(float(chemical_shift_pixels(1.5, 220.0)), 3)
        1.016
    """
    b0 = torch.as_tensor(field_strength_t, dtype=torch.float64)
    bw = torch.as_tensor(bandwidth_hz_per_px, dtype=torch.float64)
    return ppm * 1e-6 * GAMMA_BAR_MHZ_PER_T * 1e6 * b0 / bw


def shift_along_axis(x: Tensor, shift: Tensor | float, axis: int) -> Tensor:
    """Circularly shift each sample by a (sub-pixel) amount along one spatial axis, linear interpolation.

    ``y[i] = (1 - t) x[i - m] + t x[i - m - 1]`` with ``shift = m + t``; the sum along the axis is
    conserved exactly and the map is differentiable in ``x`` and ``shift``.
    """
    nd = _spatial(x)
    ax = 2 + _axis(axis, nd)
    n = x.shape[ax]
    s = torch.as_tensor(shift, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    m = torch.floor(s)
    t = (s - m).reshape(-1, *([1] * (x.ndim - 1)))
    idx = torch.arange(n, device=x.device).reshape(1, n)
    i0 = (idx - m.detach().long().reshape(-1, 1)) % n  # (B, n)
    i1 = (i0 - 1) % n
    view = [x.shape[0]] + [1] * (x.ndim - 1)
    view[ax] = n
    i0 = i0.reshape(view).expand_as(x)
    i1 = i1.reshape(view).expand_as(x)
    return (1 - t) * torch.gather(x, ax, i0) + t * torch.gather(x, ax, i1)


def chemical_shift(
    x: Tensor, shift_px: Tensor | float, fat_fraction: Tensor, readout_axis: int = -1
) -> Tensor:
    """Chemical-shift misregistration: the fat signal is displaced along the readout axis.

    Fat protons precess ``3.5 ppm`` slower than water, so frequency encoding places them
    ``d = 3.5e-6 * gamma_bar * B0 / BW_px`` pixels away from the water signal of the same voxel
    (see :func:`chemical_shift_pixels`): a bright band where fat overlaps water and a dark band where
    it left. With a fat fraction map ``f`` in [0, 1]:

    $$ y = (1 - f)\\,x + S_d\\big(f\\,x\\big) $$

    where ``S_d`` is a circular sub-pixel shift by ``d`` along readout (linear interpolation), so the
    total signal is conserved.

    Args:
        x: ``(B, C, *spatial)``.
        shift_px: Displacement ``d`` in pixels, ``(B,)`` or scalar; the sign sets the direction
            (readout-gradient polarity).
        fat_fraction: Fat fraction map broadcastable to ``x`` (a boolean mask is accepted).
        readout_axis: Readout (frequency-encode) axis among the spatial axes.

    Returns:
        The batch with displaced fat. Differentiable in ``x``, ``shift_px`` and ``fat_fraction``.

    References:
        Dixon, "Simple proton spectroscopic imaging", Radiology 153(1):189-194, 1984; Hood et al.,
        "Chemical shift: the artifact and clinical tool revisited", RadioGraphics 19(2):357-371, 1999.
    """
    f = fat_fraction.to(dtype=x.dtype, device=x.device)
    fat = x * f
    return (x - fat) + shift_along_axis(fat, shift_px, readout_axis)


# ============================================================================= susceptibility
def _dephasing(field_hz: Tensor, te_s: Tensor) -> Tensor:
    """Intravoxel dephasing ``prod_axes |sinc(dF/dr * TE)|`` from a field map ``(B, 1, *spatial)``."""
    nd = field_hz.ndim - 2
    att = torch.ones_like(field_hz)
    for ax in range(nd):
        d = 2 + ax
        if field_hz.shape[d] < 2:
            continue
        grad = torch.gradient(field_hz, dim=d)[0]  # Hz per voxel
        att = att * torch.sinc(grad * te_s).abs()
    return att


def susceptibility_distortion(
    x: Tensor,
    field_hz: Tensor,
    bandwidth_pe_hz: Tensor | float,
    *,
    pe_axis: int = -2,
    te_ms: Tensor | float | None = None,
) -> Tensor:
    """B0 off-resonance distortion along phase-encode with Jacobian pile-up and optional T2* dropout.

    An off-resonance ``df(r)`` (susceptibility differences at air-tissue interfaces) is read as a
    position error along the low-bandwidth phase-encode axis of EPI: signal from ``r`` appears at
    ``r + d(r) e_pe`` with ``d = df / BW_pe`` pixels. Signal is conserved, so the intensity is
    divided by the local Jacobian ``1 + dd/dr`` (compression piles signal up, stretching thins it).
    It is implemented by pushing each voxel's signal forward: the voxel's extent is mapped through
    the displacement and its signal binned into the output voxels by overlap (an exact conservative
    remapping), circularly along phase-encode, so the signal of each phase-encode line is conserved
    exactly. With ``te_ms`` the source signal is first attenuated
    by intravoxel dephasing, ``|sinc(grad df * TE)|`` per axis (gradients in Hz/voxel).

    $$ y\\big(r + d(r)\\,\\hat e_{pe}\\big)\\,\\Big|1 + \\frac{\\partial d}{\\partial r_{pe}}\\Big| =
    x(r)\\,A(r),\\quad d = \\frac{\\Delta f}{BW_{pe}},\\quad
    A = \\prod_a \\big|\\mathrm{sinc}(\\partial_a \\Delta f\\,TE)\\big| $$

    Args:
        x: ``(B, C, *spatial)``.
        field_hz: Off-resonance map in Hz, ``(B or 1, 1, *spatial)``. Differentiable.
        bandwidth_pe_hz: Bandwidth per pixel along phase-encode (Hz/pixel; for EPI ``1 / (N_pe *
            echo spacing)``), ``(B,)`` or scalar.
        pe_axis: Phase-encode axis among the spatial axes.
        te_ms: Echo time for the dephasing (dropout) term; ``None`` disables it.

    Returns:
        The distorted batch. Linear in ``x``.

    References:
        Jezzard & Balaban, "Correction for geometric distortion in echo planar images from B0 field
        variations", MRM 34(1):65-73, 1995; Hutton et al., NeuroImage 16(1):217-240, 2002 (field
        maps); Deichmann et al., NeuroImage 19(2):430-441, 2003 (susceptibility dropout).
    """
    nd = _spatial(x)
    ax = 2 + _axis(pe_axis, nd, "pe_axis")
    b = x.shape[0]
    fld = field_hz.to(dtype=x.dtype, device=x.device)
    if fld.ndim != x.ndim or fld.shape[1] != 1:
        raise ValueError(f"`field_hz` must be (B|1, 1, *spatial), got {tuple(field_hz.shape)}.")
    fld = fld.expand(b, 1, *x.shape[2:])
    per = max(1, x[0].numel())
    chunk = max(1, 2**18 // per)
    if b > chunk:  # keep the working set in cache: samples are independent
        bw = _per_sample(bandwidth_pe_hz, x).reshape(-1)
        te = None if te_ms is None else _per_sample(te_ms, x).reshape(-1)
        return torch.cat([
            susceptibility_distortion(x[i:i + chunk], fld[i:i + chunk], bw[i:i + chunk], pe_axis=pe_axis,
                                      te_ms=None if te is None else te[i:i + chunk])
            for i in range(0, b, chunk)
        ])
    src = x
    if te_ms is not None:
        te = _per_sample(te_ms, x) * 1e-3
        src = x * _dephasing(fld, te)
    d = fld / _per_sample(bandwidth_pe_hz, fld)  # pixels
    n = x.shape[ax]
    src_m = src.movedim(ax, -1)
    lead = src_m.shape[:-1]
    d_m = d.movedim(ax, -1).expand(*lead, n)
    # Each source voxel [i - 1/2, i + 1/2] maps to the interval between its displaced edges (the
    # displacement at the edges is the mean of the neighbouring voxels', replicated at the border);
    # its signal is spread uniformly over that interval and binned into the output voxels by overlap.
    # This is an exact, conservative remapping: uniform compression by (1 + a) multiplies the
    # intensity by 1 / (1 + a) without ripple, and fold-over (1 + a < 0) piles signal up.
    d_pad = torch.cat([d_m[..., :1], d_m, d_m[..., -1:]], -1)
    d_edge = 0.5 * (d_pad[..., 1:] + d_pad[..., :-1])  # (..., n + 1) at i - 1/2
    edges = torch.arange(n + 1, dtype=x.dtype, device=x.device) - 0.5 + d_edge
    a, b = edges[..., :-1], edges[..., 1:]
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    c = 0.5 * (lo + hi)
    half = 0.5 * (hi - lo).clamp_min(1e-6)
    lo, hi = c - half, c + half
    width = 2 * half
    span = math.ceil(float((hi - lo).detach().max())) + 1 if hi.numel() else 1
    j0 = torch.floor(lo.detach() + 0.5)  # output voxel containing lo
    out = torch.zeros((*lead, n), dtype=x.dtype, device=x.device)
    for k in range(span + 1):
        j = j0 + k
        ov = (torch.minimum(hi, j + 0.5) - torch.maximum(lo, j - 0.5)).clamp_min(0.0)
        idx = (j.long() % n).expand(*lead, n)
        out = out.scatter_add(-1, idx, src_m * (ov / width))
    return out.movedim(-1, ax)
