"""Ultrasound (B-mode) kernels: speckle, log compression, shadowing, attenuation, reverberation.

Value-domain convention: every kernel except :func:`log_compression` acts on the **envelope**, the
linear echo amplitude after demodulation and before log compression (``>= 0``; the built-in
phantom is normalised so that 1 is the full scale of the receiver). Attenuation and gain are
multiplicative in this domain, so dB values act as ``10^(dB/20)`` amplitude factors. Images are
``(B, C, H, W)`` with the **axial (depth) axis H pointing away from the probe** (row 0 touches the
transducer) and the lateral axis W. All kernels are deterministic: the speckle field is generated
from recorded integer seeds. None writes into its input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.rng import per_sample_noise

__all__ = [
    "FWHM_TO_SIGMA",
    "acoustic_shadow",
    "beam_coordinates",
    "depth_attenuation",
    "gamma_icdf",
    "log_compression",
    "log_decompression",
    "reverberation",
    "speckle",
    "speckle_field",
]

#: Gaussian standard deviation per unit FWHM, ``1 / (2 sqrt(2 ln 2))``.
FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def _col(v: Tensor | float, b: int, x: Tensor) -> Tensor:
    t = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        t = t.expand(b)
    return t.reshape(b, 1, 1, 1)


# ----------------------------------------------------------------------------- log compression
def log_compression(x: Tensor, dynamic_range_db: Tensor | float, reference: float = 1.0) -> Tensor:
    """Map an envelope to a display B-mode image in [0, 1] with a dynamic range in dB.

    $$ y = \\mathrm{clip}\\Big(1 + \\frac{20 \\log_{10}(x / x_{ref})}{DR},\\ 0,\\ 1\\Big) $$

    Envelope values ``DR`` dB or more below ``reference`` map to 0 (black), ``reference`` maps to 1.

    Args:
        x: Envelope ``(B, C, H, W)``, ``>= 0``.
        dynamic_range_db: ``DR`` in dB, ``(B,)`` or scalar (> 0).
        reference: Envelope value displayed as white.

    Returns:
        The log-compressed image in [0, 1] (differentiable inside the displayed range).
    """
    b = x.shape[0]
    dr = _col(dynamic_range_db, b, x)
    floor = reference * torch.pow(10.0, -dr / 20.0)
    xs = torch.maximum(x, floor.expand_as(x))
    return (1.0 + 20.0 * torch.log10(xs / reference) / dr).clamp(0.0, 1.0)


def log_decompression(y: Tensor, dynamic_range_db: Tensor | float, reference: float = 1.0) -> Tensor:
    """Inverse of :func:`log_compression` on [0, 1]: ``x = x_ref 10^{(y - 1) DR / 20}``.

    Black (0) maps to the floor ``x_ref 10^{-DR/20}``, not to zero.
    """
    dr = _col(dynamic_range_db, y.shape[0], y)
    return reference * torch.pow(10.0, (y - 1.0) * dr / 20.0)


# ----------------------------------------------------------------------------- speckle
def gamma_icdf(u: Tensor, m: Tensor, iters: int = 30) -> Tensor:
    """Quantile function of the unit-scale Gamma(m) distribution (Newton iterations in log x).

    Args:
        u: Probabilities in (0, 1).
        m: Shape parameter (> 0), broadcastable to ``u``.
        iters: Maximum Newton iterations (they stop once every step is below 1e-10 in log x).

    Returns:
        ``x`` with ``P(m, x) = u`` (``P`` the regularised lower incomplete gamma function).
    """
    u64 = u.to(torch.float64).clamp(1e-300, 1 - 1e-16)
    m64 = torch.as_tensor(m, dtype=torch.float64, device=u.device).expand_as(u64)
    lgm = torch.lgamma(m64)
    # Start: small-u power law and Wilson-Hilferty, whichever is larger (both are lower bounds-ish).
    x_small = torch.exp((torch.log(u64) + torch.lgamma(m64 + 1)) / m64)
    z = math.sqrt(2.0) * torch.erfinv(2 * u64 - 1)
    c = 1.0 / (9.0 * m64)
    x_wh = m64 * (1 - c + z * torch.sqrt(c)).clamp_min(1e-3) ** 3
    t = torch.log(torch.maximum(x_small, x_wh).clamp_min(1e-300))
    for _ in range(iters):
        xv = torch.exp(t)
        f = torch.special.gammainc(m64, xv) - u64
        logd = m64 * t - xv - lgm  # log(x * pdf(x)) = d P / d log x
        step = (f * torch.exp(-logd)).clamp(-2.0, 2.0)
        step = torch.nan_to_num(step, nan=0.0)
        t = t - step
        if float(step.abs().max()) < 1e-10:
            break
    return torch.exp(t).to(u.dtype)


def speckle_field(
    seeds: Tensor,
    shape: tuple[int, int],
    psf_sigma_px: Tensor,
    nakagami_m: Tensor,
    *,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Unit-power speckle amplitude fields ``(B, H, W)`` with a Gaussian PSF and Nakagami statistics.

    Complex circular Gaussian scatterers ``n`` are convolved (circularly, by FFT) with a Gaussian
    pulse-echo PSF of standard deviation ``psf_sigma_px = (axial, lateral)`` pixels:
    ``z = h * n``, normalised so ``E|z|^2 = 1``. ``|z|`` is Rayleigh; its intensity ``|z|^2`` is
    Exp(1) with autocovariance ``|R_h|^2``, a Gaussian with the PSF's own FWHM. For ``m != 1`` the
    intensity is mapped through the copula ``I_m = F^{-1}_{Gamma(m, 1/m)}(1 - e^{-|z|^2})``, which
    keeps the grain (rank correlation) and gives an exact Nakagami-m amplitude ``sqrt(I_m)``.

    Args:
        seeds: ``(B,)`` int64 seeds.
        shape: ``(H, W)``.
        psf_sigma_px: ``(B, 2)`` PSF standard deviations in pixels (axial, lateral); 0 = i.i.d.
        nakagami_m: ``(B,)`` Nakagami shape (1 = Rayleigh, fully developed speckle).
        device: Device of the output.
        dtype: Floating dtype of the output.

    Returns:
        Amplitude fields with ``E[A^2] = 1``.
    """
    h, w = shape
    b = len(seeds)
    ctype = torch.float64 if dtype == torch.float64 else torch.float32
    noise = per_sample_noise(seeds, (2, h, w), device=device, dtype=ctype)
    z = torch.complex(noise[:, 0], noise[:, 1]) * math.sqrt(0.5)
    fy = torch.fft.fftfreq(h, device=device, dtype=ctype).reshape(1, h, 1)
    fx = torch.fft.fftfreq(w, device=device, dtype=ctype).reshape(1, 1, w)
    s = psf_sigma_px.to(device=device, dtype=ctype).reshape(b, 2)
    sa, sl = s[:, 0].reshape(b, 1, 1), s[:, 1].reshape(b, 1, 1)
    tf = torch.exp(-2.0 * math.pi**2 * (sa**2 * fy**2 + sl**2 * fx**2))
    power = (tf**2).mean(dim=(1, 2), keepdim=True)
    zf = torch.fft.ifft2(torch.fft.fft2(z) * tf) / torch.sqrt(power)
    inten = zf.real**2 + zf.imag**2
    m = nakagami_m.to(device=device, dtype=torch.float64).reshape(b, 1, 1)
    out = inten.to(torch.float64)
    if bool((m != 1).any()):
        u = -torch.expm1(-out)
        im = gamma_icdf(u, m.expand_as(out)) / m
        out = torch.where(m == 1, out, im)
    return out.sqrt().to(dtype)


def speckle(
    x: Tensor,
    seeds: Tensor,
    psf_sigma_px: Tensor,
    nakagami_m: Tensor,
) -> Tensor:
    """Multiplicative envelope speckle: ``y = x * A`` with ``A`` from :func:`speckle_field`.

    Args:
        x: Speckle-free envelope (echogenicity amplitude) ``(B, C, H, W)``.
        seeds: ``(B,)`` seeds.
        psf_sigma_px: ``(B, 2)`` PSF sigma in pixels (axial, lateral).
        nakagami_m: ``(B,)`` Nakagami m.

    Returns:
        The speckled envelope; the same field multiplies every channel.
    """
    a = speckle_field(
        seeds, tuple(x.shape[-2:]), psf_sigma_px, nakagami_m, device=x.device, dtype=x.dtype
    )
    return x * a.unsqueeze(1)


# ----------------------------------------------------------------------------- beam geometry
def beam_coordinates(
    shape: tuple[int, int],
    spacing_mm: tuple[float, float],
    apex_mm: float | None,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """Depth along the beam (mm) and beam-line coordinate of every pixel.

    ``apex_mm=None`` is a linear array: beam lines are the columns, depth is the row position
    ``(i + 0.5) dy`` and the beam coordinate is the lateral position in mm from the image centre.
    A number is a sector/convex probe whose beams are rays from a virtual apex ``apex_mm`` above
    the top-centre of the image (0 = phased array): depth is the distance from the apex minus
    ``apex_mm`` and the beam coordinate is the steering angle in radians.

    Returns:
        ``(depth_mm, beam)``, each ``(H, W)``.
    """
    h, w = shape
    dy, dx = spacing_mm
    rows = (torch.arange(h, device=device, dtype=dtype) + 0.5).reshape(h, 1) * dy
    cols = ((torch.arange(w, device=device, dtype=dtype) + 0.5) - w / 2).reshape(1, w) * dx
    if apex_mm is None:
        return rows.expand(h, w), cols.expand(h, w)
    yy = rows + apex_mm
    rho = torch.sqrt(yy**2 + cols**2)
    return rho - apex_mm, torch.atan2(cols, yy)


def _source_beam(
    depth_frac: Tensor, center_frac: Tensor, shape: tuple[int, int], spacing_mm, apex_mm
) -> tuple[Tensor, Tensor]:
    """Depth (mm) and beam coordinate of a source at fractional image position."""
    h, w = shape
    dy, dx = spacing_mm
    y = depth_frac * h * dy
    xl = (center_frac - 0.5) * w * dx
    if apex_mm is None:
        return y, xl
    yy = y + apex_mm
    return torch.sqrt(yy**2 + xl**2) - apex_mm, torch.atan2(xl, yy)


def acoustic_shadow(
    x: Tensor,
    gain_db: Tensor,
    depth: Tensor,
    center: Tensor,
    width: Tensor,
    *,
    spacing_mm: tuple[float, float] = (0.15, 0.15),
    apex_mm: float | None = None,
    edge_px: float = 2.0,
) -> Tensor:
    """Shadow (gain < 0 dB) or enhancement (gain > 0 dB) distal to a source along the beam lines.

    Beams passing through a source of width ``width`` centred at ``center`` (fractions of the image
    width) lose (or gain) ``|gain_db|`` dB beyond the source depth (fraction ``depth`` of the image
    height); proximal tissue and other beams are unchanged. The lateral and onset edges are cosine
    tapers of ``edge_px`` pixels (the beam width).

    $$ y = x \\cdot 10^{\\,g\\, w(d, u) / 20},\\quad
    w = \\mathbb 1[d > d_0]\\ \\mathbb 1[|u - u_0| < W/2] \\text{ (tapered)} $$

    Args:
        x: Envelope ``(B, C, H, W)``.
        gain_db: ``(B,)`` dB; negative for a shadow, positive for enhancement.
        depth: ``(B,)`` source depth as a fraction of the image height.
        center: ``(B,)`` lateral position as a fraction of the image width.
        width: ``(B,)`` source width as a fraction of the image width.
        spacing_mm: ``(axial, lateral)`` pixel size in mm.
        apex_mm: ``None`` for a linear probe, else the virtual apex distance (sector/convex).
        edge_px: Taper width in pixels.

    Returns:
        The shadowed (or enhanced) envelope.
    """
    b, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    d, u = beam_coordinates((h, w), spacing_mm, apex_mm, device=dev, dtype=dt)
    dep = depth.to(device=dev, dtype=dt)
    cen = center.to(device=dev, dtype=dt)
    wid = width.to(device=dev, dtype=dt)
    d0, u0 = _source_beam(dep, cen, (h, w), spacing_mm, apex_mm)
    half = wid * w * spacing_mm[1] / 2  # mm at the source
    if apex_mm is not None:
        half = torch.atan2(half, d0 + apex_mm)
        edge_u = torch.atan2(torch.full_like(d0, edge_px * spacing_mm[1]), d0 + apex_mm)
    else:
        edge_u = torch.full_like(d0, edge_px * spacing_mm[1])
    r = lambda t: t.reshape(b, 1, 1)  # noqa: E731
    lat = ((r(half) - (u - r(u0)).abs()) / r(edge_u)).clamp(-0.5, 0.5) + 0.5
    onset = ((d - r(d0)) / (edge_px * spacing_mm[0])).clamp(0.0, 1.0)
    wgt = (0.5 - 0.5 * torch.cos(math.pi * lat)) * (0.5 - 0.5 * torch.cos(math.pi * onset))
    g = gain_db.to(device=dev, dtype=dt).reshape(b, 1, 1)
    return x * torch.pow(10.0, g * wgt / 20.0).unsqueeze(1)


def depth_attenuation(
    x: Tensor,
    alpha_db_cm_mhz: Tensor,
    freq_mhz: Tensor,
    compensation: Tensor,
    tgc_offsets_db: Tensor | None = None,
    *,
    spacing_mm: tuple[float, float] = (0.15, 0.15),
    apex_mm: float | None = None,
) -> Tensor:
    """Round-trip attenuation with depth, partly compensated by time-gain compensation (TGC).

    Soft tissue attenuates amplitude by ``alpha f`` dB per cm one way (Szabo 2014, ch. 4), so an
    echo from depth ``d`` has lost ``2 alpha f d`` dB. The scanner's TGC adds back a fraction
    ``c`` of it; a wrong TGC leaves ``(1 - c)`` uncompensated and adds slider errors ``s(d)``
    (dB, linearly interpolated between equally spaced slider depths).

    $$ y = x \\cdot 10^{[-(1 - c)\\, 2\\alpha f d + s(d)] / 20} $$

    Args:
        x: Envelope ``(B, C, H, W)``.
        alpha_db_cm_mhz: ``(B,)`` attenuation coefficient in dB/cm/MHz.
        freq_mhz: ``(B,)`` centre frequency in MHz.
        compensation: ``(B,)`` TGC compensation fraction ``c`` in [0, 1].
        tgc_offsets_db: ``(B, K)`` slider errors in dB at K equally spaced depths (or ``None``).
        spacing_mm: ``(axial, lateral)`` pixel size in mm.
        apex_mm: ``None`` (linear) or the sector apex distance in mm.

    Returns:
        The attenuated envelope.
    """
    b, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    d, _ = beam_coordinates((h, w), spacing_mm, apex_mm, device=dev, dtype=dt)
    d_cm = d / 10.0
    a = alpha_db_cm_mhz.to(device=dev, dtype=dt).reshape(b, 1, 1)
    f = freq_mhz.to(device=dev, dtype=dt).reshape(b, 1, 1)
    c = compensation.to(device=dev, dtype=dt).reshape(b, 1, 1)
    db = -(1.0 - c) * 2.0 * a * f * d_cm
    if tgc_offsets_db is not None and tgc_offsets_db.shape[1] > 0:
        k = tgc_offsets_db.shape[1]
        off = tgc_offsets_db.to(device=dev, dtype=dt)
        dmax = h * spacing_mm[0]
        pos = (d / dmax * (k - 1)).clamp(0, k - 1) if k > 1 else torch.zeros_like(d)
        i0 = pos.floor().long().clamp(0, k - 1)
        i1 = (i0 + 1).clamp(max=k - 1)
        fr = pos - i0.to(dt)
        flat0 = off[:, i0.reshape(-1)].reshape(b, h, w)
        flat1 = off[:, i1.reshape(-1)].reshape(b, h, w)
        db = db + (1 - fr) * flat0 + fr * flat1
    return x * torch.pow(10.0, db / 20.0).unsqueeze(1)


def reverberation(
    x: Tensor,
    interface_depth: Tensor,
    center: Tensor,
    width: Tensor,
    decay_db: Tensor,
    num_echoes: int,
    *,
    thickness_px: float = 1.5,
    spacing_mm: tuple[float, float] = (0.15, 0.15),
    apex_mm: float | None = None,
) -> Tensor:
    """Reverberation: copies of a bright interface at integer multiples of its depth.

    Sound bouncing between the probe face and a strong reflector at depth ``d_0`` returns after
    ``k + 1`` round trips, so the scanner places the ``k``-th copy at depth ``(k + 1) d_0`` along
    the same beam, weaker by ``k * decay_db`` dB (Kremkau & Taylor, J Ultrasound Med 1986). The
    interface is the band of the input around ``d_0`` (Gaussian depth window of ``thickness_px``
    pixels) within the lateral window; copies are added to the envelope.

    $$ y = x + \\sum_{k=1}^{K} 10^{-k\\,\\delta/20}\\ S_{k d_0}\\big[x\\, g_{d_0}\\big] $$

    with ``S_t`` a shift by ``t`` along the beam.

    Args:
        x: Envelope ``(B, C, H, W)``.
        interface_depth: ``(B,)`` depth of the interface as a fraction of the image height.
        center: ``(B,)`` lateral centre (fraction of width) of the reverberating region.
        width: ``(B,)`` lateral extent (fraction of width).
        decay_db: ``(B,)`` loss per extra round trip in dB (> 0).
        num_echoes: Number of copies ``K``.
        thickness_px: Depth window of the interface in pixels (Gaussian sigma).
        spacing_mm: ``(axial, lateral)`` pixel size in mm.
        apex_mm: ``None`` (linear) or the sector apex distance in mm.

    Returns:
        The envelope with reverberation echoes added.
    """
    b, _, h, w = x.shape
    dev, dt = x.device, x.dtype
    dy, dx = spacing_mm
    d, u = beam_coordinates((h, w), spacing_mm, apex_mm, device=dev, dtype=dt)
    dep = interface_depth.to(device=dev, dtype=dt)
    cen = center.to(device=dev, dtype=dt)
    wid = width.to(device=dev, dtype=dt)
    d0, u0 = _source_beam(dep, cen, (h, w), spacing_mm, apex_mm)
    half = wid * w * dx / 2
    edge = torch.full_like(d0, 2 * dx)
    if apex_mm is not None:
        half = torch.atan2(half, d0 + apex_mm)
        edge = torch.atan2(edge, d0 + apex_mm)
    r = lambda t: t.reshape(b, 1, 1)  # noqa: E731
    lat = ((r(half) - (u - r(u0)).abs()) / r(edge)).clamp(-0.5, 0.5) + 0.5
    lat = 0.5 - 0.5 * torch.cos(math.pi * lat)
    band = torch.exp(-0.5 * ((d - r(d0)) / (thickness_px * dy)) ** 2)
    src = x * (band * lat).unsqueeze(1)
    # Pixel-centre coordinates of every output pixel.
    yy = (torch.arange(h, device=dev, dtype=dt) + 0.5).reshape(h, 1).expand(h, w)
    xx = (torch.arange(w, device=dev, dtype=dt) + 0.5).reshape(1, w).expand(h, w)
    out = x
    dec = decay_db.to(device=dev, dtype=dt).reshape(b, 1, 1, 1)
    for k in range(1, num_echoes + 1):
        shift_mm = r(d0) * k  # (B,1,1)
        if apex_mm is None:
            sy = yy - shift_mm / dy
            sx = xx.expand(b, h, w)
        else:
            ay = yy * dy + apex_mm  # distance below the apex, mm
            ax = (xx - w / 2) * dx
            rho = torch.sqrt(ay**2 + ax**2)
            scale = ((rho - shift_mm) / rho).clamp_min(0.0)
            sy = (ay * scale - apex_mm) / dy
            sx = ax * scale / dx + w / 2
            # Sources above the apex-side of the probe face do not exist.
            sy = torch.where(rho - shift_mm > apex_mm, sy, torch.full_like(sy, -10.0 * h))
        grid = torch.stack([sx / w * 2 - 1, sy.expand(b, h, w) / h * 2 - 1], dim=-1)
        echo = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = out + torch.pow(10.0, -k * dec / 20.0) * echo
    return out
