"""CT artifacts simulated in the projection domain (images in HU, or sinograms).

Each transform forward-projects the HU image with the fast parallel-beam projector of
:mod:`robustaug.functional.radon`, corrupts the sinogram with a physical model and reconstructs by
FBP; by default only the artifact is reconstructed and added to the input (so the input's
resolution is kept and zero strength is the identity). Volumes are processed slice by slice along
``axis``. HU to attenuation: ``mu = mu_water (1 + HU / 1000)``, ``mu_water = 0.01929 / mm``
(water at 70 keV). The pixel size is ``fov_mm / N`` (default field of view 350 mm).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..core.checks import check_choice, check_int, check_range
from ..core.registry import register
from ..core.rng import sample_seeds
from ..core.transform import Params, Transform
from ..functional import ct as F
from ..functional.radon import FILTERS

__all__ = [
    "BeamHardening",
    "CTMotion",
    "LimitedAngle",
    "LowDose",
    "MetalArtifact",
    "RingArtifact",
    "SparseView",
    "Truncation",
]


class _CTTransform(Transform):
    """Shared scan settings and the CT example input.

    Scan settings (keyword-only, shared by all CT transforms): ``fov_mm`` (image width in mm,
    default 350), ``n_views`` (views over 180 degrees; ``None`` = ``min(180, ceil(pi N / 2))``),
    ``filter`` (FBP filter), ``axis`` (slice axis of volumes, a spatial index), ``reconstruct``
    (``"difference"`` adds the reconstructed artifact to the input, ``"full"`` returns the FBP
    image), ``domain`` (``"image"`` for HU, ``"sinogram"`` for line integrals
    ``(B, C, views, det)``), ``mu_water`` (1/mm).
    """

    modality = "ct"
    dims = (2, 3)

    def __init__(
        self,
        *,
        fov_mm: float = 350.0,
        n_views: int | None = None,
        filter: str = "ramp",
        axis: int = 0,
        reconstruct: str = "difference",
        domain: str = "image",
        mu_water: float = F.MU_WATER,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        fov = check_range(fov_mm, "fov_mm", low=1.0, high=5000.0, unit="mm")[0]
        self.cfg = F.CTConfig(
            fov_mm=fov,
            n_views=None if n_views is None else check_int(n_views, "n_views", low=8, high=4096),
            filter=check_choice(filter, "filter", FILTERS),
            mu_water=check_range(mu_water, "mu_water", low=1e-4, high=1.0, unit="1/mm")[0],
            axis=check_int(axis, "axis", low=-3, high=2),
            reconstruct=check_choice(reconstruct, "reconstruct", ("difference", "full")),
            domain=check_choice(domain, "domain", ("image", "sinogram")),
        )

    @classmethod
    def example_input(cls, dims: int = 2, batch: int = 2, size: int = 64) -> Tensor:
        """Body CT phantoms in HU (:func:`robustaug.data.ct.ct_phantom`)."""
        from ..data.ct import ct_phantom

        shape = (size, size) if dims == 2 else (size, size, size)
        imgs = [ct_phantom(shape, seed=i)["image"] for i in range(batch)]
        return torch.stack(imgs) if imgs else torch.zeros((0, 1, *shape))

    def _n_det(self, x: Tensor) -> int:
        if self.cfg.domain == "sinogram":
            return int(x.shape[-1])
        if x.ndim == 5:
            sp = [s for i, s in enumerate(x.shape[2:]) if i != self.cfg.axis % 3]
            return max(sp)
        return max(x.shape[-2:])

    def _pixel_mm(self, x: Tensor) -> float:
        return self.cfg.fov_mm / self._n_det(x)


@register
class LowDose(_CTTransform):
    """Low-dose CT: quantum (Poisson) and electronic noise in the transmission domain, then FBP.

    Each ray of the reference scan receives ``I0`` photons; at a fraction ``d`` of the dose the
    detected counts are Poisson with mean ``I0 d e^{-p}`` plus Gaussian electronic noise; the log
    gives the noisy line integral, so the sinogram variance is ``~ e^p / (I0 d)`` and the image
    noise variance is proportional to ``1 / d``. With ``model="zeng"`` the input is taken as a
    full-dose scan at ``I0`` and only the extra noise is added (dose 1 adds nothing).

    $$ N = \\mathrm{Poisson}(I_0 d\\, e^{-p}) + \\mathcal N(0, \\sigma_e^2),\\quad
    p' = \\ln\\frac{I_0 d}{\\max(N, 1)},\\quad y = x + \\mathrm{HU}(\\mathrm{FBP}(p' - p)) $$

    Args:
        dose_fraction: Dose relative to the reference, in (0, 1]; scalar or ``(lo, hi)`` sampled
            log-uniformly per sample.
        i0: Unattenuated photons per detector channel per view at the reference dose (scalar or
            ``(lo, hi)``, log-uniform).
        sigma_e: Electronic noise standard deviation in photons (scalar or ``(lo, hi)``).
        model: ``"poisson"`` (noise-free input, full simulation) or ``"zeng"`` (input is a
            full-dose scan; Gaussian approximation of the added noise).
        fov_mm, n_views, filter, axis, reconstruct, domain, mu_water: Scan settings (see the
            module docstring; ``domain="sinogram"`` takes line integrals ``(B, C, views, det)``).
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | dose fraction | note |
        |---|---|---|
        | 1 | 0.50 | half dose |
        | 2 | 0.25 | Mayo LDCT challenge quarter dose |
        | 3 | 0.15 | |
        | 4 | 0.10 | |
        | 5 | 0.05 | ultra-low dose |

        (``i0 = 1e5`` photons, ``sigma_e = 3`` photons; 5-50 % dose is the range used in low-dose
        simulation studies.)

    Convention:
        HU input (any range), 2D or 3D (slice-wise). Not differentiable (Poisson sampling).
        Records ``dose_fraction``, ``i0``, ``sigma_e`` and the noise ``seed`` per sample.

    References:
        Zeng et al., "A simple low-dose X-ray CT simulation from high-dose scan", IEEE TNS
        62(5):2226, 2015; Yu et al., "Development and validation of a practical lower-dose-
        simulation tool", Med Phys 39(8):4870, 2012; McCollough et al., Med Phys 44(10), 2017
        (Mayo low-dose CT challenge, quarter dose).

    Examples:
        >>> import torch
        >>> x = LowDose.example_input(2, batch=1, size=32)
        >>> y = LowDose(dose_fraction=0.25, seed=0)(x)
        >>> y.shape == x.shape and not torch.equal(y, x)
        True
    """

    differentiable = False
    severity_table = {
        1: {"dose_fraction": 0.5},
        2: {"dose_fraction": 0.25},
        3: {"dose_fraction": 0.15},
        4: {"dose_fraction": 0.10},
        5: {"dose_fraction": 0.05},
    }

    def __init__(
        self,
        dose_fraction: float | tuple[float, float] = (0.05, 0.5),
        *,
        i0: float | tuple[float, float] = 1e5,
        sigma_e: float | tuple[float, float] = 3.0,
        model: str = "poisson",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dose_fraction = check_range(dose_fraction, "dose_fraction", low=0.0, high=1.0, low_inclusive=False)
        self.i0 = check_range(i0, "i0", low=1.0, high=1e9, unit="photons")
        self.sigma_e = check_range(sigma_e, "sigma_e", low=0.0, high=1e4, unit="photons")
        self.model = check_choice(model, "model", ("poisson", "zeng"))

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        return {
            "dose_fraction": self.log_uniform(self.dose_fraction, n, generator),
            "i0": self.log_uniform(self.i0, n, generator),
            "sigma_e": self.uniform(self.sigma_e, n, generator),
            "seed": sample_seeds(n, generator),
        }

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.low_dose(
            x, params["dose_fraction"], params["i0"], params["sigma_e"], params["seed"], model=self.model, cfg=self.cfg
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"dose_fraction": self.dose_fraction, "i0": self.i0, "model": self.model}


@register
class SparseView(_CTTransform):
    """Sparse-view CT: few projection angles, giving streaks radiating from high-contrast edges.

    Only ``views`` near-uniformly spaced views of the full scan's ``n_views`` views over 180
    degrees are reconstructed (``views`` is capped at ``n_views``) (FBP weight ``pi / 2K``). Angular undersampling below
    ``~pi N / 2`` views aliases high frequencies into streaks.

    $$ y = x + \\mathrm{HU}\\big(\\mathrm{FBP}_K(p) - \\mathrm{FBP}_{full}(p)\\big) $$

    Args:
        views: Number of acquired views over 180 degrees (int, or ``(lo, hi)`` drawn uniformly
            as an integer per sample). The default, 16-36 views, is sparse enough to streak at
            every image size down to 24 px (whose full scan has 38 views); requests at or above
            the full scan's ``n_views`` reproduce the full scan.
        fov_mm, n_views, filter, axis, reconstruct, domain, mu_water: Scan settings (``n_views``
            is the full scan the sparse one is compared with).
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | views over 180 degrees |
        |---|---|
        | 1 | 120 |
        | 2 | 90 |
        | 3 | 60 |
        | 4 | 45 |
        | 5 | 30 |

    Convention:
        HU input, 2D or 3D. Differentiable. Records ``views`` and ``offset`` (the first view's
        position as a fraction of the sparse angular step, uniform in [0, 1)).

    References:
        Jin et al., "Deep convolutional neural network for inverse problems in imaging", IEEE TIP
        26(9), 2017 (sparse-view FBP streaks); Kak & Slaney 1988, §5.1.2 (angular sampling).

    Examples:
        >>> x = SparseView.example_input(2, batch=1, size=32)
        >>> SparseView(views=30)(x).shape
        torch.Size([1, 1, 32, 32])
    """

    differentiable = True
    severity_table = {1: {"views": 120}, 2: {"views": 90}, 3: {"views": 60}, 4: {"views": 45}, 5: {"views": 30}}

    def __init__(self, views: int | tuple[int, int] = (16, 36), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        lo, hi = check_range(views, "views", low=1, high=4096)
        self.views = (int(lo), int(hi))

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        v = torch.randint(self.views[0], self.views[1] + 1, (n,), generator=generator)
        return {"views": v, "offset": torch.rand(n, generator=generator, dtype=torch.float64)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.sparse_view(x, params["views"], params.get("offset"), cfg=self.cfg)

    def _repr_args(self) -> dict[str, Any]:
        return {"views": self.views}


@register
class LimitedAngle(_CTTransform):
    """Limited-angle CT: the views cover less than 180 degrees (missing wedge).

    Edges tangent to the missing directions are lost and streaks appear along the limits of the
    covered range.

    $$ y = x + \\mathrm{HU}\\big(\\mathrm{FBP}(p\\,\\mathbb 1[\\theta \\in [\\theta_0, \\theta_0 + \\Delta)])
    - \\mathrm{FBP}(p)\\big) $$

    Args:
        range_deg: Covered angular range in degrees (scalar or ``(lo, hi)``).
        start_deg: First angle in degrees (scalar or ``(lo, hi)``; default uniform in [0, 180)).
        fov_mm, n_views, filter, axis, reconstruct, domain, mu_water: Scan settings.
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | range (degrees) |
        |---|---|
        | 1 | 160 |
        | 2 | 140 |
        | 3 | 120 |
        | 4 | 100 |
        | 5 | 90 |

    Convention:
        HU input, 2D or 3D. Differentiable. Records ``range_deg`` and ``start_deg``.

    References:
        Quinto, "Singularities of the X-ray transform and limited data tomography", SIAM J Appl
        Math 53(5), 1993; Kak & Slaney 1988.

    Examples:
        >>> x = LimitedAngle.example_input(2, batch=1, size=32)
        >>> LimitedAngle(range_deg=90.0, seed=0)(x).shape
        torch.Size([1, 1, 32, 32])
    """

    differentiable = True
    severity_table = {
        1: {"range_deg": 160.0},
        2: {"range_deg": 140.0},
        3: {"range_deg": 120.0},
        4: {"range_deg": 100.0},
        5: {"range_deg": 90.0},
    }

    def __init__(
        self,
        range_deg: float | tuple[float, float] = (90.0, 160.0),
        *,
        start_deg: float | tuple[float, float] = (0.0, 180.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.range_deg = check_range(range_deg, "range_deg", low=1.0, high=180.0, unit="degrees")
        self.start_deg = check_range(start_deg, "start_deg", low=-360.0, high=360.0, unit="degrees")

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        return {"range_deg": self.uniform(self.range_deg, n, generator), "start_deg": self.uniform(self.start_deg, n, generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.limited_angle(x, params["range_deg"], params["start_deg"], cfg=self.cfg)

    def _repr_args(self) -> dict[str, Any]:
        return {"range_deg": self.range_deg}


@register
class RingArtifact(_CTTransform):
    """Ring artifacts from miscalibrated (gain/offset) or dead detector channels.

    A channel with relative gain ``G`` and dark offset ``O`` (fraction of ``I0``) reports
    ``I = G I0 e^{-p} + O I0``; the error is the same in every view, a stripe in the sinogram,
    which back-projects to a ring about the rotation centre at the channel's radius. Dead
    (unresponsive) channels have ``G = 0``.

    $$ p'_j = -\\ln\\big(G_j e^{-p_j} + O_j\\big),\\quad y = x + \\mathrm{HU}(\\mathrm{FBP}(p' - p)) $$

    Args:
        n_channels: Number of faulty channels (int), placed within the central ``fraction`` of
            the detector.
        gain_error: Relative gain error magnitude ``|G - 1|`` (scalar or ``(lo, hi)`` per channel;
            the sign is random).
        offset: Dark offset of miscalibrated channels as a fraction of ``I0`` (scalar or range).
        n_dead: How many of the faulty channels are dead (``G = 0``, offset ``dead_offset``).
        dead_offset: Dark signal of a dead channel as a fraction of ``I0``.
        fraction: Faulty channels lie within ``|s| < fraction * N / 2``.
        full_scan: 360 degree acquisition (both half-scans averaged: full rings, the clinical
            case); ``False`` simulates a 180 degree parallel scan (half rings).
        fov_mm, n_views, filter, axis, reconstruct, domain, mu_water: Scan settings.
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | faulty channels | gain error | dead |
        |---|---|---|---|
        | 1 | 2 | 0.5 % | 0 |
        | 2 | 3 | 1 % | 0 |
        | 3 | 4 | 2 % | 0 |
        | 4 | 6 | 3 % | 1 |
        | 5 | 8 | 5 % | 2 |

        (Channel gain errors of ~0.1-1 % on a few to tens of channels cause visible rings.)

    Convention:
        HU input, 2D or 3D (the same channels in every slice: one detector row). Differentiable.
        Records ``channels`` ``(B, K)`` (detector indices; the ring radius in pixels is
        ``|channel - N // 2|``), ``gains`` and ``offsets`` ``(B, K)``.

    References:
        Vo, Atwood & Drakopoulos, "Superior techniques for eliminating ring artifacts in X-ray
        micro-tomography", Opt Express 26:28396, 2018; Ashrafuzzaman et al., EURASIP JASP
        2012:93; Barrett & Keat, RadioGraphics 24(6), 2004.

    Examples:
        >>> x = RingArtifact.example_input(2, batch=1, size=32)
        >>> t = RingArtifact(n_channels=3, gain_error=0.02, seed=0)
        >>> y = t(x); t.last_params["channels"].shape
        torch.Size([1, 3])
    """

    differentiable = True
    severity_table = {
        1: {"n_channels": 2, "gain_error": 0.005},
        2: {"n_channels": 3, "gain_error": 0.01},
        3: {"n_channels": 4, "gain_error": 0.02},
        4: {"n_channels": 6, "gain_error": 0.03, "n_dead": 1},
        5: {"n_channels": 8, "gain_error": 0.05, "n_dead": 2},
    }

    def __init__(
        self,
        n_channels: int = 4,
        gain_error: float | tuple[float, float] = (0.005, 0.03),
        *,
        offset: float | tuple[float, float] = 0.0,
        n_dead: int = 0,
        dead_offset: float = 0.01,
        fraction: float = 0.8,
        full_scan: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.full_scan = bool(full_scan)
        self.n_channels = check_int(n_channels, "n_channels", low=1, high=4096)
        self.gain_error = check_range(gain_error, "gain_error", low=0.0, high=0.99)
        self.offset = check_range(offset, "offset", low=0.0, high=1.0)
        self.n_dead = check_int(n_dead, "n_dead", low=0, high=self.n_channels)
        self.dead_offset = check_range(dead_offset, "dead_offset", low=1e-6, high=1.0)[0]
        self.fraction = check_range(fraction, "fraction", low=0.0, high=1.0, low_inclusive=False)[0]

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n, k = x.shape[0], self.n_channels
        nd = self._n_det(x)
        half = max(1, int(self.fraction * nd / 2))
        lo, hi = max(0, nd // 2 - half), min(nd, nd // 2 + half + 1)
        span = hi - lo
        ch = torch.full((n, k), -1, dtype=torch.int64)
        for i in range(n):
            perm = torch.randperm(span, generator=generator)[: min(k, span)]
            ch[i, : len(perm)] = perm + lo
        mag = self.uniform(self.gain_error, n * k, generator).reshape(n, k)
        sign = torch.where(torch.rand(n, k, generator=generator) < 0.5, -1.0, 1.0).to(torch.float64)
        gains = 1.0 + sign * mag
        offs = self.uniform(self.offset, n * k, generator).reshape(n, k)
        if self.n_dead:
            gains[:, : self.n_dead] = 0.0
            offs[:, : self.n_dead] = self.dead_offset
        return {"channels": ch, "gains": gains, "offsets": offs}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.ring_artifact(
            x, params["channels"], params["gains"], params["offsets"], full_scan=self.full_scan, cfg=self.cfg
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"n_channels": self.n_channels, "gain_error": self.gain_error, "n_dead": self.n_dead}


@register
class BeamHardening(_CTTransform):
    """Beam hardening: cupping in homogeneous objects and dark bands between dense structures.

    A polychromatic beam hardens along its path (low energies are absorbed first), so the measured
    attenuation grows sub-linearly with path length. ``model="polynomial"`` uses the water-
    equivalent approximation ``p' = p - beta p^2``; ``model="spectrum"`` projects a water/bone
    decomposition with a Kramers spectrum at ``kvp`` (NIST XCOM attenuation) and blends
    ``p' = p + s (P_poly - p)`` (with ``water_correction`` as a scanner's water precorrection,
    leaving bone-induced dark bands).

    $$ p' = p - \\beta p^2 \\quad\\text{or}\\quad
    p' = p + s\\Big(-\\ln\\sum_E w(E) e^{-\\mu_w(E) t_w - \\mu_b(E) t_b} - p\\Big) $$

    Args:
        strength: ``beta`` per unit line integral (polynomial) or the blend ``s`` in [0, 1]
            (spectrum); scalar or ``(lo, hi)``.
        model: ``"polynomial"`` or ``"spectrum"``.
        kvp: Tube voltage in kV (spectrum model).
        water_correction: Apply water precorrection (spectrum model).
        fov_mm, n_views, filter, axis, reconstruct, domain, mu_water: Scan settings.
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | beta (polynomial), uniform in |
        |---|---|
        | 1 | 0.004-0.006 |
        | 2 | 0.008-0.012 |
        | 3 | 0.016-0.024 |
        | 4 | 0.030-0.040 |
        | 5 | 0.045-0.055 |

        (``beta`` ~ 0.01-0.05 per unit ``p`` for uncorrected water-equivalent hardening.)

    Convention:
        HU input, 2D or 3D. Differentiable. ``strength = 0`` is the identity. Records ``strength``.

    References:
        Brooks & Di Chiro, "Beam hardening in X-ray reconstructive tomography", Phys Med Biol
        21(3):390, 1976; Herman, "Correction for beam hardening in computed tomography", Phys
        Med Biol 24(1):81, 1979; Hubbell & Seltzer, NIST XCOM tables.

    Examples:
        >>> x = BeamHardening.example_input(2, batch=1, size=32)
        >>> bool((BeamHardening(strength=0.0)(x) == x).all())
        True
    """

    differentiable = True
    severity_table = {
        1: {"strength": (0.004, 0.006)},
        2: {"strength": (0.008, 0.012)},
        3: {"strength": (0.016, 0.024)},
        4: {"strength": (0.03, 0.04)},
        5: {"strength": (0.045, 0.055)},
    }

    def __init__(
        self,
        strength: float | tuple[float, float] = (0.005, 0.04),
        *,
        model: str = "polynomial",
        kvp: float = 120.0,
        water_correction: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = check_choice(model, "model", ("polynomial", "spectrum"))
        hi = 0.2 if self.model == "polynomial" else 1.0
        self.strength = check_range(strength, "strength", low=0.0, high=hi)
        self.kvp = check_range(kvp, "kvp", low=40.0, high=150.0, unit="kV")[0]
        self.water_correction = bool(water_correction)

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        return {"strength": self.uniform(self.strength, x.shape[0], generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        s = params["strength"]
        if not bool((s != 0).any()):
            return x.clone()
        return F.beam_hardening(
            x, s, model=self.model, kvp=self.kvp, water_correction=self.water_correction, cfg=self.cfg
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"strength": self.strength, "model": self.model}


@register
class MetalArtifact(_CTTransform):
    """Metal artifacts: streaks from beam hardening and photon starvation behind metal inserts.

    Metal inserts (from ``mask`` or sampled discs/rods inside the body) are added to the image;
    the tissue (water-equivalent) and metal are projected with a polychromatic spectrum, counts
    are Poisson with electronic noise and floored at one photon (photon starvation), the scanner's
    water precorrection is applied, and the difference to the ideal monochromatic projection is
    reconstructed: dark and bright streaks tangent to the metal and between metal parts.

    $$ N = \\mathrm{Poisson}\\Big(I_0\\sum_E w(E) e^{-\\frac{\\mu_w(E)}{\\mu_w(70)} p_t - \\mu_m(E) t_m}\\Big)
    + \\mathcal N(0, \\sigma_e^2),\\quad y = x_{metal} + \\mathrm{HU}(\\mathrm{FBP}(h(\\ln\\tfrac{I_0}{N})
    - p_{70})) $$

    Args:
        radius_mm: Radius of sampled inserts in mm (scalar or ``(lo, hi)``).
        n_inserts: Number of sampled inserts (int).
        material: ``"titanium"`` (4.54 g/cm^3) or ``"steel"`` (7.87 g/cm^3).
        i0: Unattenuated photons per channel per view (scalar or ``(lo, hi)``, log-uniform).
        sigma_e: Electronic noise in photons.
        kvp: Tube voltage in kV.
        mask: Optional fixed metal mask of the spatial shape (bool or fraction); used instead of
            sampled inserts.
        hu_max: Output clipped at this HU (12-bit scanner maximum 3071); ``None`` disables it.
        fov_mm, n_views, filter, axis, reconstruct, mu_water: Scan settings.
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | inserts | radius (mm) | material | I0 (photons) |
        |---|---|---|---|---|
        | 1 | 1 | 3 | titanium | 2e5 |
        | 2 | 1 | 5 | titanium | 1e5 |
        | 3 | 2 | 5 | titanium | 1e5 |
        | 4 | 2 | 6 | steel | 5e4 |
        | 5 | 2 | 8 | steel | 2e4 |

        (Dental fillings, spinal screws 3-6 mm, hip prostheses 10-20 mm; titanium gives milder
        artifacts than steel.)

    Convention:
        HU input, 2D or 3D (sampled inserts are rods along the slice axis). Not differentiable
        (Poisson). Records ``centers`` ``(B, K, 2)`` (row, col in [-1, 1] of the slice),
        ``radius_mm`` ``(B, K)``, ``i0``, ``sigma_e`` and the noise ``seed``.

    References:
        Zhang & Yu, "Convolutional neural network based metal artifact reduction in X-ray
        computed tomography", IEEE TMI 37(6):1370, 2018 (simulation pipeline); De Man et al.,
        "Metal streak artifacts in X-ray computed tomography: a simulation study", IEEE TNS 46(3),
        1999; Hubbell & Seltzer, NIST XCOM.

    Examples:
        >>> x = MetalArtifact.example_input(2, batch=1, size=32)
        >>> MetalArtifact(radius_mm=6.0, seed=0)(x).shape
        torch.Size([1, 1, 32, 32])
    """

    differentiable = False
    severity_table = {
        1: {"n_inserts": 1, "radius_mm": 3.0, "material": "titanium", "i0": 2e5},
        2: {"n_inserts": 1, "radius_mm": 5.0, "material": "titanium", "i0": 1e5},
        3: {"n_inserts": 2, "radius_mm": 5.0, "material": "titanium", "i0": 1e5},
        4: {"n_inserts": 2, "radius_mm": 6.0, "material": "steel", "i0": 5e4},
        5: {"n_inserts": 2, "radius_mm": 8.0, "material": "steel", "i0": 2e4},
    }

    def __init__(
        self,
        radius_mm: float | tuple[float, float] = (3.0, 8.0),
        *,
        n_inserts: int = 2,
        material: str = "titanium",
        i0: float | tuple[float, float] = 1e5,
        sigma_e: float | tuple[float, float] = 3.0,
        kvp: float = 120.0,
        mask: Tensor | None = None,
        hu_max: float | None = 3071.0,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("domain", "image") != "image":
            raise ValueError("`MetalArtifact` needs HU images: `domain` must be 'image'.")
        super().__init__(**kwargs)
        self.radius_mm = check_range(radius_mm, "radius_mm", low=0.0, high=500.0, unit="mm")
        self.n_inserts = check_int(n_inserts, "n_inserts", low=1, high=16)
        self.material = check_choice(material, "material", tuple(F.MATERIALS))
        self.i0 = check_range(i0, "i0", low=1.0, high=1e9, unit="photons")
        self.sigma_e = check_range(sigma_e, "sigma_e", low=0.0, high=1e4, unit="photons")
        self.kvp = check_range(kvp, "kvp", low=40.0, high=150.0, unit="kV")[0]
        self.mask = None if mask is None else torch.as_tensor(mask).to(torch.float32).detach().clone()
        self.hu_max = hu_max

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n, k = x.shape[0], self.n_inserts
        plane = x[:, 0]
        if x.ndim == 5:
            ax = self.cfg.axis % 3
            plane = plane.select(ax, plane.shape[ax] // 2)
        h, w = plane.shape[-2:]
        centers = torch.zeros(n, k, 2, dtype=torch.float64)
        for i in range(n):
            body = (plane[i].detach().cpu() > -300).nonzero().to(torch.float64)
            if len(body) == 0:
                body = torch.tensor([[h / 2.0, w / 2.0]], dtype=torch.float64)
            idx = torch.randint(len(body), (k,), generator=generator)
            pts = body[idx]
            centers[i, :, 0] = 2 * pts[:, 0] / max(h - 1, 1) - 1
            centers[i, :, 1] = 2 * pts[:, 1] / max(w - 1, 1) - 1
        return {
            "centers": centers,
            "radius_mm": self.uniform(self.radius_mm, n * k, generator).reshape(n, k),
            "i0": self.log_uniform(self.i0, n, generator),
            "sigma_e": self.uniform(self.sigma_e, n, generator),
            "seed": sample_seeds(n, generator),
        }

    def _metal_mask(self, x: Tensor, params: Params) -> Tensor:
        spatial = x.shape[2:]
        if self.mask is not None:
            m = self.mask.to(device=x.device, dtype=x.dtype)
            if tuple(m.shape) != tuple(spatial):
                raise ValueError(f"`mask` must have the spatial shape {tuple(spatial)}, got {tuple(m.shape)}.")
            return m.unsqueeze(0).expand(x.shape[0], *spatial)
        ax = self.cfg.axis % 3
        plane = spatial if x.ndim == 4 else tuple(s for i, s in enumerate(spatial) if i != ax)
        h, w = plane
        pix = self.cfg.fov_mm / max(h, w)
        rr = torch.arange(h, device=x.device, dtype=x.dtype)[:, None]
        cc = torch.arange(w, device=x.device, dtype=x.dtype)[None, :]
        cen = params["centers"].to(device=x.device, dtype=x.dtype)
        rad = params["radius_mm"].to(device=x.device, dtype=x.dtype) / pix
        cr = (cen[..., 0] + 1) * (h - 1) / 2
        cw = (cen[..., 1] + 1) * (w - 1) / 2
        d = torch.sqrt((rr[None, None] - cr[..., None, None]) ** 2 + (cc[None, None] - cw[..., None, None]) ** 2)
        m = (rad[..., None, None] - d + 0.5).clamp(0, 1).amax(1)  # (B, h, w), partial volume at the edge
        if x.ndim == 5:
            m = m.unsqueeze(1 + ax).expand(x.shape[0], *spatial)
        return m

    def apply(self, x: Tensor, params: Params) -> Tensor:
        m = self._metal_mask(x, params)
        rho = torch.full((x.shape[0],), F.MATERIALS[self.material], dtype=torch.float64)
        return F.metal_artifact(
            x, m, rho, self.material, params["i0"], params["sigma_e"], params["seed"],
            kvp=self.kvp, hu_max=self.hu_max, cfg=self.cfg,
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"radius_mm": self.radius_mm, "n_inserts": self.n_inserts, "material": self.material, "i0": self.i0}


@register
class CTMotion(_CTTransform):
    """Patient motion during the CT rotation: doubling of edges and streaks.

    The object moves rigidly in-plane (translation ``t``, rotation ``phi``) along a smooth step at
    a random time of the scan; every view sees the pose at its time. For parallel beam this is a
    warp of the sinogram, ``p'(theta, s) = p(theta - phi, s - t . e_theta)``.

    $$ m(\\tau) = \\sigma\\big((\\tau - \\tau_0)/w\\big),\\quad
    p'(\\theta,s) = p\\big(\\theta - m\\phi,\\ s - m\\,\\mathbf t\\cdot\\mathbf e_\\theta\\big) $$

    Args:
        translation_mm: Displacement magnitude in mm (scalar or ``(lo, hi)``; random direction).
        rotation_deg: In-plane rotation magnitude in degrees (scalar or ``(lo, hi)``; random sign).
        onset: Time of the movement as a fraction of the scan (scalar or ``(lo, hi)``).
        fov_mm, n_views, filter, axis, reconstruct, domain, mu_water: Scan settings.
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | translation (mm) | rotation (degrees) |
        |---|---|---|
        | 1 | 1 | 0.5 |
        | 2 | 2 | 1 |
        | 3 | 4 | 2 |
        | 4 | 7 | 3 |
        | 5 | 10 | 5 |

    Convention:
        HU input (or sinogram), 2D or 3D. Differentiable. Records ``translation_px`` ``(B, 2)``
        (col, row, pixels), ``rotation_deg`` and ``onset``.

    References:
        Barrett & Keat, "Artifacts in CT: recognition and avoidance", RadioGraphics 24(6), 2004;
        Kim et al., "Rigid motion correction for head CT", Med Phys 42(10), 2015.

    Examples:
        >>> x = CTMotion.example_input(2, batch=1, size=32)
        >>> CTMotion(translation_mm=5.0, seed=0)(x).shape
        torch.Size([1, 1, 32, 32])
    """

    differentiable = True
    severity_table = {
        1: {"translation_mm": 1.0, "rotation_deg": 0.5},
        2: {"translation_mm": 2.0, "rotation_deg": 1.0},
        3: {"translation_mm": 4.0, "rotation_deg": 2.0},
        4: {"translation_mm": 7.0, "rotation_deg": 3.0},
        5: {"translation_mm": 10.0, "rotation_deg": 5.0},
    }

    def __init__(
        self,
        translation_mm: float | tuple[float, float] = (1.0, 8.0),
        rotation_deg: float | tuple[float, float] = (0.0, 3.0),
        *,
        onset: float | tuple[float, float] = (0.2, 0.8),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.translation_mm = check_range(translation_mm, "translation_mm", low=0.0, high=200.0, unit="mm")
        self.rotation_deg = check_range(rotation_deg, "rotation_deg", low=0.0, high=90.0, unit="degrees")
        self.onset = check_range(onset, "onset", low=0.0, high=1.0)

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        mag = self.uniform(self.translation_mm, n, generator) / self._pixel_mm(x)
        ang = self.uniform((0.0, 2 * torch.pi), n, generator)
        sign = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0).to(torch.float64)
        return {
            "translation_px": torch.stack([mag * torch.cos(ang), mag * torch.sin(ang)], 1),
            "rotation_deg": sign * self.uniform(self.rotation_deg, n, generator),
            "onset": self.uniform(self.onset, n, generator),
        }

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.ct_motion(x, params["translation_px"], params["rotation_deg"], params["onset"], cfg=self.cfg)

    def _repr_args(self) -> dict[str, Any]:
        return {"translation_mm": self.translation_mm, "rotation_deg": self.rotation_deg}


@register
class Truncation(_CTTransform):
    """Truncation: the patient extends beyond the scan field of view (SFOV).

    Rays outside the SFOV are not measured; FBP of the truncated sinogram gives a bright rim and
    shading near the SFOV edge, and nothing is reconstructed outside it.

    $$ p'(\\theta, s) = p(\\theta, s)\\,\\mathbb 1[|s| \\le R],\\quad
    y = \\mathbb 1[r \\le R]\\,(x + \\mathrm{HU}(\\mathrm{FBP}(p' - p))) + \\mathbb 1[r > R]\\,y_{fill} $$

    Args:
        fov_fraction: SFOV diameter as a fraction of the image width (scalar or ``(lo, hi)``;
            the SFOV in mm is ``fov_fraction * fov_mm``).
        fill_hu: HU outside the SFOV.
        fov_mm, n_views, filter, axis, reconstruct, mu_water: Scan settings.
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | SFOV / image width (+-0.02) | SFOV (mm) at fov_mm=350 |
        |---|---|---|
        | 1 | 0.90 | 315 |
        | 2 | 0.80 | 280 |
        | 3 | 0.70 | 245 |
        | 4 | 0.60 | 210 |
        | 5 | 0.50 | 175 |

        (Clinical SFOV is ~500 mm; large patients, arms-down and off-centre positioning exceed it.)

    Convention:
        HU input, 2D or 3D. Differentiable. Records ``fov_fraction``.

    References:
        Ohnesorge et al., "Efficient correction for CT image artifacts caused by objects extending
        outside the scan field of view", Med Phys 27(1):39, 2000; Barrett & Keat 2004.

    Examples:
        >>> x = Truncation.example_input(2, batch=1, size=32)
        >>> y = Truncation(fov_fraction=0.6)(x)
        >>> float(y[0, 0, 0, 0])
        -1000.0
    """

    differentiable = True
    severity_table = {
        1: {"fov_fraction": (0.88, 0.92)},
        2: {"fov_fraction": (0.78, 0.82)},
        3: {"fov_fraction": (0.68, 0.72)},
        4: {"fov_fraction": (0.58, 0.62)},
        5: {"fov_fraction": (0.48, 0.52)},
    }

    def __init__(
        self,
        fov_fraction: float | tuple[float, float] = (0.5, 0.9),
        *,
        fill_hu: float = -1000.0,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("domain", "image") != "image":
            raise ValueError("`Truncation` needs HU images: `domain` must be 'image'.")
        super().__init__(**kwargs)
        self.fov_fraction = check_range(fov_fraction, "fov_fraction", low=0.05, high=1.0)
        self.fill_hu = float(fill_hu)

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        return {"fov_fraction": self.uniform(self.fov_fraction, x.shape[0], generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.truncation(x, params["fov_fraction"], fill_hu=self.fill_hu, cfg=self.cfg)

    def _repr_args(self) -> dict[str, Any]:
        return {"fov_fraction": self.fov_fraction}
