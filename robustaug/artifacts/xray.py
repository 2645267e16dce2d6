"""Projection radiography (X-ray) artifacts in the linear detector domain (before log/LUT).

Inputs are radiographs ``(B, C, H, W)`` as primary transmission (1 = unattenuated nominal beam),
e.g. the DRR of :func:`robustaug.data.ct.drr`. Detector lengths are in mm with ``pixel_mm`` per
pixel (default: a 430 mm detector across the image width, ``430 / W``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..core.checks import check_choice, check_range
from ..core.registry import register
from ..core.rng import sample_seeds
from ..core.transform import Params, Transform
from ..functional import xray as F

__all__ = [
    "Collimation",
    "DeadLines",
    "DeadPixels",
    "DetectorNoise",
    "Exposure",
    "GridLines",
    "HeelEffect",
    "Scatter",
]

DETECTOR_MM = 430.0


class _XRayTransform(Transform):
    """Shared radiograph example input and pixel size."""

    modality = "xray"
    dims = (2,)

    def __init__(self, *, pixel_mm: float | None = None, p: float = 1.0, seed: int | None = None,
                 spatial_dims: int | None = None) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.pixel_mm = None if pixel_mm is None else check_range(pixel_mm, "pixel_mm", low=1e-3, high=100.0, unit="mm")[0]

    def _pix(self, x: Tensor) -> float:
        return self.pixel_mm if self.pixel_mm is not None else DETECTOR_MM / x.shape[-1]

    @classmethod
    def example_input(cls, dims: int = 2, batch: int = 2, size: int = 64) -> Tensor:
        """AP radiographs (DRRs) of the CT body phantom, transmission in (0, 1]."""
        from ..data.ct import ct_phantom, drr

        imgs = []
        for i in range(batch):
            vol = ct_phantom((size, size, size), seed=i, smooth=0.0)["image"]
            imgs.append(drr(vol, 350.0 / size))
        return torch.stack(imgs) if imgs else torch.zeros((0, 1, size, size))


@register
class DetectorNoise(_XRayTransform):
    """Quantum and electronic noise of a flat-panel detector at a given dose.

    Each pixel counts Poisson photons (``N0`` per pixel for the unattenuated beam, proportional to
    dose) converted to DN with gain ``g``, plus Gaussian electronic noise, so the variance follows
    the photon-transfer line ``Var = g * mean + sigma_e^2`` (in DN).

    $$ S = g\\,\\mathrm{Poisson}(N_0 x) + \\sigma_e n,\\quad y = S / (g N_0) $$

    Args:
        photons: ``N0``, photons per pixel for the unattenuated beam (scalar or ``(lo, hi)``,
            log-uniform).
        gain: DN per photon (scalar or range).
        sigma_e: Electronic noise in DN (scalar or range).
        pixel_mm: Detector pixel size (unused; for a common signature).
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | photons per pixel (unattenuated) |
        |---|---|
        | 1 | 2000 |
        | 2 | 1000 |
        | 3 | 500 |
        | 4 | 250 |
        | 5 | 100 |

        (A chest radiograph at ~2.5 uGy detector air kerma gives ~1000-2000 photons per
        150 um pixel; 100 photons is a ~20x dose reduction.)

    Convention:
        Linear transmission input, 2D. Not differentiable. Records ``photons``, ``gain``,
        ``sigma_e`` and the noise ``seed``.

    References:
        Janesick, *Photon Transfer*, SPIE Press 2007; Bushberg et al., *The Essential Physics of
        Medical Imaging*, 3rd ed., ch. 7 (quantum mottle, detector noise).

    Examples:
        >>> import torch
        >>> y = DetectorNoise(photons=1000, sigma_e=0.0, seed=0)(torch.full((1, 64, 64), 0.5))
        >>> abs(float(y.var()) * 1000 / 0.5 - 1) < 0.1
        True
    """

    differentiable = False
    severity_table = {
        1: {"photons": 2000.0},
        2: {"photons": 1000.0},
        3: {"photons": 500.0},
        4: {"photons": 250.0},
        5: {"photons": 100.0},
    }

    def __init__(
        self,
        photons: float | tuple[float, float] = (100.0, 2000.0),
        *,
        gain: float | tuple[float, float] = 1.0,
        sigma_e: float | tuple[float, float] = 3.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.photons = check_range(photons, "photons", low=0.0, low_inclusive=False, high=1e9)
        self.gain = check_range(gain, "gain", low=0.0, low_inclusive=False, high=1e6, unit="DN/photon")
        self.sigma_e = check_range(sigma_e, "sigma_e", low=0.0, high=1e6, unit="DN")

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        return {
            "photons": self.log_uniform(self.photons, n, generator),
            "gain": self.uniform(self.gain, n, generator),
            "sigma_e": self.uniform(self.sigma_e, n, generator),
            "seed": sample_seeds(n, generator),
        }

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.detector_noise(x, params["photons"], params["gain"], params["sigma_e"], params["seed"])

    def _repr_args(self) -> dict[str, Any]:
        return {"photons": self.photons, "gain": self.gain, "sigma_e": self.sigma_e}


@register
class Scatter(_XRayTransform):
    """Scattered radiation: a low-frequency fog that adds signal and lowers contrast.

    Compton scatter reaching the detector is a broad blur of the primary; its amount is the
    scatter-to-primary ratio (SPR). The added mean is ``SPR`` times the primary mean, and the
    contrast of any detail falls by ``1 / (1 + SPR)``.

    $$ y = x + \\mathrm{SPR}\\,\\frac{\\bar x}{\\overline{x * G}}\\,(x * G),\\quad
    \\mathrm{FWHM}(G) = \\text{fwhm\\_mm} $$

    Args:
        spr: Scatter-to-primary ratio (scalar or ``(lo, hi)``).
        fwhm_mm: Scatter kernel FWHM on the detector in mm (scalar or range).
        pixel_mm: Detector pixel size in mm (default ``430 / W``).
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | SPR | situation |
        |---|---|---|
        | 1 | 0.2 | with anti-scatter grid |
        | 2 | 0.5 | thin body part, no grid |
        | 3 | 1.0 | chest/abdomen, no grid |
        | 4 | 2.0 | thick abdomen |
        | 5 | 4.0 | 25 cm abdomen, no grid |

    Convention:
        Linear transmission input, 2D. Differentiable. Records ``spr`` and ``sigma_px`` (kernel
        standard deviation in pixels).

    References:
        Bushberg et al., *The Essential Physics of Medical Imaging*, 3rd ed., ch. 7 (SPR 1-4.5
        without grid); Boone & Seibert, "An analytical model of the scattered radiation
        distribution in diagnostic radiology", Med Phys 15(5), 1988.

    Examples:
        >>> import torch
        >>> x = torch.rand(1, 1, 32, 32)
        >>> y = Scatter(spr=1.0, fwhm_mm=100.0)(x)
        >>> abs(float((y - x).mean() / x.mean()) - 1.0) < 1e-4
        True
    """

    differentiable = True
    severity_table = {
        1: {"spr": 0.2},
        2: {"spr": 0.5},
        3: {"spr": 1.0},
        4: {"spr": 2.0},
        5: {"spr": 4.0},
    }

    def __init__(
        self,
        spr: float | tuple[float, float] = (0.2, 2.0),
        *,
        fwhm_mm: float | tuple[float, float] = (50.0, 150.0),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spr = check_range(spr, "spr", low=0.0, high=100.0)
        self.fwhm_mm = check_range(fwhm_mm, "fwhm_mm", low=0.0, high=5000.0, unit="mm")

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        fwhm = self.uniform(self.fwhm_mm, n, generator)
        return {"spr": self.uniform(self.spr, n, generator), "sigma_px": fwhm / 2.3548 / self._pix(x)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.scatter(x, params["spr"], params["sigma_px"])

    def _repr_args(self) -> dict[str, Any]:
        return {"spr": self.spr, "fwhm_mm": self.fwhm_mm}


@register
class GridLines(_XRayTransform):
    """Anti-scatter grid lines and moire from aliasing of the grid frequency at the pixel pitch.

    The lead lamellae of a stationary grid cast a periodic shadow at ``f_g`` lines/cm; sampled at
    ``f_s = 10 / pixel_mm`` samples/cm it appears at the alias ``|f_g - k f_s|`` (moire).

    $$ y = x\\Big(1 - \\frac{d}{2}\\big(1 - \\cos(2\\pi f_g u + \\varphi)\\big)\\Big),\\quad
    f_{alias} = |f_g - \\mathrm{round}(f_g / f_s) f_s| $$

    Args:
        lines_per_cm: Grid line density (scalar or ``(lo, hi)``; clinical grids 40-80).
        depth: Peak-to-peak modulation of the recorded pattern in [0, 1] (scalar or range).
        angle_deg: Orientation of the modulation in degrees (0: varies along the width; the
            lines run along the height). Scalar or range.
        pixel_mm: Detector pixel pitch in mm (default ``430 / W``).
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | modulation depth |
        |---|---|
        | 1 | 0.02 |
        | 2 | 0.04 |
        | 3 | 0.07 |
        | 4 | 0.10 |
        | 5 | 0.15 |

    Convention:
        Linear transmission input, 2D. Differentiable. Records ``cycles_per_px`` (grid frequency
        in cycles per pixel before aliasing), ``depth``, ``phase`` and ``angle_rad``.

    References:
        Rana et al., "Anti-scatter grid artifact elimination for high resolution X-ray imaging
        CMOS detectors", Proc SPIE 9412, 2015 (70 lines/cm grid on 75 um pixels, moire);
        Bushberg et al., ch. 7.

    Examples:
        >>> import torch
        >>> y = GridLines(lines_per_cm=70.0, depth=0.1, pixel_mm=0.15, seed=0)(torch.ones(1, 32, 32))
        >>> 0.89 < float(y.min()) and float(y.max()) <= 1.0
        True
    """

    differentiable = True
    severity_table = {
        1: {"depth": 0.02},
        2: {"depth": 0.04},
        3: {"depth": 0.07},
        4: {"depth": 0.10},
        5: {"depth": 0.15},
    }

    def __init__(
        self,
        lines_per_cm: float | tuple[float, float] = (40.0, 80.0),
        depth: float | tuple[float, float] = (0.02, 0.1),
        *,
        angle_deg: float | tuple[float, float] = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.lines_per_cm = check_range(lines_per_cm, "lines_per_cm", low=0.0, high=1000.0, unit="lines/cm")
        self.depth = check_range(depth, "depth", low=0.0, high=1.0)
        self.angle_deg = check_range(angle_deg, "angle_deg", low=-180.0, high=180.0, unit="degrees")

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        f = self.uniform(self.lines_per_cm, n, generator) * self._pix(x) / 10.0
        return {
            "cycles_per_px": f,
            "depth": self.uniform(self.depth, n, generator),
            "phase": self.uniform((0.0, 2 * math.pi), n, generator),
            "angle_rad": torch.deg2rad(self.uniform(self.angle_deg, n, generator)),
        }

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.grid_lines(x, params["cycles_per_px"], params["depth"], params["phase"], params["angle_rad"])

    def _repr_args(self) -> dict[str, Any]:
        return {"lines_per_cm": self.lines_per_cm, "depth": self.depth}


@register
class DeadPixels(_XRayTransform):
    """Defective detector pixels: dead (no signal) or hot (stuck at saturation).

    $$ y_i = v_i \\text{ for defective } i,\\ \\ y_i = x_i \\text{ otherwise} $$

    Args:
        rate: Fraction of defective pixels (scalar or ``(lo, hi)``); at least one pixel.
        hot_fraction: Probability that a defect is hot (value ``saturation``) rather than dead (0).
        saturation: Value of hot pixels.
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | defect rate |
        |---|---|
        | 1 | 0.01 % |
        | 2 | 0.05 % |
        | 3 | 0.1 % |
        | 4 | 0.3 % |
        | 5 | 1 % |

        (Acceptance limits of flat panels allow ~0.1 % defective pixels before correction.)

    Convention:
        Linear transmission input, 2D. Differentiable w.r.t. ``x``. Records ``indices`` ``(B, K)``
        (flat ``row * W + col`` positions; ``-1`` = unused) and ``values`` ``(B, K)``.

    References:
        IEC 62220-1 (flat-panel detector characterisation); Seibert, "Flat-panel detectors: how
        much better are they?", Pediatr Radiol 36, 2006.

    Examples:
        >>> import torch
        >>> t = DeadPixels(rate=0.01, hot_fraction=0.0, seed=0)
        >>> y = t(torch.ones(1, 1, 32, 32))
        >>> int((y == 0).sum()) == int((t.last_params["indices"] >= 0).sum())
        True
    """

    differentiable = True
    severity_table = {1: {"rate": 1e-4}, 2: {"rate": 5e-4}, 3: {"rate": 1e-3}, 4: {"rate": 3e-3}, 5: {"rate": 1e-2}}

    def __init__(
        self,
        rate: float | tuple[float, float] = (1e-4, 3e-3),
        *,
        hot_fraction: float = 0.3,
        saturation: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rate = check_range(rate, "rate", low=0.0, high=1.0)
        self.hot_fraction = check_range(hot_fraction, "hot_fraction", low=0.0, high=1.0)[0]
        self.saturation = float(saturation)

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        hw = x.shape[-2] * x.shape[-1]
        rates = self.uniform(self.rate, n, generator)
        counts = [max(1, min(hw, round(float(r) * hw))) for r in rates]
        kmax = max(counts) if counts else 1
        idx = torch.full((n, kmax), -1, dtype=torch.int64)
        vals = torch.zeros(n, kmax, dtype=torch.float64)
        for i, k in enumerate(counts):
            idx[i, :k] = torch.randperm(hw, generator=generator)[:k]
            hot = torch.rand(k, generator=generator) < self.hot_fraction
            vals[i, :k] = torch.where(hot, self.saturation, 0.0).to(torch.float64)
        return {"indices": idx, "values": vals}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.dead_pixels(x, params["indices"], params["values"])

    def _repr_args(self) -> dict[str, Any]:
        return {"rate": self.rate}


@register
class DeadLines(_XRayTransform):
    """Defective detector lines: a failed gate line (row) or readout line (column).

    $$ y_{l,\\cdot} = v_l \\text{ for each defective line } l $$

    Args:
        n_lines: Number of defective lines per image (int, or ``(lo, hi)`` drawn as an integer).
        axis: ``"row"``, ``"col"`` or ``"random"`` (per sample).
        hot_fraction: Probability that a line is stuck at ``saturation`` instead of 0.
        saturation: Value of hot lines.
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | defective lines |
        |---|---|
        | 1 | 1 |
        | 2 | 2 |
        | 3 | 3 |
        | 4 | 5 |
        | 5 | 8 |

    Convention:
        Linear transmission input, 2D. Differentiable w.r.t. ``x``. Records ``lines`` ``(B, K)``
        (row or column indices; ``-1`` = unused), ``axes`` ``(B,)`` (0 = row, 1 = column) and
        ``values`` ``(B, K)``.

    References:
        Seibert, Pediatr Radiol 36, 2006 (line defects of TFT arrays); IEC 62220-1.

    Examples:
        >>> import torch
        >>> t = DeadLines(n_lines=2, axis="row", hot_fraction=0.0, seed=0)
        >>> y = t(torch.ones(1, 1, 16, 16))
        >>> int((y[0, 0].sum(1) == 0).sum())
        2
    """

    differentiable = True
    severity_table = {1: {"n_lines": 1}, 2: {"n_lines": 2}, 3: {"n_lines": 3}, 4: {"n_lines": 5}, 5: {"n_lines": 8}}

    def __init__(
        self,
        n_lines: int | tuple[int, int] = (1, 3),
        *,
        axis: str = "random",
        hot_fraction: float = 0.2,
        saturation: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        lo, hi = check_range(n_lines, "n_lines", low=0, high=10000)
        self.n_lines = (int(lo), int(hi))
        self.axis = check_choice(axis, "axis", ("row", "col", "random"))
        self.hot_fraction = check_range(hot_fraction, "hot_fraction", low=0.0, high=1.0)[0]
        self.saturation = float(saturation)

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        h, w = x.shape[-2:]
        ks = torch.randint(self.n_lines[0], self.n_lines[1] + 1, (n,), generator=generator)
        if self.axis == "random":
            axes = torch.randint(0, 2, (n,), generator=generator)
        else:
            axes = torch.full((n,), 0 if self.axis == "row" else 1, dtype=torch.int64)
        kmax = max(1, int(ks.max())) if n else 1
        lines = torch.full((n, kmax), -1, dtype=torch.int64)
        vals = torch.zeros(n, kmax, dtype=torch.float64)
        for i in range(n):
            size = h if int(axes[i]) == 0 else w
            k = min(int(ks[i]), size)
            lines[i, :k] = torch.randperm(size, generator=generator)[:k]
            hot = torch.rand(k, generator=generator) < self.hot_fraction
            vals[i, :k] = torch.where(hot, self.saturation, 0.0).to(torch.float64)
        return {"lines": lines, "axes": axes, "values": vals}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.dead_lines(x, params["lines"], params["axes"], params["values"])

    def _repr_args(self) -> dict[str, Any]:
        return {"n_lines": self.n_lines, "axis": self.axis}


@register
class HeelEffect(_XRayTransform):
    """Anode heel effect: intensity falls off towards the anode side of the field.

    Photons emitted towards the anode cross more tungsten in the target (anode angle ``alpha``),
    so the intensity drops steeply near the anode edge and rises slightly on the cathode side.

    $$ g(u) = \\exp\\Big(-k\\Big(\\frac{1}{\\sin(\\alpha - \\varphi(u))} - \\frac{1}{\\sin\\alpha}\\Big)\\Big),
    \\quad \\varphi = \\arctan(u / \\mathrm{SID}) $$

    Args:
        falloff: Intensity loss at the anode edge relative to the centre (scalar or range).
        anode_angle_deg: Target angle in degrees (typ. 12-16).
        sid_mm: Source-to-image distance in mm.
        direction: Anode side: ``"random"`` or one of ``"top"``, ``"bottom"``, ``"left"``, ``"right"``.
        pixel_mm: Detector pixel size (default ``430 / W``).
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | anode-edge falloff |
        |---|---|
        | 1 | 10 % |
        | 2 | 15 % |
        | 3 | 20 % |
        | 4 | 30 % |
        | 5 | 40 % |

        (Heel-effect intensity variations of 20-45 % across a 43 cm field at 100 cm SID.)

    Convention:
        Linear transmission input, 2D. Differentiable. Records ``falloff`` and ``direction``
        (0 top, 1 bottom, 2 left, 3 right).

    References:
        Bushberg et al., *The Essential Physics of Medical Imaging*, 3rd ed., ch. 6 (heel effect);
        Fritz & Livingston, "The effect of anode curvature on radiographic heel effect", Med Phys
        12(4), 1985.

    Examples:
        >>> import torch
        >>> y = HeelEffect(falloff=0.3, direction="top")(torch.ones(1, 32, 32))
        >>> round(float(y[0, 0, 0]), 2)
        0.7
    """

    differentiable = True
    severity_table = {
        1: {"falloff": 0.10},
        2: {"falloff": 0.15},
        3: {"falloff": 0.20},
        4: {"falloff": 0.30},
        5: {"falloff": 0.40},
    }
    _DIRS = ("top", "bottom", "left", "right")

    def __init__(
        self,
        falloff: float | tuple[float, float] = (0.1, 0.3),
        *,
        anode_angle_deg: float = 16.0,
        sid_mm: float = 1000.0,
        direction: str = "random",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.falloff = check_range(falloff, "falloff", low=0.0, high=0.95)
        self.anode_angle_deg = check_range(anode_angle_deg, "anode_angle_deg", low=5.0, high=30.0, unit="degrees")[0]
        self.sid_mm = check_range(sid_mm, "sid_mm", low=100.0, high=5000.0, unit="mm")[0]
        self.direction = check_choice(direction, "direction", ("random", *self._DIRS))

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        if self.direction == "random":
            d = torch.randint(0, 4, (n,), generator=generator)
        else:
            d = torch.full((n,), self._DIRS.index(self.direction), dtype=torch.int64)
        return {"falloff": self.uniform(self.falloff, n, generator), "direction": d}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.heel_effect(
            x, params["falloff"], params["direction"], pixel_mm=self._pix(x), sid_mm=self.sid_mm,
            anode_angle_deg=self.anode_angle_deg,
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"falloff": self.falloff, "direction": self.direction}


@register
class Exposure(_XRayTransform):
    """Under- or over-exposure with detector saturation (burn-out of thin regions).

    The detected signal scales with the tube current-time product (mAs); a wrong technique factor
    changes it by ``2**stops``, and the detector saturates at ``saturation``.

    $$ y = \\min(2^{s} x,\\ x_{sat}) $$

    Args:
        stops: Exposure error magnitude in stops (scalar or ``(lo, hi)``); the sign is random
            (under/over) unless ``direction`` is given.
        direction: ``"random"``, ``"under"`` or ``"over"``.
        saturation: Detector saturation level (1 = unattenuated nominal beam).
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | stops | exposure factor |
        |---|---|---|
        | 1 | 0.5 | x0.71 or x1.41 |
        | 2 | 1.0 | x0.5 or x2 |
        | 3 | 1.5 | x0.35 or x2.8 |
        | 4 | 2.0 | x0.25 or x4 |
        | 5 | 3.0 | x0.125 or x8 |

        (Exposure indices outside +-1 stop of the target warrant review; IEC 62494-1.)

    Convention:
        Linear transmission input, 2D. Differentiable (almost everywhere). Records ``stops``
        (signed).

    References:
        IEC 62494-1 (exposure index of digital radiography); Shepard et al., "An exposure
        indicator for digital radiography", AAPM TG-116, Med Phys 36(7), 2009.

    Examples:
        >>> import torch
        >>> y = Exposure(stops=1.0, direction="over")(torch.full((1, 4, 4), 0.75))
        >>> float(y.max())
        1.0
    """

    differentiable = True
    severity_table = {1: {"stops": 0.5}, 2: {"stops": 1.0}, 3: {"stops": 1.5}, 4: {"stops": 2.0}, 5: {"stops": 3.0}}

    def __init__(
        self,
        stops: float | tuple[float, float] = (0.5, 2.0),
        *,
        direction: str = "random",
        saturation: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stops = check_range(stops, "stops", low=0.0, high=10.0)
        self.direction = check_choice(direction, "direction", ("random", "under", "over"))
        self.saturation = check_range(saturation, "saturation", low=0.0, low_inclusive=False, high=1e9)[0]

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        mag = self.uniform(self.stops, n, generator)
        u = torch.rand(n, generator=generator)
        if self.direction == "random":
            sign = torch.where(u < 0.5, -1.0, 1.0).to(torch.float64)
        else:
            sign = torch.full((n,), -1.0 if self.direction == "under" else 1.0, dtype=torch.float64)
        return {"stops": sign * mag}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.exposure(x, torch.pow(2.0, params["stops"]), self.saturation)

    def _repr_args(self) -> dict[str, Any]:
        return {"stops": self.stops, "direction": self.direction}


@register
class Collimation(_XRayTransform):
    """Collimator edges cutting the field: outside the (possibly tilted) rectangle only leakage.

    $$ y = x\\,\\big(\\ell + (1 - \\ell)\\,m(\\mathbf r)\\big),\\quad m = \\prod_{edges}
    \\sigma(\\pm(u - u_{edge}) / w) $$

    Args:
        margin: Blade position per side as a fraction of the image size (scalar or ``(lo, hi)``
            drawn independently for the four sides).
        angle_deg: Collimator rotation in degrees (scalar or range).
        penumbra_mm: Edge (penumbra) width in mm.
        leak: Transmission through the blades (plus scatter), in [0, 1].
        pixel_mm: Detector pixel size (default ``430 / W``).
        p, seed, spatial_dims: See :class:`~robustaug.core.transform.Transform`.

    Severity:
        | level | margin per side (fraction) |
        |---|---|
        | 1 | 0.02-0.05 |
        | 2 | 0.05-0.10 |
        | 3 | 0.10-0.15 |
        | 4 | 0.15-0.22 |
        | 5 | 0.22-0.30 |

    Convention:
        Linear transmission input, 2D. Differentiable. Records ``margins`` ``(B, 4)`` (top,
        bottom, left, right) and ``angle_rad``.

    References:
        Bushberg et al., ch. 7 (collimation, field size); IEC 60601-1-3 (X-ray field alignment).

    Examples:
        >>> import torch
        >>> y = Collimation(margin=0.25, angle_deg=0.0, leak=0.0)(torch.ones(1, 32, 32))
        >>> float(y[0, 0, 0]) < 0.01 and float(y[0, 16, 16]) > 0.99
        True
    """

    differentiable = True
    severity_table = {
        1: {"margin": (0.02, 0.05)},
        2: {"margin": (0.05, 0.10)},
        3: {"margin": (0.10, 0.15)},
        4: {"margin": (0.15, 0.22)},
        5: {"margin": (0.22, 0.30)},
    }

    def __init__(
        self,
        margin: float | tuple[float, float] = (0.02, 0.2),
        *,
        angle_deg: float | tuple[float, float] = (-3.0, 3.0),
        penumbra_mm: float = 2.0,
        leak: float = 0.02,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.margin = check_range(margin, "margin", low=0.0, high=0.45)
        self.angle_deg = check_range(angle_deg, "angle_deg", low=-45.0, high=45.0, unit="degrees")
        self.penumbra_mm = check_range(penumbra_mm, "penumbra_mm", low=0.0, high=100.0, unit="mm")[0]
        self.leak = check_range(leak, "leak", low=0.0, high=1.0)[0]

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        return {
            "margins": self.uniform(self.margin, 4 * n, generator).reshape(n, 4),
            "angle_rad": torch.deg2rad(self.uniform(self.angle_deg, n, generator)),
        }

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.collimation(
            x, params["margins"], params["angle_rad"], penumbra_px=self.penumbra_mm / self._pix(x), leak=self.leak
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"margin": self.margin, "angle_deg": self.angle_deg}


