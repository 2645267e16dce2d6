"""Histopathology artifacts: stain variation, defocus, compression and slide/scanning defects.

Inputs are bright-field RGB tiles ``(B, 3, H, W)`` in [0, 1] (JPEGCompression and Defocus also take
grayscale or any channel count). Stain operations work in Beer-Lambert optical density
``OD = -log10(I)`` with the Ruifrok-Johnston stain vectors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..core.checks import check_choice, check_int, check_range
from ..core.registry import register
from ..core.rng import sample_seeds
from ..core.transform import Params, Transform
from ..functional import histology as F
from .camera import UnitRangeUint8

__all__ = [
    "Bubble",
    "Defocus",
    "HEDJitter",
    "InkMarker",
    "JPEGCompression",
    "StainMatrixPerturbation",
    "TileSeam",
    "TissueFold",
]


def _tiles(dims: int, batch: int, size: int) -> Tensor:
    from ..data.histology import he_tile

    if dims != 2:
        raise ValueError(f"Histology artifacts are 2D; got dims={dims}.")
    imgs = [he_tile((size, size), seed=i)["image"] for i in range(batch)]
    return torch.stack(imgs) if imgs else torch.zeros((0, 3, size, size))


def _require_rgb(x: Tensor, name: str) -> None:
    if x.shape[1] != 3:
        raise ValueError(
            f"{name} needs RGB input (B, 3, H, W); got {x.shape[1]} channel(s). "
            "Tip: stain operations are defined on bright-field RGB."
        )


class _Histology(UnitRangeUint8, Transform):
    modality = "histology"
    dims = (2,)

    @classmethod
    def example_input(cls, dims: int = 2, batch: int = 2, size: int = 64) -> Tensor:
        """H&E-like tiles from :func:`robustaug.data.histology.he_tile` (RGB in [0, 1])."""
        return _tiles(dims, batch, size)


@register
class HEDJitter(_Histology):
    """HED stain jitter: per-stain concentration scale and shift in Ruifrok-Johnston OD space.

    Staining protocols, section thickness and scanners change how much of each dye a slide shows.
    The RGB image is deconvolved into haematoxylin, eosin and DAB concentrations (Beer-Lambert OD
    projected on the stain vectors), each concentration is scaled and shifted, and the image is
    re-rendered.

    $$ c = OD\\,M^{-1},\\quad c'_s = \\alpha_s c_s + \\beta_s,\\quad
    \\alpha_s \\sim U(1 - \\sigma_\\alpha, 1 + \\sigma_\\alpha),\\ \\beta_s \\sim U(-\\sigma_\\beta, \\sigma_\\beta),
    \\quad I' = 10^{-c' M} $$

    Args:
        scale_sigma: ``sigma_alpha``; scalar, or ``(lo, hi)`` to sample sigma itself per sample.
        shift_sigma: ``sigma_beta`` in OD units; scalar or ``(lo, hi)``.
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Only 2 is supported.

    Severity:
        | level | scale sigma | shift sigma (OD) |
        |---|---|---|
        | 1 | 0.05 (HED-light) | 0.01 |
        | 2 | 0.10 | 0.02 |
        | 3 | 0.15 | 0.03 |
        | 4 | 0.20 (HED-strong) | 0.05 |
        | 5 | 0.30 | 0.08 |

        Scale ranges follow Tellez et al. (2019): HED-light +-0.05, HED-strong +-0.2. Shifts are
        expressed in OD along the unit stain vectors (0.05 OD tints glass by about 11 %).

    Convention:
        RGB in [0, 1]; output clipped to [0, 1]; sigma = 0 is the identity up to the OD floor
        (I >= 1e-6). Records ``alpha`` and ``beta``, each ``(B, 3)`` (H, E, DAB). Differentiable.

    References:
        Ruifrok & Johnston, "Quantification of histochemical staining by color deconvolution",
        Anal. Quant. Cytol. Histol. 23(4), 2001; Tellez et al., "Quantifying the effects of data
        augmentation and stain color normalization in convolutional neural networks for
        computational pathology", Med. Image Anal. 58, 2019.

    Examples:
        >>> import torch
        >>> x = torch.rand(2, 3, 16, 16) * 0.8 + 0.1
        >>> bool((HEDJitter(scale_sigma=0.0, shift_sigma=0.0)(x) - x).abs().max() < 1e-5)
        True
    """

    differentiable = True
    severity_table = {
        1: {"scale_sigma": 0.05, "shift_sigma": 0.01},
        2: {"scale_sigma": 0.10, "shift_sigma": 0.02},
        3: {"scale_sigma": 0.15, "shift_sigma": 0.03},
        4: {"scale_sigma": 0.20, "shift_sigma": 0.05},
        5: {"scale_sigma": 0.30, "shift_sigma": 0.08},
    }

    def __init__(
        self,
        scale_sigma: float | tuple[float, float] = 0.05,
        shift_sigma: float | tuple[float, float] = 0.01,
        *,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.scale_sigma = check_range(scale_sigma, "scale_sigma", low=0.0, high=1.0)
        self.shift_sigma = check_range(shift_sigma, "shift_sigma", low=0.0, high=2.0, unit="OD")

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        _require_rgb(x, "HEDJitter")
        n = x.shape[0]
        sa = self.uniform(self.scale_sigma, n, generator)[:, None]
        sb = self.uniform(self.shift_sigma, n, generator)[:, None]
        ua = torch.rand(n, 3, generator=generator, dtype=torch.float64) * 2 - 1
        ub = torch.rand(n, 3, generator=generator, dtype=torch.float64) * 2 - 1
        return {"alpha": 1 + sa * ua, "beta": sb * ub}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.hed_jitter(x, params["alpha"], params["beta"])

    def _repr_args(self) -> dict[str, Any]:
        return {"scale_sigma": self.scale_sigma, "shift_sigma": self.shift_sigma}


@register
class StainMatrixPerturbation(_Histology):
    """Perturb the slide's own (Macenko-estimated) H&E stain vectors and re-render.

    Stain hue differs between labs and dye batches. The two stain vectors of each image are
    estimated with Macenko's method (SVD plane of the tissue ODs, robust extreme angles), each
    vector is perturbed by Gaussian noise and renormalised, and the image is re-rendered with the
    same per-pixel concentrations (least squares on the estimated vectors; the residual OD is kept).

    $$ M' = \\mathrm{normalize}(M + \\sigma\\,\\varepsilon),\\ \\varepsilon \\sim \\mathcal N(0, I),
    \\quad OD' = OD + (OD\\,M^+)(M' - M) $$

    Args:
        sigma: Perturbation std per vector component (about the rotation in radians); scalar or
            ``(lo, hi)`` sampled uniformly.
        od_threshold: Background OD threshold of the Macenko estimate.
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Only 2 is supported.

    Severity:
        | level | sigma | typical hue rotation |
        |---|---|---|
        | 1 | 0.02 | 1 deg |
        | 2 | 0.04 | 2 deg |
        | 3 | 0.06 | 3.5 deg |
        | 4 | 0.09 | 5 deg |
        | 5 | 0.12 | 7 deg |

        Macenko vectors of the same stain vary by a few degrees across labs and scanners
        (e.g. the spread of stain vectors in Macenko et al. 2009 and Vahadane et al. 2016).

    Convention:
        RGB in [0, 1]. The estimate runs in ``sample_params`` and is recorded (``stain`` and
        ``new_stain``, each ``(B, 2, 3)``), so ``apply`` is a fixed, differentiable OD-space map and
        replays exactly. Tiles with fewer than 16 tissue pixels use the Ruifrok-Johnston vectors.

    References:
        Macenko et al., "A method for normalizing histology slides for quantitative analysis",
        ISBI 2009; Vahadane et al., "Structure-preserving color normalization and sparse stain
        separation for histological images", IEEE TMI 35(8), 2016.

    Examples:
        >>> import torch
        >>> from robustaug.data.histology import he_tile
        >>> x = he_tile((64, 64), seed=0)["image"][None]
        >>> t = StainMatrixPerturbation(sigma=0.0)
        >>> bool((t(x) - x).abs().max() < 1e-5)
        True
    """

    differentiable = True
    severity_table = {
        1: {"sigma": 0.02},
        2: {"sigma": 0.04},
        3: {"sigma": 0.06},
        4: {"sigma": 0.09},
        5: {"sigma": 0.12},
    }

    def __init__(
        self,
        sigma: float | tuple[float, float] = (0.0, 0.06),
        *,
        od_threshold: float = 0.15,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.sigma = check_range(sigma, "sigma", low=0.0, high=1.0)
        self.od_threshold = check_range(od_threshold, "od_threshold", low=0.0, high=3.0)[0]

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        _require_rgb(x, "StainMatrixPerturbation")
        n = x.shape[0]
        s = self.uniform(self.sigma, n, generator)
        eps = torch.randn(n, 2, 3, generator=generator, dtype=torch.float64)
        stain = torch.stack([F.macenko_stain_matrix(x[i].cpu(), self.od_threshold) for i in range(n)])
        new = (stain + s.reshape(n, 1, 1) * eps).clamp_min(1e-3)
        new = new / new.norm(dim=2, keepdim=True)
        new = torch.where(s.reshape(n, 1, 1) > 0, new, stain)
        return {"sigma": s, "stain": stain, "new_stain": new}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.stain_matrix_perturbation(x, params["stain"], params["new_stain"])

    def _repr_args(self) -> dict[str, Any]:
        return {"sigma": self.sigma}


@register
class Defocus(_Histology):
    """Microscope defocus: a disk PSF whose radius grows with the focus error z.

    Out of focus by ``z``, a point spreads into a blur circle of radius ``z tan(asin(NA/n))``
    (geometric optics; the in-focus diffraction blur is already in the input). Whole-slide
    scanners focus on a sparse grid of points, so focus errors vary smoothly across a tile:
    ``focus_variation_um`` adds a random low-order surface (tilt, saddle, bowl) with that peak
    amplitude.

    $$ y = x * \\mathrm{disk}_{r},\\quad r(p) = \\frac{|z_0 + \\Delta z\\, f(p)|\\,
    \\tan(\\arcsin(NA/n))}{\\text{pixel}},\\ \\max|f| = 1 $$

    Args:
        defocus_um: Focus error ``z_0`` in micrometres; scalar or ``(lo, hi)`` sampled uniformly.
        na: Objective numerical aperture (0.75 for a 20x scanner objective).
        pixel_um: Pixel size in micrometres (0.5 at 20x, 0.25 at 40x).
        focus_variation_um: Peak amplitude ``Delta z`` of the smooth focus map (0 = uniform blur).
        immersion_index: Refractive index ``n`` of the immersion medium (1 for air).
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Only 2 is supported.

    Severity:
        | level | z (um) | blur radius at NA 0.75, 0.5 um/px (px) |
        |---|---|---|
        | 1 | 0.4-0.6 | 1.1 |
        | 2 | 0.8-1.2 | 2.3 |
        | 3 | 1.7-2.3 | 4.5 |
        | 4 | 2.6-3.4 | 6.8 |
        | 5 | 3.5-4.5 | 9.1 |

        The depth of field at NA 0.75 is about 1 um; Kohlberger et al. (2019) grade scanner focus
        errors up to several um.

    Convention:
        Any channel count, 2D; replicate padding; the mean is preserved. Records ``defocus_um``,
        ``radius_px`` and, with a focus map, ``focus_variation_um`` and ``focus_coeffs`` ``(B, 4)``.
        Differentiable.

    References:
        Born & Wolf, *Principles of Optics*, ch. 8.8 (defocus); Kohlberger et al., "Whole-slide
        image focus quality: automatic assessment and impact on AI cancer detection", J. Pathol.
        Inform. 10, 2019.

    Examples:
        >>> import torch
        >>> x = torch.zeros(1, 1, 33, 33); x[0, 0, 16, 16] = 1.0
        >>> y = Defocus(defocus_um=2.0)(x)
        >>> round(float(y.sum()), 4), int((y[0, 0, 16] > 0).sum())
        (1.0, 11)
    """

    differentiable = True
    severity_table = {
        1: {"defocus_um": (0.4, 0.6)},
        2: {"defocus_um": (0.8, 1.2)},
        3: {"defocus_um": (1.7, 2.3)},
        4: {"defocus_um": (2.6, 3.4)},
        5: {"defocus_um": (3.5, 4.5)},
    }

    def __init__(
        self,
        defocus_um: float | tuple[float, float] = (0.5, 3.0),
        *,
        na: float = 0.75,
        pixel_um: float = 0.5,
        focus_variation_um: float | tuple[float, float] = 0.0,
        immersion_index: float = 1.0,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.defocus_um = check_range(defocus_um, "defocus_um", low=-100.0, high=100.0, unit="um")
        self.immersion_index = check_range(immersion_index, "immersion_index", low=1.0, high=2.0)[0]
        self.na = check_range(na, "na", low=0.0, low_inclusive=False, high=self.immersion_index)[0]
        self.pixel_um = check_range(pixel_um, "pixel_um", low=0.0, low_inclusive=False, unit="um")[0]
        self.focus_variation_um = check_range(
            focus_variation_um, "focus_variation_um", low=0.0, high=100.0, unit="um"
        )

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        z = self.uniform(self.defocus_um, n, generator)
        out: Params = {
            "defocus_um": z,
            "radius_px": F.defocus_radius_px(z, self.na, self.pixel_um, self.immersion_index),
        }
        if self.focus_variation_um[1] > 0:
            out["focus_variation_um"] = self.uniform(self.focus_variation_um, n, generator)
            out["focus_coeffs"] = torch.randn(n, 4, generator=generator, dtype=torch.float64)
        return out

    def _focus_map(self, x: Tensor, params: Params) -> Tensor:
        b, _, h, w = x.shape
        yy = torch.linspace(-1, 1, h, dtype=torch.float64).reshape(1, h, 1).expand(1, h, w)
        xx = torch.linspace(-1, 1, w, dtype=torch.float64).reshape(1, 1, w).expand(1, h, w)
        basis = torch.cat([xx, yy, xx * yy, xx**2 - yy**2])  # (4, H, W)
        f = torch.einsum("bk,khw->bhw", params["focus_coeffs"].to(torch.float64), basis)
        f = f / f.reshape(b, -1).abs().amax(1).clamp_min(1e-12).reshape(b, 1, 1)
        z = params["defocus_um"].to(torch.float64).reshape(b, 1, 1)
        z = z + params["focus_variation_um"].to(torch.float64).reshape(b, 1, 1) * f
        return F.defocus_radius_px(z, self.na, self.pixel_um, self.immersion_index).to(x.device)

    def apply(self, x: Tensor, params: Params) -> Tensor:
        if "focus_coeffs" in params:
            return F.defocus(x, params["radius_px"], self._focus_map(x, params))
        return F.defocus(x, params["radius_px"])

    def _repr_args(self) -> dict[str, Any]:
        return {"defocus_um": self.defocus_um, "na": self.na, "pixel_um": self.pixel_um}


@register
class JPEGCompression(_Histology):
    """Lossy JPEG compression (DCT quantisation in 8x8 blocks, 4:2:0 chroma) at a quality 1-100.

    Whole-slide images are stored as JPEG tiles (scanner quality about 70-90); public datasets are
    often re-compressed further. Blocking, ringing and colour bleeding appear as quality drops.
    Implemented with kornia's differentiable JPEG codec (standard IJG tables scaled by quality,
    rounding replaced by a differentiable approximation), so gradients flow.

    $$ y = \\mathrm{IDCT}\\Big(Q_q \\cdot \\mathrm{round}\\big(\\mathrm{DCT}(\\mathrm{YCbCr}(x)) / Q_q\\big)\\Big) $$

    Args:
        quality: JPEG quality in [1, 100]; scalar or ``(lo, hi)`` sampled uniformly (fractional
            qualities interpolate the table scaling).
        subsampling: Chroma subsampling of RGB input: ``"auto"`` (default: ``"4:4:4"`` for a
            sample whose quality is >= 90, as high-quality encoder presets do, else ``"4:2:0"``),
            ``"4:2:0"`` (libjpeg default, most WSI formats) or ``"4:4:4"`` (full-resolution
            chroma). At quality 100, 4:2:0 alone costs about 37 dB PSNR on H&E tiles; 4:4:4 stays
            above 40 dB.
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Only 2 is supported.

    Severity:
        | level | quality |
        |---|---|
        | 1 | 70-80 (scanner default) |
        | 2 | 45-55 |
        | 3 | 27-33 |
        | 4 | 13-17 |
        | 5 | 6-8 (ImageNet-C level 5: 7) |

    Convention:
        Values in [0, 1] (clipped first); RGB is coded in colour, other channel counts one channel
        at a time as grayscale; any H, W (padded internally to 16). Records ``quality``.
        Differentiable (approximate rounding).

    References:
        Wallace, "The JPEG still picture compression standard", IEEE Trans. Consum. Electron.
        38(1), 1992; Reich et al., "Differentiable JPEG: the devil is in the details", WACV 2024;
        Hendrycks & Dietterich, ICLR 2019 (JPEG severities).

    Examples:
        >>> import torch
        >>> from robustaug.functional.metrics import psnr
        >>> from robustaug.data.histology import he_tile
        >>> x = he_tile((64, 64), seed=0)["image"][None]
        >>> bool(psnr(JPEGCompression(quality=100)(x), x) > 40)
        True
    """

    differentiable = True
    severity_table = {
        1: {"quality": (70.0, 80.0)},
        2: {"quality": (45.0, 55.0)},
        3: {"quality": (27.0, 33.0)},
        4: {"quality": (13.0, 17.0)},
        5: {"quality": (6.0, 8.0)},
    }

    def __init__(
        self,
        quality: float | tuple[float, float] = (30.0, 90.0),
        *,
        subsampling: str = "auto",
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.quality = check_range(quality, "quality", low=1.0, high=100.0)
        self.subsampling = check_choice(subsampling, "subsampling", ("auto", "4:2:0", "4:4:4"))

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        return {"quality": self.uniform(self.quality, x.shape[0], generator)}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        q = params["quality"]
        if self.subsampling != "auto":
            return F.jpeg(x, q, self.subsampling)
        hi = (q >= 90).to(x.device)
        if bool(hi.all()) or not bool(hi.any()):
            return F.jpeg(x, q, "4:4:4" if bool(hi.all()) else "4:2:0")
        i_hi, i_lo = hi.nonzero().squeeze(1), (~hi).nonzero().squeeze(1)
        y = torch.empty_like(x)
        y = y.index_copy(0, i_hi, F.jpeg(x.index_select(0, i_hi), q[i_hi.cpu()], "4:4:4"))
        return y.index_copy(0, i_lo, F.jpeg(x.index_select(0, i_lo), q[i_lo.cpu()], "4:2:0"))

    def _repr_args(self) -> dict[str, Any]:
        return {"quality": self.quality}


@register
class TileSeam(_Histology):
    """Stitching seams: each camera tile of a whole-slide scan has its own illumination.

    Scanners image the slide as a grid of camera fields and stitch them; per-field illumination
    (lamp flicker, auto-exposure) and imperfect flat-field correction leave brightness/colour steps
    at field borders and a faint per-field vignetting grid.

    $$ I'(p) = I(p)\\, g_{t(p)}\\big(1 - v\\,\\rho_t(p)^2\\big),\\quad
    g_{t,c} = 1 + \\sigma(0.8\\,n_t + 0.6\\,n_{t,c}) $$

    Args:
        gain_std: Per-tile gain std ``sigma``; scalar or ``(lo, hi)``.
        vignetting: Per-tile corner fall-off ``v`` (0 = perfect flat field); scalar or range.
        tile_px: Camera-field edge in pixels; scalar or ``(lo, hi)``.
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Only 2 is supported.

    Severity:
        | level | gain std | vignetting |
        |---|---|---|
        | 1 | 0.02 | 0.02 |
        | 2 | 0.04 | 0.04 |
        | 3 | 0.06 | 0.06 |
        | 4 | 0.09 | 0.09 |
        | 5 | 0.12 | 0.12 |

        Residual field-to-field gain differences of a few percent are visible as seams (Kothari et
        al. 2013); level 5 is an uncorrected scanner.

    Convention:
        Any channel count in [0, 1]; output clipped to [0, 1]. Random grid offset per sample.
        Records ``tile_px``, ``offset`` ``(B, 2)``, ``gain_std``, ``vignetting`` and ``seed``.
        With ``vignetting=0`` the ratio output/input is constant inside each tile. Differentiable.

    References:
        Kothari et al., "Pathology imaging informatics for quantitative analysis of whole-slide
        images", JAMIA 20(6), 2013; Piccinini et al., "Automated image mosaics by non-automated
        light microscopes", J. Microsc. 2013 (vignetting and seams in stitched microscopy).

    Examples:
        >>> import torch
        >>> y = TileSeam(gain_std=0.1, vignetting=0.0, tile_px=8, seed=0)(torch.full((1, 3, 16, 16), 0.5))
        >>> len(torch.unique(y[0, 0])) <= 9
        True
    """

    differentiable = True
    severity_table = {
        1: {"gain_std": 0.02, "vignetting": 0.02},
        2: {"gain_std": 0.04, "vignetting": 0.04},
        3: {"gain_std": 0.06, "vignetting": 0.06},
        4: {"gain_std": 0.09, "vignetting": 0.09},
        5: {"gain_std": 0.12, "vignetting": 0.12},
    }

    def __init__(
        self,
        gain_std: float | tuple[float, float] = (0.02, 0.08),
        vignetting: float | tuple[float, float] = (0.0, 0.08),
        tile_px: float | tuple[float, float] = (24.0, 96.0),
        *,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.gain_std = check_range(gain_std, "gain_std", low=0.0, high=1.0)
        self.vignetting = check_range(vignetting, "vignetting", low=0.0, high=1.0)
        self.tile_px = check_range(tile_px, "tile_px", low=2.0, high=1e5, unit="pixels")

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        return {
            "tile_px": self.uniform(self.tile_px, n, generator),
            "offset": torch.rand(n, 2, generator=generator, dtype=torch.float64),
            "gain_std": self.uniform(self.gain_std, n, generator),
            "vignetting": self.uniform(self.vignetting, n, generator),
            "seed": sample_seeds(n, generator),
        }

    def apply(self, x: Tensor, params: Params) -> Tensor:
        h, w = x.shape[-2:]
        tmin = self.tile_px[0]
        grid = (math.ceil(h / tmin) + 2, math.ceil(w / tmin) + 2)
        return F.tile_seam(
            x, params["tile_px"], params["offset"], params["gain_std"], params["vignetting"],
            params["seed"], grid,
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"gain_std": self.gain_std, "vignetting": self.vignetting, "tile_px": self.tile_px}


@register
class TissueFold(_Histology):
    """Tissue fold: a flap of the section folded over itself, a band of doubled optical density.

    During sectioning or mounting the section can fold along a line; in the band covered by the
    flap, light crosses two layers, so the OD adds (a darker, more saturated band showing the
    mirrored tissue of the flap).

    $$ OD'(p) = OD(p) + k\\, \\mathbb 1[0 < s(p) < W]\\, OD(p - 2 s(p)\\,\\mathbf n) $$

    Args:
        width: Band width as a fraction of the shorter image edge; scalar or ``(lo, hi)``.
        extra_layers: ``k``, the flap's OD multiple (1 = one extra layer: doubled OD).
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Only 2 is supported.

    Severity:
        | level | band width (fraction) | extra layers |
        |---|---|---|
        | 1 | 0.05 | 1 |
        | 2 | 0.08 | 1 |
        | 3 | 0.12 | 1 |
        | 4 | 0.16 | 1 |
        | 5 | 0.22 | 1.5 |

        Folds are typically tens to hundreds of micrometres wide (Kanwal et al. 2022);
        level 5 adds partial triple folding.

    Convention:
        RGB (or any channel count) in [0, 1]. The fold line passes through a random point of the
        central 60 % at a random angle. Records ``point`` ``(B, 2)``, ``angle`` (rad), ``width_px``,
        ``extra_layers``. Differentiable.

    References:
        Kanwal et al., "The devil is in the details: whole slide image acquisition and processing
        for artifacts detection, color variation, and data augmentation: a review", IEEE Access 10,
        2022; Bautista & Yagi, "Detection of tissue folds in whole slide images", IEEE EMBC 2009.

    Examples:
        >>> import torch
        >>> t = TissueFold(width=0.25, extra_layers=1.0, seed=0)
        >>> y = t(torch.full((1, 3, 32, 32), 0.5))
        >>> round(float(y.min()), 3)  # OD doubled: 0.5 -> 0.25
        0.25
    """

    differentiable = True
    severity_table = {
        1: {"width": 0.05},
        2: {"width": 0.08},
        3: {"width": 0.12},
        4: {"width": 0.16},
        5: {"width": 0.22, "extra_layers": 1.5},
    }

    def __init__(
        self,
        width: float | tuple[float, float] = (0.05, 0.2),
        extra_layers: float | tuple[float, float] = 1.0,
        *,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.width = check_range(width, "width", low=0.0, high=1.0)
        self.extra_layers = check_range(extra_layers, "extra_layers", low=0.0, high=10.0)

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n = x.shape[0]
        return {
            "point": 0.2 + 0.6 * torch.rand(n, 2, generator=generator, dtype=torch.float64),
            "angle": self.uniform((0.0, math.pi), n, generator),
            "width_px": self.uniform(self.width, n, generator) * min(x.shape[-2:]),
            "extra_layers": self.uniform(self.extra_layers, n, generator),
        }

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.tissue_fold(x, params["point"], params["angle"], params["width_px"], params["extra_layers"])

    def _repr_args(self) -> dict[str, Any]:
        return {"width": self.width, "extra_layers": self.extra_layers}


@register
class Bubble(_Histology):
    """Air bubbles trapped under the coverslip: dark refracting rims around washed-out tissue.

    $$ I_1 = I + h\\, m_{in}(1 - I),\\quad I' = I_1\\, 10^{-OD_{rim}\\, e^{-(d - r)^2 / 2w^2}} $$

    Args:
        num_bubbles: Number of bubbles per image.
        radius: Radius as a fraction of the shorter edge; scalar or ``(lo, hi)``.
        haze: Interior wash-out toward white in [0, 1]; scalar or range.
        rim_od: Optical density of the rim; scalar or range.
        rim_px: Rim half-width in pixels.
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Only 2 is supported.

    Severity:
        | level | bubbles | radius (fraction) | haze | rim OD |
        |---|---|---|---|---|
        | 1 | 1 | 0.10 | 0.15 | 0.3 |
        | 2 | 1 | 0.15 | 0.20 | 0.4 |
        | 3 | 2 | 0.15 | 0.30 | 0.5 |
        | 4 | 2 | 0.20 | 0.40 | 0.6 |
        | 5 | 3 | 0.25 | 0.50 | 0.8 |

        MedMNIST-C ``bubble`` uses translucent ellipses of growing size for its 5 levels.

    Convention:
        Any channel count in [0, 1]; output clipped. Records ``centers`` ``(B, K, 2)`` (fractions),
        ``radius_px`` ``(B, K)``, ``haze``, ``rim_od``. Differentiable.

    References:
        Kanwal et al., IEEE Access 10, 2022 (air bubbles among WSI artifacts); Di Salvo et al.,
        "MedMNIST-C", MICCAI-W ADSMI 2024.

    Examples:
        >>> import torch
        >>> y = Bubble(num_bubbles=1, radius=0.3, haze=0.5, rim_od=0.5, seed=0)(torch.full((1, 3, 32, 32), 0.4))
        >>> float(y.max()) > 0.6, float(y.min()) < 0.2
        (True, True)
    """

    differentiable = True
    severity_table = {
        1: {"num_bubbles": 1, "radius": 0.10, "haze": 0.15, "rim_od": 0.3},
        2: {"num_bubbles": 1, "radius": 0.15, "haze": 0.2, "rim_od": 0.4},
        3: {"num_bubbles": 2, "radius": 0.15, "haze": 0.3, "rim_od": 0.5},
        4: {"num_bubbles": 2, "radius": 0.20, "haze": 0.4, "rim_od": 0.6},
        5: {"num_bubbles": 3, "radius": 0.25, "haze": 0.5, "rim_od": 0.8},
    }

    def __init__(
        self,
        num_bubbles: int = 1,
        radius: float | tuple[float, float] = (0.08, 0.25),
        haze: float | tuple[float, float] = (0.1, 0.4),
        rim_od: float | tuple[float, float] = (0.2, 0.6),
        *,
        rim_px: float = 1.5,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.num_bubbles = check_int(num_bubbles, "num_bubbles", low=1, high=64)
        self.radius = check_range(radius, "radius", low=0.0, high=2.0)
        self.haze = check_range(haze, "haze", low=0.0, high=1.0)
        self.rim_od = check_range(rim_od, "rim_od", low=0.0, high=6.0, unit="OD")
        self.rim_px = check_range(rim_px, "rim_px", low=0.0, low_inclusive=False)[0]

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        n, k = x.shape[0], self.num_bubbles
        lo, hi = self.radius
        r = lo + (hi - lo) * torch.rand(n, k, generator=generator, dtype=torch.float64)
        return {
            "centers": torch.rand(n, k, 2, generator=generator, dtype=torch.float64),
            "radius_px": r * min(x.shape[-2:]),
            "haze": self.uniform(self.haze, n, generator),
            "rim_od": self.uniform(self.rim_od, n, generator),
        }

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.bubble(x, params["centers"], params["radius_px"], params["haze"], params["rim_od"], self.rim_px)

    def _repr_args(self) -> dict[str, Any]:
        return {"num_bubbles": self.num_bubbles, "radius": self.radius}


@register
class InkMarker(_Histology):
    """Pathologist's marker ink on the slide: a coloured stroke that adds the ink's optical density.

    Pathologists circle regions with green, blue, black or red marker; the ink absorbs like a dye,
    so it adds OD along the stroke (with streaky density), over the tissue.

    $$ OD' = OD + \\rho\\,(1 + 0.15\\,n)\\, m(p)\\, \\mathbf v_{ink} $$

    Args:
        width: Stroke width as a fraction of the shorter edge; scalar or ``(lo, hi)``.
        density: Ink density ``rho`` (multiple of the ink's unit OD vector); scalar or range.
        colors: Inks to draw from: any of ``"green"``, ``"blue"``, ``"black"``, ``"red"``.
        p: Probability of applying, per sample.
        seed: Private seed.
        spatial_dims: Only 2 is supported.

    Severity:
        | level | width (fraction) | density |
        |---|---|---|
        | 1 | 0.03 | 0.3 |
        | 2 | 0.05 | 0.5 |
        | 3 | 0.08 | 0.7 |
        | 4 | 0.12 | 0.9 |
        | 5 | 0.16 | 1.2 |

    Convention:
        RGB in [0, 1]. The stroke is a quadratic Bezier curve entering and leaving through the
        image border. Records ``control`` ``(B, 3, 2)`` (fractions), ``width_px``, ``density``,
        ``color_od`` ``(B, 3)`` and the texture ``seed``. Differentiable.

    References:
        Ali et al., "Ink removal from histopathology whole slide images by combining classification,
        detection and image generation models", ISBI 2021; Kanwal et al., IEEE Access 10, 2022.

    Examples:
        >>> import torch
        >>> y = InkMarker(width=0.2, density=1.0, colors=("green",), seed=0)(torch.ones(1, 3, 32, 32))
        >>> bool((y[0, 1] >= y[0, 0]).all())  # green ink transmits green
        True
    """

    differentiable = True
    severity_table = {
        1: {"width": 0.03, "density": 0.3},
        2: {"width": 0.05, "density": 0.5},
        3: {"width": 0.08, "density": 0.7},
        4: {"width": 0.12, "density": 0.9},
        5: {"width": 0.16, "density": 1.2},
    }

    def __init__(
        self,
        width: float | tuple[float, float] = (0.03, 0.12),
        density: float | tuple[float, float] = (0.3, 1.0),
        colors: Sequence[str] = ("green", "blue", "black", "red"),
        *,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.width = check_range(width, "width", low=0.0, high=1.0)
        self.density = check_range(density, "density", low=0.0, high=6.0)
        colors = (colors,) if isinstance(colors, str) else tuple(colors)
        bad = [c for c in colors if c not in F.INK_COLORS_OD]
        if not colors or bad:
            raise ValueError(f"`colors` must be a non-empty subset of {sorted(F.INK_COLORS_OD)}, got {colors!r}.")
        self.colors = colors

    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        _require_rgb(x, "InkMarker")
        n = x.shape[0]
        side = torch.randint(0, 2, (n,), generator=generator)
        t0 = torch.rand(n, generator=generator, dtype=torch.float64)
        t2 = torch.rand(n, generator=generator, dtype=torch.float64)
        mid = 0.2 + 0.6 * torch.rand(n, 2, generator=generator, dtype=torch.float64)
        p0 = torch.where(side[:, None] == 0, torch.stack([t0, torch.full_like(t0, -0.05)], 1),
                         torch.stack([torch.full_like(t0, -0.05), t0], 1))
        p2 = torch.where(side[:, None] == 0, torch.stack([t2, torch.full_like(t2, 1.05)], 1),
                         torch.stack([torch.full_like(t2, 1.05), t2], 1))
        cidx = torch.randint(0, len(self.colors), (n,), generator=generator)
        table = torch.tensor([F.INK_COLORS_OD[c] for c in self.colors], dtype=torch.float64)
        return {
            "control": torch.stack([p0, mid, p2], 1),
            "width_px": self.uniform(self.width, n, generator) * min(x.shape[-2:]),
            "density": self.uniform(self.density, n, generator),
            "color_od": table[cidx],
            "seed": sample_seeds(n, generator),
        }

    def apply(self, x: Tensor, params: Params) -> Tensor:
        return F.ink_marker(
            x, params["control"], params["width_px"], params["density"], params["color_od"], params["seed"]
        )

    def _repr_args(self) -> dict[str, Any]:
        return {"width": self.width, "density": self.density, "colors": self.colors}
