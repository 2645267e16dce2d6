"""Physically parameterised threats: the attack variable is an artifact's continuous parameters.

Each threat is a differentiable ``T_theta(x)`` whose parameters ``theta`` live in a box
``[lo, hi]`` given in physical units (a fraction of field inhomogeneity, degrees, millimetres,
amplitude, an SNR floor). PGD and APGD optimise ``theta`` with sign steps measured in units of the
box half-width and project by clipping, so the parameters stay inside their set at every step.
Outputs are clipped to ``data_range`` (detector / display saturation).

The threats named after an artifact (:class:`BiasField`, :class:`Gamma`, :class:`Motion`,
:class:`Ghosting`, :class:`RicianNoise`, :class:`Spike`) apply that artifact's own kernel, with
the artifact's continuous parameters as ``theta`` bounded by exactly the range the artifact samples
from (:class:`ArtifactThreat`): for every feasible ``theta``,
``apply(x, theta, None) == artifact.apply(x, to_params(x, theta))``. Discrete parameters and event
timing are fixed at a random draw of the artifact (the random start is that draw; restarts redraw).
``zeros(x)`` is the identity where the artifact's set allows it (for k-space threats on
non-negative magnitude images, up to round-off).

Severity mapping. ``Threat.from_severity(k)`` builds the feasible set that the random artifact of the
same name samples from at severity ``k``: if ``robustaug.get_artifact(name)`` is registered, its
``severity_table[k]`` is translated (see ``_from_artifact``; the artifact-backed threats take its
arguments unchanged); otherwise the built-in table below (in the same physical units) is used, and
``severity_source`` records which one was used.

References:
    Chen et al., "Realistic adversarial data augmentation for MR image segmentation", MICCAI 2020
    (adversarial bias field); Engstrom et al., "Exploring the landscape of spatial robustness",
    ICML 2019 (rotation/translation attacks); Shaw et al., "MRI k-space motion artefact augmentation",
    MIDL 2019 (segment-wise rigid motion in k-space); Perez-Garcia et al., TorchIO, CMPB 2021
    (ghosting/spike models).
"""

from __future__ import annotations

import dataclasses
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
    "ArtifactThreat",
    "BiasField",
    "Gamma",
    "Ghosting",
    "IntensityShift",
    "Motion",
    "NoiseBudget",
    "PhysicalThreat",
    "RicianNoise",
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
        self._free: Tensor | float = 1.0

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

    def free(self, x: Tensor) -> Tensor | float:
        """1 for the entries of ``theta`` the attack optimises, 0 for fixed ones (broadcastable).

        Fixed entries (discrete or timing parameters taken from the artifact's random draw) keep the
        value ``init`` gave them: the ascent step is zero there.
        """
        return 1.0

    def floors(self, x: Tensor) -> Tensor | None:
        """Smallest allowed ``|theta|`` per entry (a signed-magnitude range ``lo <= |v| <= hi``).

        ``None`` (the default): a plain box. Used where the artifact samples a magnitude in
        ``[lo, hi]`` with a random sign (a union of two intervals; projection keeps the sign).
        """
        return None

    def ascent(self, theta: Tensor, grad: Tensor, rel_step: float | Tensor) -> Tensor:
        lo, hi = self._cached
        half = (hi - lo) / 2
        s = _bc(rel_step, theta) if isinstance(rel_step, Tensor) else rel_step
        return theta + s * half * grad.sign() * self._free

    def project(self, theta: Tensor, x: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        lo, hi = self.bounds(x)
        self._cached = (lo, hi)
        self._free = self.free(x)
        out = torch.maximum(torch.minimum(theta, hi), lo)
        fl = self.floors(x)
        if fl is not None:
            sign = torch.where(out < 0, -1.0, 1.0)
            out = torch.where(out.abs() < fl, sign * fl, out)
        return out

    def contains(self, theta: Tensor, x: Tensor, tol: float = 1e-6) -> bool:
        """Whether every parameter lies inside its set (with relative tolerance ``tol``)."""
        lo, hi = self.bounds(x)
        w = (hi - lo).abs().clamp_min(1e-12)
        ok = (theta >= lo - tol * w) & (theta <= hi + tol * w)
        fl = self.floors(x)
        if fl is not None:
            ok = ok & (theta.abs() >= fl - tol * w)
        return bool(ok.all())

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

    artifact: ClassVar[str] = ""
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


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def _detached_f64(t: Tensor) -> Tensor:
    return t.detach().to(device="cpu", dtype=torch.float64)


@dataclass
class ArtifactThreat(PhysicalThreat):
    """A threat that *is* a registered artifact with its continuous parameters made adversarial.

    The threat builds the artifact ``robustaug.get_artifact(artifact)(**artifact_kwargs())`` from
    its own fields (the same names, units and range conventions as the artifact: a scalar is a fixed
    value, a pair ``(lo, hi)`` a range) and applies the artifact's own kernel. ``theta`` packs the
    artifact's parameters (:meth:`to_params` / :meth:`from_params`); the continuous ones are
    optimised inside exactly the range the artifact samples from, the discrete ones (and event
    timing) are *fixed* at the artifact's random draw: :meth:`init` is a random draw of the artifact
    (``artifact.sample_params(x, generator)``), so each restart redraws them and PGD keeps the
    per-sample best over restarts. For every feasible ``theta``,
    ``apply(x, theta, None) == artifact.apply(x, to_params(x, theta))``.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        from ..core.registry import get_artifact

        self._art = get_artifact(self.artifact)(**self.artifact_kwargs())

    @property
    def transform(self) -> Any:
        """The artifact instance whose kernel and parameter set this threat uses."""
        return self._art

    def artifact_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the artifact (its ranges at this threat's severity)."""
        raise NotImplementedError

    def to_params(self, x: Tensor, theta: Tensor) -> dict[str, Tensor]:
        """The artifact's ``params`` dict for ``theta`` (differentiable where the artifact is)."""
        raise NotImplementedError

    def from_params(self, x: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        """``theta`` (float32) for an artifact draw ``params``."""
        raise NotImplementedError

    def init(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        return self.from_params(x, self._art.sample_params(x, generator)).to(x.device)

    def apply(self, x: Tensor, theta: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        return _clip(self._art.apply(x, self.to_params(x, theta)), data_range)

    @classmethod
    def _from_artifact(cls, args: dict[str, Any]) -> dict[str, Any] | None:
        known = _fields(cls)
        return {k: v for k, v in args.items() if k in known}

    @staticmethod
    def _pair(v: Any) -> tuple[float, float]:
        if isinstance(v, (tuple, list)):
            return float(v[0]), float(v[1])
        return float(v), float(v)

    def _t(self, vals: Sequence[float], x: Tensor) -> Tensor:
        return torch.tensor(list(vals), dtype=torch.float32, device=x.device)


@dataclass
class BiasField(ArtifactThreat):
    r"""Adversarial bias field with the ``BiasField`` artifact's own model and normalisation.

    ``x' = x b``, ``b = alpha B(e^c) + beta``: ``B`` is the cubic B-spline through the control
    values ``e^c`` (``n_control`` per axis, :func:`robustaug.functional.mri_field.bspline_upsample`)
    and ``alpha, beta`` rescale it so that over the region (foreground or FOV) ``max b - min b = p``
    and ``mean b = 1`` (or mid-range 1), exactly as :class:`robustaug.artifacts.mri_field.BiasField`
    does (here with gradients through the rescaling). ``theta = (p, c)``, shape
    ``(N, 1 + n_control^d)``: ``p`` in the artifact's ``peak_to_peak_percent / 100`` range and the
    log control values ``c`` in ``[-log_bound, log_bound]``. The rescaling removes a common factor
    of the control values, so ``c`` matters up to a common shift (:meth:`from_params` centres it).
    The artifact draws ``c ~ N(0, 0.5^2)`` i.i.d. (unbounded); the box is 5 of its standard
    deviations (``log_bound = 2.5``), which holds every centred draw in practice (the tests check
    the artifact's draws are feasible). Whatever ``c``, the field's peak-to-peak over the region is
    exactly ``p``: the physical bound holds at every step.

    Args:
        peak_to_peak_percent: As the artifact: scalar (fixed) or ``(lo, hi)`` in percent.
        eps_b: Legacy bound ``|b - 1| <= eps_b``: sets ``peak_to_peak_percent = (0, 200 eps_b)``,
            ``center="midrange"`` and ``normalize_over="fov"`` (so it holds at every voxel).
        n_control, normalize_over, foreground_threshold, center, stats_stride: As the artifact.
        log_bound: Box of the log control values.

    References:
        Chen et al., "Realistic adversarial data augmentation for MR image segmentation", MICCAI
        2020; Sled et al., IEEE TMI 17(1):87-97, 1998 (B-spline INU).
    """

    peak_to_peak_percent: float | tuple[float, float] = (10.0, 40.0)
    eps_b: float | None = None
    n_control: int = 5
    normalize_over: str = "foreground"
    foreground_threshold: float = 0.1
    center: str = "mean"
    stats_stride: int | None = None
    log_bound: float = 2.5

    artifact: ClassVar[str] = "BiasField"
    severity_table: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        1: {"peak_to_peak_percent": 10.0}, 2: {"peak_to_peak_percent": 20.0},
        3: {"peak_to_peak_percent": 30.0}, 4: {"peak_to_peak_percent": 40.0},
        5: {"peak_to_peak_percent": 60.0},
    }

    def __post_init__(self) -> None:
        if self.eps_b is not None:
            if not 0 <= self.eps_b < 0.95:
                raise ValueError(f"`eps_b` must be in [0, 0.95), got {self.eps_b!r}.")
            self.peak_to_peak_percent = (0.0, 200.0 * float(self.eps_b))
            self.center, self.normalize_over = "midrange", "fov"
            self.eps_b = None
        if not self.log_bound > 0:
            raise ValueError(f"`log_bound` must be > 0, got {self.log_bound!r}.")
        super().__post_init__()

    def artifact_kwargs(self) -> dict[str, Any]:
        return {"peak_to_peak_percent": self.peak_to_peak_percent, "n_control": self.n_control,
                "normalize_over": self.normalize_over,
                "foreground_threshold": self.foreground_threshold, "center": self.center,
                "stats_stride": self.stats_stride}

    def _ctrl(self, x: Tensor) -> tuple[int, ...]:
        return (self.n_control,) * (x.ndim - 2)

    def shape(self, x: Tensor) -> tuple[int, ...]:
        return (x.shape[0], 1 + math.prod(self._ctrl(x)))

    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor]:
        p0, p1 = self._art.peak_to_peak_percent
        k = math.prod(self._ctrl(x))
        lo = torch.full((k + 1,), -float(self.log_bound), device=x.device)
        hi = torch.full((k + 1,), float(self.log_bound), device=x.device)
        lo[0], hi[0] = p0 / 100.0, p1 / 100.0
        return lo, hi

    def zeros(self, x: Tensor) -> Tensor:
        z = torch.zeros(self.shape(x), dtype=torch.float32, device=x.device)
        z[:, 0] = self._art.peak_to_peak_percent[0] / 100.0  # c = 0: a flat field, b = 1
        return z

    def to_params(self, x: Tensor, theta: Tensor) -> dict[str, Tensor]:
        return {"peak_to_peak": theta[:, 0].double(),
                "log_field": theta[:, 1:].reshape(x.shape[0], 1, *self._ctrl(x)).double()}

    def from_params(self, x: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        ptp = params["peak_to_peak"].reshape(-1, 1).float()
        c = params["log_field"].reshape(x.shape[0], -1).double()
        # the rescaling removes a common factor e^m of the control values: centre c (same field)
        c = c - 0.5 * (c.amax(1, keepdim=True) + c.amin(1, keepdim=True))
        return torch.cat([ptp, c.float()], 1).to(x.device)

    def field(self, x: Tensor, theta: Tensor) -> Tensor:
        """The normalised bias field ``b`` ``(N, 1, *spatial)``, differentiable in ``theta``.

        Calls the artifact's own :meth:`~robustaug.artifacts.mri_field.BiasField.rescale_control`
        and ``field_from_control`` (region from ``x``, rescaling of the control values, positivity
        clamp), here with gradients through the rescaling.
        """
        art = self._art
        prm = self.to_params(x, theta)
        ctrl = torch.exp(prm["log_field"].to(device=x.device, dtype=x.dtype))
        ctrl = art.rescale_control(x, ctrl, prm["peak_to_peak"])
        return art.field_from_control(ctrl, tuple(x.shape[2:]))

    def apply(self, x: Tensor, theta: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        return _clip(x * self.field(x, theta), data_range)


@dataclass
class Gamma(ArtifactThreat):
    r"""Adversarial gamma with the ``Gamma`` artifact's kernel (:func:`robustaug.functional.generic.gamma`).

    ``x' = m + (M - m) ((x - m)/(M - m))^{e^theta}`` on each sample's own window ``[m, M]`` (the
    artifact's convention); ``theta = log gamma`` in the artifact's ``log_gamma`` range (TorchIO's
    log-gamma parametrisation, Perez-Garcia et al., CMPB 2021).

    Args:
        log_gamma: As the artifact: scalar (fixed) or ``(lo, hi)``.
    """

    log_gamma: float | tuple[float, float] = (-0.3, 0.3)

    artifact: ClassVar[str] = "Gamma"
    severity_table: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        1: {"log_gamma": (-0.15, 0.15)}, 2: {"log_gamma": (-0.30, 0.30)},
        3: {"log_gamma": (-0.45, 0.45)}, 4: {"log_gamma": (-0.65, 0.65)},
        5: {"log_gamma": (-0.90, 0.90)},
    }

    def artifact_kwargs(self) -> dict[str, Any]:
        return {"log_gamma": self.log_gamma}

    def shape(self, x: Tensor) -> tuple[int, ...]:
        return (x.shape[0], 1)

    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor]:
        lo, hi = self._art.log_gamma
        return self._t([lo], x), self._t([hi], x)

    def to_params(self, x: Tensor, theta: Tensor) -> dict[str, Tensor]:
        return {"log_gamma": theta[:, 0]}

    def from_params(self, x: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return params["log_gamma"].reshape(-1, 1).float().to(x.device)


@dataclass
class Motion(ArtifactThreat):
    r"""Adversarial rigid motion with the ``Motion`` artifact's k-space kernel.

    :func:`robustaug.functional.mri.motion`: the object moves at ``E`` events; each phase-encode line
    takes its k-space values from the pose active when it is acquired; the first event is placed so
    that ``moved_energy`` of the k-space energy is acquired after it ("moved energy" timing,
    Shaw et al., MIDL 2019). The attack variable is the pose of every event (rotation in degrees,
    translation in mm) inside the artifact's ranges (``degrees = d``: ``(-d, d)``;
    ``(lo, hi)``: ``lo <= |v| <= hi``, projected keeping the sign). The number of events, the event
    times and the moved energy are taken from the artifact's random draw and fixed (they act
    through a line index: zero gradient); each restart redraws them.

    ``theta`` is ``(N, E, r + d + 3)``, ``E`` the largest number of events, per event: ``r``
    rotation angles (1 in 2D, 3 in 3D), ``d`` translations, then (fixed) the event time, the moved
    energy and the sample's number of events ``n`` (events ``>= n`` repeat pose ``n - 1``, as the
    artifact).

    Args:
        degrees, translation_mm, num_events, moved_energy, spacing, pe_axis, order, acquisition,
        slice_axis: As the artifact.
    """

    degrees: float | tuple[float, float] = 5.0
    translation_mm: float | tuple[float, float] = 5.0
    num_events: int | tuple[int, int] = (1, 2)
    moved_energy: float | tuple[float, float] = (0.02, 0.2)
    spacing: float | Sequence[float] | None = None
    pe_axis: int = -2
    order: str = "linear"
    acquisition: str = "3d"
    slice_axis: int = -3

    artifact: ClassVar[str] = "Motion"
    severity_table: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        1: {"degrees": 1.0, "translation_mm": 1.0, "num_events": 1, "moved_energy": (0.01, 0.03)},
        2: {"degrees": 2.0, "translation_mm": 2.0, "num_events": 1, "moved_energy": (0.02, 0.06)},
        3: {"degrees": 4.0, "translation_mm": 4.0, "num_events": 2, "moved_energy": (0.04, 0.12)},
        4: {"degrees": 7.0, "translation_mm": 7.0, "num_events": 2, "moved_energy": (0.08, 0.2)},
        5: {"degrees": 10.0, "translation_mm": 10.0, "num_events": 3,
            "moved_energy": (0.15, 0.35)},
    }

    def artifact_kwargs(self) -> dict[str, Any]:
        return {"degrees": self.degrees, "translation_mm": self.translation_mm,
                "num_events": self.num_events, "moved_energy": self.moved_energy,
                "spacing": self.spacing, "pe_axis": self.pe_axis, "order": self.order,
                "acquisition": self.acquisition, "slice_axis": self.slice_axis}

    @staticmethod
    def _nr(x: Tensor) -> int:
        return 1 if x.ndim == 4 else 3

    def shape(self, x: Tensor) -> tuple[int, ...]:
        d = x.ndim - 2
        return (x.shape[0], self._art.num_events[1], self._nr(x) + d + 3)

    def _cols(self, x: Tensor, which: int) -> list[float]:
        art, d, nr = self._art, x.ndim - 2, self._nr(x)
        me, ne = art.moved_energy, art.num_events
        return ([art.degrees[which]] * nr + [art.translation_mm[which]] * d
                + [float(which), float(me[which]), float(ne[which])])

    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor]:
        hi = self._t(self._cols(x, 1), x)
        lo = self._t(self._cols(x, 0), x)
        k = self._nr(x) + x.ndim - 2
        lo[:k] = -hi[:k]
        return lo, hi

    def floors(self, x: Tensor) -> Tensor | None:
        k = self._nr(x) + x.ndim - 2
        fl = self._t(self._cols(x, 0), x)
        fl[k:] = 0.0
        return fl if bool((fl > 0).any()) else None

    def free(self, x: Tensor) -> Tensor:
        k = self._nr(x) + x.ndim - 2
        f = torch.zeros(k + 3, device=x.device)
        f[:k] = 1.0
        return f

    def zeros(self, x: Tensor) -> Tensor:
        z = torch.zeros(self.shape(x), dtype=torch.float32, device=x.device)
        z[..., -2] = self._art.moved_energy[0]
        z[..., -1] = self._art.num_events[0]
        return z

    def to_params(self, x: Tensor, theta: Tensor) -> dict[str, Tensor]:
        nr, d = self._nr(x), x.ndim - 2
        e = theta.shape[1]
        nev = theta[:, 0, -1].detach().round().long().clamp(1, e)
        last = torch.minimum(torch.arange(e, device=theta.device)[None, :], (nev - 1)[:, None])
        rot = torch.gather(theta[..., :nr], 1, last[..., None].expand(-1, -1, nr))
        tr = torch.gather(theta[..., nr:nr + d], 1, last[..., None].expand(-1, -1, d))
        return {"rotation": rot, "translation": tr, "times": _detached_f64(theta[..., nr + d]),
                "moved_energy": _detached_f64(theta[:, 0, nr + d + 1])}

    def from_params(self, x: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        rot = params["rotation"].float()
        tr = params["translation"].float()
        b, e = rot.shape[:2]
        if rot.ndim == 2:
            rot = rot[..., None]
        # number of events: poses >= n repeat pose n - 1 (the artifact's gather)
        same = ((rot[:, 1:] == rot[:, :-1]).all(-1) & (tr[:, 1:] == tr[:, :-1]).all(-1))
        nev = 1 + torch.cumprod((~same).long(), 1).sum(1) if e > 1 else torch.ones(b, dtype=torch.long)
        lo = self._art.num_events[0]
        nev = nev.clamp(min=lo)  # poses equal by chance (a zero range): any n is the same image
        times = params["times"].float().reshape(b, e, 1)
        me = params["moved_energy"].float().reshape(b, 1, 1).expand(b, e, 1)
        n = nev.float().reshape(b, 1, 1).expand(b, e, 1)
        return torch.cat([rot, tr, times, me, n], -1).to(x.device)


@dataclass
class Ghosting(ArtifactThreat):
    r"""Adversarial ghosting with the ``Ghosting`` artifact's kernel (:func:`robustaug.functional.mri.ghosting`).

    k-line ``m`` is scaled by ``1 + a cos(2 pi m / n + phi)``: two ghosts of amplitude ``a/2`` at
    ``+-FOV/n`` (Wood & Henkelman, Med Phys 1985). ``theta = (a, phi, n)``: the modulation depth
    ``a`` in the artifact's ``amplitude`` range and the phase ``phi`` in ``[0, 2 pi]`` are
    optimised; the period ``n`` (an integer number of k-lines) is taken from the artifact's random
    draw and fixed (each restart redraws it).

    Args:
        amplitude, period, pe_axis: As the artifact.
    """

    amplitude: float | tuple[float, float] = (0.05, 0.3)
    period: int | tuple[int, int] = (2, 8)
    pe_axis: int = -2

    artifact: ClassVar[str] = "Ghosting"
    severity_table: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        1: {"amplitude": 0.05}, 2: {"amplitude": 0.1}, 3: {"amplitude": 0.2},
        4: {"amplitude": 0.35}, 5: {"amplitude": 0.5},
    }

    def artifact_kwargs(self) -> dict[str, Any]:
        return {"amplitude": self.amplitude, "period": self.period, "pe_axis": self.pe_axis}

    def shape(self, x: Tensor) -> tuple[int, ...]:
        return (x.shape[0], 3)

    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, n = self._art.amplitude, self._art.period
        return self._t([a[0], 0.0, n[0]], x), self._t([a[1], 2 * math.pi, n[1]], x)

    def free(self, x: Tensor) -> Tensor:
        return self._t([1.0, 1.0, 0.0], x)

    def zeros(self, x: Tensor) -> Tensor:
        z = torch.zeros(self.shape(x), dtype=torch.float32, device=x.device)
        z[:, 2] = self._art.period[0]  # a = 0: no ghosts
        return z

    def to_params(self, x: Tensor, theta: Tensor) -> dict[str, Tensor]:
        return {"amplitude": theta[:, 0], "phase": theta[:, 1],
                "period": theta[:, 2].detach().round()}

    def from_params(self, x: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        return torch.stack([params["amplitude"].float(), params["phase"].float(),
                            params["period"].float()], 1).to(x.device)


@dataclass
class RicianNoise(ArtifactThreat):
    r"""Adversarial noise realisation at the ``RicianNoise`` artifact's noise level (an SNR floor).

    The artifact's kernel (:func:`robustaug.functional.mri_field.rician_noise`):
    ``x' = sqrt((x + sigma n_1)^2 + (sigma n_2)^2)`` with ``sigma = s I_ref`` (``reference`` as
    the artifact). The artifact draws ``n = (n_1, n_2)`` i.i.d. N(0, 1) from per-sample seeds and
    ``s`` from its ``sigma`` range, which the severity table fixes (BrainWeb 1-9 % of the brightest
    tissue). Attacking ``s`` alone with the realisation fixed would make the feasible set a single
    point at every severity, so the attack variable is the realisation itself at the artifact's
    noise power: ``theta = (s, n)``, ``s`` in the ``sigma`` range and ``n`` in the L2 ball of RMS
    ``rho = sqrt(1 + 3 / sqrt(m))`` (``m`` values per channel), the 3-sigma bound of the RMS of the
    artifact's own Gaussian draws (the chi-square concentration of ``||n||^2 / 2m``, mean 1, std
    ``1/sqrt(m)``): the noise energy, i.e. the SNR, is that of the random artifact, only its
    shape is chosen. ``init`` is the artifact's draw (the seeds' realisation); for it ``apply`` equals
    ``artifact.apply(x, {"sigma", "seed"})``, for any other feasible ``theta`` it is the same
    formula with the chosen realisation.

    ``theta`` is ``(N, 1 + 2 m)``: ``s``, then ``n_1`` and ``n_2`` flattened.

    Args:
        sigma, reference: As the artifact.

    References:
        Gudbjartsson & Patz, MRM 34(6):910-914, 1995; Kwan et al., IEEE TMI 18(11), 1999.
    """

    sigma: float | tuple[float, float] = (0.01, 0.05)
    reference: str | float = "absolute"

    artifact: ClassVar[str] = "RicianNoise"
    severity_table: ClassVar[Mapping[int, Mapping[str, Any]]] = {
        k + 1: {"sigma": v, "reference": "max"} for k, v in enumerate((0.01, 0.03, 0.05, 0.07, 0.09))
    }

    def artifact_kwargs(self) -> dict[str, Any]:
        return {"sigma": self.sigma, "reference": self.reference}

    @staticmethod
    def _m(x: Tensor) -> int:
        return x[0].numel()

    def rho(self, x: Tensor) -> float:
        """RMS bound of the realisation (in units of ``sigma``)."""
        return math.sqrt(1 + 3 / math.sqrt(self._m(x)))

    def shape(self, x: Tensor) -> tuple[int, ...]:
        return (x.shape[0], 1 + 2 * self._m(x))

    def _ref(self, x: Tensor) -> Tensor:
        from ..artifacts.mri_field import _reference_values

        return _reference_values(x, self._art.reference).to(x.device)

    def bounds(self, x: Tensor) -> tuple[Tensor, Tensor]:
        lo, hi = self._art.sigma
        r = self.rho(x)
        return self._t([lo, -r], x).repeat_interleave(torch.tensor([1, 2 * self._m(x)],
                                                                  device=x.device)), \
            self._t([hi, r], x).repeat_interleave(torch.tensor([1, 2 * self._m(x)],
                                                              device=x.device))

    def zeros(self, x: Tensor) -> Tensor:
        z = torch.zeros(self.shape(x), dtype=torch.float32, device=x.device)
        z[:, 0] = self._art.sigma[0]
        return z

    def _noise(self, x: Tensor, theta: Tensor) -> Tensor:
        return theta[:, 1:].reshape(x.shape[0], 2, *x.shape[1:])

    def to_params(self, x: Tensor, theta: Tensor) -> dict[str, Tensor]:
        return {"sigma": theta[:, 0].double() * self._ref(x).to(torch.float64)}

    def from_params(self, x: Tensor, params: Mapping[str, Tensor]) -> Tensor:
        from ..core.rng import per_sample_noise

        ref = self._ref(x).to(torch.float64).cpu()
        sig = _detached_f64(params["sigma"])
        s = torch.where(ref > 0, sig / ref.clamp_min(1e-300), self._art.sigma[0])
        n = per_sample_noise(params["seed"], (2, *x.shape[1:]), device=x.device,
                             dtype=torch.float32)
        return torch.cat([s.float().reshape(-1, 1).to(x.device), n.reshape(x.shape[0], -1)], 1)

    def apply(self, x: Tensor, theta: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        from ..functional.mri_field import _hypot, _sigma_like

        s = _sigma_like(self.to_params(x, theta)["sigma"].to(device=x.device, dtype=x.dtype), x)
        n = self._noise(x, theta).to(x.dtype)
        return _clip(_hypot(torch.addcmul(x, s, n[:, 0]), s * n[:, 1]), data_range)

    # the realisation lives in an L2 ball; s in its box
    def ascent(self, theta: Tensor, grad: Tensor, rel_step: float | Tensor) -> Tensor:
        lo, hi = self._cached
        s = _bc(rel_step, theta) if isinstance(rel_step, Tensor) else rel_step
        g = grad[:, 1:]
        nrm = g.norm(dim=1, keepdim=True).clamp_min(1e-12)
        step_n = s * self._radius * g / nrm
        step_s = s * (hi[0] - lo[0]) / 2 * grad[:, :1].sign()
        return theta + torch.cat([step_s, step_n], 1)

    def project(self, theta: Tensor, x: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        lo, hi = self.bounds(x)
        self._cached = (lo, hi)
        self._radius = self.rho(x) * math.sqrt(2 * self._m(x))
        n = theta[:, 1:]
        f = (self._radius / n.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
        return torch.cat([theta[:, :1].clamp(lo[0], hi[0]), n * f], 1)

    def contains(self, theta: Tensor, x: Tensor, tol: float = 1e-6) -> bool:
        lo, hi = self.bounds(x)
        w = float((hi[0] - lo[0]).abs().clamp_min(1e-12))
        s = theta[:, 0]
        r = self.rho(x) * math.sqrt(2 * self._m(x))
        ok = (s >= lo[0] - tol * w) & (s <= hi[0] + tol * w)
        return bool(ok.all()) and bool((theta[:, 1:].norm(dim=1) <= r * (1 + tol)).all())

    def size(self, theta: Tensor) -> Tensor:
        """RMS of the realisation per sample (compare with :meth:`rho`)."""
        n = theta[:, 1:]
        return n.norm(dim=1) / math.sqrt(n.shape[1])


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
