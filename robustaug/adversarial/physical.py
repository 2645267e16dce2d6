"""Physically parameterised threats: the attack variable is an artifact's continuous parameters.

Each threat is a differentiable ``T_theta(x)`` whose parameters ``theta`` live in a box
``[lo, hi]`` given in physical units (a fraction of field inhomogeneity, degrees, millimetres,
amplitude, an SNR floor). PGD and APGD optimise ``theta`` with sign steps measured in units of the
box half-width and project by clipping, so the parameters stay inside their set at every step.
Outputs are clipped to ``data_range`` (detector / display saturation).

The identity is ``theta = 0`` for every threat (for k-space threats on non-negative magnitude
images, up to FFT round-off). k-space threats (:class:`Motion`, :class:`Ghosting`, :class:`Spike`)
assume magnitude images (``x >= 0``); they return ``|IFFT(K')|``.

Severity mapping. ``Threat.from_severity(k)`` builds the feasible set that the random artifact of the
same name samples from at severity ``k``: if ``robustaug.get_artifact(name)`` is registered, its
``severity_table[k]`` is translated (see ``_from_artifact``); otherwise the built-in table below (in
the same physical units) is used, and ``severity_source`` records which one was used.

References:
    Chen et al., "Realistic adversarial data augmentation for MR image segmentation", MICCAI 2020
    (adversarial bias field); Engstrom et al., "Exploring the landscape of spatial robustness",
    ICML 2019 (rotation/translation attacks); Shaw et al., "MRI k-space motion artefact augmentation",
    MIDL 2019 (segment-wise rigid motion in k-space); Perez-Garcia et al., TorchIO, CMPB 2021
    (ghosting/spike models).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .threats import Threat, _bc

__all__ = [
    "Affine",
    "BiasField",
    "Gamma",
    "Ghosting",
    "IntensityShift",
    "Motion",
    "NoiseBudget",
    "PhysicalThreat",
    "Spike",
]


def _clip(y: Tensor, data_range: tuple[float, float] | None) -> Tensor:
    return y if data_range is None else y.clamp(data_range[0], data_range[1])


@dataclass
class PhysicalThreat(Threat):
    """Base class: ``theta`` in a box ``[lo, hi]`` (per parameter), identity at ``theta = 0``.

    ``eps`` is the normalised budget 1.0 (the box itself); ``alpha`` is the step as a fraction of the
    box half-width (default ``2.5 / steps``).
    """

    eps: float = 1.0
    steps: int = 10
    severity_source: str = field(default="manual", compare=False)

    artifact: ClassVar[str] = ""
    severity_table: ClassVar[Mapping[int, Mapping[str, Any]]] = {}

    def __post_init__(self) -> None:
        super().__post_init__()
        self.additive = False
        self.norm = "box"

    # ---- the box ---------------------------------------------------------------------------
    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(lo, hi)`` broadcastable to ``theta``."""
        raise NotImplementedError

    def shape(self, x: Tensor) -> tuple[int, ...]:
        """Shape of ``theta`` for a batch ``x``."""
        raise NotImplementedError

    def zeros(self, x: Tensor) -> Tensor:
        return torch.zeros(self.shape(x), dtype=torch.float32, device=x.device)

    def init(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        lo, hi = self.bounds(x)
        u = torch.rand(self.shape(x), generator=generator, dtype=torch.float32).to(x.device)
        return lo + (hi - lo) * u

    def scale_for(self, theta: Tensor) -> Tensor | float:
        return 1.0

    def ascent(self, theta: Tensor, grad: Tensor, rel_step: float | Tensor) -> Tensor:
        lo, hi = self._cached
        half = (hi - lo) / 2
        s = _bc(rel_step, theta) if isinstance(rel_step, Tensor) else rel_step
        return theta + s * half * grad.sign()

    def project(self, theta: Tensor, x: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        lo, hi = self.bounds(x)
        self._cached = (lo, hi)
        return torch.maximum(torch.minimum(theta, hi), lo)

    def contains(self, theta: Tensor, x: Tensor, tol: float = 1e-6) -> bool:
        """Whether every parameter lies inside its box (with relative tolerance ``tol``)."""
        lo, hi = self.bounds(x)
        w = (hi - lo).abs().clamp_min(1e-12)
        return bool(((theta >= lo - tol * w) & (theta <= hi + tol * w)).all())

    def size(self, theta: Tensor) -> Tensor:
        lo, hi = self._cached
        mid, half = (hi + lo) / 2, ((hi - lo) / 2).clamp_min(1e-12)
        return ((theta - mid).abs() / half).flatten(1).amax(1)

    # ---- severity ----------------------------------------------------------------------------
    @classmethod
    def from_severity(cls, severity: int, **overrides: Any) -> PhysicalThreat:
        """The feasible set sampled by the random artifact at ``severity`` (1..5).

        Uses the registered artifact's ``severity_table`` when available (``severity_source =
        "artifact:<name>"``), else this class's built-in table (``"builtin"``).
        """
        if severity not in range(1, 6):
            raise ValueError(f"`severity` must be an int in 1..5, got {severity!r}.")
        kw: dict[str, Any] | None = None
        src = "builtin"
        try:
            from ..core.registry import get_artifact

            art = get_artifact(cls.artifact)
            table = getattr(art, "severity_table", {}) or {}
            if severity in table:
                kw = cls._from_artifact(dict(table[severity]))
                if kw is not None:
                    src = f"artifact:{art.__name__}"
        except (KeyError, ImportError, AttributeError):
            kw = None
        if kw is None:
            kw = dict(cls.severity_table[severity])
        kw.update(overrides)
        return cls(severity_source=src, **kw)

    @classmethod
    def _from_artifact(cls, args: dict[str, Any]) -> dict[str, Any] | None:
        """Translate an artifact's severity arguments to this threat's bounds (None: unknown)."""
        return None


def _span(v: Any) -> float:
    """Largest magnitude of a scalar or ``(lo, hi)`` range."""
    if isinstance(v, (tuple, list)):
        return max(abs(float(a)) for a in v)
    return abs(float(v))


@dataclass
class BiasField(PhysicalThreat):
    r"""Smooth multiplicative bias field: ``x' = B x``, ``|B - 1| <= eps_b``.

    ``theta`` are the values of ``B - 1`` on a coarse ``control`` grid (per sample), upsampled to the
    image by (bi/tri)linear interpolation, a convex combination, so ``|B - 1| <= eps_b`` holds at every
    voxel whenever it holds at the control points. Chen et al. (MICCAI 2020) use ``eps_b = 0.3`` with a
    B-spline field; linear interpolation is used here so that the bound is exact.

    Args:
        eps_b: Maximal relative inhomogeneity.
        control: Control points per spatial dim (an int or one per dim).
    """

    eps_b: float = 0.3
    control: int | Sequence[int] = 4

    artifact: ClassVar[str] = "BiasField"
    severity_table: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        1: {"eps_b": 0.05}, 2: {"eps_b": 0.1}, 3: {"eps_b": 0.2}, 4: {"eps_b": 0.3}, 5: {"eps_b": 0.5},
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.eps_b < 1:
            raise ValueError(f"`eps_b` must be in [0, 1), got {self.eps_b!r}.")

    @classmethod
    def _from_artifact(cls, args: dict[str, Any]) -> dict[str, Any] | None:
        for k in ("eps_b", "max_deviation", "amplitude"):
            if k in args:
                return {"eps_b": _span(args[k])}
        if "peak_to_peak_percent" in args:  # field spans p peak to peak: |B - 1| <= p / 2
            return {"eps_b": min(_span(args["peak_to_peak_percent"]) / 200.0, 0.99)}
        if "coefficients" in args:  # log-field coefficients c: B = exp(c) within exp(+-|c|)
            return {"eps_b": min(math.expm1(_span(args["coefficients"])), 0.99)}
        return None

    def _grid(self, x: Tensor) -> tuple[int, ...]:
        d = x.ndim - 2
        c = (self.control,) * d if isinstance(self.control, int) else tuple(self.control)
        if len(c) != d or min(c) < 2:
            raise ValueError(f"`control` must give >= 2 points for each of {d} dims, got {self.control!r}.")
        return c

    def shape(self, x: Tensor) -> tuple[int, ...]:
        return (x.shape[0], 1, *self._grid(x))

    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor]:
        e = torch.tensor(self.eps_b, device=x.device)
        return -e, e

    def field(self, x: Tensor, theta: Tensor) -> Tensor:
        """The bias field ``B`` at image resolution, ``(N, 1, *spatial)``."""
        mode = "bilinear" if x.ndim == 4 else "trilinear" if x.ndim == 5 else "linear"
        up = F.interpolate(theta.to(torch.float32), size=x.shape[2:], mode=mode, align_corners=True)
        return 1 + up

    def apply(self, x: Tensor, theta: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        return _clip(x * self.field(x, theta).to(x.dtype), data_range)


@dataclass
class Gamma(PhysicalThreat):
    r"""Gamma (contrast) change ``x' = lo + (hi - lo) u^gamma``, ``u = (x - lo)/(hi - lo)``.

    ``theta = log gamma`` in ``[-log_gamma, log_gamma]`` (TorchIO ``RandomGamma`` convention).
    ``lo, hi`` is the ``data_range`` (per-sample min/max if ``None``).
    """

    log_gamma: float = 0.3

    artifact: ClassVar[str] = "Gamma"
    severity_table: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        1: {"log_gamma": 0.05}, 2: {"log_gamma": 0.1}, 3: {"log_gamma": 0.2},
        4: {"log_gamma": 0.3}, 5: {"log_gamma": 0.5},
    }

    @classmethod
    def _from_artifact(cls, args: dict[str, Any]) -> dict[str, Any] | None:
        if "log_gamma" in args:
            return {"log_gamma": _span(args["log_gamma"])}
        if "gamma" in args:
            g = args["gamma"]
            vals = g if isinstance(g, (tuple, list)) else (g,)
            return {"log_gamma": max(abs(math.log(float(v))) for v in vals)}
        return None

    def shape(self, x: Tensor) -> tuple[int, ...]:
        return (x.shape[0], 1)

    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor]:
        e = torch.tensor(abs(self.log_gamma), device=x.device)
        return -e, e

    def apply(self, x: Tensor, theta: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        if data_range is None:
            lo = x.flatten(1).amin(1).reshape(-1, *([1] * (x.ndim - 1)))
            hi = x.flatten(1).amax(1).reshape(-1, *([1] * (x.ndim - 1)))
        else:
            lo, hi = data_range
        w = hi - lo
        w = w.clamp_min(1e-12) if isinstance(w, Tensor) else max(w, 1e-12)
        u = ((x - lo) / w).clamp(1e-6, 1.0)
        gam = torch.exp(_bc(theta[:, 0], x))
        return _clip(lo + w * u.pow(gam), data_range)


@dataclass
class IntensityShift(PhysicalThreat):
    r"""Contrast/brightness (CT window width/level) shift: ``x' = (x - m)(1 + c) + m + b``.

    ``m`` is the middle of ``data_range`` (per-sample mean if ``None``); ``c in [-contrast,
    contrast]`` (relative window-width change), ``b in [-brightness, brightness]`` (level shift, in
    data units, e.g. HU).
    """

    contrast: float = 0.1
    brightness: float = 0.05

    artifact: ClassVar[str] = "IntensityShift"
    severity_table: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        k: {"contrast": 0.05 * k, "brightness": 0.025 * k} for k in range(1, 6)
    }

    def shape(self, x: Tensor) -> tuple[int, ...]:
        return (x.shape[0], 2)

    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.tensor([abs(self.contrast), abs(self.brightness)], device=x.device)
        return -h, h

    def apply(self, x: Tensor, theta: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        if data_range is None:
            m = x.flatten(1).mean(1).reshape(-1, *([1] * (x.ndim - 1)))
        else:
            m = 0.5 * (data_range[0] + data_range[1])
        return _clip((x - m) * (1 + _bc(theta[:, 0], x)) + m + _bc(theta[:, 1], x), data_range)


def _rotation(angles_deg: Tensor, d: int) -> Tensor:
    """Rotation matrices ``(N, d, d)`` from 1 (2D) or 3 (3D, x-y-z Euler) angles in degrees."""
    a = angles_deg * (math.pi / 180)
    if d == 2:
        c, s = torch.cos(a[:, 0]), torch.sin(a[:, 0])
        return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    n = a.shape[0]
    one, zero = torch.ones(n, device=a.device), torch.zeros(n, device=a.device)

    def rx(t: Tensor) -> Tensor:
        c, s = torch.cos(t), torch.sin(t)
        return torch.stack([torch.stack([one, zero, zero], -1), torch.stack([zero, c, -s], -1),
                            torch.stack([zero, s, c], -1)], -2)

    def ry(t: Tensor) -> Tensor:
        c, s = torch.cos(t), torch.sin(t)
        return torch.stack([torch.stack([c, zero, s], -1), torch.stack([zero, one, zero], -1),
                            torch.stack([-s, zero, c], -1)], -2)

    def rz(t: Tensor) -> Tensor:
        c, s = torch.cos(t), torch.sin(t)
        return torch.stack([torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1),
                            torch.stack([zero, zero, one], -1)], -2)

    return rz(a[:, 2]) @ ry(a[:, 1]) @ rx(a[:, 0])


def _warp(x: Tensor, rot: Tensor, trans_norm: Tensor) -> Tensor:
    """Rigid warp with ``affine_grid`` (normalised coords, align_corners=False), bilinear, zero pad."""
    d = x.ndim - 2
    theta = torch.cat([rot, trans_norm.unsqueeze(-1)], dim=-1).to(torch.float32)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x.to(torch.float32), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) if d in (2, 3) else x


def _n_rot(d: int) -> int:
    return 1 if d == 2 else 3


@dataclass
class Affine(PhysicalThreat):
    r"""Small rigid motion: rotation ``|r| <= degrees`` and translation ``|t| <= translation_mm``.

    ``x'(p) = x(R p + t)`` sampled with ``affine_grid`` / ``grid_sample`` (bilinear, zero padding);
    one in-plane angle in 2D, three Euler angles in 3D. ``spacing`` converts mm to voxels.
    """

    degrees: float = 5.0
    translation_mm: float = 2.0
    spacing: float | Sequence[float] = 1.0

    artifact: ClassVar[str] = "Affine"
    severity_table: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        k: {"degrees": 2.0 * k, "translation_mm": 1.0 * k} for k in range(1, 6)
    }

    @classmethod
    def _from_artifact(cls, args: dict[str, Any]) -> dict[str, Any] | None:
        if "degrees" in args and ("translation_mm" in args or "translation" in args):
            t = args.get("translation_mm", args.get("translation"))
            return {"degrees": _span(args["degrees"]), "translation_mm": _span(t)}
        return None

    def shape(self, x: Tensor) -> tuple[int, ...]:
        d = x.ndim - 2
        return (x.shape[0], _n_rot(d) + d)

    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor]:
        d = x.ndim - 2
        h = torch.tensor([abs(self.degrees)] * _n_rot(d) + [abs(self.translation_mm)] * d,
                         device=x.device)
        return -h, h

    def _trans_norm(self, x: Tensor, t_mm: Tensor) -> Tensor:
        d = x.ndim - 2
        sp = torch.as_tensor(self.spacing, dtype=torch.float32, device=x.device).expand(d)
        size = torch.tensor(list(x.shape[2:])[::-1], dtype=torch.float32, device=x.device)
        # affine_grid's coordinates are (x=W, y=H, z=D): reverse the order of spatial dims
        return 2 * t_mm / (sp.flip(0) * size)

    def apply(self, x: Tensor, theta: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        d = x.ndim - 2
        if d not in (2, 3):
            raise ValueError(f"Affine supports 2D and 3D inputs, got {d} spatial dims.")
        r = _rotation(theta[:, : _n_rot(d)], d)
        t = self._trans_norm(x, theta[:, _n_rot(d):])
        return _clip(_warp(x, r, t).to(x.dtype), data_range)


@dataclass
class NoiseBudget(Threat):
    r"""Additive noise at a physical budget: RMS ``||delta||_2 / sqrt(d) <= sigma``.

    The budget can be given directly (``sigma``, data units), as an MR SNR floor
    (``sigma = signal / snr`` with ``signal`` the mean foreground intensity, per sample), or as a CT
    dose reduction to a fraction ``f`` of the reference dose with reference noise ``sigma_ref``
    (quantum noise variance scales as 1/dose, so the *added* noise has
    ``sigma = sigma_ref * sqrt(1/f - 1)``). The adversary chooses the structured noise inside that L2
    ball (an L2 threat in the noise-whitened domain).
    """

    sigma: float | None = None
    snr: float | None = None
    dose_fraction: float | None = None
    sigma_ref: float = 10.0
    eps: float = 1.0

    artifact: ClassVar[str] = "RicianNoise"
    severity_table: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        1: {"snr": 40.0}, 2: {"snr": 20.0}, 3: {"snr": 10.0}, 4: {"snr": 5.0}, 5: {"snr": 2.5},
    }
    severity_source: str = field(default="manual", compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        given = [v is not None for v in (self.sigma, self.snr, self.dose_fraction)]
        if sum(given) != 1:
            raise ValueError("Give exactly one of `sigma`, `snr` or `dose_fraction`.")
        if self.dose_fraction is not None and not 0 < self.dose_fraction <= 1:
            raise ValueError(f"`dose_fraction` must be in (0, 1], got {self.dose_fraction!r}.")
        self.norm = "rms"

    from_severity = classmethod(PhysicalThreat.from_severity.__func__)  # type: ignore[attr-defined]

    @classmethod
    def _from_artifact(cls, args: dict[str, Any]) -> dict[str, Any] | None:
        if "snr" in args:
            v = args["snr"]
            return {"snr": min(float(a) for a in v) if isinstance(v, (tuple, list)) else float(v)}
        for k in ("sigma", "std"):
            if k in args:
                return {"sigma": _span(args[k])}
        return None

    def sigma_for(self, x: Tensor) -> Tensor:
        """Per-sample RMS budget ``(N,)`` in data units."""
        n = x.shape[0]
        if self.sigma is not None:
            return torch.full((n,), float(self.sigma), device=x.device)
        if self.snr is not None:
            flat = x.flatten(1).float()
            fg = flat > flat.mean(1, keepdim=True) * 0.1
            sig = (flat * fg).sum(1) / fg.sum(1).clamp_min(1)
            return sig / float(self.snr)
        assert self.dose_fraction is not None
        return torch.full((n,), self.sigma_ref * math.sqrt(1 / self.dose_fraction - 1),
                          device=x.device)

    def _radius(self, x: Tensor) -> Tensor:
        return self.sigma_for(x) * math.sqrt(x[0].numel())

    def init(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        g = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device)
        nrm = g.flatten(1).norm(dim=1).clamp_min(1e-12)
        self._r = self._radius(x)
        return g * _bc(self._r / nrm, g)

    def ascent(self, theta: Tensor, grad: Tensor, rel_step: float | Tensor) -> Tensor:
        nrm = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
        s = rel_step if isinstance(rel_step, Tensor) else torch.full_like(nrm, rel_step)
        return theta + _bc(s * self._r / nrm, grad) * grad

    def project(self, theta: Tensor, x: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        self._r = self._radius(x)
        nrm = theta.flatten(1).norm(dim=1)
        f = (self._r / nrm.clamp_min(1e-12)).clamp(max=1.0)
        return self._box(theta * _bc(f, theta), x, data_range)

    def size(self, theta: Tensor) -> Tensor:
        """RMS of the perturbation per sample (compare with :meth:`sigma_for`)."""
        return theta.flatten(1).norm(dim=1) / math.sqrt(theta[0].numel())


# ------------------------------------------------------------------------------------- k-space
def _fftn(x: Tensor) -> Tensor:
    dims = tuple(range(2, x.ndim))
    return torch.fft.fftshift(torch.fft.fftn(x.to(torch.float32), dim=dims), dim=dims)


def _ifftn_abs(k: Tensor) -> Tensor:
    dims = tuple(range(2, k.ndim))
    z = torch.fft.ifftn(torch.fft.ifftshift(k, dim=dims), dim=dims)
    return torch.sqrt(z.real**2 + z.imag**2 + 1e-12) - 1e-6


def _kcoords(x: Tensor) -> list[Tensor]:
    """Centred k-space frequencies (cycles/voxel) per spatial dim, broadcastable."""
    out = []
    d = x.ndim - 2
    for i, n in enumerate(x.shape[2:]):
        f = torch.fft.fftshift(torch.fft.fftfreq(n, device=x.device))
        shape = [1] * (d + 2)
        shape[2 + i] = n
        out.append(f.reshape(shape))
    return out


@dataclass
class Motion(PhysicalThreat):
    r"""Segment-wise rigid motion in k-space (MR).

    k-space lines along the phase-encode axis ``pe_axis`` are acquired in ``segments`` consecutive
    blocks; during block ``s`` the object has rotation ``r_s`` (degrees) and translation ``t_s`` (mm).
    ``K' = sum_s M_s * FFT(R_s x) * exp(-2 pi i <k, t_s>)`` (translation as a phase ramp, rotation in
    image space), ``x' = |IFFT(K')|``. Bounds ``|r| <= degrees``, ``|t| <= translation_mm``.
    """

    degrees: float = 2.0
    translation_mm: float = 2.0
    segments: int = 4
    pe_axis: int = -1
    spacing: float | Sequence[float] = 1.0

    artifact: ClassVar[str] = "Motion"
    severity_table: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        k: {"degrees": 1.0 * k, "translation_mm": 1.0 * k} for k in range(1, 6)
    }

    @classmethod
    def _from_artifact(cls, args: dict[str, Any]) -> dict[str, Any] | None:
        if "degrees" in args and ("translation_mm" in args or "translation" in args):
            t = args.get("translation_mm", args.get("translation"))
            kw = {"degrees": _span(args["degrees"]), "translation_mm": _span(t)}
            if "num_transforms" in args:
                kw["segments"] = int(_span(args["num_transforms"])) + 1
            return kw
        return None

    def shape(self, x: Tensor) -> tuple[int, ...]:
        d = x.ndim - 2
        return (x.shape[0], self.segments, _n_rot(d) + d)

    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor]:
        d = x.ndim - 2
        h = torch.tensor([abs(self.degrees)] * _n_rot(d) + [abs(self.translation_mm)] * d,
                         device=x.device)
        return -h, h

    def apply(self, x: Tensor, theta: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        d = x.ndim - 2
        if d not in (2, 3):
            raise ValueError(f"Motion supports 2D and 3D inputs, got {d} spatial dims.")
        ax = self.pe_axis % x.ndim
        n_lines = x.shape[ax]
        seg_id = torch.div(torch.arange(n_lines, device=x.device) * self.segments, n_lines,
                           rounding_mode="floor")
        shape = [1] * x.ndim
        shape[ax] = n_lines
        seg_id = seg_id.reshape(shape)
        sp = torch.as_tensor(self.spacing, dtype=torch.float32, device=x.device).expand(d)
        kc = _kcoords(x)
        k_out = torch.zeros(x.shape, dtype=torch.complex64, device=x.device)
        nr = _n_rot(d)
        for s in range(self.segments):
            r = _rotation(theta[:, s, :nr], d)
            xs = _warp(x, r, torch.zeros(x.shape[0], d, device=x.device))
            ks = _fftn(xs)
            t_vox = theta[:, s, nr:] / sp  # mm -> voxels, in spatial-dim order (D, H, W)
            phase = sum(kc[i] * _bc(t_vox[:, i], x) for i in range(d))
            ks = ks * torch.exp(-2j * math.pi * phase)
            k_out = k_out + ks * (seg_id == s)
        return _clip(_ifftn_abs(k_out).to(x.dtype), data_range)


@dataclass
class Ghosting(PhysicalThreat):
    r"""Ghosting: every ``num_ghosts``-th k-space line (along ``pe_axis``, centre line excluded) is
    scaled by ``1 - a``, ``a in [0, amplitude]``; ``x' = |IFFT(K')|``.
    """

    amplitude: float = 0.5
    num_ghosts: int = 4
    pe_axis: int = -1

    artifact: ClassVar[str] = "Ghosting"
    severity_table: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        k: {"amplitude": 0.15 * k} for k in range(1, 6)
    }

    @classmethod
    def _from_artifact(cls, args: dict[str, Any]) -> dict[str, Any] | None:
        if "intensity" in args:
            kw: dict[str, Any] = {"amplitude": min(_span(args["intensity"]), 1.0)}
            if "num_ghosts" in args:
                kw["num_ghosts"] = int(_span(args["num_ghosts"]))
            return kw
        return None

    def shape(self, x: Tensor) -> tuple[int, ...]:
        return (x.shape[0], 1)

    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return (torch.tensor(0.0, device=x.device), torch.tensor(abs(self.amplitude), device=x.device))

    def apply(self, x: Tensor, theta: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        ax = self.pe_axis % x.ndim
        n = x.shape[ax]
        idx = torch.arange(n, device=x.device)
        m = ((idx % max(self.num_ghosts, 1)) == 0) & (idx != n // 2)
        shape = [1] * x.ndim
        shape[ax] = n
        m = m.reshape(shape).to(torch.float32)
        k = _fftn(x) * (1 - _bc(theta[:, 0], x) * m)
        return _clip(_ifftn_abs(k).to(x.dtype), data_range)


@dataclass
class Spike(PhysicalThreat):
    r"""k-space spike (herringbone), with the same parameters as the ``Spike`` artifact.

    Per spike ``s``: amplitude ``A_s`` (relative to ``|K(0)|``) in ``amplitude``, phase
    ``psi_s in [0, 2 pi]``, distance from the k-space centre ``d_s`` (fraction of Nyquist per axis) in
    ``distance``, and direction angles (2D: ``a in [0, 2 pi]``; 3D: azimuth ``[0, 2 pi]``, polar
    ``[0, pi]``); ``k_s = d_s * u(angles) * N/2`` cycles per FOV and
    ``x' = |x + mean(x) sum_s A_s exp(i (2 pi k_s.r/N + psi_s))|``. This is exactly the set the random
    ``Spike`` artifact samples from (``from_severity`` reads the artifact built at that severity);
    its functional kernel ``robustaug.functional.mri.spike`` is used when available.

    Args:
        amplitude: ``(lo, hi)`` or a scalar (fixed).
        distance: ``(lo, hi)`` fraction of Nyquist.
        num_spikes: Number of spikes.
    """

    amplitude: float | tuple[float, float] = (0.0, 0.2)
    distance: float | tuple[float, float] = (0.05, 0.6)
    num_spikes: int = 1

    artifact: ClassVar[str] = "Spike"
    severity_table: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        1: {"amplitude": 0.05}, 2: {"amplitude": 0.1}, 3: {"amplitude": 0.2},
        4: {"amplitude": 0.35}, 5: {"amplitude": 0.6, "num_spikes": 2},
    }

    @classmethod
    def _from_artifact(cls, args: dict[str, Any]) -> dict[str, Any] | None:
        try:
            from ..core.registry import get_artifact

            art = get_artifact("Spike")(**args)
        except (KeyError, TypeError, ValueError):
            return None
        kw: dict[str, Any] = {"amplitude": art.intensity, "num_spikes": art.num_spikes}
        if hasattr(art, "distance"):
            kw["distance"] = art.distance
        return kw

    @staticmethod
    def _lohi(v: Any) -> tuple[float, float]:
        if isinstance(v, (tuple, list)):
            return float(v[0]), float(v[1])
        return float(v), float(v)

    def shape(self, x: Tensor) -> tuple[int, ...]:
        d = x.ndim - 2
        return (x.shape[0], self.num_spikes, 3 + (d - 1))

    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor]:
        d = x.ndim - 2
        a0, a1 = self._lohi(self.amplitude)
        d0, d1 = self._lohi(self.distance)
        lo = [a0, 0.0, d0, 0.0] + ([0.0] if d == 3 else [])
        hi = [a1, 2 * math.pi, d1, 2 * math.pi] + ([math.pi] if d == 3 else [])
        return torch.tensor(lo, device=x.device), torch.tensor(hi, device=x.device)

    def zeros(self, x: Tensor) -> Tensor:
        z = torch.zeros(self.shape(x), dtype=torch.float32, device=x.device)
        z[..., 2] = self._lohi(self.distance)[0]
        return z

    def k_vectors(self, x: Tensor, theta: Tensor) -> Tensor:
        """Spike frequencies ``(N, S, d)`` in cycles per FOV (spatial-dim order)."""
        d = x.ndim - 2
        dist = theta[..., 2]
        if d == 2:
            u = torch.stack([torch.cos(theta[..., 3]), torch.sin(theta[..., 3])], -1)
        elif d == 3:
            az, pol = theta[..., 3], theta[..., 4]
            u = torch.stack([torch.cos(pol), torch.sin(pol) * torch.cos(az),
                             torch.sin(pol) * torch.sin(az)], -1)
        else:
            raise ValueError(f"Spike supports 2D and 3D inputs, got {d} spatial dims.")
        half = torch.tensor([n / 2 for n in x.shape[2:]], device=x.device, dtype=torch.float32)
        return dist.unsqueeze(-1) * u * half

    def apply(self, x: Tensor, theta: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        k = self.k_vectors(x, theta)
        amp, ph = theta[..., 0], theta[..., 1]
        try:
            from ..functional.mri import spike as _spike
        except ImportError:
            _spike = None
        if _spike is not None:
            y = _spike(x.to(torch.float32), k, amp, ph)
        else:  # plane-wave formula (no FFT)
            grids = torch.meshgrid(*[torch.arange(n, device=x.device, dtype=torch.float32)
                                     for n in x.shape[2:]], indexing="ij")
            wave = 0
            for s in range(k.shape[1]):
                arg = sum(2 * math.pi * _bc(k[:, s, i], x) * grids[i] / x.shape[2 + i]
                          for i in range(x.ndim - 2)) + _bc(ph[:, s], x)
                wave = wave + _bc(amp[:, s], x) * torch.polar(torch.ones_like(arg), arg)
            mean = x.float().flatten(2).mean(2).reshape(*x.shape[:2], *([1] * (x.ndim - 2)))
            z = x.float() + mean * wave
            y = torch.sqrt(z.real**2 + z.imag**2 + 1e-12) - 1e-6
        return _clip(y.to(x.dtype), data_range)
