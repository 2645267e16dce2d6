"""MRI k-space artifacts as pure, deterministic kernels on magnitude images.

Every kernel takes a float batch ``x`` ``(B, C, *spatial)`` (2 or 3 spatial axes) read as a real
(magnitude) object, corrupts its (hybrid) k-space, and returns the *magnitude* of the complex image:
``sqrt(re^2 + im^2)`` computed differentiably (:func:`robustaug.functional.kspace.magnitude`), never
``.real``; nothing is clipped. Per-sample parameters are ``(B,)`` tensors (or Python scalars,
broadcast to the batch). Axes with physical meaning (phase-encode, readout, slice) are arguments;
a negative axis counts from the last spatial axis (``-1`` = readout by default, ``-2`` = phase
encode). Frequencies are integers in cycles per field of view in unshifted FFT order, so no
``fftshift`` is ever paid for. Kernels that only act along one axis use 1D real FFTs along it.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.rng import new_generator, per_sample_noise
from .kspace import TINY, freq_index, magnitude, spatial_dim, spatial_dims

__all__ = [
    "acquisition_times",
    "ghosting",
    "gibbs",
    "motion",
    "nyquist_ghost",
    "rigid_resample",
    "soft_magnitude",
    "spike",
    "undersampling",
    "undersampling_mask",
    "wrap_around",
    "zipper",
]


# ----------------------------------------------------------------------------- helpers
def _vec(v: Tensor | float, x: Tensor, name: str) -> Tensor:
    """Per-sample values as a ``(B,)`` tensor on x's device/dtype (scalars are broadcast)."""
    t = torch.as_tensor(v, device=x.device)
    t = t.to(x.dtype) if t.is_floating_point() or not t.is_complex() else t
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(
            f"`{name}` must be a scalar or have shape (B,) = ({x.shape[0]},), got {tuple(t.shape)}."
        )
    return t


def _vec64(v: Tensor | float, b: int, name: str) -> np.ndarray:
    """:func:`_vec` as a float64 NumPy array (the CPU inference paths), with the same checks."""
    t = _np64(v)
    if t.ndim == 0:
        t = np.broadcast_to(t, (b,))
    if t.ndim != 1 or t.shape[0] != b:
        raise ValueError(f"`{name}` must be a scalar or have shape (B,) = ({b},), got {t.shape}.")
    return t


def _along(v: Tensor, x: Tensor, dim: int) -> Tensor:
    """Reshape ``(B, N)`` (or ``(N,)``) values to broadcast against ``x`` along tensor ``dim``."""
    shape = [1] * x.ndim
    if v.ndim == 2:
        shape[0] = v.shape[0]
    shape[dim] = v.shape[-1]
    return v.reshape(shape)


def _bshape(v: Tensor, x: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (x.ndim - 1)))


def _sym_parts(mask: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Split a real line mask ``(..., n)`` in unshifted order into its symmetric and antisymmetric
    parts on the half spectrum ``0..n//2`` (as used with ``rfft``/``irfft``)."""
    h = torch.arange(n // 2 + 1, device=mask.device)
    neg = (-h) % n
    pos_v, neg_v = mask[..., h], mask[..., neg]
    return 0.5 * (pos_v + neg_v), 0.5 * (pos_v - neg_v)


def _combine_half(
    acc_s: Tensor, acc_a: Tensor | None, n: int, dim: int
) -> tuple[Tensor, Tensor | None]:
    """Real and imaginary parts of ``ifft(H)`` along ``dim`` where ``H = Hs + Ha`` is split into its
    Hermitian part (half spectrum ``acc_s``) and anti-Hermitian part (``acc_a``)."""
    re = torch.fft.irfft(acc_s, n=n, dim=dim)
    if acc_a is None:
        return re, None
    im = torch.fft.irfft(acc_a * (-1j), n=n, dim=dim)
    return re, im


# ----------------------------------------------------------------------------- ghosting
def soft_magnitude(sq: Tensor, delta: Tensor | float) -> Tensor:
    """``|z|`` from ``sq = |z|^2``, made C1-smooth below ``delta``: ``|z| f(min(|z|/delta, 1))``.

    ``f(t) = t (3 - t^2) / 2`` (a polynomial in ``|z|^2``), so the result equals ``|z|`` exactly for
    ``|z| >= delta`` and lies in ``[|z| - 0.175 delta, |z|]`` below it, is 0 at 0, never negative, and has
    continuous gradients everywhere (``|z|`` itself has a kink at ``z = 0``, which finite-difference
    gradient checks see wherever a faint signal sits on a zero background).

    Args:
        sq: Squared magnitude ``re^2 + im^2`` (>= 0).
        delta: Smoothing radius, scalar or broadcastable to ``sq`` (0 = plain ``sqrt``).
    """
    delta = torch.as_tensor(delta, device=sq.device, dtype=sq.dtype)
    d2 = delta * delta
    if torch.is_grad_enabled() and sq.requires_grad:
        poly = sq * (1.5 / delta.clamp_min(1e-300) - sq * (0.5 / (d2 * delta).clamp_min(1e-300)))
        return torch.where(sq < d2, poly, torch.maximum(sq, d2).sqrt())
    sq = sq.detach()
    lo = sq < d2
    lo &= sq > 0
    if not bool(lo.any()):
        return sq.sqrt()
    dl = delta.expand_as(sq)[lo]
    v = sq[lo]
    out = sq.sqrt()
    out[lo] = v * (1.5 / dl - v * (0.5 / (dl * dl * dl)))
    return out


def _delta_from_range(lo: Tensor, hi: Tensor, rel: float) -> Tensor:
    """Per-sample smoothing radius ``rel * 2^round(log2(max |x|))`` (piecewise constant in x) from
    the minimum and maximum of each sample (float64)."""
    peak = torch.maximum(hi, -lo).to(torch.float64)
    scale = torch.where(peak > 0, torch.exp2(torch.log2(peak.clamp_min(1e-300)).round()), 0.0)
    return rel * scale if rel > 0 else torch.zeros_like(scale)


def ghosting(
    x: Tensor,
    amplitude: Tensor | float,
    period: Tensor | float,
    phase: Tensor | float = 0.0,
    *,
    pe_axis: int = -2,
    smooth: float = 1e-3,
) -> Tensor:
    """Periodic signal modulation across phase-encode lines (respiration, pulsation): discrete ghosts.

    k-line ``m`` (cycles per FOV along ``pe_axis``) is scaled by ``1 + a cos(2 pi m / n + phi)``. The
    image becomes the object plus two copies of amplitude ``a/2`` shifted by ``+-N/n`` pixels (FOV/n):

    $$ y = \\left| x + \\tfrac{a}{2}\\left(e^{i\\phi} S_{-N/n}x + e^{-i\\phi} S_{+N/n}x\\right) \\right| $$

    When ``N/n`` is an integer the shifts are exact circular shifts done by adding slices (no FFT,
    no copies); otherwise one real FFT and two inverse real FFTs along the phase-encode axis give the
    band-limited fractional shifts. The choice is made per sample.

    Args:
        x: ``(B, C, *spatial)`` real image.
        amplitude: Modulation depth ``a`` >= 0 per sample.
        period: Modulation period ``n`` in k-lines (> 0; need not be an integer).
        phase: Modulation phase ``phi`` in radians.
        pe_axis: Phase-encode spatial axis.
        smooth: The magnitude is :func:`soft_magnitude` with radius ``smooth * 2^round(log2
            max|x|)`` per sample (1e-3 of a [0, 1] image: a quarter of an 8-bit grey level): exact
            ``|z|`` above it, C1-smooth below, so the output is differentiable everywhere. 0 gives
            the plain ``|z|``.

    Returns:
        The magnitude image.
    """
    d = spatial_dim(x, pe_axis, "pe_axis")
    n = x.shape[d]
    b = x.shape[0]
    if b and x[0].numel() <= _CHUNK and _numpy_ok(x) and not _needs_grad(x, amplitude, period, phase):
        # small samples on CPU (2D images): NumPy (and torch's FFTs for fractional shifts)
        a64, p64 = _vec64(amplitude, b, "amplitude"), _vec64(period, b, "period")
        phi64 = _vec64(phase, b, "phase")
        shift = n / p64
        whole = np.abs(shift - np.round(shift)) < 1e-6
        xn = x.detach().numpy()
        out = np.empty(xn.shape, dtype=xn.dtype)
        for i in range(b):
            c, s = 0.5 * a64[i] * math.cos(phi64[i]), 0.5 * a64[i] * math.sin(phi64[i])
            if whole[i]:
                k = round(float(shift[i])) % n
                _ghost_int_np(xn[i], out[i], d - 1, k, float(c), float(s), smooth)
            else:
                _ghost_frac_np(xn[i], out[i], d - 1, float(p64[i]), float(c), float(s), smooth)
        return torch.from_numpy(out)
    a = _vec(amplitude, x, "amplitude")
    per = _vec(period, x, "period")
    phi = _vec(phase, x, "phase")
    shift = (n / per.detach().double()).cpu()
    is_int = ((shift - shift.round()).abs() < 1e-6).tolist()
    grad = torch.is_grad_enabled() and (
        x.requires_grad or a.requires_grad or per.requires_grad or phi.requires_grad
    )
    cc = 0.5 * a * torch.cos(phi)
    ss = 0.5 * a * torch.sin(phi)
    if not grad:
        return _ghosting_nograd(x, d, shift, is_int, per, cc, ss, smooth)
    xd = x.detach().flatten(1)  # no |x| copy
    lo, hi = xd.amin(dim=1), xd.amax(dim=1)
    delta = _delta_from_range(lo, hi, smooth).to(x.dtype)
    peaks = torch.maximum(hi, -lo).tolist()
    outs = []
    for i in range(x.shape[0]):
        xi, dli = x[i], delta[i]
        unit = _range_unit(peaks[i], smooth, x.dtype)
        if unit != 1.0:  # |z|^2 or delta^2 outside the normal range: ghost x / unit
            xi, dli = xi * (1.0 / unit), dli / unit
        if is_int[i] and not per.requires_grad:
            k = round(float(shift[i]))
            plus, minus = torch.roll(xi, -k, d - 1), torch.roll(xi, k, d - 1)
            psum, pdiff = plus + minus, plus - minus
        else:
            psum, pdiff = _frac_pair(xi, d - 1, per[i])
        re = xi + cc[i] * psum
        sq = re * re + (ss[i] * pdiff) ** 2
        mag = soft_magnitude(sq, dli)
        outs.append(mag if unit == 1.0 else mag * unit)
    if not outs:
        return x.clone()
    return torch.stack(outs)


def _frac_pair(xi: Tensor, dim: int, period: Tensor) -> tuple[Tensor, Tensor]:
    """Band-limited ``(S x + S' x, S x - S' x)`` for a fractional shift ``N/n`` (rFFT along dim)."""
    n = xi.shape[dim]
    xf = torch.fft.rfft(xi, dim=dim)
    theta = (2 * math.pi / period) * torch.arange(n // 2 + 1, device=xi.device, dtype=xi.dtype)
    shp = [1] * xi.ndim
    shp[dim] = theta.numel()
    psum = torch.fft.irfft(xf * (2 * torch.cos(theta)).reshape(shp), n=n, dim=dim)
    pdiff = torch.fft.irfft(xf * (2j * torch.sin(theta)).reshape(shp), n=n, dim=dim)
    return psum, pdiff


#: Elements per cache-sized chunk of the no-grad ghosting kernel.
_CHUNK = 1 << 17


def _ghosting_nograd(
    x: Tensor,
    d: int,
    shift: Tensor,
    is_int: list[bool],
    per: Tensor,
    cc: Tensor,
    ss: Tensor,
    smooth: float,
) -> Tensor:
    """Inference path of :func:`ghosting`: the same arithmetic, in slabs along a non-PE axis that
    fit in cache, writing straight into the output (memory-bound passes run at cache speed).

    Whole-pixel shifts add sliced views (no FFT). Fractional shifts: with ``X = rfft(x)`` along PE
    and ``theta_m = 2 pi m / n`` on the half spectrum, the real and imaginary parts of the ghosted
    image are ``re = irfft(X (1 + 2c cos theta))`` and ``im = irfft(X 2i s sin theta)``
    (``c, s = a/2 cos phi, a/2 sin phi``): one forward and two inverse real FFTs, with the object
    folded into ``re`` (see :func:`_ghost_fractional`).
    """
    out = torch.empty_like(x)
    pe = d - 1  # PE dim inside one sample (C, *spatial)
    n = x.shape[d]
    other = [j for j in range(1, x.ndim - 1) if j != pe]
    for i in range(x.shape[0]):
        xi, oi = x[i], out[i]
        c, s = float(cc[i]), float(ss[i])
        if not is_int[i]:
            if _numpy_ok(xi) and pe != xi.ndim - 1:
                _ghost_lines_np(xi, oi, pe, per[i], c, s, smooth)
            else:
                _ghost_fractional(xi, oi, pe, per[i], c, s, smooth)
            continue
        if xi.numel() <= _CHUNK and _numpy_ok(xi):
            _ghost_int_np(xi.numpy(), oi.numpy(), pe, round(float(shift[i])) % n, c, s, smooth)
            continue
        lo, hi = torch.aminmax(xi)  # (one pass over the sample instead of two)
        dl = float(_delta_from_range(lo, hi, smooth)) if smooth > 0 else 0.0
        unit = _range_unit(max(float(hi), -float(lo)), smooth, xi.dtype)
        if unit != 1.0:  # |z|^2 or delta^2 outside the normal range: ghost x / unit
            xi, dl = xi * (1.0 / unit), dl / unit
        cdim = other[0] if other and xi.numel() > _CHUNK else None
        if cdim is None:
            slabs = [(0, 0)]
        else:
            step = max(1, _CHUNK * xi.shape[cdim] // xi.numel())
            slabs = [(j, min(step, xi.shape[cdim] - j)) for j in range(0, xi.shape[cdim], step)]
        k = round(float(shift[i])) % n
        for j0, ln in slabs:
            xc = xi if cdim is None else xi.narrow(cdim, j0, ln)
            oc = oi if cdim is None else oi.narrow(cdim, j0, ln)
            if k == 0:  # n divides into whole FOVs: both ghosts land on the object
                sq, im = torch.mul(xc, 1 + 2 * c), torch.empty_like(xc)  # (im: scratch)
                sq.mul_(sq)
            else:
                # re = x + c (S_-k x + S_+k x); im / s = S_-k x - S_+k x (s is applied as the value
                # of the fused product below: one pass fewer)
                re, im = torch.empty_like(xc), torch.empty_like(xc)
                for j1, j2 in itertools.pairwise(sorted({0, k, n - k, n})):
                    if j2 <= j1:
                        continue
                    ln2 = j2 - j1
                    a_ = xc.narrow(pe, (j1 + k) % n, ln2)  # S_{-k}: x[j + k]
                    b_ = xc.narrow(pe, (j1 - k) % n, ln2)  # S_{+k}: x[j - k]
                    r_ = re.narrow(pe, j1, ln2)
                    torch.add(xc.narrow(pe, j1, ln2), a_, alpha=c, out=r_).add_(b_, alpha=c)
                    torch.sub(a_, b_, out=im.narrow(pe, j1, ln2))
                sq = re.mul_(re).addcmul_(im, im, value=s * s)
            if dl > 0:
                _soft_mag_scaled(sq, oc, im, dl, thr=dl * dl)  # (no scaling pass)
            else:
                torch.sqrt(sq, out=oc)
        if unit != 1.0:
            oi.mul_(unit)
    return out


def _range_unit(peak: float, smooth: float, dtype: torch.dtype | np.dtype) -> float:
    """1, or the power of two nearest to ``peak`` when the squares of ``peak`` or of the smoothing
    radius (``smooth * peak``; ``1e-3 * peak`` without smoothing) leave the normal range of
    ``dtype`` (with a wide margin): the paths that form ``|z|^2`` unscaled then ghost the sample
    divided by it and multiply the result back (power-of-two scalings are exact, and ghosting with
    its relative ``delta`` commutes with them)."""
    if not (peak > 0 and math.isfinite(peak)):
        return 1.0
    fi = torch.finfo(dtype) if isinstance(dtype, torch.dtype) else np.finfo(dtype)
    low = peak * (smooth if smooth > 0 else 1e-3)
    if float(fi.tiny) * 1e12 < low * low and peak * peak < float(fi.max) * 1e-12:
        return 1.0
    return 2.0 ** round(math.log2(peak))


def _ghost_int_np(
    x: np.ndarray, out: np.ndarray, pe: int, k: int, c: float, s: float, smooth: float
) -> None:
    """Whole-pixel ghosting of one small sample ``x`` (``(C, *spatial)``, NumPy) into ``out``.

    The arithmetic of :func:`_ghosting_nograd` with NumPy calls (~1 us each, the cost that matters
    on a 2D image): ``re = x + c (S_-k x + S_+k x)`` built in ``out`` segment by segment,
    ``im = s (S_-k x - S_+k x)``, ``|z|^2`` in place, its square root, and the soft magnitude's
    polynomial only where ``0 < |z|^2 < delta^2`` (few pixels: the zero background is exact).
    """
    n = x.shape[pe]
    lo, hi = float(x.min()), float(x.max())
    peak = max(hi, -lo)
    dl = smooth * 2.0 ** round(math.log2(peak)) if smooth > 0 and peak > 0 else 0.0
    unit = _range_unit(peak, smooth, x.dtype)
    if unit != 1.0:  # |z|^2 or delta^2 outside the normal range: ghost x / unit
        x, dl = x * (1.0 / unit), dl / unit
    sq = out
    if k == 0:  # both ghosts land on the object
        np.multiply(x, 1 + 2 * c, out=sq)
        sq *= sq
    else:
        im = np.empty_like(x)
        sl = [slice(None)] * x.ndim

        def seg(a: int, ln: int) -> tuple[slice, ...]:
            sl[pe] = slice(a, a + ln)
            return tuple(sl)

        for j1, j2 in itertools.pairwise(sorted({0, k, n - k, n})):
            if j2 <= j1:
                continue
            ln = j2 - j1
            a_, b_ = x[seg((j1 + k) % n, ln)], x[seg((j1 - k) % n, ln)]  # x[j + k], x[j - k]
            r_, i_ = sq[seg(j1, ln)], im[seg(j1, ln)]
            np.add(a_, b_, out=r_)
            r_ *= c
            r_ += x[seg(j1, ln)]
            np.subtract(a_, b_, out=i_)
        st, ti = torch.from_numpy(sq), torch.from_numpy(im)  # torch's fused addcmul: 2 passes
        st.mul_(st).addcmul_(ti, ti, value=s * s)
    _soft_magnitude_np_(sq, dl, 1.0)
    if unit != 1.0:
        sq *= unit


def _soft_magnitude_np_(sq: np.ndarray, dl: float, unit: float) -> None:
    """In place on a contiguous NumPy array holding ``unit |z|^2``: :func:`soft_magnitude` of
    ``|z|^2`` with radius ``dl`` (``delta g(u)``, ``u = |z|^2 / delta^2``: ``sqrt(u)`` for ``u >= 1``,
    ``u (3 - u) / 2`` below). The square root runs everywhere and the polynomial only where
    ``0 < |z| < delta`` (zeros map to zero either way)."""
    if not dl > 0:
        np.sqrt(sq, out=sq)
        return
    thr = unit * dl * dl  # u = 1 in the array's units
    flat = sq.reshape(-1)  # (contiguous: a view)
    low = flat < thr
    low &= flat > 0
    idx = np.flatnonzero(low)
    u = flat[idx] * (1.0 / thr)
    np.sqrt(sq, out=sq)
    if unit != 1.0:
        sq *= 1.0 / math.sqrt(unit)
    flat[idx] = u * (3.0 - u) * (0.5 * dl)


def _ghost_frac_np(
    x: np.ndarray, out: np.ndarray, pe: int, period: float, c: float, s: float, smooth: float
) -> None:
    """Fractional-shift ghosting of one small sample ``x`` (``(C, *spatial)``, NumPy) into ``out``.

    The arithmetic of :func:`_ghost_fractional` with as few calls as possible (the per-call cost
    dominates on a 2D image): the phase-encode lines as a (strided) view with phase encode last,
    only the run from the first to the last line that is not identically zero through torch's
    ``rfft`` (which lays the strided lines out itself, faster than a transposing copy here) and the
    two ``irfft`` (the lines outside the run stay exactly zero), the coefficients from cached
    float64 cosines (``1/delta`` folded in), and the soft magnitude as the square root everywhere and
    the polynomial only where ``|z| < delta``; one transposing copy back into ``out``.
    """
    n = x.shape[pe]
    lo, hi = float(x.min()), float(x.max())
    peak = max(hi, -lo)
    dl = smooth * 2.0 ** round(math.log2(peak)) if smooth > 0 and peak > 0 else 0.0
    xt = np.moveaxis(x, pe, -1)
    lines = xt.reshape(-1, n)  # a view for a 2D image or phase encode last, else a copy
    if lo >= 0:  # a sum of non-negative numbers is 0 only if they all are (NaN != 0 counts)
        nz = np.flatnonzero(lines.sum(1))
    else:
        nz = np.flatnonzero((lines != 0).any(1))
    if nz.size == 0:
        out[...] = 0
        return
    b0, b1 = int(nz[0]), int(nz[-1]) + 1
    seg = torch.from_numpy(lines[b0:b1])
    coefs = _ghost_coefs(n, period, c, s, dl, seg.dtype, seg.device)
    u = _ghost_sq(seg, coefs, n)[0].numpy()  # |z|^2 / delta^2 (or |z|^2 without smoothing)
    _soft_magnitude_np_(u, dl, 1.0 / (dl * dl) if dl > 0 else 1.0)
    ot = np.moveaxis(out, pe, -1)
    try:
        ol = ot.reshape(-1, n, copy=False)
    except ValueError:  # the lines of ``out`` are not one strided run: assemble, then transpose
        full = np.zeros(lines.shape, dtype=out.dtype)
        full[b0:b1] = u
        ot[...] = full.reshape(ot.shape)
        return
    ol[:b0] = 0
    ol[b1:] = 0
    ol[b0:b1] = u


def _ghost_coefs(
    n: int, period: float, c: float, s: float, dl: float, dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Half-spectrum multipliers of the fractional-shift ghosting paths, ``1/delta`` folded in:
    ``re = irfft(X (1 + 2c cos theta))`` and ``im = irfft(X 2i s sin theta)`` (``theta_m = 2 pi m /
    n``; ``c, s = a/2 cos phi, a/2 sin phi``)."""
    cos_t, sin_t = _ghost_cos_sin(n, period)
    scale = 1.0 / dl if dl > 0 else 1.0
    cdt = torch.promote_types(dtype, torch.complex64)
    coef_re = torch.from_numpy((1 + 2 * c * cos_t) * scale).to(device=device, dtype=dtype)
    coef_im = torch.from_numpy(sin_t * (2j * s * scale)).to(device=device, dtype=cdt)
    return coef_re, coef_im


def _ghost_sq(lines: Tensor, coefs: tuple[Tensor, Tensor], n: int) -> tuple[Tensor, Tensor]:
    """``|z|^2`` (scaled by the coefficients) of the ghosted phase-encode lines ``lines`` (PE
    last): one rfft and two irfft. Returns it and the (spent) imaginary-part buffer as scratch."""
    coef_re, coef_im = coefs
    xf = torch.fft.rfft(lines)
    re = torch.fft.irfft(xf * coef_re, n=n)
    im = torch.fft.irfft(xf.mul_(coef_im), n=n)
    return re.mul_(re).addcmul_(im, im), im


@functools.lru_cache(maxsize=64)
def _ghost_cos_sin(n: int, period: float) -> tuple[np.ndarray, np.ndarray]:
    """``cos``/``sin`` of ``theta_m = 2 pi m / period`` on the half spectrum ``m = 0..n//2``."""
    theta = np.arange(n // 2 + 1) * (2 * math.pi / period)
    cs, sn = np.cos(theta), np.sin(theta)
    cs.setflags(write=False)
    sn.setflags(write=False)
    return cs, sn


def _copy_into(dst: Tensor, src: Tensor) -> None:
    """``dst[...] = src`` for a strided (transposing) ``src``: NumPy's strided copy is about twice as
    fast as torch's on CPU; other devices and dtypes use ``copy_``."""
    if dst.device.type == "cpu" and dst.dtype in (torch.float32, torch.float64):
        dst.numpy()[...] = src.numpy()
    else:
        dst.copy_(src)


def _soft_mag_scaled(u: Tensor, out: Tensor, tmp: Tensor, dl: float, thr: float = 1.0) -> None:
    """``out = soft_magnitude(|z|^2, dl)`` from ``u = |z|^2 thr / dl^2`` in six cache-resident passes
    (``thr`` is the value of ``u`` at ``|z| = dl``: 1 when ``u`` is already scaled, ``dl^2`` when
    ``u`` is ``|z|^2`` itself).

    ``soft_magnitude`` is ``dl g(v)``, ``v = |z|^2 / dl^2``, with ``g(v) = sqrt(v)`` for ``v >= 1``
    and ``v (3 - v) / 2`` below, i.e. ``g(v) = 1.5 m (1 - m / 3) sqrt(max(v, 1))`` with
    ``m = min(v, 1)`` (no square root of zeros, no masks); with ``w = min(u, thr) = thr m`` that is
    ``w (1 - w / (3 thr)) sqrt(max(u, thr)) * 1.5 dl / thr^1.5``. ``u`` is overwritten.
    """
    w = torch.clamp_max(u, thr, out=tmp)
    poly = torch.addcmul(w, w, w, value=-1.0 / (3.0 * thr), out=out)  # thr m (1 - m/3)
    r = u.clamp_min_(thr).sqrt_().mul_(1.5 * dl / (thr * math.sqrt(thr)))
    poly.mul_(r)


#: Elements per slab of the fractional-shift ghosting path (FFT buffers stay in L2).
_FRAC_CHUNK = 1 << 17


def _ghost_fractional(
    xi: Tensor, oi: Tensor, pe: int, per: Tensor, c: float, s: float, smooth: float
) -> None:
    """No-grad fractional-shift ghosting of one sample ``xi`` (``(C, *spatial)``) into ``oi``.

    Ghosting acts on each phase-encode line on its own, so lines that are identically zero (the
    background of a skull-stripped or zero-padded volume) stay exactly zero: only the bounding box
    of the non-zero lines is transformed (found from per-line sums when the sample is non-negative,
    else per-line minima and maxima), and the rest of the output is zero-filled.

    torch's CPU FFT transforms the last axis; along any other axis it copies to that layout and back
    inside every call. Here each cache-sized slab is transposed once (phase-encode last), goes through
    ``rfft``, the two modulations and two ``irfft`` in that layout, and its magnitude is transposed
    once into the output. The coefficients carry ``1/delta`` so the squared magnitude comes out
    already scaled for :func:`_soft_mag_scaled`.
    """
    n = xi.shape[pe]
    lead = [d for d in range(xi.ndim) if d != pe]
    lo, hi = torch.aminmax(xi)
    dl = float(_delta_from_range(lo, hi, smooth))
    if lo >= 0:  # a sum of non-negative numbers is 0 only if they all are (NaN != 0 counts)
        nzl = xi.sum(dim=pe) != 0
    else:
        nzl = (xi.amax(dim=pe) != 0) | (xi.amin(dim=pe) != 0)
    box = _mask_box(nzl)
    if box is None:
        oi.zero_()
        return
    xb, ob = xi, oi
    for (b0, b1), d in zip(box, lead):  # crop to the box of non-zero lines, zero-fill the rest
        ob.narrow(d, 0, b0).zero_()
        ob.narrow(d, b1, ob.shape[d] - b1).zero_()
        xb, ob = xb.narrow(d, b0, b1 - b0), ob.narrow(d, b0, b1 - b0)
    perm = [*lead, pe]
    inv = [perm.index(d) for d in range(xi.ndim)]
    big = [d for d in lead if xb.shape[d] > 1]
    ax = big[0] if big else lead[0]  # outermost non-PE axis: its slabs are the least strided
    step = max(1, min(xb.shape[ax], _FRAC_CHUNK * xb.shape[ax] // max(xb.numel(), 1)))
    coefs = _ghost_coefs(n, float(per), c, s, dl, xi.dtype, xi.device)
    direct = pe == xi.ndim - 1  # phase-encode already last: no transposes
    for j0 in range(0, xb.shape[ax], step):
        ln = min(step, xb.shape[ax] - j0)
        xc, oc = xb.narrow(ax, j0, ln), ob.narrow(ax, j0, ln)
        if direct:
            lines = xc
        else:
            lines = torch.empty([xc.shape[d] for d in perm], dtype=xi.dtype, device=xi.device)
            _copy_into(lines, xc.permute(perm))
        u, im = _ghost_sq(lines, coefs, n)
        if dl > 0:
            mag = torch.empty_like(u)
            _soft_mag_scaled(u, mag, im, dl)
        else:
            mag = u.sqrt_()
        if direct:
            oc.copy_(mag)
        else:
            _copy_into(oc, mag.permute(inv))


def _ghost_lines_np(
    xi: Tensor, oi: Tensor, pe: int, per: Tensor, c: float, s: float, smooth: float
) -> None:
    """:func:`_ghost_fractional` for a non-negative CPU sample, line by line instead of slab by slab.

    Only the phase-encode lines that are not identically zero are transformed (44 % of the lines
    of the phantom volume, against 55 % in their bounding box): outside the box the output is
    zero-filled by slices, inside it one fancy-indexing gather copies the non-zero lines with phase
    encode last (the transposing copy the FFT needs anyway), cache-sized runs of them go through
    ``rfft``, the two modulations, two ``irfft`` and the soft magnitude in place, and one scatter
    writes them back (the zero lines of the box are zero-filled). Samples with negative values take
    :func:`_ghost_fractional` (their zero lines are found differently).
    """
    n = xi.shape[pe]
    lo, hi = torch.aminmax(xi)
    if lo < 0:
        _ghost_fractional(xi, oi, pe, per, c, s, smooth)
        return
    dl = float(_delta_from_range(lo, hi, smooth))
    nzl = xi.sum(dim=pe) != 0  # a sum of non-negative numbers is 0 only if they all are
    box = _mask_box(nzl)
    if box is None:
        oi.zero_()
        return
    lead = [d for d in range(xi.ndim) if d != pe]
    xb, ob = xi, oi
    for (b0, b1), d in zip(box, lead):  # crop to the box of non-zero lines, zero-fill the rest
        ob.narrow(d, 0, b0).zero_()
        ob.narrow(d, b1, ob.shape[d] - b1).zero_()
        xb, ob = xb.narrow(d, b0, b1 - b0), ob.narrow(d, b0, b1 - b0)
    mask = nzl[tuple(slice(b0, b1) for b0, b1 in box)].numpy()
    xt, ot = np.moveaxis(xb.numpy(), pe, -1), np.moveaxis(ob.numpy(), pe, -1)
    lines = xt[mask]  # (M, n), contiguous
    ot[~mask] = 0
    lt = torch.from_numpy(lines)
    coefs = _ghost_coefs(n, float(per), c, s, dl, lt.dtype, lt.device)
    step = max(1, _FRAC_CHUNK // n)
    for j0 in range(0, lines.shape[0], step):
        seg = lt[j0 : j0 + step]
        u, im = _ghost_sq(seg, coefs, n)
        if dl > 0:
            _soft_mag_scaled(u, seg, im, dl)
        else:
            torch.sqrt(u, out=seg)
    ot[mask] = lines


def _half_fov_shift(x: Tensor, d: int) -> Tensor:
    n = x.shape[d]
    if n % 2 == 0:
        return torch.roll(x, n // 2, d)
    m = freq_index(n, device=x.device, dtype=x.dtype)[: n // 2 + 1]
    return torch.fft.irfft(
        torch.fft.rfft(x, dim=d) * _along(torch.cos(math.pi * m), x, d), n=n, dim=d
    )


def nyquist_ghost(
    x: Tensor,
    phase: Tensor | float,
    linear_phase: Tensor | float = 0.0,
    *,
    pe_axis: int = -2,
    readout_axis: int = -1,
) -> Tensor:
    """EPI Nyquist (N/2) ghost from a phase error between odd and even echoes.

    Odd and even EPI echoes are read with opposite gradient polarity; a residual phase difference
    ``theta(r) = phi0 + phi1 (r - r_c) / N_ro`` (constant part from eddy currents, linear part from
    echo misalignment along readout ``r``) multiplies odd k-lines by ``e^{i theta/2}`` and even ones by
    ``e^{-i theta/2}``. That is a ``(-1)^m`` modulation, i.e. a ghost shifted by half the FOV:

    $$ y = \\sqrt{\\cos^2(\\theta/2)\\,x^2 + \\sin^2(\\theta/2)\\,(S_{N/2}x)^2} $$

    Args:
        x: ``(B, C, *spatial)`` real image.
        phase: Constant odd/even phase error ``phi0`` in radians, per sample.
        linear_phase: Phase difference ``phi1`` across the readout FOV in radians, per sample.
        pe_axis: Phase-encode (blip) axis.
        readout_axis: Readout axis (along which the linear phase varies).

    Returns:
        The magnitude image (no FFT when the phase-encode size is even).
    """
    d = spatial_dim(x, pe_axis, "pe_axis")
    r = spatial_dim(x, readout_axis, "readout_axis")
    if d == r:
        raise ValueError("`pe_axis` and `readout_axis` must differ.")
    p0 = _vec(phase, x, "phase")
    p1 = _vec(linear_phase, x, "linear_phase")
    nr = x.shape[r]
    pos = (torch.arange(nr, device=x.device, dtype=x.dtype) - (nr - 1) / 2) / nr
    theta = _bshape(p0, x) + _along(p1[:, None] * pos[None, :], x, r)
    c, s = torch.cos(0.5 * theta), torch.sin(0.5 * theta)
    return magnitude(c * x, s * _half_fov_shift(x, d))


# ----------------------------------------------------------------------------- spike, zipper
def spike(
    x: Tensor,
    k: Tensor,
    amplitude: Tensor,
    phase: Tensor | float = 0.0,
    *,
    axes: Sequence[int] | None = None,
) -> Tensor:
    """Corrupted k-space samples (spikes): a herringbone plane-wave pattern, with no FFT.

    A spike of value ``A |K(0)| e^{i psi}`` at frequency ``k`` (cycles per FOV) adds the plane wave
    ``A mean(x) e^{i(2 pi k.r/N + psi)}`` to the image (``|K(0)| = |sum x|`` is the k-space maximum
    for a non-negative image). In magnitude the stripes have period ``N/|k|`` pixels and run
    perpendicular to ``k``:

    $$ y = \\Big| x + \\bar{x}\\sum_s A_s e^{i(2\\pi \\mathbf{k}_s\\cdot\\mathbf{r}/\\mathbf{N} + \\psi_s)} \\Big| $$

    Args:
        x: ``(B, C, *spatial)``.
        k: Spike locations ``(B, S, n_axes)`` in cycles per FOV along ``axes`` (``(B, n_axes)`` for
            one spike).
        amplitude: ``(B, S)`` (or ``(B,)``) spike amplitude relative to the k-space maximum ``|K(0)|``.
        phase: ``(B, S)`` (or ``(B,)`` or scalar) spike phase in radians.
        axes: Spatial axes that ``k`` refers to (default all, in order).

    Returns:
        The magnitude image. ``mean(x)`` is per sample and channel.
    """
    dims = spatial_dims(x, axes)
    b = x.shape[0]
    if _numpy_ok(x) and not _needs_grad(x, k, amplitude, phase):
        # inference on CPU: the parameters as float64 NumPy arrays (no device or dtype round trip)
        k64 = _np64(k)
        if k64.ndim == 2:
            k64 = k64[:, None, :]
        if k64.shape == (b, 1, len(dims)):
            amp64 = _np64(amplitude).reshape(-1)
            ph64 = _np64(phase).reshape(-1)
            if amp64.size in (1, b) and ph64.size in (1, b):  # (else: the general path's error)
                if amp64.size != b:
                    amp64 = np.repeat(amp64, b)
                if ph64.size != b:
                    ph64 = np.repeat(ph64, b)
                return _spike1_np(x, dims, k64[:, 0], amp64, ph64)
    k = torch.as_tensor(k, device=x.device, dtype=x.dtype)
    if k.ndim == 2:
        k = k[:, None, :]
    ns = k.shape[1]
    if k.shape != (b, ns, len(dims)):
        raise ValueError(f"`k` must have shape (B, S, {len(dims)}), got {tuple(k.shape)}.")
    amp = torch.as_tensor(amplitude, device=x.device, dtype=x.dtype).reshape(b, -1).expand(b, ns)
    ph = torch.as_tensor(phase, device=x.device, dtype=x.dtype)
    ph = ph.reshape(b, -1).expand(b, ns) if ph.ndim else ph.expand(b, ns)
    grad = torch.is_grad_enabled() and (x.requires_grad or amp.requires_grad or ph.requires_grad)
    if ns == 1 and not grad and not k.requires_grad:
        mean = x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)
        return _spike1_nograd(x, dims, k[:, 0], amp[:, 0], ph[:, 0], mean)
    mean = x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)  # (B, C, 1, ...)
    re = x
    im = None
    for s in range(ns):
        theta = _bshape(ph[:, s], x)
        for j, dd in enumerate(dims):
            nd_ = x.shape[dd]
            r = torch.arange(nd_, device=x.device, dtype=x.dtype)
            theta = theta + _along(2 * math.pi * k[:, s, j : j + 1] * r[None, :] / nd_, x, dd)
        bamp = _bshape(amp[:, s], x) * mean.abs()
        if ns == 1:
            # |x + b e^{i theta}|^2 = x^2 + 2 b x cos(theta) + b^2: one transcendental pass.
            sq = (x * x + bamp * bamp + 2 * bamp * x * torch.cos(theta)).clamp_min(0.0)
            return _sqrt_mag(sq)
        re = re + bamp * torch.cos(theta)
        im = bamp * torch.sin(theta) if im is None else im + bamp * torch.sin(theta)
    assert im is not None
    return magnitude(re, im)


def _spike1_nograd(
    x: Tensor, dims: Sequence[int], k: Tensor, amp: Tensor, ph: Tensor, mean: Tensor
) -> Tensor:
    """Inference path of :func:`spike` for one spike: the same ``|x + b e^{i theta}|``, with
    ``cos theta`` built separably (``theta`` is a sum of per-axis phases, so
    ``cos(t0 + tp) = cos t0 cos tp - sin t0 sin tp`` with ``t0`` along the first spatial axis and
    ``tp`` on the remaining plane): no full-volume transcendental, cache-sized slabs, one write
    of the output."""
    from .kspace import TINY

    sp = x.shape[2:]
    two_pi = 2 * math.pi
    k64, ph64 = k.detach().double().cpu().numpy(), ph.detach().double().cpu().numpy()
    out = torch.empty_like(x)
    bamp = (amp.detach()[:, None] * mean.detach().abs().flatten(1)).cpu().tolist()  # (B, C)
    rows = sp[0]
    step = max(1, min(rows, _CHUNK * rows // max(1, x[0].numel())))

    def dev(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a).to(device=x.device, dtype=x.dtype)

    for b in range(x.shape[0]):
        # per-axis phases (float64 NumPy, small): theta = ph + sum_j 2 pi k_j r_j / N_j
        axis_ph = [np.zeros(n) for n in sp]
        for j, dd in enumerate(dims):
            n_ = sp[dd - 2]
            axis_ph[dd - 2] = two_pi * float(k64[b, j]) * np.arange(n_) / n_
        t0 = axis_ph[0] + float(ph64[b])
        tp = np.zeros(sp[1:])
        for j, v in enumerate(axis_ph[1:]):
            tp = tp + v.reshape([-1 if q == j else 1 for q in range(len(sp) - 1)])
        cp, sp_ = dev(np.cos(tp)), dev(np.sin(tp))
        al = dev(np.cos(t0).reshape(-1, *[1] * (len(sp) - 1)))
        be = dev(np.sin(t0).reshape(-1, *[1] * (len(sp) - 1)))
        for c in range(x.shape[1]):
            bc = bamp[b][c]
            xc_all, oc_all = x[b, c], out[b, c]
            for i0 in range(0, rows, step):
                ln = min(step, rows - i0)
                xc, oc = xc_all.narrow(0, i0, ln), oc_all.narrow(0, i0, ln)
                # sq = x^2 + 2 b x cos(theta) + b^2 = x (x + 2 b cos theta) + b^2
                sq = torch.mul(al.narrow(0, i0, ln), cp)
                sq.addcmul_(be.narrow(0, i0, ln), sp_, value=-1.0)
                torch.add(xc, sq, alpha=2 * bc, out=sq).mul_(xc).add_(bc * bc).clamp_min_(0.0)
                den = torch.add(sq, TINY).sqrt_().add_(TINY**0.5)
                torch.div(sq, den, out=oc)
    return out


def _needs_grad(*args: object) -> bool:
    """Whether autograd records through any tensor among ``args``."""
    return torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args)


def _np64(v: Tensor | float | Sequence[float]) -> np.ndarray:
    """A (small) parameter as a float64 NumPy array."""
    if isinstance(v, Tensor):
        return v.detach().cpu().numpy().astype(np.float64, copy=False)
    return np.asarray(v, dtype=np.float64)


def _numpy_ok(x: Tensor) -> bool:
    """Whether ``x`` can be processed as a NumPy view: a CPU float32/float64 tensor, no autograd.

    For the inference paths of the k-space kernels: a NumPy ufunc call costs ~1 us where a torch
    op costs ~3-5 us, which is most of the time of a kernel on a 2D image."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)


def _spike1_np(
    x: Tensor, dims: Sequence[int], k: np.ndarray, amp: np.ndarray, ph: np.ndarray
) -> Tensor:
    """:func:`_spike1_nograd` with NumPy on CPU float tensors, the same arithmetic in fewer passes.

    ``theta = t0 + tp`` with ``t0`` along the first spatial axis and ``tp`` on the rest, so
    ``2 b cos theta = [2b cos t0, -2b sin t0] @ [cos tp; sin tp]``: one rank-2 matrix product
    (BLAS) per slab of rows writes it straight into the output, then
    ``|x + b e^{i theta}|^2 = x (x + 2 b cos theta) + b^2`` and its square root in place.
    """
    xn = x.detach().numpy()
    dt = xn.dtype
    b_, c_ = xn.shape[:2]
    sp = xn.shape[2:]
    out = np.empty(xn.shape, dtype=dt)
    if out.size == 0:
        return torch.from_numpy(out)
    exact = dt == np.float64
    # (B, C); torch's reduction: the autograd path's own, and 2x faster than NumPy's mean here
    mean = x.detach().mean(dim=tuple(range(2, x.ndim))).abs_().tolist()
    rows = sp[0]
    plane = out[0, 0].size // rows
    step = max(1, min(rows, _CHUNK // max(1, plane)))
    tmp = np.empty((step, plane), dtype=dt) if exact else None
    basis = np.empty((2, *sp[1:]), dtype=dt)
    coef = np.empty((2, rows), dtype=dt)
    dims0 = [dd - 2 for dd in dims]
    for b in range(b_):
        kb = k[b].tolist()
        t0 = _ramp(rows) * kb[dims0.index(0)] if 0 in dims0 else np.zeros(rows)
        t0 += float(ph[b])
        tp = None  # phase on the plane of the remaining axes (broadcast outer sum)
        for j, a in enumerate(dims0):
            if a > 0:
                v = (_ramp(sp[a]) * kb[j]).reshape([-1 if q == a - 1 else 1 for q in range(len(sp) - 1)])
                tp = v if tp is None else tp + v
        if tp is None:
            basis[0], basis[1] = 1.0, 0.0
        else:
            np.cos(tp, out=basis[0])  # (broadcast over axes without a phase)
            np.sin(tp, out=basis[1])
        cos0, sin0 = np.cos(t0), np.sin(t0)
        bas = basis.reshape(2, plane)
        for c in range(c_):
            bc = float(amp[b]) * mean[b][c]
            np.multiply(cos0, 2 * bc, out=coef[0])
            np.multiply(sin0, -2 * bc, out=coef[1])
            xf, of = xn[b, c].reshape(rows, plane), out[b, c].reshape(rows, plane)
            for i0 in range(0, rows, step):
                ln = min(step, rows - i0)
                xs, o = xf[i0 : i0 + ln], of[i0 : i0 + ln]
                np.matmul(coef[:, i0 : i0 + ln].T, bas, out=o)  # 2 b cos theta
                o += xs
                o *= xs
                o += bc * bc
                # (rounding can dip below 0; torch's clamp is ~5x faster than np.maximum here)
                ot = torch.from_numpy(o).clamp_min_(0.0)
                if exact:  # the autograd path's sq / (sqrt(sq + TINY) + sqrt(TINY))
                    t = tmp[:ln]
                    np.add(o, TINY, out=t)
                    np.sqrt(t, out=t)
                    t += TINY**0.5
                    o /= t
                else:  # the same to float32 rounding (differs by < 1e-10 absolute)
                    ot.sqrt_()
    return torch.from_numpy(out)


@functools.lru_cache(maxsize=64)
def _ramp(n: int) -> np.ndarray:
    """``2 pi r / n`` for ``r = 0..n-1`` (float64, read-only, cached)."""
    r = np.arange(n, dtype=np.float64) * (2 * math.pi / n)
    r.flags.writeable = False
    return r


def _sqrt_mag(sq: Tensor) -> Tensor:
    from .kspace import TINY

    return sq / ((sq + TINY).sqrt() + TINY**0.5)


def zipper(
    x: Tensor,
    position: Tensor,
    amplitude: Tensor,
    seeds: Tensor,
    *,
    readout_axis: int = -1,
) -> Tensor:
    """RF interference ("zipper"): a noisy bright line at one readout position across phase encode.

    A leak at a constant frequency offset ``df`` is a complex exponential along readout in every
    k-line, with a phase that is not locked to the repetition time. After reconstruction it is a
    line at readout position ``r0 = N/2 + df / BW_pixel`` whose value varies randomly (complex
    Gaussian, unit RMS) along the phase-encode (and slice) axes:

    $$ y(r) = |x(r) + a\\, \\delta(r_{ro} - r_0)\\, n(r_{\\perp})|,\\quad n \\sim \\mathcal{CN}(0, 1) $$

    Args:
        x: ``(B, C, *spatial)``.
        position: ``(B, L)`` (or ``(B,)``) integer readout indices of the ``L`` lines.
        amplitude: ``(B, L)`` (or ``(B,)``) RMS amplitude of each line in intensity units.
        seeds: ``(B,)`` int64 seeds of the per-sample interference noise.
        readout_axis: Readout axis.

    Returns:
        ``x`` with the zipper columns replaced by their magnitude; all other voxels are unchanged.
    """
    r = spatial_dim(x, readout_axis, "readout_axis")
    b = x.shape[0]
    pos = torch.as_tensor(position, device=x.device).long().reshape(b, -1)
    nl = pos.shape[1]
    amp = torch.as_tensor(amplitude, device=x.device, dtype=x.dtype).reshape(b, -1).expand(b, nl)
    nr = x.shape[r]
    if bool(((pos < 0) | (pos >= nr)).any()):
        raise ValueError(
            f"`position` must be readout indices in [0, {nr - 1}], got {pos.tolist()}."
        )
    line_shape = list(x.shape[2:])
    line_shape[r - 2] = 1
    noise = per_sample_noise(seeds, (nl, 2, *line_shape), device=x.device, dtype=x.dtype)
    noise = noise * math.sqrt(0.5)  # unit RMS complex
    idx = torch.arange(nr, device=x.device)
    re = x
    im = torch.zeros((), device=x.device, dtype=x.dtype)
    hit = torch.zeros((), device=x.device, dtype=torch.bool)
    for j in range(nl):
        onehot = _along((idx[None, :] == pos[:, j : j + 1]), x, r)  # (B,1,..,nr,..)
        w = onehot.to(x.dtype) * _bshape(amp[:, j], x)
        nre = noise[:, j, 0].unsqueeze(1)
        nim = noise[:, j, 1].unsqueeze(1)
        re = re + w * nre
        im = im + w * nim
        hit = hit | onehot
    return torch.where(hit, magnitude(re, im.expand_as(re)), x)


# ----------------------------------------------------------------------------- Gibbs
def _keep_bins(n: int, fraction: float) -> int:
    """Highest |m| kept when a fraction of an n-point k-space axis is acquired (symmetric)."""
    return math.floor(fraction * n / 2 + 1e-9)


#: Keep ratio ``(2k + 1) / n`` below which an outer Gibbs axis is pruned (its kept bins gathered
#: before the next axis is transformed) rather than truncated in place (no-grad path).
_GIBBS_PRUNE = 0.6


def _gibbs_one(x: Tensor, fracs: Sequence[float], dims: Sequence[int]) -> Tensor:
    todo = [(dd, _keep_bins(x.shape[dd], f)) for dd, f in zip(dims, fracs)]
    todo = [(dd, kk) for dd, kk in todo if 2 * kk + 1 < x.shape[dd]]
    if not todo:
        return x
    todo.sort(key=lambda t: t[0])
    last, k_last = todo[-1]
    n_last = x.shape[last]
    z = torch.fft.rfft(x, dim=last).narrow(last, 0, k_last + 1)
    others = todo[:-1]
    inplace: list[tuple[int, int]] = []
    if others and not z.requires_grad:
        # axes truncated in place: the fresh FFT output has its middle bins zeroed and is
        # transformed back (no gather of the kept bins, no zero-filled copy). Always the innermost
        # axis of the chain; an outer axis too when it keeps most of its bins, where gathering
        # them would save little FFT work for two copies of the spectrum (3D, fraction 0.65-0.9:
        # 35-47 ms -> 29-36 ms on 160x192x160, one thread)
        inplace = [others[-1]] + [
            (d2, k2) for d2, k2 in others[:-1] if (2 * k2 + 1) >= _GIBBS_PRUNE * x.shape[d2]
        ]
        others = [t for t in others if t not in inplace]
    for d2, k2 in others:
        n = x.shape[d2]
        z = torch.fft.fft(z, dim=d2)
        z = torch.cat([z.narrow(d2, 0, k2 + 1), z.narrow(d2, n - k2, k2)], dim=d2)
    for dd, kk in sorted(inplace):
        n = z.shape[dd]
        z = torch.fft.fft(z, dim=dd)
        z.narrow(dd, kk + 1, n - (2 * kk + 1)).zero_()
        z = torch.fft.ifft(z, dim=dd)
    for dd, kk in reversed(others):
        n = x.shape[dd]
        full_shape = list(z.shape)
        full_shape[dd] = n
        if z.requires_grad:
            zeros = z.new_zeros([*full_shape[:dd], n - (2 * kk + 1), *full_shape[dd + 1 :]])
            z = torch.cat([z.narrow(dd, 0, kk + 1), zeros, z.narrow(dd, kk + 1, kk)], dim=dd)
        else:  # every element of the zero-filled spectrum written exactly once
            zf = z.new_empty(full_shape)
            zf.narrow(dd, 0, kk + 1).copy_(z.narrow(dd, 0, kk + 1))
            zf.narrow(dd, kk + 1, n - (2 * kk + 1)).zero_()
            zf.narrow(dd, n - kk, kk).copy_(z.narrow(dd, kk + 1, kk))
            z = zf
        z = torch.fft.ifft(z, dim=dd)
    return torch.fft.irfft(z, n=n_last, dim=last)


def gibbs(x: Tensor, fraction: Tensor | float, *, axes: Sequence[int] | None = None) -> Tensor:
    """Gibbs ringing from k-space truncation: only a central fraction of k-space is acquired.

    Along each axis in ``axes`` only frequencies ``|m| <= floor(f N / 2)`` are kept (a box in
    k-space, separable), and the image is reconstructed on the original grid (zero-filled). A step
    edge overshoots by 8.9 % of the jump (Wilbraham-Gibbs constant) with ripples of period
    ``~1/f`` pixels. The truncation is symmetric, so the image stays real; its magnitude is returned.

    $$ y = \\left| \\mathcal{F}^{-1}\\big[\\textstyle\\prod_d \\mathbb{1}(|m_d| \\le f_d N_d/2)\\,\\mathcal{F}x\\big] \\right| $$

    Implemented as pruned per-axis real FFTs: the truncated part is never transformed further.

    Args:
        x: ``(B, C, *spatial)``.
        fraction: Retained fraction in (0, 1], per sample ``(B,)`` (same for every axis) or
            ``(B, len(axes))``. A fraction of 1 is the identity.
        axes: Spatial axes truncated (default all).

    Returns:
        The magnitude image.
    """
    dims = spatial_dims(x, axes)
    f = _np64(fraction)  # (host-side values: they set the FFT sizes)
    if f.ndim == 0:
        f = np.broadcast_to(f, (x.shape[0],))
    if f.ndim == 1:
        f = np.broadcast_to(f[:, None], (f.shape[0], len(dims)))
    if f.shape != (x.shape[0], len(dims)) or not bool(((f > 0) & (f <= 1)).all()):
        raise ValueError(f"`fraction` must lie in (0, 1] with shape (B,) or (B, {len(dims)}).")
    rows = [tuple(r) for r in f.tolist()]
    if all(r == rows[0] for r in rows):
        y = _gibbs_one(x, rows[0], dims)
    else:
        y = torch.cat([_gibbs_one(x[i : i + 1], rows[i], dims) for i in range(x.shape[0])])
    if y is x:
        return y
    return y.abs() if y.requires_grad else y.abs_()  # y is a fresh FFT output


# ----------------------------------------------------------------------------- undersampling
def undersampling_mask(
    n: int,
    acceleration: float,
    acs_fraction: float,
    pattern: str = "random",
    *,
    seed: int = 0,
    offset: float = 0.0,
) -> Tensor:
    """A Cartesian phase-encode sampling mask (bool, length ``n``, unshifted frequency order).

    ``round(n / R)`` lines are sampled in total, ``round(acs_fraction * n)`` of them the fully
    sampled centre (ACS). The remaining lines are chosen among the outer ones: ``"equispaced"``
    every ``(n - n_acs) / (n/R - n_acs)``-th outer line from ``offset`` (exactly every R-th line when
    there is no ACS), ``"random"`` uniformly, ``"variable_density"`` with probability decaying as
    ``(1 - |m| / m_max)^2`` (more lines near the centre; Lustig et al. 2007).

    Args:
        n: Number of phase-encode lines.
        acceleration: ``R`` >= 1.
        acs_fraction: Fully sampled central fraction in [0, 1].
        pattern: ``"equispaced"``, ``"random"`` or ``"variable_density"``.
        seed: Seed of the random patterns.
        offset: Equispaced start offset in [0, 1) of the spacing.

    Returns:
        A bool tensor ``(n,)`` (index ``i`` is frequency ``freq_index(n)[i]``).
    """
    m = freq_index(n, dtype=torch.float64)
    order = torch.argsort(m, stable=True)  # lines in k-space order -N/2 .. N/2-1
    n_total = max(1, min(n, round(n / acceleration)))
    n_acs = min(round(acs_fraction * n), n_total)
    mask = torch.zeros(n, dtype=torch.bool)
    if n_acs > 0:
        start = n // 2 - n_acs // 2
        mask[order[start : start + n_acs]] = True
    need = n_total - n_acs
    outer = order[~mask[order]]  # outer lines in k-space order
    if need > 0 and len(outer) > 0:
        need = min(need, len(outer))
        if pattern == "equispaced":
            step = len(outer) / need
            pick = (
                (offset * step + torch.arange(need, dtype=torch.float64) * step).floor().long()
            ) % len(outer)
            mask[outer[pick]] = True
        elif pattern in ("random", "variable_density"):
            g = new_generator(seed)
            if pattern == "random":
                w = torch.ones(len(outer), dtype=torch.float64)
            else:
                mm = m[outer].abs()
                w = (1 - mm / (n / 2 + 1)) ** 2 + 1e-3
            pick = torch.multinomial(w, need, replacement=False, generator=g)
            mask[outer[pick]] = True
        else:
            raise ValueError(
                f"`pattern` must be 'equispaced', 'random' or 'variable_density', got {pattern!r}."
            )
    return mask


def undersampling(x: Tensor, mask: Tensor, *, pe_axis: int = -2) -> Tensor:
    """Zero-filled magnitude reconstruction of Cartesian undersampled k-space.

    Phase-encode lines where ``mask`` is False are not acquired (set to 0); the image is the
    magnitude of the inverse FFT. Equispaced sampling at rate ``R`` gives ``R - 1`` coherent replicas
    at multiples of FOV/R; random sampling gives incoherent, noise-like aliasing.

    $$ y = |\\mathcal{F}^{-1}_{pe}[M(m)\\,\\mathcal{F}_{pe}x]| $$

    Only a 1D real FFT along the phase-encode axis is needed (the readout/slice transforms cancel);
    an asymmetric mask is handled by splitting it into symmetric and antisymmetric parts.

    Args:
        x: ``(B, C, *spatial)``.
        mask: ``(B, N_pe)`` or ``(N_pe,)`` sampling mask in unshifted frequency order (see
            :func:`undersampling_mask`).
        pe_axis: Phase-encode axis.

    Returns:
        The magnitude image.
    """
    d = spatial_dim(x, pe_axis, "pe_axis")
    n = x.shape[d]
    mk = torch.as_tensor(mask, device=x.device).to(x.dtype)
    if mk.ndim == 1:
        mk = mk[None].expand(x.shape[0], n)
    if mk.shape != (x.shape[0], n):
        raise ValueError(f"`mask` must have shape (B, {n}) or ({n},), got {tuple(mk.shape)}.")
    ms, ma = _sym_parts(mk, n)
    xf = torch.fft.rfft(x, dim=d)
    has_a = bool((ma != 0).any())
    re, im = _combine_half(xf * _along(ms, x, d), xf * _along(ma, x, d) if has_a else None, n, d)
    return magnitude(re, im) if im is not None else re.abs()


# ----------------------------------------------------------------------------- wrap-around
def wrap_around(
    x: Tensor, fov_fraction: Tensor | float, offset: Tensor | float = 0.0, *, pe_axis: int = -2
) -> Tensor:
    """Phase wrap-around (aliasing) when the phase-encode FOV is smaller than the object.

    Sampling k-space at spacing ``1/FOV'`` with ``FOV' = f FOV`` makes the image periodic with period
    ``M = round(f N)`` pixels: signal outside the new FOV folds back in from the opposite side. The
    result keeps the pixel grid: the folded ``M``-pixel FOV sits at its place (centred, plus
    ``offset`` pixels) and the rest of the grid, outside the acquired FOV, is 0. Total signal is
    conserved.

    $$ y(p) = \\sum_{j} x(p + jM) \\ \\text{for}\\ p \\in [s_0, s_0 + M),\\quad 0\\ \\text{elsewhere} $$

    Args:
        x: ``(B, C, *spatial)``.
        fov_fraction: ``f`` in (0, 1], per sample.
        offset: Shift of the FOV centre along phase encode, in pixels, per sample.
        pe_axis: Phase-encode axis.

    Returns:
        The wrapped image (real: folding adds real signal, no magnitude step needed).
    """
    d = spatial_dim(x, pe_axis, "pe_axis")
    n = x.shape[d]
    f = _vec(fov_fraction, x, "fov_fraction").detach().cpu().double()
    off = _vec(offset, x, "offset").detach().cpu().double()
    outs = []
    for i in range(x.shape[0]):
        m = max(1, min(n, round(float(f[i]) * n)))
        xi = x[i : i + 1]
        if m == n:
            outs.append(xi)
            continue
        s0 = round((n - m) / 2 + float(off[i]))
        s0 = max(0, min(n - m, s0))
        left = (m - s0 % m) % m
        total = left + n
        right = (-total) % m
        pads = [0, 0] * (x.ndim - d - 1) + [left, right]
        xp = F.pad(xi, pads)
        shp = list(xp.shape)
        shp[d : d + 1] = [shp[d] // m, m]
        folded = xp.reshape(shp).sum(dim=d)
        pads2 = [0, 0] * (x.ndim - d - 1) + [s0, n - m - s0]
        outs.append(F.pad(folded, pads2))
    return torch.cat(outs) if outs else x


# ----------------------------------------------------------------------------- motion
def _rotation_matrix(angles_deg: Tensor, nd: int) -> Tensor:
    """Rotation matrices ``(..., nd, nd)`` in grid (x=W, y=H, z=D) coordinates.

    2D: one angle. 3D: angles about spatial axes (0: D/z, 1: H/y, 2: W/x), composed ``Rz Ry Rx``.
    """
    a = angles_deg * (math.pi / 180.0)
    one, zero = torch.ones_like(a[..., 0]), torch.zeros_like(a[..., 0])
    if nd == 2:
        c, s = torch.cos(a[..., 0]), torch.sin(a[..., 0])
        return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    cz, sz = torch.cos(a[..., 0]), torch.sin(a[..., 0])
    cy, sy = torch.cos(a[..., 1]), torch.sin(a[..., 1])
    cx, sx = torch.cos(a[..., 2]), torch.sin(a[..., 2])
    rz = torch.stack(
        [
            torch.stack([cz, -sz, zero], -1),
            torch.stack([sz, cz, zero], -1),
            torch.stack([zero, zero, one], -1),
        ],
        -2,
    )
    ry = torch.stack(
        [
            torch.stack([cy, zero, sy], -1),
            torch.stack([zero, one, zero], -1),
            torch.stack([-sy, zero, cy], -1),
        ],
        -2,
    )
    rx = torch.stack(
        [
            torch.stack([one, zero, zero], -1),
            torch.stack([zero, cx, -sx], -1),
            torch.stack([zero, sx, cx], -1),
        ],
        -2,
    )
    return rz @ ry @ rx


def _norm_coords(n: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    return (2 * torch.arange(n, device=device, dtype=dtype) + 1) / n - 1


def _rigid_grid_nograd(
    rotation_deg: Tensor,
    translation_mm: Tensor,
    sp: Sequence[int],
    spacing: Sequence[float],
    coords: Sequence[Tensor] | None,
    dev: torch.device,
    dt: torch.dtype,
) -> Tensor:
    """The sampling grid of :func:`rigid_resample` without autograd: the pose coefficients in
    float64 NumPy (a handful of scalars; tiny torch ops cost more in dispatch than in arithmetic),
    then one contiguous plane per grid component, the first spatial axis' term plus the small sum
    of the others; the planes are handed to ``grid_sample`` as a ``(n, *shape, nd)`` view (a
    broadcast add into an interleaved layout whose innermost dimension has length ``nd`` runs
    several times slower on CPU, and ``grid_sample`` reads the strided grid as fast)."""
    nd = len(sp)
    a, b = _rigid_coeffs_np(rotation_deg, translation_mm, sp, spacing)
    n = a.shape[0]
    if coords is None:
        cs = [(2 * np.arange(m) + 1) / m - 1 for m in sp]
    else:
        cs = [cc.detach().double().cpu().numpy().reshape(-1) for cc in coords]
    shape = [len(cc) for cc in cs]
    planes = torch.empty((n, nd, *shape), device=dev, dtype=dt)
    for comp in range(nd):
        rest = b[:, comp].reshape(n, *([1] * nd))
        for ax in range(1, nd):
            view = [1] * (nd + 1)
            view[1 + ax] = shape[ax]
            rest = rest + cs[ax].reshape(view) * a[:, comp, nd - 1 - ax].reshape(n, *([1] * nd))
        first = cs[0].reshape(1, -1, *([1] * (nd - 1))) * a[:, comp, nd - 1].reshape(n, *([1] * nd))
        torch.add(
            torch.from_numpy(first).to(dev, dt), torch.from_numpy(rest).to(dev, dt),
            out=planes[:, comp],
        )
    return planes.movedim(1, -1)


def _rigid_coeffs_np(
    rotation_deg: Tensor, translation_mm: Tensor, sp: Sequence[int], spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Float64 ``(a, b)`` of :func:`rigid_resample`'s normalised sampling map ``g = a u + b``
    (grid order x=W, y=H, z=D), ``a`` ``(n, nd, nd)`` and ``b`` ``(n, nd)``."""
    nd = len(sp)
    ang = rotation_deg.detach().double().cpu().reshape(-1, 1 if nd == 2 else 3)
    rot = _rotation_matrix(ang, nd).numpy()  # the one definition of the rotation convention
    n = rot.shape[0]
    half_g = np.array([s_ * v / 2 for s_, v in zip(sp, spacing)])[::-1]  # grid order x=W, y=H, z=D
    rt = np.swapaxes(rot, -1, -2)
    a = rt * (half_g[None, None, :] / half_g[None, :, None])
    t_g = translation_mm.detach().double().cpu().numpy().reshape(n, nd)[:, ::-1]
    b = -np.einsum("nij,nj->ni", rt, t_g) / half_g
    return a, b


def rigid_resample(
    x: Tensor,
    rotation_deg: Tensor,
    translation_mm: Tensor,
    spacing: Sequence[float],
    *,
    coords: Sequence[Tensor] | None = None,
) -> Tensor:
    """Resample ``x`` ``(n, C, *spatial)`` at rigidly moved poses, one ``grid_sample`` call.

    The object is rotated about the grid centre by ``rotation_deg`` ``(n, R)`` and then translated by
    ``translation_mm`` ``(n, nd)`` (spatial axis order, mm): ``y(u) = x(R^T (u - t))`` (bi/trilinear,
    zeros outside the FOV).

    Args:
        x: ``(n, C, *spatial)``.
        rotation_deg: ``(n, 1)`` in 2D, ``(n, 3)`` in 3D.
        translation_mm: ``(n, nd)``.
        spacing: Voxel size in mm per spatial axis.
        coords: Optional normalised output coordinates per spatial axis (a subset, e.g. some slices).

    Returns:
        ``(n, C, *out)``.
    """
    nd = x.ndim - 2
    dev, dt = x.device, x.dtype
    sp = list(x.shape[2:])
    if not (torch.is_grad_enabled() and (rotation_deg.requires_grad or translation_mm.requires_grad)):
        grid = _rigid_grid_nograd(rotation_deg, translation_mm, sp, spacing, coords, dev, dt)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    half = torch.tensor([s * v / 2 for s, v in zip(sp, spacing)], device=dev, dtype=dt)
    half_g = half.flip(0)  # grid order x=W, y=H, z=D
    rot = _rotation_matrix(rotation_deg.to(dev, dt), nd)  # (n, nd, nd)
    rt = rot.transpose(-1, -2)
    a = rt * (half_g[None, None, :] / half_g[None, :, None])  # diag(1/h) R^T diag(h)
    t_g = translation_mm.to(dev, dt).flip(-1)
    b = -(rt @ t_g.unsqueeze(-1)).squeeze(-1) / half_g
    if coords is None:
        coords = [_norm_coords(s, dev, dt) for s in sp]
    n = x.shape[0]
    shape = [c.numel() for c in coords]
    # grid[..., c] = sum_j a[c, j] u_j + b_c, with u_j the coordinate of grid axis j (x=W, y=H, z=D);
    # built by broadcasting in the grid's own (..., nd) layout (cheaper than affine_grid).
    grid = None
    for j in range(nd):
        ax = nd - 1 - j  # spatial axis of grid axis j
        view = [n] + [1] * nd + [nd]
        view[1 + ax] = shape[ax]
        term = (coords[ax].reshape(1, -1, 1) * a[:, :, j].reshape(n, 1, nd)).reshape(view)
        grid = term if grid is None else grid + term
    assert grid is not None
    grid = grid + b.reshape(n, *([1] * nd), nd)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def acquisition_times(
    n: int, order: str = "linear", *, device: torch.device | str = "cpu"
) -> Tensor:
    """Acquisition time in [0, 1) of each k-space line (unshifted frequency order).

    ``"linear"``: k-lines from -N/2 to N/2-1; ``"centric"``: from the k-space centre outwards
    (0, 1, -1, 2, -2, ...).
    """
    return _acquisition_times(n, order).to(device, copy=True)


@functools.lru_cache(maxsize=64)
def _acquisition_times(n: int, order: str) -> Tensor:
    """Cached CPU float64 :func:`acquisition_times` (read-only by convention: never modified)."""
    m = freq_index(n, dtype=torch.float64)
    if order == "linear":
        key = m
    elif order == "centric":
        key = m.abs() + 0.5 * (m < 0)
    else:
        raise ValueError(f"`order` must be 'linear' or 'centric', got {order!r}.")
    rank = torch.argsort(torch.argsort(key, stable=True), stable=True).double()
    return (rank + 0.5) / n


def _segments(t_line: Tensor, times: Tensor) -> Tensor:
    """Pose index (0 = reference) of each line: number of events at or before its time."""
    return (t_line[None, :, None] >= times[:, None, :]).sum(-1)


def _times_from_energy(energy: Tensor, t_line: Tensor, frac: Tensor, rel: Tensor) -> Tensor:
    """Absolute event times so that lines after the first event hold ``frac`` of the energy."""
    n = t_line.numel()
    if not (energy.requires_grad or frac.requires_grad or rel.requires_grad):
        # the same float64 arithmetic in NumPy (CPU inputs; ~1 us per operation instead of ~3)
        en, tl = energy.numpy(), t_line.numpy()
        e = en[:, np.argsort(tl, kind="stable")]
        tail = np.cumsum(e[:, ::-1], axis=1)[:, ::-1]
        tail = np.concatenate([tail, np.zeros_like(tail[:, :1])], 1) / np.maximum(
            tail[:, :1], 1e-30
        )
        j = np.abs(tail - frac.numpy()[:, None]).argmin(1).astype(np.float64)
        t1 = (j / n)[:, None]
        return torch.from_numpy(t1 + rel.double().numpy() * (1 - t1))
    perm = torch.argsort(t_line)
    e = energy[:, perm]
    tail = torch.flip(torch.cumsum(torch.flip(e, [1]), 1), [1])
    tail = torch.cat([tail, torch.zeros_like(tail[:, :1])], 1) / tail[:, :1].clamp_min(1e-30)
    j = (tail - frac[:, None]).abs().argmin(1).double()
    t1 = (j / n)[:, None]
    return t1 + rel.double() * (1 - t1)


#: Elements per group of samples that :func:`motion` processes at once.
_MOTION_CHUNK = 1 << 18


def motion(
    x: Tensor,
    rotation_deg: Tensor,
    translation_mm: Tensor,
    times: Tensor,
    *,
    spacing: float | Sequence[float] | None = None,
    pe_axis: int = -2,
    order: str = "linear",
    moved_energy: Tensor | None = None,
    acquisition: str = "3d",
    slice_axis: int = -3,
    complex_output: bool = False,
) -> Tensor:
    """Rigid subject motion during acquisition: k-space segments acquired at different poses.

    Events at times ``t_1 <= ... <= t_E`` (fractions of the acquisition) move the object to pose
    ``e`` (rotation ``R_e`` about the FOV centre, then translation ``t_e`` in mm); before ``t_1`` it is
    at the reference pose. Phase-encode line ``m`` is acquired at time ``tau(m)`` (``order``) and takes
    its k-space values from the pose active then:

    $$ K(\\mathbf{k}) = \\sum_{p=0}^{E} M_p(m)\\,\\mathcal{F}[x \\circ R_p^{-1}](R_p\\ldots)\\,
       e^{-2\\pi i\\,\\mathbf{k}\\cdot\\mathbf{t}_p/\\mathbf{N}},\\qquad y = |\\mathcal{F}^{-1}K| $$

    Translation-only motion is exact phase ramps on one FFT of ``x`` (no resampling). Poses with a
    rotation are resampled once (rotation and translation in one batched ``grid_sample``); because
    the segment masks depend only on the phase-encode line, those poses need only a 1D real FFT
    along the phase-encode axis (readout/slice FFTs cancel). ``acquisition="multislice"`` (3D input)
    models 2D multi-slice imaging with motion *between* slices: each slice is taken from the pose
    active when it was acquired (``order`` ``"linear"`` or ``"interleaved"``).

    Args:
        x: ``(B, C, *spatial)``.
        rotation_deg: ``(B, E, 1)`` (2D, or ``(B, E)``) / ``(B, E, 3)`` (3D, about spatial axes 0, 1, 2)
            rotation of each pose in degrees.
        translation_mm: ``(B, E, nd)`` translation of each pose in mm (spatial axis order).
        times: ``(B, E)`` event times in [0, 1], non-decreasing. With ``moved_energy`` they are
            relative offsets within the moved part (the first should be 0).
        spacing: Voxel size in mm (a float or one per spatial axis); default 1 mm.
        pe_axis: Phase-encode axis (its line order sets the time of each k-space segment).
        order: Line order: ``"linear"`` or ``"centric"`` (k-space), ``"linear"`` or
            ``"interleaved"`` (slices, multislice mode).
        moved_energy: ``(B,)`` fraction of k-space energy acquired after the first event (k-space
            mode): the first event time is set to the line that leaves this fraction of the energy
            of ``x`` after it. Severity is driven by this fraction.
        acquisition: ``"3d"`` (k-space segments; 2D images too) or ``"multislice"`` (3D input).
        slice_axis: Slice axis for ``"multislice"``.
        complex_output: Return the complex image instead of its magnitude (k-space mode).

    Returns:
        The magnitude image (or complex image).
    """
    nd = x.ndim - 2
    b = x.shape[0]
    dev, dt = x.device, x.dtype
    rot = torch.as_tensor(rotation_deg, device=dev, dtype=dt)
    if nd == 2 and rot.ndim == 2:
        rot = rot[..., None]
    tr = torch.as_tensor(translation_mm, device=dev, dtype=dt)
    tm = torch.as_tensor(times, dtype=torch.float64).detach().cpu()
    if tm.ndim == 1:
        tm = tm[:, None]
    ne = tm.shape[1]
    nr = 1 if nd == 2 else 3
    if rot.shape != (b, ne, nr) or tr.shape != (b, ne, nd):
        raise ValueError(
            f"`rotation_deg` must be (B, E, {nr}) and `translation_mm` (B, E, {nd}) with B={b}, "
            f"E={ne} (from `times`), got {tuple(rot.shape)} and {tuple(tr.shape)}."
        )
    if spacing is None:
        sp = [1.0] * nd
    elif isinstance(spacing, (int, float)):
        sp = [float(spacing)] * nd
    else:
        sp = [float(s) for s in spacing]
        if len(sp) != nd:
            raise ValueError(
                f"`spacing` must have {nd} values (one per spatial axis), got {spacing!r}."
            )
    per = max(1, _MOTION_CHUNK // max(x[0].numel(), 1))
    if b > per:  # cache-sized groups of samples: a big batch costs no more per image than one
        me = None if moved_energy is None else _cpu(moved_energy).expand(b)
        return torch.cat([
            motion(x[i : i + per], rot[i : i + per], tr[i : i + per], tm[i : i + per],
                   spacing=sp, pe_axis=pe_axis, order=order,
                   moved_energy=None if me is None else me[i : i + per],
                   acquisition=acquisition, slice_axis=slice_axis, complex_output=complex_output)
            for i in range(0, b, per)
        ])
    if acquisition == "multislice":
        return _motion_multislice(x, rot, tr, tm, sp, slice_axis, order)
    if acquisition != "3d":
        raise ValueError(f"`acquisition` must be '3d' or 'multislice', got {acquisition!r}.")
    d = spatial_dim(x, pe_axis, "pe_axis")
    n = x.shape[d]
    t_line = _acquisition_times(n, order)
    rotated = rot.requires_grad or bool((rot.detach() != 0).any())
    if not rotated:
        return _motion_translation(x, tr, tm, sp, d, t_line, moved_energy, complex_output)
    xf0 = torch.fft.rfft(x, dim=d)
    if moved_energy is not None:
        e_half = _line_energy(xf0, d)
        m = freq_index(n, dtype=torch.float64).abs().long()
        tm = _times_from_energy(e_half[:, m], t_line, _cpu(moved_energy), tm)
    seg = _segments(t_line, tm)  # (B, n) pose of each line
    xfm = _moved_spectra(x, rot, tr, sp, d, seg)  # list over poses 1..E of (B, ...) or None
    re, im = _assemble_lines(xf0, xfm, seg, n, d)
    if complex_output:
        return torch.complex(re, im if im is not None else torch.zeros_like(re))
    if im is None:
        return re.abs()
    if torch.is_grad_enabled() and (re.requires_grad or im.requires_grad):
        return magnitude(re, im)
    return _magnitude_(re, im)


def _magnitude_(re: Tensor, im: Tensor) -> Tensor:
    """:func:`~robustaug.functional.kspace.magnitude` without autograd, overwriting ``re`` (a
    temporary) and ``im``: the same ``s / (sqrt(s + tiny) + sqrt(tiny))`` in four passes."""
    s = re.mul_(re).addcmul_(im, im)
    r = torch.add(s, TINY, out=im).sqrt_().add_(TINY**0.5)
    return s.div_(r)


def _line_energy(xf: Tensor, d: int) -> Tensor:
    """Energy ``sum |X|^2`` of every PE line of a (half) spectrum, ``(B, n_lines)`` float64 CPU.

    The reduced trailing dims are contiguous, so the inner reduction is vectorised."""
    xr = torch.view_as_real(xf.detach().contiguous())
    b, nl = xf.shape[0], xf.shape[d]
    v = xr.reshape(b, -1, nl, math.prod(xr.shape[d + 1 :]))
    return torch.linalg.vector_norm(v, dim=-1).double().square().sum(1).cpu()


def _moved_spectra(
    x: Tensor, rot: Tensor, tr: Tensor, sp: Sequence[float], d: int, seg: Tensor
) -> list[Tensor | None]:
    """PE-axis real FFTs of the moved poses; a pose no k-line uses is not resampled (None).

    2D: all needed poses in one batched bilinear ``grid_sample``. 3D: each needed pose by the
    two-pass separable warp of :func:`_rigid_resample_3d` (two vectorised 2D ``grid_sample``
    calls, ~3x cheaper than a trilinear one); a pose equal to the previous one reuses its spectrum.
    """
    b, ne = rot.shape[:2]
    nd = x.ndim - 2
    used = [[bool((seg[i] == p + 1).any()) for p in range(ne)] for i in range(b)]
    grad = rot.requires_grad or tr.requires_grad
    if nd == 2:
        pairs = [(i, p) for i in range(b) for p in range(ne) if used[i][p]]
        out: list[Tensor | None] = [None] * ne
        if not pairs:
            return out
        ii = torch.tensor([i for i, _ in pairs])
        pp = torch.tensor([p for _, p in pairs])
        moved = rigid_resample(x.index_select(0, ii.to(x.device)), rot[ii, pp], tr[ii, pp], sp)
        spec = torch.fft.rfft(moved, dim=d)
        for p in range(ne):
            sel = [k for k, (_, q) in enumerate(pairs) if q == p]
            if not sel:
                continue
            rows_l = [pairs[k][0] for k in sel]
            if rows_l == list(range(b)) and sel == list(range(sel[0], sel[0] + b)):
                out[p] = spec.narrow(0, sel[0], b)  # every sample uses this pose
                continue
            full = torch.zeros(
                (b, *spec.shape[1:]), dtype=spec.dtype, device=spec.device
            )
            rows = torch.tensor(rows_l, device=x.device)
            full = full.index_copy(0, rows, spec[torch.tensor(sel, device=x.device)])
            out[p] = full
        return out
    per_pose: list[list[Tensor | None]] = [[None] * ne for _ in range(b)]
    for i in range(b):
        prev: Tensor | None = None
        box = None
        for p in range(ne):
            if not used[i][p]:
                prev = None
                continue
            same = (
                not grad
                and p > 0
                and prev is not None
                and torch.equal(rot[i, p], rot[i, p - 1])
                and torch.equal(tr[i, p], tr[i, p - 1])
            )
            if not same:
                if box is None:
                    box = _nonzero_box(x[i])
                    if box is None:  # all zero: every pose is zero
                        box = [(0, 0)] * 3
                moved = _rigid_resample_3d(x[i : i + 1], rot[i, p], tr[i, p], sp, box=box)
                prev = torch.fft.rfft(moved, dim=d)
            per_pose[i][p] = prev
    out = []
    for p in range(ne):
        col = per_pose
        if all(col[i][p] is None for i in range(b)):
            out.append(None)
            continue
        ref = next(col[i][p] for i in range(b) if col[i][p] is not None)
        assert ref is not None
        if b == 1:
            out.append(ref)
            continue
        out.append(
            torch.cat([col[i][p] if col[i][p] is not None else torch.zeros_like(ref) for i in range(b)])
        )
    return out


def _assemble_lines(
    xf0: Tensor, xfm: list[Tensor | None], seg: Tensor, n: int, d: int
) -> tuple[Tensor, Tensor | None]:
    """Real and imaginary parts (None if real) of the complex image from k-lines taken from each pose's PE-axis spectrum (half spectra ``rfft``).

    Line ``+h`` is ``P[h] = S_p[h]`` and line ``-h`` is ``conj(Q[h])``, ``Q[h] = S_q[h]``, where
    ``S_p`` is the spectrum of the real pose image acquired at that line. ``K`` is split into its
    Hermitian part (half spectrum ``(P + Q)/2``) and anti-Hermitian part (``(P - Q)/2``), so the
    complex image is two real inverse FFTs: ``irfft((P+Q)/2) + i irfft(-i (P-Q)/2)``.
    """
    nh = n // 2 + 1
    dev = xf0.device
    grad = xf0.requires_grad or any(v is not None and v.requires_grad for v in xfm)
    if not grad and xf0[0].numel() >= _RUN_MIN:
        return _assemble_runs(xf0, xfm, seg.cpu(), n, d)
    seg = seg.to(dev)
    h = torch.arange(nh, device=dev)
    pos_seg = seg[:, h]
    neg_seg = seg[:, (n - h) % n]
    kp, kq = xf0, xf0
    for p, src in enumerate(xfm, start=1):
        if src is None:
            continue
        kp = torch.where(_along(pos_seg == p, xf0, d), src, kp)
        kq = torch.where(_along(neg_seg == p, xf0, d), src, kq)
    if kp is kq:  # every line from one pose: a real image
        return torch.fft.irfft(kp, n=n, dim=d), None
    re = torch.fft.irfft((kp + kq) * 0.5, n=n, dim=d)
    im = torch.fft.irfft((kp - kq) * (-0.5j), n=n, dim=d)
    return re, im


#: Spectrum size per sample above which :func:`_assemble_lines` copies runs of lines.
_RUN_MIN = 1 << 12


def _assemble_runs(
    xf0: Tensor, xfm: list[Tensor | None], seg: Tensor, n: int, d: int
) -> tuple[Tensor, Tensor | None]:
    """No-grad :func:`_assemble_lines`: the half-spectrum lines ``h`` whose pose pair
    ``(pose of +h, pose of -h)`` is constant form a few runs (events split the acquisition order
    into contiguous blocks), so the Hermitian part ``(P + Q)/2`` and anti-Hermitian part
    ``(P - Q)/2`` are written run by run from the pose spectra (no masks, no ``where``)."""
    nh = n // 2 + 1
    h = torch.arange(nh)
    pos_seg, neg_seg = seg[:, h], seg[:, (n - h) % n]
    srcs = [xf0, *xfm]
    herm = torch.empty_like(xf0)
    anti: Tensor | None = None
    dd = d - 1  # PE dim inside one sample
    if xf0.device.type == "cpu":
        return _assemble_runs_np(srcs, herm, pos_seg.numpy(), neg_seg.numpy(), n, d)
    for i in range(xf0.shape[0]):
        key = (pos_seg[i] * (len(srcs) + 1) + neg_seg[i]).tolist()
        starts = [0] + [j for j in range(1, nh) if key[j] != key[j - 1]] + [nh]
        for a, b in itertools.pairwise(starts):
            p, q = int(pos_seg[i, a]), int(neg_seg[i, a])
            sp_, sq_ = srcs[p], srcs[q]
            assert sp_ is not None and sq_ is not None  # a pose some line uses has a spectrum
            pp, qq = sp_[i].narrow(dd, a, b - a), sq_[i].narrow(dd, a, b - a)
            hs = herm[i].narrow(dd, a, b - a)
            if p == q:
                hs.copy_(pp)
                if anti is not None:
                    anti[i].narrow(dd, a, b - a).zero_()
                continue
            if anti is None:  # zero what was skipped so far (earlier samples, earlier runs)
                anti = torch.empty_like(xf0)
                anti[:i].zero_()
                anti[i].narrow(dd, 0, a).zero_()
            torch.add(pp, qq, out=hs).mul_(0.5)
            torch.sub(pp, qq, out=anti[i].narrow(dd, a, b - a)).mul_(-0.5j)
    re = torch.fft.irfft(herm, n=n, dim=d)
    return re, (torch.fft.irfft(anti, n=n, dim=d) if anti is not None else None)


def _assemble_runs_np(
    srcs: list[Tensor | None], herm: Tensor, pos_seg: np.ndarray, neg_seg: np.ndarray, n: int, d: int
) -> tuple[Tensor, Tensor | None]:
    """:func:`_assemble_runs` on the CPU with NumPy views of the complex spectra (a NumPy call
    costs ~1 us where a torch op costs 3-5 us; a 2D image has a few runs of ~8 operations each)."""
    nh = n // 2 + 1
    dd = d - 1
    hn = herm.numpy()
    sn = [None if t is None else t.numpy() for t in srcs]
    anti: Tensor | None = None
    an: np.ndarray | None = None
    npose = len(srcs) + 1
    sl: list[slice] = [slice(None)] * (herm.ndim - 1)

    def cut(a: int, b: int) -> tuple[slice, ...]:
        sl[dd] = slice(a, b)
        return tuple(sl)

    for i in range(hn.shape[0]):
        key = pos_seg[i] * npose + neg_seg[i]
        starts = [0, *(np.flatnonzero(np.diff(key)) + 1).tolist(), nh]
        for a, b in itertools.pairwise(starts):
            p, q = int(pos_seg[i, a]), int(neg_seg[i, a])
            sp_, sq_ = sn[p], sn[q]
            assert sp_ is not None and sq_ is not None  # a pose some line uses has a spectrum
            c = cut(a, b)
            pp, qq, hs = sp_[i][c], sq_[i][c], hn[i][c]
            if p == q:
                np.copyto(hs, pp)
                if an is not None:
                    an[i][c] = 0
                continue
            if an is None:  # zero what was skipped so far (earlier samples, earlier runs)
                anti = torch.empty_like(herm)
                an = anti.numpy()
                an[:i] = 0
                an[i][cut(0, a)] = 0
            np.add(pp, qq, out=hs)
            hs *= 0.5
            ax = an[i][c]
            np.subtract(pp, qq, out=ax)
            ax *= -0.5j
    re = torch.fft.irfft(herm, n=n, dim=d)
    return re, (torch.fft.irfft(anti, n=n, dim=d) if anti is not None else None)


def _rigid_resample_3d(
    x: Tensor,
    rotation_deg: Tensor,
    translation_mm: Tensor,
    sp: Sequence[float],
    crop: bool = True,
    box: list[tuple[int, int]] | None = None,
) -> Tensor:
    """One rigid pose of a volume ``(1, C, D, H, W)`` by a two-pass separable warp.

    The normalised sampling map ``u -> A u + c`` (spatial order D, H, W) of :func:`rigid_resample`
    is factored as ``A = T M`` with ``M`` keeping the D coordinate (rows H, W of ``A``) and ``T``
    changing only D (row ``t = A_0 M^{-1}``). Pass 1 resamples along D inside every (D, W) plane
    (``z(v) = x(T v)``, batch over H); pass 2 resamples every (H, W) slice (``y(u) = z(M u)``,
    batch over D). Both passes are vectorised 2D ``grid_sample`` calls, and the composition
    interpolates linearly once along each axis, like trilinear sampling. Falls back to one
    trilinear ``grid_sample`` when ``M`` is ill-conditioned (rotations near 90 degrees).
    With ``crop`` only the bounding box of the warped non-zero voxels is resampled (exact);
    ``box`` passes a precomputed :func:`_nonzero_box` of ``x[0]``.
    """
    dev, dt = x.device, x.dtype
    sh = list(x.shape[2:])
    half = torch.tensor([s * v / 2 for s, v in zip(sh, sp)], device=dev, dtype=dt)
    rot = _rotation_matrix(rotation_deg.to(dev, dt)[None], 3)[0]  # grid order (W, H, D)
    rt = rot.transpose(-1, -2)
    half_g = half.flip(0)
    a_g = rt * (half_g[None, :] / half_g[:, None])
    b_g = -(rt @ translation_mm.to(dev, dt).flip(-1)) / half_g
    a = a_g.flip(0).flip(1)  # spatial order (D, H, W)
    c = b_g.flip(0)
    m = torch.cat([torch.tensor([[1.0, 0.0, 0.0]], device=dev, dtype=dt), a[1:]], 0)
    det = float(torch.linalg.det(m[1:, 1:].detach()))
    if abs(det) < 0.3:
        return rigid_resample(x, rotation_deg[None], translation_mm[None], sp)
    t = torch.linalg.solve(m.transpose(0, 1), a[0])  # t M = a_0
    tau = c[0] - t[1] * c[1] - t[2] * c[2]
    ud, uh, uw = (_norm_coords(s, dev, dt) for s in sh)
    nd_, nh_, nw_ = sh
    ch = x.shape[1]
    if not crop:
        box = [(0, nd_), (0, nh_), (0, nw_)]
    elif box is None:
        box = _nonzero_box(x[0])
    if box is None or any(b1 <= b0 for b0, b1 in box):
        return torch.zeros_like(x) if not x.requires_grad else x * 0
    (d0, d1), (h0, h1), (w0, w1) = box
    td, tdh, tdw, ttau = (float(v) for v in (t[0].detach(), t[1].detach(), t[2].detach(), tau.detach()))
    # Only the support of the warped object is resampled (exact: grid_sample pads with zeros, and
    # outputs outside the support sample zeros only). Pass 1 keeps H and W, so z is non-zero only
    # for h in [h0, h1), w in [w0, w1) and the d whose source index p (affine in d, h, w) falls
    # within 1.5 voxels of [d0, d1); p is extremal over the (h, w) box at its corners.
    dd = torch.arange(nd_, dtype=torch.float64)
    p_lo = torch.full((nd_,), math.inf, dtype=torch.float64)
    p_hi = torch.full((nd_,), -math.inf, dtype=torch.float64)
    for hh, ww in itertools.product((h0, h1 - 1), (w0, w1 - 1)):
        un = (td * ((2 * dd + 1) / nd_ - 1) + ttau + tdh * ((2 * hh + 1) / nh_ - 1)
              + tdw * ((2 * ww + 1) / nw_ - 1))
        pidx = ((un + 1) * nd_ - 1) / 2
        p_lo, p_hi = torch.minimum(p_lo, pidx), torch.maximum(p_hi, pidx)
    ok = ((p_hi >= d0 - 1.5) & (p_lo <= d1 + 0.5)).nonzero()
    if ok.numel() == 0:
        return torch.zeros_like(x) if not x.requires_grad else x * 0
    z0, z1 = int(ok[0]), int(ok[-1]) + 1
    hc, wc = h1 - h0, w1 - w0
    # Grids are built by broadcasting small (.., 2) factors straight into their interleaved
    # (N, H, W, 2) layout (one full-size write each; stacking channels is several times slower).
    zero = torch.zeros((), device=dev, dtype=dt)

    def pair(gx: Tensor, gy: Tensor) -> Tensor:
        gx, gy = torch.broadcast_tensors(gx, gy)
        return torch.stack([gx, gy], -1)

    # pass 1: batch over H, plane (D, W); grid[..., 0] = W (exact, local to the crop),
    # grid[..., 1] = D' (the input keeps its full D extent).
    udz, uhc, uwc = ud[z0:z1], uh[h0:h1], uw[w0:w1]
    hd = pair(zero.expand(hc, z1 - z0), (t[0] * udz + tau)[None, :] + (t[1] * uhc)[:, None])
    wpart = pair(_norm_coords(wc, dev, dt), t[2] * uwc)  # (Wc, 2)
    g1 = _grid_sum(hd, wpart)  # (Hc, Dz, Wc, 2)
    xp = x[0, :, :, h0:h1, w0:w1].permute(2, 0, 1, 3)  # (Hc, C, D, Wc) view
    z = F.grid_sample(xp, g1, mode="bilinear", padding_mode="zeros", align_corners=False)
    del g1
    # pass 2: batch over D, plane (H, W) of the crop; global normalised coordinates H', W' map to
    # the crop by u_loc = (n / n_c) u + (n - 2 i0) / n_c - 1. The output support for each d is the
    # parallelogram whose source indices lie within 1.5 voxels of the crop; its box over all d is
    # spanned by the preimages of the crop's corners at the two extreme d (affine in d).
    sh_, oh_ = nh_ / hc, (nh_ - 2 * h0) / hc - 1
    sw_, ow_ = nw_ / wc, (nw_ - 2 * w0) / wc - 1
    ad = a.detach().double().cpu()
    cd = c.detach().double().cpu()

    def src_index(di: float, hi: float, wi: float) -> tuple[float, float]:
        u = [(2 * di + 1) / nd_ - 1, (2 * hi + 1) / nh_ - 1, (2 * wi + 1) / nw_ - 1]
        uh_ = sum(float(ad[1, k]) * u[k] for k in range(3)) + float(cd[1])
        uw_ = sum(float(ad[2, k]) * u[k] for k in range(3)) + float(cd[2])
        return ((uh_ + 1) * nh_ - 1) / 2, ((uw_ + 1) * nw_ - 1) / 2

    hs, ws = [], []
    for di in (z0, z1 - 1):
        o = src_index(di, 0, 0)
        e_h = [v - o_ for v, o_ in zip(src_index(di, 1, 0), o)]
        e_w = [v - o_ for v, o_ in zip(src_index(di, 0, 1), o)]
        det2 = e_h[0] * e_w[1] - e_w[0] * e_h[1]
        for ph, pw in itertools.product((h0 - 1.5, h1 + 0.5), (w0 - 1.5, w1 + 0.5)):
            r0, r1 = ph - o[0], pw - o[1]
            hs.append((r0 * e_w[1] - e_w[0] * r1) / det2)
            ws.append((e_h[0] * r1 - r0 * e_h[1]) / det2)
    y0 = min(max(math.floor(min(hs)), 0), nh_)
    y1 = min(max(math.ceil(max(hs)) + 1, y0), nh_)
    x0_ = min(max(math.floor(min(ws)), 0), nw_)
    x1_ = min(max(math.ceil(max(ws)) + 1, x0_), nw_)
    if y1 <= y0 or x1_ <= x0_:
        return torch.zeros_like(x) if not x.requires_grad else x * 0
    uhy, uwy = uh[y0:y1], uw[x0_:x1_]
    dh = pair(
        sw_ * ((a[2, 0] * udz + c[2])[:, None] + (a[2, 1] * uhy)[None, :]) + ow_,
        sh_ * ((a[1, 0] * udz + c[1])[:, None] + (a[1, 1] * uhy)[None, :]) + oh_,
    )  # (Dz, Hy, 2)
    wpart = pair(sw_ * a[2, 2] * uwy, sh_ * a[1, 2] * uwy)  # (Wy, 2)
    g2 = _grid_sum(dh, wpart)  # (Dz, Hy, Wy, 2)
    zp = z.permute(2, 1, 0, 3)  # (Dz, C, Hc, Wc) view of (Hc, C, Dz, Wc)
    y = F.grid_sample(zp, g2, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = y.permute(1, 0, 2, 3)[None]  # (1, C, Dz, Hy, Wy)
    pads = (x0_, nw_ - x1_, y0, nh_ - y1, z0, nd_ - z1)
    if any(pads):
        y = F.pad(y, pads)
    return y.reshape(1, ch, nd_, nh_, nw_)


def _grid_sum(outer: Tensor, inner: Tensor) -> Tensor:
    """``outer[:, :, None, :] + inner[None, None, :, :]`` for ``(A, B, 2)`` and ``(W, 2)``: a
    ``(A, B, W, 2)`` sampling grid. Without autograd it is written as two contiguous planes and
    returned as a strided view (a broadcast add whose innermost dimension has length 2 runs ~6x
    slower on CPU; ``grid_sample`` reads the strided grid as fast)."""
    if torch.is_grad_enabled() and (outer.requires_grad or inner.requires_grad):
        return outer[:, :, None, :] + inner[None, None, :, :]
    g = torch.empty(
        (2, *outer.shape[:2], inner.shape[0]),
        device=outer.device,
        dtype=torch.promote_types(outer.dtype, inner.dtype),
    )
    for k in range(2):
        torch.add(outer[:, :, None, k], inner[None, None, :, k], out=g[k])
    return g.movedim(0, -1)


def _nonzero_box(x: Tensor) -> list[tuple[int, int]] | None:
    """Half-open index ranges of the non-zero voxels of ``x`` (``(C, *spatial)``) per spatial axis,
    or None when ``x`` is all zero (NaN counts as non-zero)."""
    xa = x.detach()
    if not bool(xa.amin() >= 0):
        xa = xa.abs()
    # two vectorised reductions: over the last axis (contiguous), and over all leading axes
    head = _mask_box(xa.sum(-1).sum(0) != 0)  # spatial axes but the last
    last = _mask_box(xa.reshape(-1, xa.shape[-1]).sum(0) != 0)
    return None if head is None or last is None else head + last


def _mask_box(m: Tensor) -> list[tuple[int, int]] | None:
    """Half-open index ranges of the True entries of a boolean tensor along each of its dims, or
    None when there are none."""
    box = []
    for k in range(m.ndim):
        proj = m if m.ndim == 1 else m.any(dim=[j for j in range(m.ndim) if j != k])
        idx = proj.nonzero()
        if idx.numel() == 0:
            return None
        box.append((int(idx[0]), int(idx[-1]) + 1))
    return box


def _cpu(v: Tensor | float) -> Tensor:
    return torch.as_tensor(v, dtype=torch.float64).detach().cpu().reshape(-1)


def _motion_translation(
    x: Tensor,
    tr: Tensor,
    tm: Tensor,
    sp: Sequence[float],
    d: int,
    t_line: Tensor,
    moved_energy: Tensor | None,
    complex_output: bool,
) -> Tensor:
    """Exact translation-only motion: per-line phase ramps on one full FFT of ``x``."""
    b, nd = x.shape[0], x.ndim - 2
    dims = tuple(range(2, x.ndim))
    k0 = torch.fft.fftn(x, dim=dims)
    n = x.shape[d]
    if moved_energy is not None:
        red = [i for i in range(k0.ndim) if i not in (0, d)]
        energy = (k0.detach().abs() ** 2).sum(dim=red).double().cpu()
        tm = _times_from_energy(energy, t_line, _cpu(moved_energy), tm)
    seg = _segments(t_line, tm).to(x.device)  # (B, n)
    zero = torch.zeros_like(tr[:, :1])
    tpose = torch.cat([zero, tr], 1)  # (B, E+1, nd) mm
    vox = tpose / torch.tensor(sp, device=x.device, dtype=x.dtype)
    t_lines = torch.gather(vox, 1, seg[..., None].expand(b, n, nd))  # (B, n, nd) voxels per line
    phase = None
    for j in range(nd):
        dd = 2 + j
        kj = freq_index(x.shape[dd], device=x.device, dtype=x.dtype) / x.shape[dd]
        term = _along(t_lines[..., j], x, d) * _along(kj, x, dd)
        phase = term if phase is None else phase + term
    assert phase is not None
    ramp = torch.polar(torch.ones_like(phase), -2 * math.pi * phase)
    z = torch.fft.ifftn(k0 * ramp, dim=dims)
    if complex_output:
        return z
    return magnitude(z.real, z.imag)


def _motion_multislice(
    x: Tensor, rot: Tensor, tr: Tensor, tm: Tensor, sp: Sequence[float], slice_axis: int, order: str
) -> Tensor:
    if x.ndim != 5:
        raise ValueError("`acquisition='multislice'` needs a 3D input (B, C, D, H, W).")
    s = spatial_dim(x, slice_axis, "slice_axis")
    ns = x.shape[s]
    if order not in ("linear", "interleaved"):
        raise ValueError(
            f"`order` must be 'linear' or 'interleaved' for multislice, got {order!r}."
        )
    i_sl = torch.arange(ns, dtype=torch.float64)
    key = (i_sl % 2) * ns + i_sl if order == "interleaved" else i_sl
    t_sl = (torch.argsort(torch.argsort(key)).double() + 0.5) / ns
    seg = _segments(t_sl, tm)  # (B, ns)
    outs = []
    for i in range(x.shape[0]):
        parts, idxs = [], []
        for p in torch.unique(seg[i]).tolist():
            sel = (seg[i] == p).nonzero().squeeze(1)
            if p == 0:
                parts.append(x[i : i + 1].index_select(s, sel.to(x.device)))
            else:
                coords = [_norm_coords(c, x.device, x.dtype) for c in x.shape[2:]]
                coords[s - 2] = coords[s - 2][sel.to(x.device)]
                parts.append(
                    rigid_resample(
                        x[i : i + 1], rot[i, p - 1 : p], tr[i, p - 1 : p], sp, coords=coords
                    )
                )
            idxs.append(sel)
        cat = torch.cat(parts, dim=s)
        perm = torch.argsort(torch.cat(idxs)).to(x.device)
        outs.append(cat.index_select(s, perm))
    return torch.cat(outs)
