"""Ultrasound (B-mode) artifacts: speckle, shadowing, enhancement, depth attenuation, reverberation.

Value-domain convention: the transforms act on the **envelope** (linear echo amplitude before log
compression, ``>= 0``, 1 = full scale) by default, where the physics is multiplicative.
:class:`LogCompression` turns an envelope into a display B-mode image; chain it last
(``Compose([Speckle(), AcousticShadow(), LogCompression(60)])``). For data that is already
log-compressed (PNG/DICOM B-mode), pass ``domain="bmode"`` with the display's
``dynamic_range_db``: the input is decompressed, corrupted and compressed again.

Geometry: rows are depth (row 0 at the probe face), columns are lateral. ``apex_mm=None`` is a
linear array (beam lines are columns); a number is a sector/convex probe whose beam lines are rays
from a virtual apex ``apex_mm`` above the top-centre of the image (0 = phased array).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..core.checks import check_choice, check_int, check_range
from ..core.registry import register
from ..core.rng import sample_seeds
from ..core.transform import Params, Transform
from ..functional import ultrasound as F
from .camera import UnitRangeUint8

__all__ = [
    "AcousticShadow",
    "DepthAttenuation",
    "Enhancement",
    "LogCompression",
    "Reverberation",
    "Speckle",
]


def _spacing2(spacing_mm: Any) -> tuple[float, float]:
    if isinstance(spacing_mm, (int, float)) and not isinstance(spacing_mm, bool):
        vals = (float(spacing_mm), float(spacing_mm))
    else:
        try:
            vals = tuple(float(v) for v in spacing_mm)
        except TypeError:
            vals = ()
    if len(vals) != 2 or not all(v > 0 for v in vals):
        raise ValueError(
            f"`spacing_mm` must be a positive float or (axial, lateral) pair in mm, got {spacing_mm!r}."
        )
    return vals  # type: ignore[return-value]


def _phantom_batch(key: str, dims: int, batch: int, size: int) -> Tensor:
    from ..data.ultrasound import ultrasound_phantom

    if dims != 2:
        raise ValueError(f"Ultrasound artifacts are 2D (B-mode); got dims={dims}.")
    imgs = [ultrasound_phantom((size, size), seed=i)[key] for i in range(batch)]
    return torch.stack(imgs) if imgs else torch.zeros((0, 1, size, size))


class _UltrasoundTransform(UnitRangeUint8, Transform):
    """Shared handling of the value domain and probe geometry (not registered)."""

    modality = "ultrasound"
    dims = (2,)
    _example_key = "envelope"

    def __init__(
        self,
        *,
        spacing_mm: float | tuple[float, float] = 0.15,
        apex_mm: float | None = None,
        domain: str = "envelope",
        dynamic_range_db: float = 60.0,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.spacing_mm = _spacing2(spacing_mm)
        if apex_mm is not None:
            apex_mm = check_range(apex_mm, "apex_mm", low=0.0, unit="mm")[0]
        self.apex_mm = apex_mm
        self.domain = check_choice(domain, "domain", ("envelope", "bmode"))
        self.dynamic_range_db = check_range(
            dynamic_range_db, "dynamic_range_db", low=0.0, low_inclusive=False, high=200.0, unit="dB"
        )[0]

    def apply(self, x: Tensor, params: Params) -> Tensor:
        if self.domain == "envelope":
            return self._apply_envelope(x, params)
        env = F.log_decompression(x, self.dynamic_range_db)
        return F.log_compression(self._apply_envelope(env, params), self.dynamic_range_db)

    def _apply_envelope(self, x: Tensor, params: Params) -> Tensor:
        raise NotImplementedError

    @classmethod
    def example_input(cls, dims: int = 2, batch: int = 2, size: int = 64) -> Tensor:
        """Envelope images of the built-in ultrasound phantom (:func:`robustaug.data.ultrasound`)."""
        return _phantom_batch(cls._example_key, dims, batch, size)




@register
class Speckle(_UltrasoundTransform):
    """Envelope speckle: Rayleigh (fully developed) or Nakagami-m, with PSF-sized grain.

    Many sub-resolution scatterers per resolution cell sum to a complex circular Gaussian echo
    whose magnitude is Rayleigh distributed with mean/std = 1.91 (Burckhardt 1978); fewer or
    clustered scatterers give Nakagami-m statistics (m < 1 pre-Rayleigh, m > 1 towards a coherent
    component; Shankar 2000). The grain is the pulse-echo PSF: complex Gaussian scatterers are
    convolved with a Gaussian PSF of the given FWHM (axial, lateral in mm), so the intensity
    autocovariance has the PSF's FWHM. The speckle-free input (echogenicity) is multiplied by the
    unit-power amplitude field (Wagner et al. 1983). Apply before :class:`LogCompression`.

    $$ y = x \\cdot A,\\quad A = \\sqrt{F^{-1}_{\\Gamma(m, 1/m)}\\big(1 - e^{-|h * n|^2}\\big)},
    \\quad n \\sim \\mathcal{CN}(0, 1),\\ E[A^2] = 1 $$

    (for ``m = 1``, ``A = |h * n|``, Rayleigh.)

    Args:
        nakagami_m: Nakagami shape ``m`` (1 = Rayleigh); scalar or ``(lo, hi)`` sampled uniformly.
        axial_fwhm_mm: Axial PSF FWHM in mm (about half the pulse length); scalar or range.
        lateral_fwhm_mm: Lateral PSF FWHM in mm (about lambda times the F-number); scalar or range.
        spacing_mm: Pixel size in mm, a float or ``(axial, lateral)``.
        apex_mm: ``None`` for a linear probe; the virtual apex distance above the image in mm for a
            sector/convex probe (0 = phased array), whose beam lines are rays from the apex.
        domain: ``"envelope"`` (linear amplitude, default) or ``"bmode"`` (log-compressed input:
            decompressed with ``dynamic_range_db``, corrupted, compressed again).
        dynamic_range_db: Display dynamic range for ``domain="bmode"``.
        p: Probability of applying, per sample.
        seed: Private seed (see :class:`~robustaug.core.transform.Transform`).
        spatial_dims: Only 2 is supported (B-mode images).

    Severity:
        | level | m | axial FWHM (mm) | lateral FWHM (mm) |
        |---|---|---|---|
        | 1 | 5.0 | 0.20 | 0.30 |
        | 2 | 2.5 | 0.30 | 0.45 |
        | 3 | 1.0 (Rayleigh) | 0.40 | 0.60 |
        | 4 | 0.75 | 0.50 | 0.80 |
        | 5 | 0.5 | 0.60 | 1.00 |

        m spans the range fitted to breast tissue by Shankar et al. (2001) (about 0.5 to 2+, with
        m -> large for weak speckle); PSF sizes span 3-10 MHz linear/curvilinear probes.

    Convention:
        Envelope domain by default; 2D, axial axis H, lateral W; every channel gets the same field.
        Not clipped. Records ``nakagami_m``, ``psf_sigma_px`` ``(B, 2)`` (axial, lateral sigma in
        pixels) and the noise ``seed``. Differentiable w.r.t. ``x`` (the field does not depend on x).
        On real (already speckled) data it adds a second, independent speckle pattern.

    References:
        Burckhardt, "Speckle in ultrasound B-mode scans", IEEE Trans. Sonics Ultrason. 25(1), 1978;
        Wagner et al., "Statistics of speckle in ultrasound B-scans", IEEE Trans. Sonics Ultrason.
        30(3), 1983; Shankar, "A general statistical model for ultrasonic backscattering from
        tissues", IEEE TUFFC 47(3), 2000; Shankar et al., "Classification of ultrasonic B-mode
        images of breast masses using Nakagami distribution", IEEE TUFFC 48(2), 2001.

    Examples:
        >>> import torch
        >>> y = Speckle(nakagami_m=1.0, seed=0)(torch.full((1, 1, 128, 128), 0.5))
        >>> ratio = float(y.mean() / y.std())
        >>> 1.7 < ratio < 2.1
        True
    """

    differentiable = True
    _example_key = "echogenicity"
    severity_table = {
        1: {"nakagami_m": 5.0, "axial_fwhm_mm": 0.2, "lateral_fwhm_mm": 0.3},
        2: {"nakagami_m": 2.5, "axial_fwhm_mm": 0.3, "lateral_fwhm_mm": 0.45},
        3: {"nakagami_m": 1.0, "axial_fwhm_mm": 0.4, "lateral_fwhm_mm": 0.6},
        4: {"nakagami_m": 0.75, "axial_fwhm_mm": 0.5, "lateral_fwhm_mm": 0.8},
        5: {"nakagami_m": 0.5, "axial_fwhm_mm": 0.6, "lateral_fwhm_mm": 1.0},
    }

    def __init__(
        self,
        nakagami_m: float | tuple[float, float] = 1.0,
        axial_fwhm_mm: float | tuple[float, float] = (0.2, 0.5),
        lateral_fwhm_mm: float | tuple[float, float] = (0.3, 1.0),
        *,
        spacing_mm: float | tuple[float, float] = 0.15,
        apex_mm: float | None = None,
        domain: str = "envelope",
        dynamic_range_db: float = 60.0,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(
            spacing_mm=spacing_mm, apex_mm=apex_mm, domain=domain,
            dynamic_range_db=dynamic_range_db, p=p, seed=seed, spatial_dims=spatial_dims,
        )
        self.nakagami_m = check_range(nakagami_m, "nakagami_m", low=0.5, high=100.0)
        self.axial_fwhm_mm = check_range(axial_fwhm_mm, "axial_fwhm_mm", low=0.0, high=50.0, unit="mm")
        self.lateral_fwhm_mm = check_range(
            lateral_fwhm_mm, "lateral_fwhm_mm", low=0.0, high=50.0, unit="mm"
        )

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        m = self.uniform(self.nakagami_m, n, generator)
        ax = self.uniform(self.axial_fwhm_mm, n, generator) * F.FWHM_TO_SIGMA / self.spacing_mm[0]
        lat = self.uniform(self.lateral_fwhm_mm, n, generator) * F.FWHM_TO_SIGMA / self.spacing_mm[1]
        return {"nakagami_m": m, "psf_sigma_px": torch.stack([ax, lat], 1), "seed": sample_seeds(n, generator)}

    def _apply_envelope(self, x: Tensor, params: Params) -> Tensor:
        return F.speckle(x, params["seed"], params["psf_sigma_px"], params["nakagami_m"])

    def _repr_args(self) -> dict[str, Any]:
        return {
            "nakagami_m": self.nakagami_m,
            "axial_fwhm_mm": self.axial_fwhm_mm,
            "lateral_fwhm_mm": self.lateral_fwhm_mm,
        }


@register
class LogCompression(UnitRangeUint8, Transform):
    """Log compression of an envelope to a display B-mode image with a dynamic range in dB.

    Scanners map the envelope's large dynamic range onto the display with a logarithm; the
    dynamic range ``DR`` sets which echo level is black. As a corruption, a narrow ``DR`` crushes
    weak echoes to black and exaggerates contrast, a wide one washes the image out. This is a
    domain conversion (envelope -> display), so chain it after the envelope-domain artifacts.

    $$ y = \\mathrm{clip}\\Big(1 + \\frac{20 \\log_{10}(x / x_{ref})}{DR},\\ 0,\\ 1\\Big) $$

    Args:
        dynamic_range_db: ``DR`` in dB; scalar or ``(lo, hi)`` sampled uniformly.
        reference: Envelope value displayed as white (1 for the built-in phantom).
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Only 2 is supported.

    Severity:
        | level | dynamic range (dB) |
        |---|---|
        | 1 | 28-32 |
        | 2 | 37-43 |
        | 3 | 46-54 |
        | 4 | 55-65 |
        | 5 | 70-90 |

        Clinical displays use 40-80 dB (Szabo 2014, §10); the table is ordered by the structural
        change from the linear envelope (SSIM), which grows with DR.

    Convention:
        Input: envelope ``>= 0``; output: display values in [0, 1]. Records ``dynamic_range_db``.
        Differentiable inside the displayed range (zero gradient where clipped).

    References:
        Szabo, *Diagnostic Ultrasound Imaging: Inside Out*, 2nd ed., 2014, ch. 10;
        Wagner et al., IEEE Trans. Sonics Ultrason. 30(3), 1983.

    Examples:
        >>> import torch
        >>> y = LogCompression(dynamic_range_db=60)(torch.tensor([[[[1.0, 0.1, 1e-4]]]]))
        >>> [round(v, 3) for v in y.flatten().tolist()]
        [1.0, 0.667, 0.0]
    """

    modality = "ultrasound"
    dims = (2,)
    differentiable = True
    severity_table = {
        1: {"dynamic_range_db": (28.0, 32.0)},
        2: {"dynamic_range_db": (37.0, 43.0)},
        3: {"dynamic_range_db": (46.0, 54.0)},
        4: {"dynamic_range_db": (55.0, 65.0)},
        5: {"dynamic_range_db": (70.0, 90.0)},
    }

    def __init__(
        self,
        dynamic_range_db: float | tuple[float, float] = (40.0, 80.0),
        *,
        reference: float = 1.0,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.dynamic_range_db = check_range(
            dynamic_range_db, "dynamic_range_db", low=0.0, low_inclusive=False, high=200.0, unit="dB"
        )
        self.reference = check_range(reference, "reference", low=0.0, low_inclusive=False)[0]

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        return {"dynamic_range_db": self.uniform(self.dynamic_range_db, x.shape[0], generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        dr = params["dynamic_range_db"].to(device=x.device, dtype=x.dtype)
        return F.log_compression(x, dr, self.reference)

    @classmethod
    def example_input(cls, dims: int = 2, batch: int = 2, size: int = 64) -> Tensor:
        """Envelope images of the built-in ultrasound phantom."""
        return _phantom_batch("envelope", dims, batch, size)

    def _repr_args(self) -> dict[str, Any]:
        return {"dynamic_range_db": self.dynamic_range_db}


class _BeamGain(_UltrasoundTransform):
    """Shared implementation of AcousticShadow and Enhancement."""

    differentiable = True
    _sign = -1.0

    def __init__(
        self,
        gain_db: float | tuple[float, float],
        depth: float | tuple[float, float] = (0.2, 0.6),
        center: float | tuple[float, float] = (0.2, 0.8),
        width: float | tuple[float, float] = (0.1, 0.3),
        *,
        edge_px: float = 2.0,
        spacing_mm: float | tuple[float, float] = 0.15,
        apex_mm: float | None = None,
        domain: str = "envelope",
        dynamic_range_db: float = 60.0,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(
            spacing_mm=spacing_mm, apex_mm=apex_mm, domain=domain,
            dynamic_range_db=dynamic_range_db, p=p, seed=seed, spatial_dims=spatial_dims,
        )
        name = "attenuation_db" if self._sign < 0 else "gain_db"
        self.gain_db = check_range(gain_db, name, low=0.0, high=120.0, unit="dB")
        self.depth = check_range(depth, "depth", low=0.0, high=1.0)
        self.center = check_range(center, "center", low=0.0, high=1.0)
        self.width = check_range(width, "width", low=0.0, high=1.0)
        self.edge_px = check_range(edge_px, "edge_px", low=0.0, low_inclusive=False, high=1e3)[0]

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        return {
            "gain_db": self._sign * self.uniform(self.gain_db, n, generator),
            "depth": self.uniform(self.depth, n, generator),
            "center": self.uniform(self.center, n, generator),
            "width": self.uniform(self.width, n, generator),
        }

    def _apply_envelope(self, x: Tensor, params: Params) -> Tensor:
        return F.acoustic_shadow(
            x, params["gain_db"], params["depth"], params["center"], params["width"],
            spacing_mm=self.spacing_mm, apex_mm=self.apex_mm, edge_px=self.edge_px,
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"gain_db": self.gain_db, "depth": self.depth, "width": self.width}


@register
class AcousticShadow(_BeamGain):
    """Acoustic shadow: echoes distal to a strongly attenuating or reflecting source are weaker.

    A calcification, stone, bone or gas reflects or absorbs most of the beam, so every beam line
    through the source returns echoes from beyond it attenuated by ``A`` dB (round trip);
    tissue proximal to the source and beams beside it are unaffected. The source spans ``width``
    (fraction of the image width) centred at ``center``, at depth ``depth`` (fraction of height).

    $$ y = x \\cdot 10^{-A\\, w(d, u) / 20},\\quad w = \\mathbb 1[d > d_0]\\,
    \\mathbb 1[|u - u_0| < W/2] \\text{ (cosine-tapered over edge\\_px)} $$

    Args:
        attenuation_db: ``A`` in dB (> 0 darkens); scalar or ``(lo, hi)`` sampled uniformly.
        depth: Source depth, fraction of the image height; scalar or range.
        center: Lateral source centre, fraction of the image width; scalar or range.
        width: Source width, fraction of the image width; scalar or range.
        edge_px: Width of the cosine taper at the shadow's lateral edges and onset, in pixels.
        spacing_mm: Pixel size in mm, a float or ``(axial, lateral)``.
        apex_mm: ``None`` for a linear probe; the virtual apex distance above the image in mm for a
            sector/convex probe (0 = phased array), whose beam lines are rays from the apex.
        domain: ``"envelope"`` (linear amplitude, default) or ``"bmode"`` (log-compressed input:
            decompressed with ``dynamic_range_db``, corrupted, compressed again).
        dynamic_range_db: Display dynamic range for ``domain="bmode"``.
        p: Probability of applying, per sample.
        seed: Private seed (see :class:`~robustaug.core.transform.Transform`).
        spatial_dims: Only 2 is supported (B-mode images).

    Severity:
        | level | attenuation (dB) | width (fraction) |
        |---|---|---|
        | 1 | 3 | 0.10 |
        | 2 | 6 | 0.15 |
        | 3 | 12 | 0.20 |
        | 4 | 20 | 0.25 |
        | 5 | 30 | 0.30 |

        Partial shadows behind fibrous or fatty tissue lose a few dB; "clean" shadows behind
        calcifications, stones and bone lose 20-40 dB (bone attenuates ~20 dB/cm/MHz).

    Convention:
        Envelope domain by default; 2D; depth along H (linear) or along rays (``apex_mm``).
        Records ``gain_db`` (negative), ``depth``, ``center``, ``width``. Differentiable.

    References:
        Kremkau & Taylor, "Artifacts in ultrasound imaging", J. Ultrasound Med. 5(4), 1986;
        Feldman et al., "US artifacts", RadioGraphics 29(4), 2009; Szabo 2014, ch. 4 (attenuation).

    Examples:
        >>> import torch
        >>> t = AcousticShadow(attenuation_db=20.0, depth=0.5, center=0.5, width=0.5)
        >>> y = t(torch.ones(1, 1, 64, 64))
        >>> round(float(y[0, 0, 60, 32]), 3), float(y[0, 0, 10, 32])
        (0.1, 1.0)
    """

    severity_table = {
        1: {"attenuation_db": 3.0, "width": 0.1},
        2: {"attenuation_db": 6.0, "width": 0.15},
        3: {"attenuation_db": 12.0, "width": 0.2},
        4: {"attenuation_db": 20.0, "width": 0.25},
        5: {"attenuation_db": 30.0, "width": 0.3},
    }

    def __init__(
        self,
        attenuation_db: float | tuple[float, float] = (6.0, 30.0),
        depth: float | tuple[float, float] = (0.2, 0.6),
        center: float | tuple[float, float] = (0.2, 0.8),
        width: float | tuple[float, float] = (0.1, 0.3),
        **kwargs: Any,
    ) -> None:
        super().__init__(attenuation_db, depth, center, width, **kwargs)


@register
class Enhancement(_BeamGain):
    """Posterior acoustic enhancement: echoes distal to a weakly attenuating region are brighter.

    Fluid (cysts, bladder, gallbladder) attenuates far less than soft tissue (about 0.002 vs
    0.5 dB/cm/MHz), but the TGC assumes tissue, so beams through the fluid return echoes from
    beyond it ``G`` dB too bright. A 1 cm cyst at 5 MHz gives about 5 dB.

    $$ y = x \\cdot 10^{+G\\, w(d, u) / 20} $$

    with the same distal beam-line window ``w`` as :class:`AcousticShadow`.

    Args:
        gain_db: ``G`` in dB (> 0 brightens); scalar or ``(lo, hi)`` sampled uniformly.
        depth: Depth of the fluid region's distal wall, fraction of the image height.
        center: Lateral centre, fraction of the image width.
        width: Width, fraction of the image width.
        edge_px: Width of the cosine taper, in pixels.
        spacing_mm: Pixel size in mm, a float or ``(axial, lateral)``.
        apex_mm: ``None`` for a linear probe; the virtual apex distance above the image in mm for a
            sector/convex probe (0 = phased array), whose beam lines are rays from the apex.
        domain: ``"envelope"`` (linear amplitude, default) or ``"bmode"`` (log-compressed input:
            decompressed with ``dynamic_range_db``, corrupted, compressed again).
        dynamic_range_db: Display dynamic range for ``domain="bmode"``.
        p: Probability of applying, per sample.
        seed: Private seed (see :class:`~robustaug.core.transform.Transform`).
        spatial_dims: Only 2 is supported (B-mode images).

    Severity:
        | level | gain (dB) | width (fraction) |
        |---|---|---|
        | 1 | 2 | 0.10 |
        | 2 | 4 | 0.15 |
        | 3 | 6 | 0.20 |
        | 4 | 9 | 0.25 |
        | 5 | 12 | 0.30 |

        2 alpha f L for a fluid path L = 0.4-2.4 cm at 5 MHz in 0.5 dB/cm/MHz tissue.

    Convention:
        Envelope domain by default; not clipped (values may exceed 1; LogCompression clips).
        Records ``gain_db`` (positive), ``depth``, ``center``, ``width``. Differentiable.

    References:
        Kremkau & Taylor, J. Ultrasound Med. 5(4), 1986; Feldman et al., RadioGraphics 29(4), 2009.

    Examples:
        >>> import torch
        >>> y = Enhancement(gain_db=6.0, depth=0.5, center=0.5, width=0.5)(torch.ones(1, 1, 64, 64))
        >>> round(float(y[0, 0, 60, 32]), 3)
        1.995
    """

    _sign = 1.0
    severity_table = {
        1: {"gain_db": 2.0, "width": 0.1},
        2: {"gain_db": 4.0, "width": 0.15},
        3: {"gain_db": 6.0, "width": 0.2},
        4: {"gain_db": 9.0, "width": 0.25},
        5: {"gain_db": 12.0, "width": 0.3},
    }

    def __init__(
        self,
        gain_db: float | tuple[float, float] = (2.0, 9.0),
        depth: float | tuple[float, float] = (0.2, 0.6),
        center: float | tuple[float, float] = (0.2, 0.8),
        width: float | tuple[float, float] = (0.1, 0.3),
        **kwargs: Any,
    ) -> None:
        super().__init__(gain_db, depth, center, width, **kwargs)


@register
class DepthAttenuation(_UltrasoundTransform):
    """Depth-dependent attenuation with an optional wrong time-gain compensation (TGC).

    Soft tissue attenuates amplitude by ``alpha f`` dB/cm one way (alpha ~ 0.5 dB/cm/MHz), so an
    echo from depth ``d`` returns ``2 alpha f d`` dB weaker. The scanner's TGC normally restores
    it; here a fraction ``compensation`` is restored (1 = perfect TGC = identity, 0 = none) and
    ``tgc_error_db`` adds operator slider errors: ``num_sliders`` gains at equally spaced depths,
    each N(0, tgc_error_db^2) dB, linearly interpolated.

    $$ y = x \\cdot 10^{[-(1 - c)\\, 2\\alpha f d + s(d)] / 20} $$

    Args:
        alpha_db_cm_mhz: ``alpha`` in dB/cm/MHz; scalar or ``(lo, hi)`` sampled uniformly.
        freq_mhz: Centre frequency ``f`` in MHz; scalar or range.
        compensation: TGC compensation fraction ``c`` in [0, 1]; scalar or range.
        tgc_error_db: Standard deviation of the slider errors in dB (0 = none); scalar or range.
        num_sliders: Number of TGC sliders (typically 8).
        spacing_mm: Pixel size in mm, a float or ``(axial, lateral)``.
        apex_mm: ``None`` for a linear probe; the virtual apex distance above the image in mm for a
            sector/convex probe (0 = phased array), whose beam lines are rays from the apex.
        domain: ``"envelope"`` (linear amplitude, default) or ``"bmode"`` (log-compressed input:
            decompressed with ``dynamic_range_db``, corrupted, compressed again).
        dynamic_range_db: Display dynamic range for ``domain="bmode"``.
        p: Probability of applying, per sample.
        seed: Private seed (see :class:`~robustaug.core.transform.Transform`).
        spatial_dims: Only 2 is supported (B-mode images).

    Severity:
        | level | alpha (dB/cm/MHz) | f (MHz) | compensation | slider error (dB) |
        |---|---|---|---|---|
        | 1 | 0.5 | 7.5 | 0.8 | 0.5 |
        | 2 | 0.5 | 7.5 | 0.6 | 1.0 |
        | 3 | 0.5 | 7.5 | 0.4 | 2.0 |
        | 4 | 0.5 | 7.5 | 0.2 | 3.0 |
        | 5 | 0.5 | 7.5 | 0.0 | 4.0 |

        alpha = 0.5 dB/cm/MHz is the soft-tissue average (liver 0.5-0.94, muscle 1.1; Szabo 2014,
        Table 4.1; Goss et al. 1978); 7.5 MHz is a linear probe.

    Convention:
        Envelope domain by default; depth from the top row (linear) or along rays (``apex_mm``).
        The mean log-intensity slope against depth is ``-(1 - c) 2 alpha f`` dB/cm. Records
        ``alpha_db_cm_mhz``, ``freq_mhz``, ``compensation`` and ``tgc_offsets_db`` ``(B, K)``.
        Differentiable.

    References:
        Szabo, *Diagnostic Ultrasound Imaging: Inside Out*, 2nd ed., 2014, ch. 4; Goss, Johnston &
        Dunn, "Comprehensive compilation of empirical ultrasonic properties of mammalian tissues",
        JASA 64(2), 1978; Kremkau & Taylor, J. Ultrasound Med. 5(4), 1986.

    Examples:
        >>> import torch
        >>> t = DepthAttenuation(alpha_db_cm_mhz=0.5, freq_mhz=5.0, compensation=0.0, tgc_error_db=0.0,
        ...                      spacing_mm=1.0)
        >>> y = t(torch.ones(1, 1, 21, 4))
        >>> round(20 * float(torch.log10(y[0, 0, 10, 0] / y[0, 0, 0, 0])), 2)  # 1 cm deeper
        -5.0
    """

    differentiable = True
    severity_table = {
        1: {"compensation": 0.8, "tgc_error_db": 0.5},
        2: {"compensation": 0.6, "tgc_error_db": 1.0},
        3: {"compensation": 0.4, "tgc_error_db": 2.0},
        4: {"compensation": 0.2, "tgc_error_db": 3.0},
        5: {"compensation": 0.0, "tgc_error_db": 4.0},
    }

    def __init__(
        self,
        alpha_db_cm_mhz: float | tuple[float, float] = 0.5,
        freq_mhz: float | tuple[float, float] = 7.5,
        compensation: float | tuple[float, float] = (0.0, 0.8),
        tgc_error_db: float | tuple[float, float] = (0.0, 3.0),
        *,
        num_sliders: int = 8,
        spacing_mm: float | tuple[float, float] = 0.15,
        apex_mm: float | None = None,
        domain: str = "envelope",
        dynamic_range_db: float = 60.0,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(
            spacing_mm=spacing_mm, apex_mm=apex_mm, domain=domain,
            dynamic_range_db=dynamic_range_db, p=p, seed=seed, spatial_dims=spatial_dims,
        )
        self.alpha_db_cm_mhz = check_range(
            alpha_db_cm_mhz, "alpha_db_cm_mhz", low=0.0, high=50.0, unit="dB/cm/MHz"
        )
        self.freq_mhz = check_range(freq_mhz, "freq_mhz", low=0.0, low_inclusive=False, high=100.0, unit="MHz")
        self.compensation = check_range(compensation, "compensation", low=0.0, high=1.0)
        self.tgc_error_db = check_range(tgc_error_db, "tgc_error_db", low=0.0, high=40.0, unit="dB")
        self.num_sliders = check_int(num_sliders, "num_sliders", low=1, high=64)

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        a = self.uniform(self.alpha_db_cm_mhz, n, generator)
        f = self.uniform(self.freq_mhz, n, generator)
        c = self.uniform(self.compensation, n, generator)
        s = self.uniform(self.tgc_error_db, n, generator)
        z = torch.randn(n, self.num_sliders, generator=generator, dtype=torch.float64)
        return {
            "alpha_db_cm_mhz": a,
            "freq_mhz": f,
            "compensation": c,
            "tgc_offsets_db": z * s[:, None],
        }

    def _apply_envelope(self, x: Tensor, params: Params) -> Tensor:
        return F.depth_attenuation(
            x, params["alpha_db_cm_mhz"], params["freq_mhz"], params["compensation"],
            params["tgc_offsets_db"], spacing_mm=self.spacing_mm, apex_mm=self.apex_mm,
        )

    def _repr_args(self) -> dict[str, Any]:
        return {
            "alpha_db_cm_mhz": self.alpha_db_cm_mhz,
            "freq_mhz": self.freq_mhz,
            "compensation": self.compensation,
            "tgc_error_db": self.tgc_error_db,
        }


@register
class Reverberation(_UltrasoundTransform):
    """Reverberation: equally spaced copies of a bright interface at multiples of its depth.

    Sound bouncing between the probe face and a strong specular reflector at depth ``d_0`` (fascia,
    pleura, a needle, the anterior wall of a cyst) returns after extra round trips; the scanner
    places the ``k``-th copy at depth ``(k + 1) d_0`` along the same beam, ``k * decay_db`` dB
    weaker (A-lines in lung ultrasound, comet-tail artifacts for close spacing). The interface is
    the input's own band at ``d_0``, copied along the beam lines and added to the envelope.

    $$ y = x + \\sum_{k=1}^{K} 10^{-k\\,\\delta / 20}\\ S_{k d_0}\\big[x\\, g_{d_0}\\big] $$

    Args:
        decay_db: Loss per extra round trip ``delta`` in dB; scalar or ``(lo, hi)``.
        num_echoes: Number of copies ``K``.
        interface_depth: Interface depth as a fraction of the image height (scalar or range); ``None``
            detects the brightest row (lateral mean inside the window) between 8 % and 45 % of the
            depth, so the copies land inside the image.
        center: Lateral centre of the reverberating region, fraction of the width; scalar or range.
        width: Lateral extent, fraction of the width; scalar or range.
        thickness_px: Depth window (Gaussian sigma, pixels) taken as the interface.
        spacing_mm: Pixel size in mm, a float or ``(axial, lateral)``.
        apex_mm: ``None`` for a linear probe; the virtual apex distance above the image in mm for a
            sector/convex probe (0 = phased array), whose beam lines are rays from the apex.
        domain: ``"envelope"`` (linear amplitude, default) or ``"bmode"`` (log-compressed input:
            decompressed with ``dynamic_range_db``, corrupted, compressed again).
        dynamic_range_db: Display dynamic range for ``domain="bmode"``.
        p: Probability of applying, per sample.
        seed: Private seed (see :class:`~robustaug.core.transform.Transform`).
        spatial_dims: Only 2 is supported (B-mode images).

    Severity:
        | level | decay per bounce (dB) | echoes | width (fraction) |
        |---|---|---|---|
        | 1 | 12 | 2 | 0.3 |
        | 2 | 9 | 3 | 0.4 |
        | 3 | 6 | 4 | 0.5 |
        | 4 | 4 | 5 | 0.6 |
        | 5 | 3 | 6 | 0.7 |

        Strong reflectors (pleura, metal) reflect most of the energy, so A-line copies decay by only
        a few dB per bounce; weak fascia reverberations fade within 1-2 copies.

    Convention:
        Envelope domain by default; echoes along columns (linear) or rays (``apex_mm``); added,
        not clipped. Records ``interface_depth``, ``center``, ``width``, ``decay_db``.
        Differentiable w.r.t. ``x`` for fixed params.

    References:
        Kremkau & Taylor, "Artifacts in ultrasound imaging", J. Ultrasound Med. 5(4), 1986;
        Lichtenstein, "Lung ultrasound in the critically ill", Ann. Intensive Care 4, 2014 (A-lines).

    Examples:
        >>> import torch
        >>> x = torch.zeros(1, 1, 64, 16); x[0, 0, 10] = 1.0
        >>> t = Reverberation(decay_db=6.0, num_echoes=2, interface_depth=10.5 / 64, width=1.0, center=0.5)
        >>> y = t(x)
        >>> int(y[0, 0, 15:26, 8].argmax()) + 15, int(y[0, 0, 26:40, 8].argmax()) + 26
        (20, 31)
    """

    differentiable = True
    severity_table = {
        1: {"decay_db": 12.0, "num_echoes": 2, "width": 0.3},
        2: {"decay_db": 9.0, "num_echoes": 3, "width": 0.4},
        3: {"decay_db": 6.0, "num_echoes": 4, "width": 0.5},
        4: {"decay_db": 4.0, "num_echoes": 5, "width": 0.6},
        5: {"decay_db": 3.0, "num_echoes": 6, "width": 0.7},
    }

    def __init__(
        self,
        decay_db: float | tuple[float, float] = (3.0, 12.0),
        num_echoes: int = 3,
        interface_depth: float | tuple[float, float] | None = None,
        center: float | tuple[float, float] = (0.3, 0.7),
        width: float | tuple[float, float] = (0.3, 0.7),
        *,
        thickness_px: float = 1.5,
        spacing_mm: float | tuple[float, float] = 0.15,
        apex_mm: float | None = None,
        domain: str = "envelope",
        dynamic_range_db: float = 60.0,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(
            spacing_mm=spacing_mm, apex_mm=apex_mm, domain=domain,
            dynamic_range_db=dynamic_range_db, p=p, seed=seed, spatial_dims=spatial_dims,
        )
        self.decay_db = check_range(decay_db, "decay_db", low=0.0, high=100.0, unit="dB")
        self.num_echoes = check_int(num_echoes, "num_echoes", low=1, high=32)
        self.interface_depth = (
            None if interface_depth is None else check_range(interface_depth, "interface_depth", low=0.0, high=1.0)
        )
        self.center = check_range(center, "center", low=0.0, high=1.0)
        self.width = check_range(width, "width", low=0.0, high=1.0)
        self.thickness_px = check_range(thickness_px, "thickness_px", low=0.0, low_inclusive=False)[0]

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        decay = self.uniform(self.decay_db, n, generator)
        center = self.uniform(self.center, n, generator)
        width = self.uniform(self.width, n, generator)
        if self.interface_depth is not None:
            depth = self.uniform(self.interface_depth, n, generator)
        else:
            cols = torch.arange(w, dtype=torch.float64)
            lo, hi = int(0.08 * h), max(int(0.08 * h) + 1, int(0.45 * h))
            prof = x.detach().to(torch.float64).mean(1).cpu()  # (B, H, W)
            depth = torch.empty(n, dtype=torch.float64)
            for i in range(n):
                c0, half = float(center[i]) * w, max(float(width[i]) * w / 2, 0.5)
                win = ((cols + 0.5 - c0).abs() <= half).to(torch.float64)
                row = (prof[i] * win).sum(1)[lo:hi]
                depth[i] = (lo + int(row.argmax()) + 0.5) / h
        return {"interface_depth": depth, "center": center, "width": width, "decay_db": decay}

    def _apply_envelope(self, x: Tensor, params: Params) -> Tensor:
        return F.reverberation(
            x, params["interface_depth"], params["center"], params["width"], params["decay_db"],
            self.num_echoes, thickness_px=self.thickness_px, spacing_mm=self.spacing_mm,
            apex_mm=self.apex_mm,
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"decay_db": self.decay_db, "num_echoes": self.num_echoes}
