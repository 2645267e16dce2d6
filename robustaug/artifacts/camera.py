"""Camera-based imaging artifacts (fundus, dermatoscopy, endoscopy) and generic pixel degradations.

Camera artifacts take RGB (or grey) images ``(B, C, H, W)`` in [0, 1]. ``uint8`` inputs are read
as 0..255 = [0, 1] and returned as uint8. The generic completions :class:`Pixelate`,
:class:`SaltPepper` and :class:`Quantization` (modality ``"any"``) also take volumes.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..core.checks import check_choice, check_int, check_range
from ..core.registry import register
from ..core.rng import sample_seeds
from ..core.transform import Params, Transform
from ..functional import camera as F

__all__ = [
    "Overlay",
    "Pixelate",
    "Quantization",
    "SaltPepper",
    "SpecularHighlight",
    "UnevenIllumination",
    "Vignetting",
]


class UnitRangeUint8:
    """Mixin for [0, 1]-domain transforms: ``uint8`` input is read as 0..255 = [0, 1] and back.

    The base Transform computes integer inputs in float32 at their raw values; transforms whose
    model assumes [0, 1] intensities (transmission, display values) set
    :attr:`~robustaug.core.transform.Transform.uint8_unit_range` so 0..255 is read as [0, 1] and
    the result is rounded back to uint8.
    """

    uint8_unit_range: ClassVar[bool] = True


def _fundus(dims: int, batch: int, size: int) -> Tensor:
    from ..data.fundus import fundus_image

    if dims != 2:
        raise ValueError(f"Camera artifacts are 2D; got dims={dims}.")
    imgs = [fundus_image((size, size), seed=i)["image"] for i in range(batch)]
    return torch.stack(imgs) if imgs else torch.zeros((0, 3, size, size))


class _Camera(UnitRangeUint8, Transform):
    modality = "camera"
    dims = (2,)

    @classmethod
    def example_input(cls, dims: int = 2, batch: int = 2, size: int = 64) -> Tensor:
        """Fundus-like RGB images from :func:`robustaug.data.fundus.fundus_image`."""
        return _fundus(dims, batch, size)


@register
class Vignetting(_Camera):
    """Vignetting: radial fall-off of image brightness (lens cos^4 law or a polynomial).

    Off-axis image points receive less light: for an ideal thin lens the irradiance falls as
    ``cos^4`` of the field angle (natural vignetting), and barrels, apertures and ring lights of
    fundus cameras, dermatoscopes and endoscopes add more. The fall-off is set by the relative
    illumination at the image corner.

    $$ y = x\\, g(r),\\quad g_{\\cos^4}(r) = \\cos^4(\\arctan(r/f)) = (1 + k r^2)^{-2},\\
    k = g_c^{-1/2} - 1;\\quad g_{poly}(r) = 1 + a_2 r^2 + a_4 r^4 + a_6 r^6 $$

    with ``r`` the distance from the (shifted) optical centre divided by the half-diagonal.

    Args:
        corner_gain: Relative illumination ``g_c`` at the corner (1 = none); scalar or range.
        law: ``"cos4"`` or ``"poly"``.
        poly_coeffs: ``(a2, a4, a6)`` for ``law="poly"``; ``None`` uses ``a2 = g_c - 1``.
        center_shift: Max shift of the optical centre from the image centre (fraction of H, W).
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Only 2 is supported.

    Severity:
        | level | corner gain |
        |---|---|
        | 1 | 0.80 |
        | 2 | 0.65 |
        | 3 | 0.50 |
        | 4 | 0.35 |
        | 5 | 0.20 |

        Camera lenses show 0.5-1 stop (0.7-0.5) at the corners wide open; ring-lit dermatoscopes
        and endoscopes fall further (Kang & Weiss 2000; Zheng et al. 2009).

    Convention:
        [0, 1] images, any channel count. Records ``corner_gain`` and ``center`` ``(B, 2)``.
        Differentiable.

    References:
        Kang & Weiss, "Can we calibrate a camera using an image of a flat, textureless Lambertian
        surface?", ECCV 2000; Zheng et al., "Single-image vignetting correction", IEEE TPAMI 31(12),
        2009; Hecht, *Optics*, 5th ed. (cos^4 law).

    Examples:
        >>> import torch
        >>> y = Vignetting(corner_gain=0.5, center_shift=0.0)(torch.ones(1, 1, 64, 64))
        >>> round(float(y[0, 0, 0, 0]), 2), round(float(y[0, 0, 32, 32]), 2)
        (0.51, 1.0)
    """

    differentiable = True
    severity_table = {
        1: {"corner_gain": 0.8},
        2: {"corner_gain": 0.65},
        3: {"corner_gain": 0.5},
        4: {"corner_gain": 0.35},
        5: {"corner_gain": 0.2},
    }

    def __init__(
        self,
        corner_gain: float | tuple[float, float] = (0.3, 0.9),
        *,
        law: str = "cos4",
        poly_coeffs: tuple[float, float, float] | None = None,
        center_shift: float = 0.05,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.corner_gain = check_range(corner_gain, "corner_gain", low=0.0, low_inclusive=False, high=1.0)
        self.law = check_choice(law, "law", ("cos4", "poly"))
        if poly_coeffs is not None:
            poly_coeffs = tuple(float(c) for c in poly_coeffs)  # type: ignore[assignment]
            if len(poly_coeffs) != 3:  # type: ignore[arg-type]
                raise ValueError(f"`poly_coeffs` must be (a2, a4, a6), got {poly_coeffs!r}.")
        self.poly_coeffs = poly_coeffs
        self.center_shift = check_range(center_shift, "center_shift", low=0.0, high=0.5)[0]

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        shift = (torch.rand(n, 2, generator=generator, dtype=torch.float64) * 2 - 1) * self.center_shift
        return {"corner_gain": self.uniform(self.corner_gain, n, generator), "center": 0.5 + shift}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        coeffs = None
        if self.law == "poly" and self.poly_coeffs is not None:
            coeffs = torch.tensor(self.poly_coeffs, dtype=x.dtype).expand(x.shape[0], 3)
        return F.vignetting(x, params["corner_gain"], params["center"], self.law, coeffs)

    def _repr_args(self) -> dict[str, Any]:
        return {"corner_gain": self.corner_gain, "law": self.law}


@register
class UnevenIllumination(_Camera):
    """Uneven illumination: a smooth multiplicative light field (off-axis lamp, hot spot, tilt).

    Fundus flash and endoscope/dermatoscope LEDs light the scene unevenly: a gradient across the
    field plus a brighter spot. The field is a random smooth surface (quadratic polynomial plus a
    Gaussian spot) scaled so that the brightest/darkest illumination ratio is ``ratio``.

    $$ y = x\\, g,\\quad \\log g = \\ln(\\rho)\\ \\frac{f - (\\max f + \\min f)/2}{\\max f - \\min f} $$

    Args:
        ratio: Max/min illumination ``rho`` (1 = uniform); scalar or ``(lo, hi)``.
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Only 2 is supported.

    Severity:
        | level | max/min ratio |
        |---|---|
        | 1 | 1.2 |
        | 2 | 1.5 |
        | 3 | 2.0 |
        | 4 | 3.0 |
        | 5 | 4.5 |

        Fundus images of acceptable quality show about 1.5-2x variation; poor ones more
        (Foracchia et al. 2005; Fu et al. 2019, EyeQ).

    Convention:
        [0, 1] images, not clipped. Records ``coeffs`` ``(B, 6)``, ``spot`` ``(B, 3)``, ``ratio``.
        Differentiable.

    References:
        Foracchia, Grisan & Ruggeri, "Luminosity and contrast normalization in retinal images",
        Med. Image Anal. 9(3), 2005; Fu et al., "Evaluation of retinal image quality assessment
        networks in different color-spaces", MICCAI 2019.

    Examples:
        >>> import torch
        >>> y = UnevenIllumination(ratio=2.0, seed=0)(torch.ones(1, 3, 32, 32))
        >>> round(float(y.max() / y.min()), 3)
        2.0
    """

    differentiable = True
    severity_table = {
        1: {"ratio": 1.2},
        2: {"ratio": 1.5},
        3: {"ratio": 2.0},
        4: {"ratio": 3.0},
        5: {"ratio": 4.5},
    }

    def __init__(
        self,
        ratio: float | tuple[float, float] = (1.2, 3.0),
        *,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.ratio = check_range(ratio, "ratio", low=1.0, high=1e3)

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        spot = torch.rand(n, 3, generator=generator, dtype=torch.float64)
        spot[:, 2] = 0.15 + 0.25 * spot[:, 2]
        return {
            "coeffs": torch.randn(n, 6, generator=generator, dtype=torch.float64),
            "spot": spot,
            "ratio": self.uniform(self.ratio, n, generator),
        }

    def apply(self, x: Tensor, params: Params) -> Tensor:
        g = F.illumination_field(
            tuple(x.shape[-2:]), params["coeffs"], params["spot"], params["ratio"], device=x.device, dtype=x.dtype
        )
        return x * g.unsqueeze(1)

    def _repr_args(self) -> dict[str, Any]:
        return {"ratio": self.ratio}


@register
class SpecularHighlight(_Camera):
    """Specular highlights: mirror reflections of the light source on wet or glossy tissue.

    Endoscopy (mucus), dermatoscopy (non-polarised, oily skin) and fundus (young retinas, the
    cornea) show small saturated white spots; inside them the sensor clips, so colour and texture
    are lost. Each spot is a flat-topped ellipse that blends the image toward white.

    $$ m = \\max_k e^{-(d_k/r_k)^4},\\quad y = x + s\\, m\\, (1 - x) $$

    Args:
        num_spots: Number of highlights per image.
        radius: Semi-minor radius as a fraction of the shorter edge; scalar or ``(lo, hi)``.
        intensity: Blend ``s`` toward white (1 saturates the cores); scalar or range.
        max_elongation: Largest axis ratio of the ellipses (drawn in [1, max]).
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Only 2 is supported.

    Severity:
        | level | spots | radius (fraction) | intensity |
        |---|---|---|---|
        | 1 | 2 | 0.015 | 0.8 |
        | 2 | 3 | 0.02 | 0.9 |
        | 3 | 5 | 0.025 | 1.0 |
        | 4 | 8 | 0.03 | 1.0 |
        | 5 | 12 | 0.035 | 1.0 |

        Highlights cover about 1-5 % of colonoscopy frames (Arnold et al. 2011).

    Convention:
        [0, 1] images; pixels outside every spot are unchanged. Records ``centers`` ``(B, K, 2)``,
        ``radius_px``, ``elongation``, ``angle`` (each ``(B, K)``) and ``intensity``. Differentiable.

    References:
        Arnold et al., "Automatic segmentation and inpainting of specular highlights for endoscopic
        imaging", EURASIP J. Image Video Process. 2010; Shafer, "Using color to separate reflection
        components", Color Res. Appl. 10(4), 1985 (dichromatic reflection model).

    Examples:
        >>> import torch
        >>> y = SpecularHighlight(num_spots=1, radius=0.2, intensity=1.0, seed=0)(torch.zeros(1, 3, 32, 32))
        >>> round(float(y.max()), 4), float(y[0, 0, 0, 0]) <= float(y.max())
        (1.0, True)
    """

    differentiable = True
    severity_table = {
        1: {"num_spots": 2, "radius": 0.015, "intensity": 0.8},
        2: {"num_spots": 3, "radius": 0.02, "intensity": 0.9},
        3: {"num_spots": 5, "radius": 0.025, "intensity": 1.0},
        4: {"num_spots": 8, "radius": 0.03, "intensity": 1.0},
        5: {"num_spots": 12, "radius": 0.035, "intensity": 1.0},
    }

    def __init__(
        self,
        num_spots: int = 4,
        radius: float | tuple[float, float] = (0.01, 0.04),
        intensity: float | tuple[float, float] = (0.8, 1.0),
        *,
        max_elongation: float = 3.0,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.num_spots = check_int(num_spots, "num_spots", low=1, high=256)
        self.radius = check_range(radius, "radius", low=0.0, low_inclusive=False, high=1.0)
        self.intensity = check_range(intensity, "intensity", low=0.0, high=1.0)
        self.max_elongation = check_range(max_elongation, "max_elongation", low=1.0, high=20.0)[0]

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n, k = x.shape[0], self.num_spots
        lo, hi = self.radius
        u = torch.rand(n, k, 3, generator=generator, dtype=torch.float64)
        return {
            "centers": 0.1 + 0.8 * torch.rand(n, k, 2, generator=generator, dtype=torch.float64),
            "radius_px": (lo + (hi - lo) * u[..., 0]) * min(x.shape[-2:]),
            "elongation": 1 + (self.max_elongation - 1) * u[..., 1],
            "angle": math.pi * u[..., 2],
            "intensity": self.uniform(self.intensity, n, generator),
        }

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.specular_highlight(
            x, params["centers"], params["radius_px"], params["intensity"], params["elongation"], params["angle"]
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"num_spots": self.num_spots, "radius": self.radius}


_OVERLAY_COLORS = {
    "white": (1.0, 1.0, 1.0),
    "yellow": (1.0, 0.95, 0.2),
    "green": (0.2, 1.0, 0.3),
    "black": (0.0, 0.0, 0.0),
}


@register
class Overlay(_Camera):
    """Burned-in overlays: text (patient/device annotations) and rulers drawn on the image.

    Dermatoscopy images often contain a ruler and device text, fundus and endoscopy frames carry
    burned-in timestamps and labels; models learn these as shortcuts (Winkler et al. 2019). Text
    uses a built-in 3x5 bitmap font (digits, a few capitals, ``: . / -``), rulers have a tick every
    ``tick_fraction`` of the width and numbered major ticks; no font files are needed.

    $$ y = x\\,(1 - a\\, m) + a\\, m\\, c $$

    Args:
        kind: ``"text"``, ``"ruler"``, ``"both"`` or ``"random"`` (one of the three per sample).
        num_chars: Length of the burned-in string.
        scale: Font cell size in pixels; ``None`` scales with the image (1 px per 48 px of edge).
        opacity: Blend ``a``; scalar or ``(lo, hi)``.
        colors: Colours to draw from (``"white"``, ``"yellow"``, ``"green"``, ``"black"``).
        tick_fraction: Ruler tick spacing as a fraction of the image width.
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Only 2 is supported.

    Severity:
        | level | kind | characters | opacity |
        |---|---|---|---|
        | 1 | text | 4 | 0.5 |
        | 2 | text | 8 | 0.7 |
        | 3 | ruler | 8 | 0.85 |
        | 4 | both | 10 | 1.0 |
        | 5 | both | 16 | 1.0 |

        MedMNIST-C's dermatoscopy ``characters`` corruption grows the amount of burned-in text
        over its 5 levels.

    Convention:
        [0, 1] images (grey images use the colour's mean). Records ``kind`` (0 text, 1 ruler,
        2 both), ``text`` codes ``(B, L)``, ``position`` ``(B, 2)``, ``color`` ``(B, 3)``,
        ``opacity``. Differentiable w.r.t. ``x``.

    References:
        Winkler et al., "Association between surgical skin markings in dermoscopic images and
        diagnostic performance of a deep learning CNN", JAMA Dermatol. 155(10), 2019;
        Di Salvo et al., "MedMNIST-C", MICCAI-W ADSMI 2024.

    Examples:
        >>> import torch
        >>> t = Overlay(kind="text", num_chars=4, opacity=1.0, colors=("white",), seed=0)
        >>> y = t(torch.zeros(1, 3, 48, 48))
        >>> 0 < float((y[0, 0] == 1).float().mean()) < 0.2
        True
    """

    differentiable = True
    severity_table = {
        1: {"kind": "text", "num_chars": 4, "opacity": 0.5},
        2: {"kind": "text", "num_chars": 8, "opacity": 0.7},
        3: {"kind": "ruler", "num_chars": 8, "opacity": 0.85},
        4: {"kind": "both", "num_chars": 10, "opacity": 1.0},
        5: {"kind": "both", "num_chars": 16, "opacity": 1.0},
    }
    _KINDS = ("text", "ruler", "both", "random")

    def __init__(
        self,
        kind: str = "random",
        num_chars: int = 8,
        *,
        scale: int | None = None,
        opacity: float | tuple[float, float] = (0.7, 1.0),
        colors: tuple[str, ...] = ("white", "yellow"),
        tick_fraction: float = 0.04,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.kind = check_choice(kind, "kind", self._KINDS)
        self.num_chars = check_int(num_chars, "num_chars", low=1, high=256)
        self.scale = None if scale is None else check_int(scale, "scale", low=1, high=64)
        self.opacity = check_range(opacity, "opacity", low=0.0, high=1.0)
        colors = (colors,) if isinstance(colors, str) else tuple(colors)
        bad = [c for c in colors if c not in _OVERLAY_COLORS]
        if not colors or bad:
            raise ValueError(f"`colors` must be a non-empty subset of {sorted(_OVERLAY_COLORS)}, got {colors!r}.")
        self.colors = colors
        self.tick_fraction = check_range(tick_fraction, "tick_fraction", low=0.0, low_inclusive=False, high=1.0)[0]

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        if self.kind == "random":
            kind = torch.randint(0, 3, (n,), generator=generator)
        else:
            kind = torch.full((n,), self._KINDS.index(self.kind), dtype=torch.int64)
        text = torch.randint(0, len(F.FONT_3X5) - 1, (n, self.num_chars), generator=generator)
        pos = torch.rand(n, 2, generator=generator, dtype=torch.float64) * torch.tensor([0.25, 0.3], dtype=torch.float64)
        pos = pos + 0.03
        cidx = torch.randint(0, len(self.colors), (n,), generator=generator)
        table = torch.tensor([_OVERLAY_COLORS[c] for c in self.colors], dtype=torch.float64)
        return {"kind": kind, "text": text, "position": pos, "color": table[cidx],
                "opacity": self.uniform(self.opacity, n, generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        h, w = x.shape[-2:]
        scale = self.scale or max(1, round(min(h, w) / 48))
        masks = torch.stack([
            F.render_overlay_mask((h, w), int(params["kind"][i]), params["text"][i], params["position"][i],
                                  scale, max(2.0, self.tick_fraction * w))
            for i in range(x.shape[0])
        ])
        return F.overlay(x, masks, params["color"], params["opacity"])

    def _repr_args(self) -> dict[str, Any]:
        return {"kind": self.kind, "num_chars": self.num_chars}


# ----------------------------------------------------------------------------- generic
@register
class Pixelate(Transform):
    """Pixelation: the image is averaged into coarse square blocks (low-resolution capture/zoom).

    $$ y(p) = \\frac{1}{|B(p)|}\\sum_{q \\in B(p)} x(q) $$

    with ``B(p)`` the cell of a ``block``-pixel grid with a random phase that contains ``p``
    (fractional blocks alternate ``floor``/``ceil`` cells, like a box-filtered resize).

    Args:
        block: Cell edge in pixels; scalar or ``(lo, hi)`` sampled uniformly.
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Resolves the 4D ambiguity.

    Severity:
        | level | block (pixels) |
        |---|---|
        | 1 | 1.8-2.2 |
        | 2 | 2.7-3.3 |
        | 3 | 3.6-4.4 |
        | 4 | 5.4-6.6 |
        | 5 | 7.2-8.8 |

        ImageNet-C ``pixelate`` resizes by 0.6-0.25 (blocks of 1.7-4 px on 224 px images);
        MedMNIST-C uses the same idea on 28-224 px images.

    Convention:
        Any range, 2D/3D, any channels. Records ``block`` and the grid ``phase`` ``(B, nd)`` in
        pixels.
        Differentiable (linear).

    References:
        Hendrycks & Dietterich, ICLR 2019; Di Salvo et al., MICCAI-W ADSMI 2024.

    Examples:
        >>> import torch
        >>> y = Pixelate(block=4.0, seed=0)(torch.rand(1, 1, 16, 16))
        >>> int(torch.unique(y).numel()) <= 25
        True
    """

    modality = "any"
    dims = (2, 3)
    differentiable = True
    severity_table = {
        1: {"block": (1.8, 2.2)},
        2: {"block": (2.7, 3.3)},
        3: {"block": (3.6, 4.4)},
        4: {"block": (5.4, 6.6)},
        5: {"block": (7.2, 8.8)},
    }

    def __init__(
        self,
        block: float | tuple[float, float] = (2.0, 6.0),
        *,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.block = check_range(block, "block", low=1.0, high=1024.0, unit="pixels")

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n, nd = x.shape[0], x.ndim - 2
        b = self.uniform(self.block, n, generator)
        phase = torch.rand(n, nd, generator=generator, dtype=torch.float64) * b[:, None]
        return {"block": b, "phase": phase}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        blocks = params["block"].tolist()
        phases = params["phase"].tolist()
        outs = [F.pixelate(x[i : i + 1], float(blocks[i]), phases[i]) for i in range(x.shape[0])]
        return torch.cat(outs) if outs else x

    def _repr_args(self) -> dict[str, Any]:
        return {"block": self.block}


@register
class SaltPepper(Transform):
    """Salt-and-pepper (impulse) noise: dead (stuck-low) and hot (stuck-high) pixels.

    Defective sensor elements, bit errors in transmission, or dust: a random fraction ``amount``
    of pixels is replaced, in every channel, by the low value (pepper) or the high value (salt).

    $$ y = \\begin{cases} v_{lo} & u < a(1 - s) \\\\ v_{hi} & u \\ge 1 - a s \\\\ x & \\text{else} \\end{cases},
    \\quad u \\sim U(0, 1) $$

    Args:
        amount: Fraction ``a`` of defective pixels; scalar or ``(lo, hi)``.
        salt_fraction: Fraction ``s`` of them that are hot; scalar or range.
        low: Dead-pixel value; ``None`` = each sample's minimum.
        high: Hot-pixel value; ``None`` = each sample's maximum.
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Resolves the 4D ambiguity.

    Severity:
        | level | amount |
        |---|---|
        | 1 | 0.01 |
        | 2 | 0.02 |
        | 3 | 0.04 |
        | 4 | 0.08 |
        | 5 | 0.15 |

        ImageNet-C impulse noise uses 0.03-0.27; MedMNIST-C 0.01-0.17 for dermatoscopy.

    Convention:
        Any range (values default to the sample's min/max), 2D/3D. Records ``amount``,
        ``salt_fraction``, ``low``, ``high`` and the noise ``seed``; a fresh mask each draw
        (unlike MedMNIST-C, whose fixed seed corrupts the same pixels every time).
        Differentiable w.r.t. the untouched pixels.

    References:
        Gonzalez & Woods, *Digital Image Processing*, 4th ed., §5.2 (impulse noise);
        Hendrycks & Dietterich, ICLR 2019.

    Examples:
        >>> import torch
        >>> y = SaltPepper(amount=0.1, low=0.0, high=1.0, seed=0)(torch.full((1, 1, 100, 100), 0.5))
        >>> 0.08 < float((y != 0.5).float().mean()) < 0.12
        True
    """

    modality = "any"
    dims = (2, 3)
    differentiable = True
    severity_table = {
        1: {"amount": 0.01},
        2: {"amount": 0.02},
        3: {"amount": 0.04},
        4: {"amount": 0.08},
        5: {"amount": 0.15},
    }

    def __init__(
        self,
        amount: float | tuple[float, float] = (0.005, 0.05),
        salt_fraction: float | tuple[float, float] = 0.5,
        *,
        low: float | None = None,
        high: float | None = None,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.amount = check_range(amount, "amount", low=0.0, high=1.0)
        self.salt_fraction = check_range(salt_fraction, "salt_fraction", low=0.0, high=1.0)
        self.low = None if low is None else check_range(low, "low")[0]
        self.high = None if high is None else check_range(high, "high")[0]

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        flat = x.detach().reshape(n, -1).to(torch.float64).cpu()
        lo = flat.amin(1) if self.low is None else torch.full((n,), self.low, dtype=torch.float64)
        hi = flat.amax(1) if self.high is None else torch.full((n,), self.high, dtype=torch.float64)
        return {
            "amount": self.uniform(self.amount, n, generator),
            "salt_fraction": self.uniform(self.salt_fraction, n, generator),
            "low": lo,
            "high": hi,
            "seed": sample_seeds(n, generator),
        }

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.salt_pepper(x, params["amount"], params["salt_fraction"], params["low"], params["high"], params["seed"])

    def _repr_args(self) -> dict[str, Any]:
        return {"amount": self.amount, "salt_fraction": self.salt_fraction}


@register
class Quantization(UnitRangeUint8, Transform):
    """Bit-depth reduction: intensities are quantised to ``2^bits`` grey levels.

    Low-bit ADCs, 8-bit exports of 12-16-bit data and aggressive storage formats produce
    contouring (banding) in smooth regions.

    $$ y = \\frac{\\mathrm{round}(x\\,(L - 1) + \\phi) - \\phi}{L - 1},\\quad L = \\mathrm{round}(2^{\\text{bits}}),
    \\ \\phi \\sim U(0, 1) $$

    ``phi`` is the converter's offset relative to its step grid (a fraction of one step).

    Args:
        bits: Effective bit depth; scalar or ``(lo, hi)`` sampled uniformly (the level count is
            ``2^bits`` rounded, so fractional depths give intermediate level counts).
        random_phase: Draw the converter offset ``phi`` uniformly (``False``: plain rounding).
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Resolves the 4D ambiguity.

    Severity:
        | level | bits (levels) |
        |---|---|
        | 1 | 5.5-6.5 (45-90) |
        | 2 | 4.5-5.5 (23-45) |
        | 3 | 3.5-4.5 (11-23) |
        | 4 | 2.5-3.5 (6-11) |
        | 5 | 1.5-2.5 (3-6) |

    Convention:
        Intensities in [0, 1] (clipped first; uint8 is read as 0..255). 2D/3D. Records ``bits``,
        ``levels`` and ``phase``. Not differentiable (rounding).

    References:
        Gonzalez & Woods, *Digital Image Processing*, 4th ed., §2.4 (false contouring).

    Examples:
        >>> import torch
        >>> y = Quantization(bits=1.0, random_phase=False)(torch.linspace(0, 1, 11).reshape(1, 1, 1, 11))
        >>> y.flatten().tolist()
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """

    modality = "any"
    dims = (2, 3)
    differentiable = False
    severity_table = {
        1: {"bits": (5.5, 6.5)},
        2: {"bits": (4.5, 5.5)},
        3: {"bits": (3.5, 4.5)},
        4: {"bits": (2.5, 3.5)},
        5: {"bits": (1.5, 2.5)},
    }

    def __init__(
        self,
        bits: float | tuple[float, float] = (3.0, 6.0),
        *,
        random_phase: bool = True,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.bits = check_range(bits, "bits", low=1.0, high=24.0)
        self.random_phase = bool(random_phase)

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        bits = self.uniform(self.bits, n, generator)
        phase = torch.rand(n, generator=generator, dtype=torch.float64)
        if not self.random_phase:
            phase = torch.zeros(n, dtype=torch.float64)
        return {"bits": bits, "levels": torch.round(2.0**bits), "phase": phase}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.quantize(x, params["levels"], params["phase"])

    def _repr_args(self) -> dict[str, Any]:
        return {"bits": self.bits}
