"""CT artifact kernels simulated in the projection (sinogram) domain.

Every kernel takes a batch of CT images in Hounsfield units ``(B, C, H, W)`` or volumes
``(B, C, D, H, W)`` (processed slice by slice along ``axis``), converts HU to attenuation
``mu = mu_water (1 + HU/1000)`` (``mu_water`` in 1/mm at the effective energy, 70 keV by default),
forward-projects each slice with the parallel-beam projector of :mod:`robustaug.functional.radon`
(line integrals ``p`` are dimensionless: ``p = sum(mu * spacing_mm)``), corrupts the sinogram and
reconstructs by filtered back-projection. By default (``reconstruct="difference"``) only the
*artifact* is reconstructed and added to the input, ``y = x + HU(FBP(p' - p))``: the input's
resolution is kept and zero strength is exactly the identity; ``reconstruct="full"`` returns
``HU(FBP(p'))`` instead (with the projector's own blur). With ``domain="sinogram"`` the input is a
sinogram of line integrals ``(B, C, n_views, n_det)`` and the corrupted sinogram is returned.

Kernels are deterministic: noise comes from recorded per-sample seeds. Non-square slices are
padded with air to a square; the field of view is the inscribed circle of the square.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..core.rng import new_generator
from . import radon as R

__all__ = [
    "MATERIALS",
    "MU_WATER",
    "beam_hardening",
    "ct_motion",
    "hu_to_mu",
    "limited_angle",
    "low_dose",
    "metal_artifact",
    "mu_to_hu",
    "polychromatic_weights",
    "ring_artifact",
    "sparse_view",
    "truncation",
]

#: Linear attenuation of water at 70 keV in 1/mm (NIST XCOM: 0.1929 cm^2/g).
MU_WATER = 0.01929

# Mass attenuation coefficients (cm^2/g, with coherent scattering), NIST XCOM, rounded.
_ENERGIES = np.array([20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0])
_MASS_ATT = {
    "water": np.array([0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707, 0.1505]),
    "bone": np.array([4.001, 1.331, 0.6655, 0.4242, 0.3148, 0.2229, 0.1855, 0.1480]),
    "aluminium": np.array([3.441, 1.128, 0.5685, 0.3681, 0.2778, 0.2018, 0.1704, 0.1378]),
    "titanium": np.array([15.85, 4.972, 2.214, 1.213, 0.7661, 0.4052, 0.2721, 0.1649]),
    "steel": np.array([25.68, 8.176, 3.629, 1.958, 1.205, 0.5952, 0.3717, 0.1964]),
}
#: Metal inserts: name -> density in g/cm^3 (mass attenuation from NIST XCOM).
MATERIALS = {"titanium": 4.54, "steel": 7.874}
_DENSITY = {"water": 1.0, "bone": 1.92, "aluminium": 2.699, **MATERIALS}
_E_EFF = 70.0


def _mass_att(material: str, energies: np.ndarray) -> np.ndarray:
    return np.exp(np.interp(np.log(energies), np.log(_ENERGIES), np.log(_MASS_ATT[material])))


def polychromatic_weights(
    kvp: float, filtration_mm_al: float = 2.5, step_kev: float = 5.0
) -> tuple[np.ndarray, np.ndarray]:
    """Energy-integrating detector weights of a tungsten-anode spectrum (Kramers' law).

    $$ w(E) \\propto (kVp - E)\\,e^{-\\mu_{Al}(E)\\,t_{Al}},\\quad 20\\,keV \\le E < kVp $$

    Args:
        kvp: Tube voltage in kV (60-150).
        filtration_mm_al: Aluminium filtration in mm.
        step_kev: Energy bin width in keV.

    Returns:
        ``(energies_keV, weights)`` with weights summing to 1.
    """
    e = np.arange(20.0, float(kvp), step_kev) + step_kev / 2
    mu_al = _mass_att("aluminium", e) * _DENSITY["aluminium"] * filtration_mm_al / 10.0
    w = np.clip(kvp - e, 0, None) * np.exp(-mu_al)
    return e, w / w.sum()


def hu_to_mu(x: Tensor, mu_water: float = MU_WATER) -> Tensor:
    """HU to linear attenuation in 1/mm: ``mu = mu_water (1 + HU / 1000)`` (not clipped)."""
    return mu_water * (1.0 + x / 1000.0)


def mu_to_hu(mu: Tensor, mu_water: float = MU_WATER) -> Tensor:
    """Linear attenuation in 1/mm to HU: ``HU = 1000 (mu / mu_water - 1)``."""
    return 1000.0 * (mu / mu_water - 1.0)


# ----------------------------------------------------------------------------- slice plumbing
@dataclass
class _Slices:
    """A batch reshaped to square slices ``(B, S, N, N)`` plus what is needed to undo it."""

    data: Tensor
    shape: tuple[int, ...]
    axis: int
    pad: tuple[int, int, int, int]


def _to_slices(x: Tensor, axis: int, fill: float) -> _Slices:
    if x.ndim == 4:
        xs = x
    elif x.ndim == 5:
        ax = axis % 3
        xs = x.movedim(2 + ax, 2)
        xs = xs.reshape(x.shape[0], -1, xs.shape[-2], xs.shape[-1])
    else:
        raise ValueError(f"`x` must be (B,C,H,W) or (B,C,D,H,W), got shape {tuple(x.shape)}.")
    h, w = xs.shape[-2:]
    n = max(h, w)
    pt, pl = (n - h) // 2, (n - w) // 2
    pad = (pl, n - w - pl, pt, n - h - pt)
    if n != h or n != w:
        xs = F.pad(xs, pad, value=fill)
    return _Slices(xs, tuple(x.shape), axis, pad)


def _from_slices(y: Tensor, s: _Slices) -> Tensor:
    pl, pr, pt, pb = s.pad
    n = y.shape[-1]
    y = y[..., pt : n - pb, pl : n - pr]
    if len(s.shape) == 4:
        return y
    b, c = s.shape[:2]
    ax = s.axis % 3
    sp = list(s.shape[2:])
    moved = [sp[ax]] + [v for i, v in enumerate(sp) if i != ax]
    return y.reshape(b, c, *moved).movedim(2, 2 + ax)


def _bc(v: Tensor | float, ref: Tensor, nd: int) -> Tensor:
    """Per-sample ``(B,)`` values reshaped to broadcast against ``(B, S, ...)`` with ``nd`` trailing axes."""
    t = torch.as_tensor(v, dtype=ref.dtype, device=ref.device)
    if t.ndim == 0:
        t = t.expand(ref.shape[0])
    return t.reshape(-1, 1, *([1] * nd))


@dataclass(frozen=True)
class CTConfig:
    """Scan settings shared by the CT kernels.

    Args:
        fov_mm: Width of the image (the square) in mm; the pixel size is ``fov_mm / N``.
        n_views: Views over 180 degrees (parallel beam); ``None`` uses
            ``min(180, max(16, ceil(pi N / 2)))`` (about the angular Nyquist rate of an N-pixel slice).
        filter: FBP filter (``"ramp"``, ``"shepp-logan"``, ``"cosine"``, ``"hamming"``, ``"hann"``).
        mu_water: Water attenuation in 1/mm at the effective energy.
        axis: Slice axis for volumes (a spatial axis index: 0 = D).
        reconstruct: ``"difference"`` (add the reconstructed artifact to the input) or ``"full"``.
        domain: ``"image"`` (HU input) or ``"sinogram"`` (line-integral input and output).
    """

    fov_mm: float = 350.0
    n_views: int | None = None
    filter: str = "ramp"
    mu_water: float = MU_WATER
    axis: int = 0
    reconstruct: str = "difference"
    domain: str = "image"


def _geometry(n: int, cfg: CTConfig) -> R.ParallelBeam:
    nv = cfg.n_views if cfg.n_views is not None else min(180, max(16, math.ceil(math.pi * n / 2)))
    return R.ParallelBeam(int(n), n_views=int(nv), circle=True)


SinoFn = Callable[[Tensor, R.ParallelBeam, float], "tuple[Tensor, Tensor | None]"]


def _run(x: Tensor, cfg: CTConfig, fn: SinoFn, *, base: Tensor | None = None,
         post: Callable[[Tensor, R.ParallelBeam], Tensor] | None = None) -> Tensor:
    """Project, corrupt the sinogram with ``fn(p, geometry, spacing)`` and reconstruct.

    ``fn`` returns ``(p_corrupted, view_weights_or_None)``. ``base`` (HU, same shape as ``x``)
    replaces ``x`` as the image the artifact is added to (used to insert metal).
    """
    if cfg.domain == "sinogram":
        if x.ndim != 4:
            raise ValueError(f"`domain='sinogram'` needs (B, C, n_views, n_det) input, got {tuple(x.shape)}.")
        g = R.ParallelBeam(int(x.shape[-1]), n_views=int(x.shape[-2]), circle=True)
        out, _ = fn(x, g, 1.0)
        return out
    s = _to_slices(x, cfg.axis, -1000.0)
    n = s.data.shape[-1]
    g = _geometry(n, cfg)
    spacing = cfg.fov_mm / n
    mu = hu_to_mu(s.data, cfg.mu_water)
    p = R.forward_project(mu, g) * spacing
    p2, vw = fn(p, g, spacing)
    if cfg.reconstruct == "full":
        rec = mu_to_hu(R.fbp(p2, g, cfg.filter, view_weights=vw) / spacing, cfg.mu_water)
    else:
        ref = s.data if base is None else _to_slices(base, cfg.axis, -1000.0).data
        if vw is None:
            diff = R.fbp(p2 - p, g, cfg.filter)
        else:
            diff = R.fbp(p2, g, cfg.filter, view_weights=vw) - R.fbp(p, g, cfg.filter)
        rec = ref + diff * (1000.0 / (cfg.mu_water * spacing))
    if post is not None:
        rec = post(rec, g)
    return _from_slices(rec, s)


def _per_sample_gen(seeds: Tensor, i: int, device: torch.device) -> torch.Generator:
    return new_generator(int(seeds[i]), device)


def _transmission_noise(lam: Tensor, sigma_e: Tensor, seeds: Tensor, floor: float) -> Tensor:
    """Counts ``Poisson(lam) + N(0, sigma_e^2)`` per sample (``lam`` is ``(B, ...)``), floored."""
    out = torch.empty_like(lam)
    for i in range(lam.shape[0]):
        g = _per_sample_gen(seeds, i, lam.device)
        lam64 = lam[i].to(torch.float64).clamp_min(0.0)
        cnt = torch.poisson(lam64, generator=g)
        e = torch.randn(lam64.shape, generator=g, device=lam.device, dtype=torch.float64)
        out[i] = (cnt + float(sigma_e[i]) * e).to(lam.dtype)
    return out.clamp_min(floor)


# ----------------------------------------------------------------------------- kernels
def low_dose(
    x: Tensor,
    dose_fraction: Tensor,
    i0: Tensor,
    sigma_e: Tensor,
    seeds: Tensor,
    *,
    model: str = "poisson",
    cfg: CTConfig = CTConfig(),
) -> Tensor:
    """Reduced-dose CT: quantum and electronic noise added in the transmission domain.

    ``model="poisson"`` treats the input as noise-free: counts
    ``N = Poisson(I0 d e^{-p}) + N(0, sigma_e^2)``, ``p' = ln(I0 d / max(N, 1))``.
    ``model="zeng"`` treats the input as a full-dose scan at ``I0`` and adds only the extra
    noise of dose ``d`` (Zeng et al. 2015, eq. 11):
    ``p' = p + sqrt((1-d)/d * e^p/I0 * (1 + (1+d)/d * sigma_e^2 e^p/I0)) n``.

    Args:
        x: HU batch ``(B, C, *spatial)`` (or a sinogram with ``cfg.domain="sinogram"``).
        dose_fraction: ``(B,)`` dose relative to the reference in (0, 1].
        i0: ``(B,)`` unattenuated photons per detector channel per view at full dose.
        sigma_e: ``(B,)`` electronic noise standard deviation in photon counts.
        seeds: ``(B,)`` noise seeds.
        model: ``"poisson"`` or ``"zeng"``.
        cfg: Scan settings.

    Returns:
        The low-dose image (HU) or sinogram.
    """
    if model not in ("poisson", "zeng"):
        raise ValueError(f"`model` must be 'poisson' or 'zeng', got {model!r}.")

    def fn(p: Tensor, g: R.ParallelBeam, spacing: float):
        d = _bc(dose_fraction, p, 2)
        i0_ = _bc(i0, p, 2)
        if model == "poisson":
            lam = i0_ * d * torch.exp(-p)
            cnt = _transmission_noise(lam.detach(), sigma_e, seeds, 1.0)
            return torch.log(i0_ * d / cnt), None
        se2 = _bc(sigma_e, p, 2) ** 2
        ep = torch.exp(p) / i0_
        var = (1 - d) / d * ep * (1 + (1 + d) / d * se2 * ep)
        noise = torch.empty_like(p)
        for i in range(p.shape[0]):
            gen = _per_sample_gen(seeds, i, p.device)
            noise[i] = torch.randn(p[i].shape, generator=gen, device=p.device, dtype=p.dtype)
        return p + torch.sqrt(var.clamp_min(0)) * noise, None

    return _run(x, cfg, fn)


def _view_count_weights(n_kept: Tensor, nv: int, ref: Tensor, offset: Tensor | None = None) -> Tensor:
    """0/1 masks of ``n_kept`` near-uniform views out of ``nv``, rescaled by ``nv / n_kept``."""
    w = torch.zeros(ref.shape[0], 1, nv, dtype=ref.dtype, device=ref.device)
    for i, k in enumerate(n_kept.tolist()):
        k = int(max(1, min(nv, k)))
        o = 0.0 if offset is None else float(offset[i])
        pos = torch.floor((torch.arange(k, dtype=torch.float64) + o) * (nv / k)).long() % nv
        idx = torch.unique(pos)
        w[i, 0, idx.to(ref.device)] = nv / len(idx)
    return w


def sparse_view(
    x: Tensor, n_views: Tensor, offset: Tensor | None = None, *, cfg: CTConfig = CTConfig()
) -> Tensor:
    """Sparse-view CT: only ``n_views`` of the ``cfg.n_views`` views (uniform over 180 degrees).

    $$ f = \\frac{\\pi}{2K}\\sum_{k=1}^{K}(p_{\\theta_k} * h)(\\mathbf r\\cdot\\mathbf e_{\\theta_k}) $$

    Args:
        x: HU batch.
        n_views: ``(B,)`` number of acquired views per sample (<= ``cfg.n_views``).
        offset: ``(B,)`` position of the first view as a fraction of the sparse step (default 0).
        cfg: Scan settings.

    Returns:
        The sparse-view reconstruction (streaks).
    """

    def fn(p: Tensor, g: R.ParallelBeam, spacing: float):
        return p, _view_count_weights(n_views, g.num_views, p, offset)

    return _run(x, cfg, fn)


def limited_angle(x: Tensor, range_deg: Tensor, start_deg: Tensor, *, cfg: CTConfig = CTConfig()) -> Tensor:
    """Limited-angle CT: views only in ``[start, start + range)`` (mod 180 degrees).

    Args:
        x: HU batch.
        range_deg: ``(B,)`` angular range covered, in degrees (<= 180).
        start_deg: ``(B,)`` first view angle in degrees.
        cfg: Scan settings.

    Returns:
        The limited-angle reconstruction (missing-wedge streaks and blur).
    """

    def fn(p: Tensor, g: R.ParallelBeam, spacing: float):
        nv = g.num_views
        ang = torch.arange(nv, dtype=torch.float64) * (180.0 / nv)
        w = torch.zeros(p.shape[0], 1, nv, dtype=p.dtype, device=p.device)
        for i in range(p.shape[0]):
            rel = (ang - float(start_deg[i])) % 180.0
            keep = rel < float(range_deg[i]) - 1e-9
            if not bool(keep.any()):
                keep[int(torch.argmin(rel))] = True
            w[i, 0, keep.to(p.device)] = 1.0
        return p, w

    return _run(x, cfg, fn)


def ring_artifact(
    x: Tensor,
    channels: Tensor,
    gains: Tensor,
    offsets: Tensor,
    *,
    full_scan: bool = True,
    cfg: CTConfig = CTConfig(),
) -> Tensor:
    """Ring artifacts from miscalibrated or dead detector channels.

    Channel ``j`` reports ``I_j = G_j I_0 e^{-p} + O_j I_0``; after the log
    ``p'_j = -ln(G_j e^{-p} + O_j)``, a constant error along all views (a stripe in the sinogram)
    that back-projects to a ring of radius ``|j - n_det/2|`` pixels about the rotation centre.
    Dead channels have ``G = 0`` and a small dark offset ``O``. With ``full_scan`` (a 360 degree
    acquisition, as on clinical scanners) each faulty channel also measures the mirrored rays
    ``(theta + pi, -s)`` and the two half-scans are averaged, giving full rings; otherwise (180
    degree parallel scan) the rings are half rings.

    Args:
        x: HU batch.
        channels: ``(B, K)`` faulty detector channel indices (``-1`` = unused slot).
        gains: ``(B, K)`` relative gains ``G`` (1 = calibrated).
        offsets: ``(B, K)`` dark offsets ``O`` as a fraction of ``I0`` (>= 0).
        full_scan: Simulate a 360 degree scan (full rings) instead of 180 degrees (half rings).
        cfg: Scan settings.

    Returns:
        The image with rings.
    """

    def fn(p: Tensor, g: R.ParallelBeam, spacing: float):
        nd = p.shape[-1]
        gmap = torch.ones(p.shape[0], nd, dtype=p.dtype, device=p.device)
        omap = torch.zeros(p.shape[0], nd, dtype=p.dtype, device=p.device)
        ch = channels.to(p.device).long()
        ok = (ch >= 0) & (ch < nd)
        chc = ch.clamp(0, nd - 1)
        gv = torch.where(ok, gains.to(device=p.device, dtype=p.dtype), torch.ones_like(gmap[:, :1]))
        ov = torch.where(ok, offsets.to(device=p.device, dtype=p.dtype), torch.zeros_like(omap[:, :1]))
        gmap = gmap.scatter(1, chc, gv)
        omap = omap.scatter(1, chc, ov)
        gm = gmap[:, None, None, :]
        om = omap[:, None, None, :]
        if not full_scan:
            return -torch.log(gm * torch.exp(-p) + om), None
        # 360-degree scan: the second half-scan measures ray (theta, s) with the channel at -s;
        # the two redundant measurements are averaged
        gb, ob = _mirror(gm, 1.0), _mirror(om, 0.0)
        ep = torch.exp(-p)
        return -0.5 * (torch.log(gm * ep + om) + torch.log(gb * ep + ob)), None

    return _run(x, cfg, fn)


def _mirror(v: Tensor, neutral: float) -> Tensor:
    """Detector map mirrored about the centre channel (index ``j -> -s``); unmatched = neutral."""
    nd = v.shape[-1]
    f = torch.flip(v, dims=(-1,))
    if nd % 2 == 0:  # s = j - nd/2 -> -s is index nd - j
        f = torch.cat([torch.full_like(f[..., :1], neutral), f[..., :-1]], dim=-1)
    return f


def _decompose(hu: Tensor, mu_water: float) -> tuple[Tensor, Tensor]:
    """Water and bone partial densities (g/cm^3) reproducing ``hu`` at 70 keV."""
    mw = _mass_att("water", np.array([_E_EFF]))[0]
    mb = _mass_att("bone", np.array([_E_EFF]))[0] * _DENSITY["bone"]
    pos = hu.clamp_min(0.0) / 1000.0
    f = pos * mw / (mb - mw)  # bone volume fraction replacing water
    rho_w = 1.0 + hu.clamp_max(0.0) / 1000.0 - f
    rho_b = f * _DENSITY["bone"]
    del mu_water
    return rho_w, rho_b


def _water_linearisation(e: np.ndarray, w: np.ndarray, pmax: float = 40.0) -> tuple[Tensor, Tensor]:
    """Table ``P_poly(p_mono)`` for water: scanners invert it (water precorrection)."""
    mw = _mass_att("water", e)
    mw70 = _mass_att("water", np.array([_E_EFF]))[0]
    p = np.linspace(0.0, pmax, 4001)
    poly = -np.log((w[None, :] * np.exp(-np.outer(p, mw / mw70))).sum(1))
    return torch.from_numpy(poly), torch.from_numpy(p)


def _interp(xq: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Differentiable piecewise-linear interpolation (``xp`` increasing), linear extrapolation."""
    xp = xp.to(device=xq.device, dtype=xq.dtype)
    fp = fp.to(device=xq.device, dtype=xq.dtype)
    i = torch.searchsorted(xp, xq.detach().contiguous()).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    return f0 + (f1 - f0) * (xq - x0) / (x1 - x0)


def beam_hardening(
    x: Tensor,
    strength: Tensor,
    *,
    model: str = "polynomial",
    kvp: float = 120.0,
    water_correction: bool = False,
    cfg: CTConfig = CTConfig(),
) -> Tensor:
    """Beam hardening: the measured attenuation grows sub-linearly with path length.

    ``model="polynomial"``: water-equivalent ``p' = p - beta p^2`` with ``beta = strength``
    (cupping). ``model="spectrum"``: polychromatic projection of a water/bone decomposition,
    ``P = -ln sum_E w(E) exp(-mu_w(E) t_w - mu_b(E) t_b)`` with a Kramers spectrum at ``kvp``,
    optionally water-precorrected (leaving dark bands between bones), blended
    ``p' = p + strength (P - p)``.

    Args:
        x: HU batch.
        strength: ``(B,)`` ``beta`` (polynomial, per unit ``p``) or blend in [0, 1] (spectrum).
        model: ``"polynomial"`` or ``"spectrum"``.
        kvp: Tube voltage (spectrum model).
        water_correction: Apply the scanner's water linearisation (spectrum model).
        cfg: Scan settings.

    Returns:
        The image with cupping / dark bands.
    """
    if model not in ("polynomial", "spectrum"):
        raise ValueError(f"`model` must be 'polynomial' or 'spectrum', got {model!r}.")
    if model == "polynomial":

        def fn(p: Tensor, g: R.ParallelBeam, spacing: float):
            return p - _bc(strength, p, 2) * p * p, None

        return _run(x, cfg, fn)
    if cfg.domain == "sinogram":
        raise ValueError("`model='spectrum'` needs HU images (domain='image').")
    e, w = polychromatic_weights(kvp)
    s = _to_slices(x, cfg.axis, -1000.0)
    n = s.data.shape[-1]
    g = _geometry(n, cfg)
    spacing_cm = cfg.fov_mm / n / 10.0
    rho_w, rho_b = _decompose(s.data, cfg.mu_water)
    tw = R.forward_project(rho_w, g) * spacing_cm
    tb = R.forward_project(rho_b, g) * spacing_cm
    mw = torch.as_tensor(_mass_att("water", e), dtype=x.dtype, device=x.device)
    mb = torch.as_tensor(_mass_att("bone", e), dtype=x.dtype, device=x.device)
    wt = torch.as_tensor(w, dtype=x.dtype, device=x.device)
    mw70 = float(_mass_att("water", np.array([_E_EFF]))[0])
    mb70 = float(_mass_att("bone", np.array([_E_EFF]))[0])
    scale = cfg.mu_water / (mw70 / 10.0)  # reconcile mu_water with the table at 70 keV
    p_mono = (mw70 * tw + mb70 * tb) * scale
    att = torch.exp(-(tw[..., None] * mw + tb[..., None] * mb))
    p_poly = -torch.log((att * wt).sum(-1)) * scale
    if water_correction:
        tab_poly, tab_p = _water_linearisation(e, w)
        p_poly = _interp(p_poly, tab_poly * scale, tab_p * scale)
    p2 = p_mono + _bc(strength, p_mono, 2) * (p_poly - p_mono)
    spacing = cfg.fov_mm / n
    diff = R.fbp(p2 - p_mono, g, cfg.filter) * (1000.0 / (cfg.mu_water * spacing))
    return _from_slices(s.data + diff, s)


def metal_artifact(
    x: Tensor,
    metal_mask: Tensor,
    density: Tensor,
    material: str,
    i0: Tensor,
    sigma_e: Tensor,
    seeds: Tensor,
    *,
    kvp: float = 120.0,
    hu_max: float | None = 3071.0,
    cfg: CTConfig = CTConfig(),
) -> Tensor:
    """Metal artifacts: polychromatic projection through metal with photon starvation.

    Tissue (water-equivalent path ``p_t``) and metal (mass thickness ``t_m``, g/cm^2) are projected
    separately; detected counts are ``Poisson(I0 sum_E w(E) e^{-mu_w(E)/mu_w(70) p_t - mu_m(E) t_m})
    + N(0, sigma_e^2)`` floored at 1 photon; the scanner's water precorrection is applied and the
    difference to the monochromatic (70 keV) projection is reconstructed: beam hardening gives
    dark streaks tangent to and between the metal parts, starvation gives noisy streaks.

    Args:
        x: HU batch ``(B, C, *spatial)``.
        metal_mask: ``(B, *spatial)`` metal volume fraction in [0, 1] (broadcast over channels).
        density: ``(B,)`` metal density in g/cm^3.
        material: ``"titanium"`` or ``"steel"`` (mass attenuation table).
        i0: ``(B,)`` unattenuated photons per channel per view.
        sigma_e: ``(B,)`` electronic noise (counts).
        seeds: ``(B,)`` noise seeds.
        kvp: Tube voltage in kV.
        hu_max: Clip the output at this HU (scanner's 12-bit maximum); ``None`` keeps the true
            metal HU at 70 keV.
        cfg: Scan settings.

    Returns:
        The image with the metal inserted and its artifacts.
    """
    if material not in MATERIALS:
        raise ValueError(f"`material` must be one of {sorted(MATERIALS)}, got {material!r}.")
    if cfg.domain == "sinogram":
        raise ValueError("`metal_artifact` needs HU images (domain='image').")
    e, w = polychromatic_weights(kvp)
    m = metal_mask.to(device=x.device, dtype=x.dtype).unsqueeze(1).expand_as(x)
    mw_e = _mass_att("water", e)
    mm_e = _mass_att(material, e)
    mw70 = float(_mass_att("water", np.array([_E_EFF]))[0])
    mm70 = float(_mass_att(material, np.array([_E_EFF]))[0])
    rho = density.to(device=x.device, dtype=x.dtype)
    mu_metal = mm70 * rho / 10.0 * (cfg.mu_water / (mw70 / 10.0))  # 1/mm at 70 keV
    hu_metal = 1000.0 * (mu_metal / cfg.mu_water - 1.0)
    from ..core.transform import bcast

    x_metal = x * (1 - m) + bcast(hu_metal, x) * m
    tissue = x * (1 - m) + (-1000.0) * m
    s_t = _to_slices(tissue, cfg.axis, -1000.0)
    s_m = _to_slices(m, cfg.axis, 0.0)
    s_x = _to_slices(x_metal, cfg.axis, -1000.0)
    n = s_t.data.shape[-1]
    g = _geometry(n, cfg)
    spacing = cfg.fov_mm / n
    p_t = R.forward_project(hu_to_mu(s_t.data, cfg.mu_water), g) * spacing
    t_m = R.forward_project(s_m.data, g) * (spacing / 10.0) * _bc(rho, s_m.data, 2)  # g/cm^2
    scale = cfg.mu_water / (mw70 / 10.0)
    ratio = torch.as_tensor(mw_e / mw70, dtype=x.dtype, device=x.device)
    mm_t = torch.as_tensor(mm_e, dtype=x.dtype, device=x.device) * scale
    wt = torch.as_tensor(w, dtype=x.dtype, device=x.device)
    trans = (torch.exp(-(p_t[..., None] * ratio + t_m[..., None] * mm_t)) * wt).sum(-1)
    i0_ = _bc(i0, p_t, 2)
    cnt = _transmission_noise((i0_ * trans).detach(), sigma_e, seeds, 1.0)
    p_meas = torch.log(i0_ / cnt)
    tab_poly, tab_p = _water_linearisation(e, w)
    p_corr = _interp(p_meas, tab_poly, tab_p)
    p_mono = p_t + t_m * (mm70 * scale)
    diff = R.fbp(p_corr - p_mono, g, cfg.filter) * (1000.0 / (cfg.mu_water * spacing))
    y = _from_slices(s_x.data + diff, s_x)
    if hu_max is not None:
        y = y.clamp_max(hu_max)
    return y


def ct_motion(
    x: Tensor,
    translation_px: Tensor,
    rotation_deg: Tensor,
    onset: Tensor,
    *,
    width: float = 0.02,
    cfg: CTConfig = CTConfig(),
) -> Tensor:
    """Rigid patient motion during the scan: each view sees the object at its pose at that time.

    For an in-plane pose (rotation ``phi``, translation ``t``) at view ``theta``,
    ``p'(theta, s) = p(theta - phi, s - t . e_theta)`` (``e_theta`` the detector direction), so the
    motion is a warp of the sinogram (bilinear, differentiable). The pose follows a smooth step
    ``m(tau) = sigmoid((tau - onset) / width)`` over the scan time ``tau`` in [0, 1).

    Args:
        x: HU batch.
        translation_px: ``(B, 2)`` final displacement ``(d_col, d_row)`` in pixels.
        rotation_deg: ``(B,)`` final in-plane rotation in degrees.
        onset: ``(B,)`` time of the movement as a fraction of the scan.
        width: Duration of the movement as a fraction of the scan.
        cfg: Scan settings.

    Returns:
        The image with motion artifacts (doubling, streaks).
    """

    def fn(p: Tensor, g: R.ParallelBeam, spacing: float):
        _b, nv, nd = p.shape[0], p.shape[-2], p.shape[-1]
        dev, dt = p.device, p.dtype
        tau = torch.arange(nv, dtype=dt, device=dev) / nv
        mprof = torch.sigmoid((tau[None] - onset.to(dev, dt)[:, None]) / width)  # (B, V)
        theta = torch.as_tensor(g.angles, dtype=dt, device=dev)[None]
        phi = torch.deg2rad(rotation_deg.to(dev, dt))[:, None] * mprof
        tr = translation_px.to(dev, dt)
        shift = (tr[:, 0:1] * torch.cos(theta) - tr[:, 1:2] * torch.sin(theta)) * mprof  # (B, V)
        s = torch.arange(nd, dtype=dt, device=dev) - nd // 2
        src_t = theta - phi  # (B, V)
        src_s = s[None, None, :] - shift[:, :, None]  # (B, V, D)
        k = torch.floor(src_t / math.pi)
        src_t = src_t - k * math.pi
        flip = (torch.remainder(k, 2) != 0)[:, :, None]
        src_s = torch.where(flip, -src_s, src_s)
        # sinogram extended by one view: view nv = view 0 mirrored (theta = pi)
        mirror = torch.flip(p[..., 0:1, :], dims=(-1,))
        if nd % 2 == 0:  # index j -> -s maps to nd - j; shift the flipped row by one
            mirror = torch.cat([torch.zeros_like(mirror[..., :1]), mirror[..., :-1]], dim=-1)
        pe = torch.cat([p, mirror], dim=-2)  # (B, S, V+1, D)
        vi = src_t / (math.pi / nv)
        di = src_s + nd // 2
        gx = 2.0 * di / (nd - 1) - 1.0
        gy = (2.0 * vi / nv - 1.0)[:, :, None].expand_as(gx)
        grid = torch.stack([gx, gy], dim=-1)  # (B, V, D, 2)
        out = F.grid_sample(pe, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return out, None

    return _run(x, cfg, fn)


def truncation(x: Tensor, fov_fraction: Tensor, *, fill_hu: float = -1000.0, cfg: CTConfig = CTConfig()) -> Tensor:
    """Truncation: the object extends beyond the scan field of view (SFOV).

    Detector channels with ``|s| > R`` (``R = fov_fraction * N / 2``) are missing (zero), the
    reconstruction inside the SFOV shows a bright rim and shading, and pixels outside the SFOV are
    set to ``fill_hu``.

    Args:
        x: HU batch.
        fov_fraction: ``(B,)`` SFOV diameter as a fraction of the image width (0, 1].
        fill_hu: Value outside the SFOV.
        cfg: Scan settings.

    Returns:
        The truncated reconstruction.
    """
    if cfg.domain == "sinogram":
        raise ValueError("`truncation` needs HU images (domain='image').")

    def radius(ref: Tensor, n: int) -> Tensor:
        return _bc(fov_fraction, ref, 2) * (n / 2.0)

    def fn(p: Tensor, g: R.ParallelBeam, spacing: float):
        nd = p.shape[-1]
        s = (torch.arange(nd, dtype=p.dtype, device=p.device) - nd // 2).abs()
        keep = (s[None, None, None, :] <= _bc(fov_fraction, p, 2) * (g.size / 2.0)).to(p.dtype)
        return p * keep, None

    def post(rec: Tensor, g: R.ParallelBeam) -> Tensor:
        n = g.size
        c = n // 2
        rr = torch.arange(n, dtype=rec.dtype, device=rec.device) - c
        r = torch.sqrt(rr[:, None] ** 2 + rr[None, :] ** 2)
        inside = (r[None, None] <= radius(rec, n)).to(rec.dtype)
        return rec * inside + fill_hu * (1 - inside)

    return _run(x, cfg, fn, post=post)
