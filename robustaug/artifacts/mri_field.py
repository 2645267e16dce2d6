"""MRI noise and field artifacts: Rician and multi-coil noise, bias field (INU), slice thickness,
chemical shift and susceptibility (B0) distortion.

All act on magnitude images, clip nothing and take physical units (tesla, Hz/pixel, mm, ms). The
kernels live in :mod:`robustaug.functional.mri_field`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core.checks import check_choice, check_int, check_range
from ..core.registry import register
from ..core.rng import sample_seeds
from ..core.transform import Params, Transform, bcast
from ..functional import mri_field as F

__all__ = [
    "BiasField",
    "ChemicalShift",
    "MultiCoilNoise",
    "RicianNoise",
    "SliceThickness",
    "SusceptibilityDistortion",
]

_BRAINWEB_NOISE = (0.01, 0.03, 0.05, 0.07, 0.09)


def _check_reference(reference: Any) -> str | float:
    if isinstance(reference, str):
        return check_choice(reference, "reference", ("absolute", "max"))
    if isinstance(reference, (int, float)) and not isinstance(reference, bool) and reference > 0:
        return float(reference)
    raise ValueError(
        f"`reference` must be 'absolute', 'max' or a positive reference-tissue intensity, got {reference!r}."
    )


def _reference_values(x: Tensor, reference: str | float) -> Tensor:
    """Per-sample scale of ``sigma`` (float64, CPU)."""
    n = x.shape[0]
    if reference == "absolute":
        return torch.ones(n, dtype=torch.float64)
    if reference == "max":
        return x.detach().reshape(n, -1).amax(1).clamp_min(0).to(device="cpu", dtype=torch.float64)
    return torch.full((n,), float(reference), dtype=torch.float64)


def _spatial_map(m: Tensor | None, name: str) -> Tensor | None:
    if m is None:
        return None
    if not isinstance(m, Tensor) or m.ndim not in (2, 3, 4, 5):
        raise TypeError(f"`{name}` must be a tensor of shape (*spatial), (1, *spatial) or (B, 1, *spatial).")
    return m.detach().clone()


def _as_batch_map(m: Tensor, x: Tensor, name: str) -> Tensor:
    """Broadcast a stored map to ``(B|1, 1|C, *spatial)`` for ``x``."""
    nd = x.ndim - 2
    t = m.to(device=x.device, dtype=x.dtype)
    while t.ndim < x.ndim:
        t = t.unsqueeze(0)
    if tuple(t.shape[2:]) != tuple(x.shape[2:]) or t.shape[0] not in (1, x.shape[0]):
        raise ValueError(
            f"`{name}` of shape {tuple(m.shape)} does not match the input's spatial shape "
            f"{tuple(x.shape[2:])} ({nd}D, batch {x.shape[0]})."
        )
    return t


def _dilate(m: Tensor) -> Tensor:
    """Binary dilation of ``(B, C, *spatial)`` by one voxel along each spatial axis (separable)."""
    for ax in range(2, m.ndim):
        n = m.shape[ax]
        if n < 2:
            continue
        out = m.clone()
        out.narrow(ax, 1, n - 1).logical_or_(m.narrow(ax, 0, n - 1))
        out.narrow(ax, 0, n - 1).logical_or_(m.narrow(ax, 1, n - 1))
        m = out
    return m


def _region_np(xs: np.ndarray, thr: Any, dilate: bool) -> np.ndarray:
    """``xs > thr`` on the statistics grid ``(B, *grid)``, dilated by one sample if ``dilate``.

    The numpy twin of the mask built in :meth:`BiasField.region_mask` (the same comparison in the
    same dtype; the dilation is the same separable 3 x ... x 3 box): the threshold is written into
    a zero-padded buffer, then each axis is or-ed with its two neighbours.
    """
    if not dilate:
        return xs > thr
    nd = xs.ndim - 1
    m = np.zeros((xs.shape[0], *[n + 2 for n in xs.shape[1:]]), dtype=bool)
    np.greater(xs, thr, out=m[(slice(None), *([slice(1, -1)] * nd))])
    for ax in range(1, nd + 1):
        head = (slice(None),) * ax
        out = m[(*head, slice(None, -2))] | m[(*head, slice(1, -1))]
        out |= m[(*head, slice(2, None))]
        m = out
    return m


#: Per-sample voxel count up to which the CPU path evaluates the full-resolution field with numpy
#: (no per-op dispatch cost; single-threaded BLAS at these sizes); larger fields use torch.
_NUMPY_FIELD_MAX = 1 << 18


# ============================================================================= noise
@register
class RicianNoise(Transform):
    """Rician noise: the magnitude of complex MR data with white Gaussian noise in both channels.

    Thermal noise is i.i.d. complex Gaussian in k-space and so in the complex image; the magnitude
    reconstruction makes it Rician: Rayleigh in the background (mean ``sigma sqrt(pi/2)``, std
    ``sigma sqrt(2 - pi/2)``, never negative), Gaussian with std ``sigma`` at high SNR, with a
    positive bias ``sqrt(x^2 + sigma^2) - x`` in dark tissue. ``sigma`` is exact (unlike MONAI's
    ``RandRicianNoise``, whose default draws the std uniformly below the requested value).

    $$ y = \\sqrt{(x + \\sigma n_1)^2 + (\\sigma n_2)^2},\\quad n_{1,2} \\sim \\mathcal N(0, 1),
    \\quad \\sigma = s \\cdot I_{ref} $$

    Args:
        sigma: ``s``, the noise std of each channel; scalar or ``(lo, hi)`` sampled uniformly per
            sample. In intensity units with ``reference="absolute"``, else a fraction of ``I_ref``.
        reference: ``"absolute"``; ``"max"`` (``I_ref`` = per-sample maximum, the brightest tissue);
            or a positive number, the intensity of the reference tissue (BrainWeb uses white matter
            for T1 and CSF for T2/PD).
        p: Probability of applying, per sample.
        seed: Private seed (see :class:`~robustaug.core.transform.Transform`).
        spatial_dims: Resolves the 4D ambiguity.

    Severity:
        BrainWeb noise levels, ``sigma`` as a fraction of the brightest tissue (``reference="max"``):

        | level | sigma (% of reference) | background mean (% of reference) |
        |---|---|---|
        | 1 | 1 | 1.25 |
        | 2 | 3 | 3.76 |
        | 3 | 5 | 6.27 |
        | 4 | 7 | 8.77 |
        | 5 | 9 | 11.28 |

    Convention:
        Magnitude images (>= 0), any scale, 2D/3D, nothing clipped; the output is >= 0. Records
        ``sigma`` (absolute, intensity units) and the noise ``seed`` per sample. Differentiable in
        ``x`` (and in ``sigma`` through :func:`robustaug.functional.mri_field.rician_noise`).

    References:
        Gudbjartsson & Patz, "The Rician distribution of noisy MRI data", MRM 34(6):910-914, 1995;
        Kwan, Evans & Pike, "MRI simulation-based evaluation of image-processing and classification
        methods", IEEE TMI 18(11):1085-1097, 1999 (BrainWeb 0-9 % noise);
        https://brainweb.bic.mni.mcgill.ca/faq.html.

    Examples:
        >>> import math, torch
        >>> y = RicianNoise(sigma=0.1, seed=0)(torch.zeros(1, 256, 256))
        >>> abs(float(y.mean()) / (0.1 * math.sqrt(math.pi / 2)) - 1) < 0.01
        True
    """

    modality = "mri"
    dims = (2, 3)
    differentiable = True
    severity_table = {k + 1: {"sigma": v, "reference": "max"} for k, v in enumerate(_BRAINWEB_NOISE)}

    def __init__(
        self,
        sigma: float | tuple[float, float] = (0.01, 0.05),
        *,
        reference: str | float = "absolute",
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.sigma = check_range(sigma, "sigma", low=0.0)
        self.reference = _check_reference(reference)

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        s = self.uniform(self.sigma, n, generator) * _reference_values(x, self.reference)
        return {"sigma": s, "seed": sample_seeds(n, generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.rician_noise(x, params["sigma"].to(device=x.device, dtype=x.dtype), params["seed"])

    def _repr_args(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "reference": self.reference}


@register
class MultiCoilNoise(Transform):
    """Noise of a multi-coil sum-of-squares reconstruction (noncentral chi), with optional g-factor.

    Each of ``n`` receive coils adds independent complex Gaussian noise (std ``sigma`` per channel);
    the root-sum-of-squares magnitude is noncentral-chi distributed with ``2n`` degrees of freedom:
    the background floor rises to ``sigma sqrt(2) Gamma(n + 1/2) / Gamma(n)`` (3.94 ``sigma`` for
    ``n = 8``), while at high SNR the std still tends to ``sigma``. Parallel imaging (SENSE/GRAPPA,
    acceleration ``R``) amplifies the noise locally by the geometry factor ``g(r) >= 1``; here
    ``g`` comes from a user map or a smooth centre-peaked heuristic of peak ``g_max`` along the
    phase-encode axis (see :func:`robustaug.functional.mri_field.synthetic_g_factor`). With ``n = 1``
    and ``g = 1`` this is exactly :class:`RicianNoise` (same draws for the same seed).

    $$ y = \\sqrt{(x + g\\sigma n_1)^2 + (g\\sigma)^2 Q},\\quad Q \\sim \\chi^2_{2n-1} $$

    Args:
        sigma: Per-coil noise std; scalar or ``(lo, hi)`` sampled uniformly; units as in
            :class:`RicianNoise` (see ``reference``).
        n_coils: Number of coils ``n`` >= 1 (8-32 typical for head arrays).
        reference: ``"absolute"``, ``"max"`` or a reference-tissue intensity (as in
            :class:`RicianNoise`).
        g_max: Peak of the synthetic g-factor map (1 = no parallel imaging); scalar or ``(lo, hi)``.
        g_factor_map: A fixed g-factor map ``(*spatial)`` (replaces the synthetic map).
        pe_axis: Phase-encode axis among the spatial axes (for the synthetic map).
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Resolves the 4D ambiguity.

    Severity:
        BrainWeb noise levels with an 8-channel head coil, no acceleration:

        | level | sigma (% of brightest tissue) | n_coils | background mean (%) |
        |---|---|---|---|
        | 1 | 1 | 8 | 3.9 |
        | 2 | 3 | 8 | 11.8 |
        | 3 | 5 | 8 | 19.7 |
        | 4 | 7 | 8 | 27.6 |
        | 5 | 9 | 8 | 35.4 |

    Convention:
        Magnitude images (>= 0), 2D/3D, nothing clipped, output >= 0. Records ``sigma`` (absolute),
        ``g_max`` and the noise ``seed``. Differentiable in ``x``.

    References:
        Constantinides, Atalar & McVeigh, MRM 38(5):852-857, 1997 (SoS noncentral chi);
        Pruessmann et al., MRM 42(5):952-962, 1999 (g-factor); Kwan et al., IEEE TMI 18(11), 1999
        (BrainWeb noise levels).

    Examples:
        >>> import math, torch
        >>> y = MultiCoilNoise(sigma=0.1, n_coils=8, seed=0)(torch.zeros(1, 256, 256))
        >>> expected = 0.1 * math.sqrt(2) * math.exp(math.lgamma(8.5) - math.lgamma(8))
        >>> abs(float(y.mean()) / expected - 1) < 0.01
        True
    """

    modality = "mri"
    dims = (2, 3)
    differentiable = True
    severity_table = {
        k + 1: {"sigma": v, "n_coils": 8, "reference": "max"} for k, v in enumerate(_BRAINWEB_NOISE)
    }

    def __init__(
        self,
        sigma: float | tuple[float, float] = (0.01, 0.05),
        n_coils: int = 8,
        *,
        reference: str | float = "absolute",
        g_max: float | tuple[float, float] = 1.0,
        g_factor_map: Tensor | None = None,
        pe_axis: int = -2,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.sigma = check_range(sigma, "sigma", low=0.0)
        self.n_coils = check_int(n_coils, "n_coils", low=1, high=256)
        self.reference = _check_reference(reference)
        self.g_max = check_range(g_max, "g_max", low=1.0, high=20.0)
        self.pe_axis = check_int(pe_axis, "pe_axis", low=-3, high=2)
        self.register_buffer("g_factor_map", _spatial_map(g_factor_map, "g_factor_map"), persistent=False)

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        s = self.uniform(self.sigma, n, generator) * _reference_values(x, self.reference)
        seeds = sample_seeds(n, generator)  # drawn in RicianNoise's order: n_coils=1 gives its output
        g = self.uniform(self.g_max, n, generator)
        return {"sigma": s, "g_max": g, "seed": seeds}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        g: Tensor | None
        if self.g_factor_map is not None:
            g = _as_batch_map(self.g_factor_map, x, "g_factor_map")
        elif bool((params["g_max"] != 1.0).any()):
            g = F.synthetic_g_factor(x.shape[2:], params["g_max"], self.pe_axis, dtype=x.dtype,
                                     device=x.device)
        else:
            g = None
        return F.multicoil_noise(x, params["sigma"].to(device=x.device, dtype=x.dtype), params["seed"],
                                 self.n_coils, g)

    def _repr_args(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "n_coils": self.n_coils, "reference": self.reference}


# ============================================================================= bias field
@register
class BiasField(Transform):
    """Intensity non-uniformity (INU, bias field): a smooth multiplicative field of given peak-to-peak.

    Receive-coil sensitivity profiles and B1 transmit inhomogeneity multiply the signal by a slowly
    varying positive field. The field is a cubic B-spline through log-normal control values
    ``exp(c)``, ``c ~ N(0, 0.5^2)`` i.i.d. on a coarse ``n_control`` grid (generated at low
    resolution and upsampled with one small matrix product per axis,
    :func:`robustaug.functional.mri_field.bspline_upsample`), then rescaled affinely so that over
    the foreground (or the whole FOV) it spans exactly ``p = peak_to_peak`` with mean 1
    (``center="mean"``) or mid-range 1 (``center="midrange"``: BrainWeb's 20 % INU is a field of
    0.90 ... 1.10 over the brain, 40 % is 0.80 ... 1.20). The rescaling acts on the control values
    (the B-spline's weights sum to 1), so the full-resolution field is evaluated once.

    $$ y = x \\cdot b,\\quad b = \\alpha\\,\\mathcal B(e^{c}) + \\beta,\\quad
    \\alpha = \\frac{p}{\\max_R \\mathcal B - \\min_R \\mathcal B},\\quad
    \\beta = 1 - \\alpha\\,\\overline{\\mathcal B}_R $$

    so ``max b - min b = p`` and ``mean b = 1`` over the region ``R``, and any sub-region (the
    brain) stays within ``p``.

    Args:
        peak_to_peak_percent: ``p`` in percent; scalar or ``(lo, hi)`` sampled uniformly; < 200.
        n_control: Control points per axis (>= 4); more gives a less smooth field.
        normalize_over: ``"foreground"`` (voxels above ``foreground_threshold`` of the per-sample
            intensity range) or ``"fov"`` (the whole image).
        foreground_threshold: Fraction of the per-sample intensity range defining the foreground.
        center: ``"mean"`` or ``"midrange"`` (see above).
        stats_stride: The range and mean are measured on every ``stats_stride``-th voxel along each
            axis; ``None`` picks ``ceil(max(size) / 64)`` (1, i.e. exact, up to 64 voxels per
            axis; 3 for 160x192x160, 4 for 256x256). With a stride > 1 the region is dilated by
            one sample so that it covers the voxels in between: the range is then within ``p`` over
            the region (up to a second-order ~1e-3 between samples) and exact over the dilated
            region; pass 1 for an exact range.
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Resolves the 4D ambiguity.

    Severity:
        | level | peak-to-peak (%) | field range (mid-range 1) | note |
        |---|---|---|---|
        | 1 | 10 | 0.95-1.05 | |
        | 2 | 20 | 0.90-1.10 | BrainWeb 20 % INU |
        | 3 | 30 | 0.85-1.15 | |
        | 4 | 40 | 0.80-1.20 | BrainWeb 40 % INU |
        | 5 | 60 | 0.70-1.30 | strong 3 T receive-array profile |

    Convention:
        Any intensity range, 2D/3D, nothing clipped; the field is positive (where extrapolation
        far outside the region would bring it below 1e-3 it is held at 1e-3). Records the log control values ``log_field``
        (``(B, 1, *([n_control] * ndim))``, before rescaling) and ``peak_to_peak`` (a fraction). The
        region is computed from the input in ``apply`` (piecewise constant in ``x``). Differentiable
        in ``x``; to attack the field itself use :func:`robustaug.functional.mri_field.bias_field`
        on control values. On the CPU the region statistics (and a 2D field) are computed with
        numpy, which avoids torch's per-op cost on single images; the model is the same as the
        torch path used on other devices (equal to float32 rounding, tested).

    References:
        Sled, Zijdenbos & Evans, IEEE TMI 17(1):87-97, 1998 (N3: smooth B-spline INU);
        Kwan et al., IEEE TMI 18(11):1085-1097, 1999 and https://brainweb.bic.mni.mcgill.ca/faq.html
        (20 % / 40 % INU levels); Van Leemput et al., IEEE TMI 18(10):885-896, 1999.

    Examples:
        >>> import torch
        >>> t = BiasField(peak_to_peak_percent=20.0, normalize_over="fov", seed=0)
        >>> b = t(torch.ones(1, 64, 64))
        >>> round(float(b.max() - b.min()), 4), round(float(b.mean()), 4)
        (0.2, 1.0)
    """

    modality = "mri"
    dims = (2, 3)
    differentiable = True
    severity_table = {
        1: {"peak_to_peak_percent": 10.0},
        2: {"peak_to_peak_percent": 20.0},
        3: {"peak_to_peak_percent": 30.0},
        4: {"peak_to_peak_percent": 40.0},
        5: {"peak_to_peak_percent": 60.0},
    }

    def __init__(
        self,
        peak_to_peak_percent: float | tuple[float, float] = (10.0, 40.0),
        *,
        n_control: int = 5,
        normalize_over: str = "foreground",
        foreground_threshold: float = 0.1,
        center: str = "mean",
        stats_stride: int | None = None,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.peak_to_peak_percent = check_range(
            peak_to_peak_percent, "peak_to_peak_percent", low=0.0, high=190.0, unit="%"
        )
        self.n_control = check_int(n_control, "n_control", low=4, high=64)
        self.normalize_over = check_choice(normalize_over, "normalize_over", ("foreground", "fov"))
        self.foreground_threshold = check_range(foreground_threshold, "foreground_threshold",
                                                low=0.0, high=1.0)[0]
        self.center = check_choice(center, "center", ("mean", "midrange"))
        self.stats_stride = None if stats_stride is None else check_int(stats_stride, "stats_stride",
                                                                         low=1, high=64)

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n, nd = x.shape[0], x.ndim - 2
        lo, hi = self.peak_to_peak_percent
        # the same draws as Transform.uniform / 100 and 0.5 * randn, in one call each
        ptp = torch.empty(n, dtype=torch.float64).uniform_(lo / 100.0, hi / 100.0, generator=generator)
        c = torch.normal(0.0, 0.5, (n, 1, *([self.n_control] * nd)), generator=generator,
                         dtype=torch.float64)
        return {"peak_to_peak": ptp, "log_field": c}

    def _stride(self, size: tuple[int, ...]) -> int:
        if self.stats_stride is not None:
            return self.stats_stride
        return max(1, math.ceil(max(size) / 64))

    def region_mask(self, x: Tensor, stride: int) -> Tensor:
        """``(B, M)`` bool mask of the voxels (on the stride-``stride`` grid) the range is set over."""
        b, size = x.shape[0], tuple(x.shape[2:])
        with torch.no_grad():
            if self.normalize_over != "foreground":
                n = math.prod(len(range(0, d, stride)) for d in size)
                return torch.ones((b, n), dtype=torch.bool, device=x.device)
            sl = (slice(None), slice(None), *([slice(None, None, stride)] * len(size)))
            xs = x.detach()[sl].amax(1, keepdim=True)
            flat = xs.reshape(b, -1)
            lo, hi = flat.amin(1), flat.amax(1)
            m = xs > bcast(lo + self.foreground_threshold * (hi - lo), xs)
            if stride > 1:  # cover the full-resolution voxels between the samples: dilate by one
                m = _dilate(m)
            m = m.reshape(b, -1)
            return m | ~m.any(1, keepdim=True)

    def rescale_control(self, x: Tensor, ctrl: Tensor, peak_to_peak: Tensor) -> Tensor:
        """Affinely rescale positive control values so the field spans ``peak_to_peak`` with centre 1.

        Differentiable in ``ctrl`` and ``peak_to_peak`` (the region comes from ``x`` and is
        piecewise constant); the physical threat
        (:class:`robustaug.adversarial.physical.BiasField`) calls it with gradients. The artifact
        itself (:meth:`apply`) uses an equivalent numpy evaluation on the CPU
        (:meth:`_field_numpy`), which is tested against this one.
        """
        size = tuple(x.shape[2:])
        b = x.shape[0]
        s = self._stride(size)
        field = F.bspline_eval(ctrl, size, s).reshape(b, -1)
        m = self.region_mask(x, s)
        big = torch.where(m, 0.0, math.inf)
        fmin = (field + big).amin(1)
        fmax = (field - big).amax(1)
        if self.center == "mean":
            ctr = (field * m).sum(1) / m.sum(1)
        else:
            ctr = 0.5 * (fmin + fmax)
        ptp = peak_to_peak.to(device=x.device, dtype=x.dtype)
        span = fmax - fmin
        ok = span > 0
        alpha = torch.where(ok, ptp / torch.where(ok, span, torch.ones_like(span)),
                            torch.zeros_like(span))
        # mean-centring can push the minimum to <= 0 for p close to 2: use the mid-range there
        low = 1 - alpha * (ctr - fmin)
        ctr = torch.where(low > 1e-3, ctr, 0.5 * (fmin + fmax))
        beta = 1 - alpha * ctr
        view = (-1, *([1] * (ctrl.ndim - 1)))
        return alpha.reshape(view) * ctrl + beta.reshape(view)

    @staticmethod
    def field_from_control(ctrl: Tensor, size: tuple[int, ...]) -> Tensor:
        """The full-resolution field: cubic B-spline through the (rescaled) control values."""
        field = F.bspline_upsample(ctrl, size)
        # far outside the region the extrapolated field could reach 0: keep it positive there
        # (inside the region it is >= 1 - p > 0, so the range is untouched)
        if bool((ctrl < 1e-3).any()):
            field = field.clamp_min(1e-3)
        return field

    def _affine(self, fmin: float, fmax: float, mean: float, ptp: float) -> tuple[float, float]:
        """``(alpha, beta)`` of :meth:`rescale_control` for one sample (Python floats)."""
        span = fmax - fmin
        alpha = ptp / span if span > 0 else 0.0
        mid = 0.5 * (fmin + fmax)
        ctr = mean if self.center == "mean" else mid
        if not 1 - alpha * (ctr - fmin) > 1e-3:  # as in rescale_control: mid-range near p = 2
            ctr = mid
        return alpha, 1 - alpha * ctr

    def _field_numpy(self, x: Tensor, params: Params, multiply: bool = False) -> Tensor:
        """``field_from_control(rescale_control(...))`` for a CPU float input, in numpy.

        The same model and the same region (the same operations on ``x`` in its dtype); the field
        statistics and the affine coefficients in float64, per sample, so a batch gives the
        per-sample results. On a single 2D image the per-op dispatch cost of torch dominates this
        small computation, so it runs in numpy with as few calls as possible. It is tested against
        the torch path (:meth:`rescale_control`, which the physical threat uses with gradients).
        With ``multiply`` (``x`` must not need gradients and must have one channel) it returns
        ``x * field`` instead, computed in the field's buffer.
        """
        b, size = x.shape[0], tuple(x.shape[2:])
        nd, s = len(size), self._stride(size)
        lf = params["log_field"]
        try:
            lfn = lf.numpy()  # the recorded draw: a CPU tensor without gradient
        except (RuntimeError, TypeError):
            lfn = lf.detach().cpu().double().numpy()
        ctrl = np.exp(lfn, dtype=np.float64)  # (B, 1, *k)
        k = ctrl.shape[2:]
        if nd == 2:  # the first-axis product serves both the statistics and the full field
            first = F._bspline_matrix_np(size[0], k[0], 1, "float64") @ ctrl[:, 0]  # (B, H, k)
            grid = first[:, ::s] @ F._bspline_matrix_np(size[1], k[1], s, "float64", True)
        else:
            first = None
            mats = [F._bspline_matrix_np(n, k[i], s, "float64") for i, n in enumerate(size)]
            grid = F._apply_mats(ctrl, mats)[:, 0]
        xn = (x.detach() if x.requires_grad else x).numpy()
        if self.normalize_over == "fov":
            g = grid.reshape(b, -1)
            stats = zip(g.min(1).tolist(), g.max(1).tolist(), g.mean(1).tolist())
        else:
            sl = (slice(None, None, s),) * nd
            if xn.shape[1] == 1:
                xs = np.ascontiguousarray(xn[(slice(None), 0, *sl)])
            else:
                xs = xn[(slice(None), slice(None), *sl)].max(1)
            f = self.foreground_threshold
            if b == 1:
                lo, hi = xs.min(), xs.max()
                v = grid[_region_np(xs, lo + f * (hi - lo), s > 1)]
                if v.size == 0:  # no voxel above the threshold (a constant image): the whole grid
                    v = grid
                stats = [(float(v.min()), float(v.max()), float(v.sum()) / v.size)]
            else:
                flat = xs.reshape(b, -1)
                lo, hi = flat.min(1), flat.max(1)
                thr = (lo + f * (hi - lo)).reshape(b, *([1] * nd))
                m = _region_np(xs, thr, s > 1).reshape(b, -1)
                m[m.sum(1) == 0] = True
                g = grid.reshape(b, -1)
                stats = zip(np.where(m, g, np.inf).min(1).tolist(),
                            np.where(m, g, -np.inf).max(1).tolist(),
                            (np.where(m, g, 0.0).sum(1) / m.sum(1)).tolist())
        coef = [self._affine(*st, p) for st, p in zip(stats, params["peak_to_peak"].tolist())]
        if b == 1:
            alpha, beta = coef[0]
        else:
            alpha, beta = np.array(coef).T.reshape(2, b, *([1] * (ctrl.ndim - 1)))
        if first is None or math.prod(size) > _NUMPY_FIELD_MAX:
            field_t = self.field_from_control(torch.from_numpy(ctrl * alpha + beta).to(x.dtype), size)
            return field_t.mul_(x) if multiply else field_t
        # rows of the B-spline matrices sum to 1, so B(alpha c + beta) = alpha B(c) + beta
        dt = "float32" if x.dtype == torch.float32 else "float64"
        if b > 1:
            alpha, beta = alpha[:, 0], beta[:, 0]
        first = np.add(first * alpha, beta, dtype=dt)
        field = first @ F._bspline_matrix_np(size[1], k[1], 1, dt, True)  # (B, H, W)
        if first.min() < 1e-3:  # as field_from_control: positive far outside the region
            np.maximum(field, 1e-3, out=field)
        if multiply:
            np.multiply(field, xn[:, 0], out=field)
        return torch.from_numpy(field[:, None])

    def apply(self, x: Tensor, params: Params) -> Tensor:
        size = tuple(x.shape[2:])
        grad = torch.is_grad_enabled() and x.requires_grad
        if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
            if not grad and x.shape[1] == 1:
                return self._field_numpy(x, params, multiply=True)
            field = self._field_numpy(x, params)
        else:
            ctrl = torch.exp(params["log_field"].to(device=x.device, dtype=x.dtype))
            with torch.no_grad():  # the rescaling is a (piecewise constant) function of the region
                field = self.field_from_control(
                    self.rescale_control(x, ctrl, params["peak_to_peak"]), size)
        if grad or field.shape != x.shape:
            return x * field
        return field.mul_(x)  # reuse the field's buffer (no second full-size allocation)

    def _repr_args(self) -> dict[str, Any]:
        return {"peak_to_peak_percent": self.peak_to_peak_percent, "n_control": self.n_control}


# ============================================================================= slice thickness
@register
class SliceThickness(Transform):
    """Thick slices with a gap: 2D multi-slice acquisition simulated along one axis (partial volume).

    Slices of thickness ``T`` (FWHM of the slice profile) are centred every ``T + gap`` mm, at a
    random offset; each slice records the profile-weighted average of the object across it (partial
    volume of structures thinner than the slice), tissue inside the gaps is missed, and the stack is
    interpolated linearly back onto the input grid (as a reformat or a resampled thick-slice series).

    $$ v_k = \\frac{\\int x(z)\\,P\\big((z - c_k)/T\\big)\\,dz}{\\int P},\\quad
    c_k = z_0 + k\\,(T + g),\\quad y(z) = \\mathrm{lerp}_k\\, v_k $$

    Args:
        thickness_mm: Slice thickness ``T`` in mm; scalar or ``(lo, hi)`` sampled uniformly.
        gap_mm: Gap ``g`` between slices in mm; scalar or ``(lo, hi)``.
        spacing_mm: Input voxel size along the slice axis in mm (default 1 mm, isotropic 3D T1).
        slice_axis: Slice axis among the spatial axes (0 = D of a volume, or H of a 2D image seen
            as a reformat).
        profile: ``"rect"`` (ideal slice) or ``"gaussian"`` (smooth RF profile of FWHM ``T``).
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Resolves the 4D ambiguity.

    Severity:
        From 3D-like thin slices to a clinical 2D protocol with 25-50 % gaps (ACR accreditation:
        5 mm slices, 5 mm gap at the extreme):

        | level | thickness (mm) | gap (mm) |
        |---|---|---|
        | 1 | 2 | 0 |
        | 2 | 3 | 0.3 |
        | 3 | 4 | 0.8 |
        | 4 | 5 | 1.5 |
        | 5 | 6 | 3 |

    Convention:
        Any range, 2D/3D; constants are preserved, nothing is clipped. Records ``thickness_mm``,
        ``gap_mm`` and ``offset_mm`` (first slice centre, in [0, T + gap)). Linear in ``x``.

    References:
        Haacke et al., *Magnetic Resonance Imaging: Physical Principles and Sequence Design*, 1999,
        ch. 10; ACR MRI Quality Control Manual, 2015 (phantom protocol: 5 mm slices, 5 mm gap);
        Pérez-García et al., "TorchIO", CMPB 208:106236, 2021 (RandomAnisotropy).

    Examples:
        >>> import torch
        >>> y = SliceThickness(thickness_mm=4.0, gap_mm=1.0, seed=0)(torch.ones(1, 1, 16, 16, 16))
        >>> bool(torch.allclose(y, torch.ones_like(y)))
        True
    """

    modality = "mri"
    dims = (2, 3)
    differentiable = True
    severity_table = {
        1: {"thickness_mm": 2.0, "gap_mm": 0.0},
        2: {"thickness_mm": 3.0, "gap_mm": 0.3},
        3: {"thickness_mm": 4.0, "gap_mm": 0.8},
        4: {"thickness_mm": 5.0, "gap_mm": 1.5},
        5: {"thickness_mm": 6.0, "gap_mm": 3.0},
    }

    def __init__(
        self,
        thickness_mm: float | tuple[float, float] = (2.0, 5.0),
        gap_mm: float | tuple[float, float] = 0.0,
        *,
        spacing_mm: float = 1.0,
        slice_axis: int = 0,
        profile: str = "rect",
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.thickness_mm = check_range(thickness_mm, "thickness_mm", low=0.0, low_inclusive=False,
                                        unit="mm")
        self.gap_mm = check_range(gap_mm, "gap_mm", low=0.0, unit="mm")
        self.spacing_mm = check_range(spacing_mm, "spacing_mm", low=0.0, low_inclusive=False,
                                      unit="mm")[0]
        self.slice_axis = check_int(slice_axis, "slice_axis", low=-3, high=2)
        self.profile = check_choice(profile, "profile", ("rect", "gaussian"))

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        t = self.uniform(self.thickness_mm, n, generator)
        g = self.uniform(self.gap_mm, n, generator)
        off = torch.rand(n, generator=generator, dtype=torch.float64) * (t + g)
        return {"thickness_mm": t, "gap_mm": g, "offset_mm": off}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        nd = x.ndim - 2
        if not -nd <= self.slice_axis < nd:
            raise ValueError(f"`slice_axis`={self.slice_axis} is not a spatial axis of a {nd}D input.")
        return F.slice_thickness(
            x, params["thickness_mm"], params["gap_mm"], spacing_mm=self.spacing_mm,
            offset_mm=params["offset_mm"], axis=self.slice_axis, profile=self.profile,
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"thickness_mm": self.thickness_mm, "gap_mm": self.gap_mm, "spacing_mm": self.spacing_mm}


# ============================================================================= chemical shift
@register
class ChemicalShift(Transform):
    """Chemical-shift artifact: fat displaced along the readout axis relative to water.

    Fat protons resonate 3.5 ppm below water; frequency encoding maps that offset to a position
    error of ``d = 3.5e-6 * gamma_bar * B0 / BW_px`` pixels along readout (1.0 px at 1.5 T and
    220 Hz/pixel; 3.4 px at 3 T and 130 Hz/pixel), giving a bright band where displaced fat overlaps
    water and a dark band where it left. The fat fraction comes from ``fat_mask`` (for example
    ``robustaug.data.phantom(...)["fat_mask"]``) or, without one, from an intensity threshold
    (fat is the brightest tissue on T1-weighted images): voxels ``>= fat_threshold`` times the
    per-sample maximum. The threshold fallback is only meaningful on T1-weighted images; on T2 it
    would select CSF.

    $$ y = (1 - f)\\,x + S_d(f\\,x),\\quad d = \\pm\\frac{3.5\\times10^{-6}\\,\\bar\\gamma\\,B_0}{BW_{px}} $$

    Args:
        field_strength_t: ``B0`` in tesla; scalar or ``(lo, hi)`` sampled uniformly (default 1.5 T).
        bandwidth_hz_per_px: Receiver bandwidth per pixel along readout in Hz/pixel; scalar or
            ``(lo, hi)`` (default 100-300 Hz/pixel, typical spin-echo/gradient-echo protocols).
        readout_axis: Readout (frequency-encode) axis among the spatial axes.
        polarity: ``1`` or ``-1`` (direction of the readout gradient), or ``"random"``.
        fat_mask: A fixed fat mask or fat-fraction map ``(*spatial)`` or ``(B, 1, *spatial)`` in
            [0, 1]; ``None`` uses the intensity threshold.
        fat_threshold: Fraction of the per-sample maximum above which a voxel counts as fat.
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Resolves the 4D ambiguity.

    Severity:
        Bandwidth drawn within ±10 % of the nominal value, random polarity:

        | level | B0 (T) | bandwidth (Hz/pixel) | shift (pixels, nominal) |
        |---|---|---|---|
        | 1 | 1.5 | 300 | 0.75 |
        | 2 | 1.5 | 150 | 1.49 |
        | 3 | 3.0 | 200 | 2.24 |
        | 4 | 3.0 | 130 | 3.44 |
        | 5 | 3.0 | 90 | 4.97 |

    Convention:
        Magnitude images, any scale, 2D/3D; circular along readout, so the total signal is
        conserved; nothing clipped. Records ``shift_px`` (signed, pixels). Differentiable in ``x``
        (the threshold mask is piecewise constant).

    References:
        Dixon, Radiology 153(1):189-194, 1984 (fat-water shift); Hood et al., "Chemical shift: the
        artifact and clinical tool revisited", RadioGraphics 19(2):357-371, 1999; Babcock et al.,
        "Chemical shift artifact", JMRI 1985 (shift = Delta f / BW per pixel).

    Examples:
        >>> import torch
        >>> x = torch.zeros(1, 1, 8, 16); fat = torch.zeros(8, 16); fat[:, 4] = 1; x[0, 0, :, 4] = 1
        >>> y = ChemicalShift(3.0, 447.0, fat_mask=fat)(x)
        >>> [round(v, 2) for v in y[0, 0, 0, 3:7].tolist()]
        [0.0, 0.0, 1.0, 0.0]
    """

    modality = "mri"
    dims = (2, 3)
    differentiable = True
    severity_table = {
        k: {"field_strength_t": b0, "bandwidth_hz_per_px": (0.9 * bw, 1.1 * bw), "polarity": "random"}
        for k, (b0, bw) in {1: (1.5, 300.0), 2: (1.5, 150.0), 3: (3.0, 200.0), 4: (3.0, 130.0),
                            5: (3.0, 90.0)}.items()
    }

    def __init__(
        self,
        field_strength_t: float | tuple[float, float] = 1.5,
        bandwidth_hz_per_px: float | tuple[float, float] = (100.0, 300.0),
        *,
        readout_axis: int = -1,
        polarity: int | str = 1,
        fat_mask: Tensor | None = None,
        fat_threshold: float = 0.85,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.field_strength_t = check_range(field_strength_t, "field_strength_t", low=0.0, high=21.0,
                                            unit="T")
        self.bandwidth_hz_per_px = check_range(bandwidth_hz_per_px, "bandwidth_hz_per_px", low=0.0,
                                               low_inclusive=False, high=1e6, unit="Hz/pixel")
        self.readout_axis = check_int(readout_axis, "readout_axis", low=-3, high=2)
        self.polarity = check_choice(polarity, "polarity", (1, -1, "random"))
        self.fat_threshold = check_range(fat_threshold, "fat_threshold", low=0.0, high=1.0)[0]
        self.register_buffer("fat_mask", _spatial_map(fat_mask, "fat_mask"), persistent=False)

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        b0 = self.uniform(self.field_strength_t, n, generator)
        bw = self.uniform(self.bandwidth_hz_per_px, n, generator)
        shift = F.chemical_shift_pixels(b0, bw)
        if self.polarity == "random":
            sign = torch.randint(0, 2, (n,), generator=generator).to(torch.float64) * 2 - 1
        else:
            sign = torch.full((n,), float(self.polarity), dtype=torch.float64)
        return {"shift_px": shift * sign}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        if self.fat_mask is not None:
            f = _as_batch_map(self.fat_mask, x, "fat_mask")
        else:
            xd = x.detach().amax(1, keepdim=True)
            ref = xd.reshape(x.shape[0], -1).amax(1)
            f = (xd >= bcast(ref * self.fat_threshold, xd)) & (xd > 0)
        return F.chemical_shift(x, params["shift_px"].to(device=x.device, dtype=x.dtype), f,
                                self.readout_axis)

    def _repr_args(self) -> dict[str, Any]:
        return {"field_strength_t": self.field_strength_t, "bandwidth_hz_per_px": self.bandwidth_hz_per_px}


# ============================================================================= susceptibility
@register
class SusceptibilityDistortion(Transform):
    """Susceptibility (B0 off-resonance) distortion along phase-encode, with pile-up and dropout.

    Magnetic susceptibility differences at air-tissue interfaces perturb B0 by tens to hundreds of
    Hz. In EPI the bandwidth per pixel along phase-encode is low (``1 / (N_pe * echo spacing)``,
    10-30 Hz/pixel), so an off-resonance ``df`` displaces signal by ``df / BW_pe`` pixels along that
    axis only; signal is conserved, so compressed regions pile up (bright) and stretched ones thin
    out (the Jacobian). Optionally (``te_ms``) intravoxel dephasing from the field gradient removes
    signal (T2* dropout). The field map is given (``field_map_hz``) or random: a smooth cubic B-spline
    field on an ``n_control`` grid, zero-mean, scaled so that ``max |df| = max_offset_hz``.

    $$ y\\big(r + d(r)\\,\\hat e_{pe}\\big)\\,\\Big|1 + \\frac{\\partial d}{\\partial r_{pe}}\\Big| =
    x(r)\\,A(r),\\quad d = \\frac{\\Delta f}{BW_{pe}},\\quad
    A = \\prod_a \\big|\\mathrm{sinc}(\\partial_a \\Delta f\\,TE)\\big| $$

    Args:
        max_offset_hz: Peak off-resonance ``max |df|`` of the random field in Hz; scalar or
            ``(lo, hi)`` sampled uniformly.
        bandwidth_pe_hz: Bandwidth per pixel along phase-encode in Hz/pixel (default 20, a 3 T EPI
            with 0.5 ms echo spacing and 100 lines); scalar or ``(lo, hi)``.
        pe_axis: Phase-encode axis among the spatial axes (default -2, rows of an axial slice).
        te_ms: Echo time for the dropout term in ms (30 ms is typical for BOLD at 3 T); ``None``
            (default) disables dropout.
        field_map_hz: A fixed off-resonance map in Hz ``(*spatial)`` or ``(B, 1, *spatial)``; when
            given, it is used instead of the random field, multiplied by ``field_scale``.
        field_scale: Scale of the given field map; scalar or ``(lo, hi)``.
        n_control: Control points per axis of the random field (>= 4).
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Resolves the 4D ambiguity.

    Severity:
        Peak displacement = max offset / bandwidth, at 20 Hz/pixel:

        | level | max offset (Hz) | max displacement (pixels) |
        |---|---|---|
        | 1 | 20 | 1 |
        | 2 | 40 | 2 |
        | 3 | 60 | 3 |
        | 4 | 100 | 5 |
        | 5 | 150 | 7.5 |

    Convention:
        Magnitude images, any scale, 2D/3D; displacement along ``pe_axis`` only, circular (as the
        DFT wraps), so without dropout the signal of every phase-encode line is conserved; nothing
        clipped. Records the random field's B-spline coefficients ``field_coeffs``,
        ``max_offset_hz``, ``bandwidth_pe_hz`` and ``field_scale``. Linear, so differentiable, in
        ``x``.

    References:
        Jezzard & Balaban, MRM 34(1):65-73, 1995 (displacement = df / BW_pe); Hutton et al.,
        NeuroImage 16(1):217-240, 2002 (field maps, Jacobian intensity correction); Deichmann et al.,
        NeuroImage 19(2):430-441, 2003 (susceptibility-induced signal dropout).

    Examples:
        >>> import torch
        >>> x = torch.rand(2, 1, 32, 32)
        >>> y = SusceptibilityDistortion(max_offset_hz=60.0, seed=0)(x)
        >>> bool(torch.allclose(y.sum(-2), x.sum(-2), atol=1e-5))
        True
    """

    modality = "mri"
    dims = (2, 3)
    differentiable = True
    severity_table = {
        1: {"max_offset_hz": 20.0, "bandwidth_pe_hz": 20.0},
        2: {"max_offset_hz": 40.0, "bandwidth_pe_hz": 20.0},
        3: {"max_offset_hz": 60.0, "bandwidth_pe_hz": 20.0},
        4: {"max_offset_hz": 100.0, "bandwidth_pe_hz": 20.0},
        5: {"max_offset_hz": 150.0, "bandwidth_pe_hz": 20.0},
    }

    def __init__(
        self,
        max_offset_hz: float | tuple[float, float] = (20.0, 100.0),
        bandwidth_pe_hz: float | tuple[float, float] = 20.0,
        *,
        pe_axis: int = -2,
        te_ms: float | None = None,
        field_map_hz: Tensor | None = None,
        field_scale: float | tuple[float, float] = 1.0,
        n_control: int = 6,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.max_offset_hz = check_range(max_offset_hz, "max_offset_hz", low=0.0, high=1e4, unit="Hz")
        self.bandwidth_pe_hz = check_range(bandwidth_pe_hz, "bandwidth_pe_hz", low=0.0,
                                           low_inclusive=False, high=1e6, unit="Hz/pixel")
        self.pe_axis = check_int(pe_axis, "pe_axis", low=-3, high=2)
        self.te_ms = None if te_ms is None else check_range(te_ms, "te_ms", low=0.0, high=1e3,
                                                            unit="ms")[0]
        self.field_scale = check_range(field_scale, "field_scale", low=-100.0, high=100.0)
        self.n_control = check_int(n_control, "n_control", low=4, high=64)
        self.register_buffer("field_map_hz", _spatial_map(field_map_hz, "field_map_hz"), persistent=False)

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n, nd = x.shape[0], x.ndim - 2
        return {
            "max_offset_hz": self.uniform(self.max_offset_hz, n, generator),
            "bandwidth_pe_hz": self.uniform(self.bandwidth_pe_hz, n, generator),
            "field_scale": self.uniform(self.field_scale, n, generator),
            "field_coeffs": torch.randn((n, 1, *([self.n_control] * nd)), generator=generator,
                                        dtype=torch.float64),
        }

    def field(self, x: Tensor, params: Params) -> Tensor:
        """The off-resonance map in Hz ``(B|1, 1, *spatial)`` used for ``params``."""
        if self.field_map_hz is not None:
            fm = _as_batch_map(self.field_map_hz, x, "field_map_hz")
            return fm * bcast(params["field_scale"], fm)
        c = params["field_coeffs"].to(device=x.device, dtype=x.dtype)
        f = F.bspline_upsample(c, x.shape[2:])
        b = f.shape[0]
        f = f - f.reshape(b, -1).mean(1).reshape(-1, *([1] * (f.ndim - 1)))
        peak = f.reshape(b, -1).abs().amax(1).clamp_min(torch.finfo(f.dtype).tiny)
        return f * bcast(params["max_offset_hz"], f) / bcast(peak, f)

    def apply(self, x: Tensor, params: Params) -> Tensor:
        nd = x.ndim - 2
        if not -nd <= self.pe_axis < nd:
            raise ValueError(f"`pe_axis`={self.pe_axis} is not a spatial axis of a {nd}D input.")
        return F.susceptibility_distortion(
            x, self.field(x, params), params["bandwidth_pe_hz"].to(device=x.device, dtype=x.dtype),
            pe_axis=self.pe_axis, te_ms=self.te_ms,
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"max_offset_hz": self.max_offset_hz, "bandwidth_pe_hz": self.bandwidth_pe_hz,
                "te_ms": self.te_ms}
