"""Threat models: a perturbation variable theta, its feasible set, a projection and an ascent step.

Every threat is a differentiable map ``T_theta(x)`` with a feasible set ``Theta``. The attack engines
(PGD, APGD, FGSM, Square) only use the interface below, so one engine optimises additive pixel
perturbations (:class:`Linf`, :class:`L2`, :class:`L1`) and the physical threats of
:mod:`robustaug.adversarial.physical` alike.

All budgets are in the units of the attack's explicit ``data_range`` (HU, z-score units, [0, 1]).
Perturbations and projections are always computed in float32 (also under ``torch.autocast``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["L1", "L2", "Linf", "Threat", "project_l1_ball"]


def _bc(v: Tensor, ref: Tensor) -> Tensor:
    """Per-sample ``(N,)`` values reshaped to broadcast against ``ref``."""
    return v.reshape(-1, *([1] * (ref.ndim - 1)))


def _flatnorm(t: Tensor, p: float) -> Tensor:
    return t.flatten(1).norm(p=p, dim=1)


def project_l1_ball(v: Tensor, eps: float | Tensor) -> Tensor:
    """Euclidean projection of each sample of ``v`` onto the L1 ball of radius ``eps``.

    Duchi et al., "Efficient projections onto the l1-ball for learning in high dimensions", ICML 2008
    (sort-based, O(d log d)).
    """
    n = v.shape[0]
    flat = v.flatten(1)
    eps_t = torch.as_tensor(eps, dtype=flat.dtype, device=flat.device).expand(n)
    a = flat.abs()
    inside = a.sum(1) <= eps_t
    if bool(inside.all()):
        return v
    mu, _ = torch.sort(a, dim=1, descending=True)
    cs = mu.cumsum(1)
    ar = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=flat.dtype)
    cond = mu - (cs - eps_t[:, None]) / ar > 0
    rho = cond.to(flat.dtype).mul(ar).argmax(1)  # last index where cond holds
    theta = (cs.gather(1, rho[:, None]).squeeze(1) - eps_t) / (rho + 1).to(flat.dtype)
    out = flat.sign() * (a - theta[:, None]).clamp_min(0)
    out = torch.where(inside[:, None], flat, out)
    return out.reshape(v.shape)


@dataclass
class Threat:
    """Base class. Subclasses define the variable ``theta`` and its feasible set.

    Args:
        eps: Budget (in ``data_range`` units for pixel threats).
        steps: Iterations for PGD-type attacks.
        alpha: Absolute PGD step size; ``None`` uses the subclass default (``2.5 * eps / steps``,
            Madry et al. 2018).
        random_start: Start from a random point of the feasible set.
        restarts: Random restarts (the per-sample best is kept).
    """

    eps: float = 8 / 255
    steps: int = 10
    alpha: float | None = None
    random_start: bool = True
    restarts: int = 1

    norm: str = dataclasses.field(default="", init=False, repr=False)
    additive: bool = dataclasses.field(default=True, init=False, repr=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.eps, (int, float)) and self.eps >= 0 and math.isfinite(self.eps)):
            raise ValueError(f"`eps` must be a finite number >= 0, got {self.eps!r}.")
        if int(self.steps) != self.steps or self.steps < 0:
            raise ValueError(f"`steps` must be an int >= 0, got {self.steps!r}.")
        if int(self.restarts) != self.restarts or self.restarts < 1:
            raise ValueError(f"`restarts` must be an int >= 1, got {self.restarts!r}.")
        if self.alpha is not None and not self.alpha > 0:
            raise ValueError(f"`alpha` must be > 0 or None, got {self.alpha!r}.")

    # --------------------------------------------------------------- configuration
    @property
    def step_size(self) -> float:
        """Absolute PGD step size."""
        if self.alpha is not None:
            return float(self.alpha)
        return 2.5 * self.eps / max(self.steps, 1)

    def replace(self, **kw: Any) -> Threat:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **kw)

    def scaled(self, factor: float) -> Threat:
        """The same threat with ``eps`` (and an explicit ``alpha``) scaled by ``factor``."""
        alpha = None if self.alpha is None else self.alpha * factor
        return self.replace(eps=self.eps * factor, alpha=alpha)

    # --------------------------------------------------------------- variable space
    def zeros(self, x: Tensor) -> Tensor:
        """The identity perturbation (theta such that ``apply(x, theta) == x``)."""
        return torch.zeros_like(x, dtype=torch.float32)

    def init(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """A random feasible starting point (drawn from ``generator``)."""
        raise NotImplementedError

    def apply(self, x: Tensor, theta: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        """``T_theta(x)`` (float32)."""
        return x + theta

    def ascent(self, theta: Tensor, grad: Tensor, rel_step: float | Tensor) -> Tensor:
        """Steepest-ascent step of size ``rel_step * eps`` in the threat's norm (unprojected)."""
        raise NotImplementedError

    def project(self, theta: Tensor, x: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        """Project onto the feasible set (budget, then ``data_range``)."""
        raise NotImplementedError

    def size(self, theta: Tensor) -> Tensor:
        """Per-sample size of theta in the threat's norm (compared to ``eps`` by tests)."""
        raise NotImplementedError

    def scale_for(self, theta: Tensor) -> Tensor | float:
        """Scale that converts a relative step into the variable's units (``eps`` here)."""
        return self.eps

    @staticmethod
    def _box(theta: Tensor, x: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        if data_range is None:
            return theta
        lo, hi = data_range
        return torch.maximum(torch.minimum(theta, hi - x), lo - x)


@dataclass
class Linf(Threat):
    r"""L-infinity additive threat: ``x' = clip(x + delta)``, ``||delta||_inf <= eps``.

    Ascent step ``delta + a * sign(g)``; projection by clipping. Madry et al., "Towards deep learning
    models resistant to adversarial attacks", ICLR 2018.

    Examples:
        >>> Linf(eps=0.1, steps=10).step_size
        0.025
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.norm = "Linf"

    def init(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        u = torch.rand(x.shape, generator=generator, dtype=torch.float32, device="cpu")
        return ((2 * u - 1) * self.eps).to(x.device)

    def ascent(self, theta: Tensor, grad: Tensor, rel_step: float | Tensor) -> Tensor:
        step = rel_step * self.eps if not isinstance(rel_step, Tensor) else _bc(rel_step, theta) * self.eps
        return theta + step * grad.sign()

    def project(self, theta: Tensor, x: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        return self._box(theta.clamp(-self.eps, self.eps), x, data_range)

    def size(self, theta: Tensor) -> Tensor:
        return theta.flatten(1).abs().amax(1) if theta.numel() else theta.new_zeros(len(theta))


@dataclass
class L2(Threat):
    r"""L2 additive threat: ``||delta||_2 <= eps`` per sample.

    Ascent ``delta + a * g / ||g||_2``; projection by radial scaling, then ``data_range`` clipping
    (which can only shrink the norm). Madry et al., ICLR 2018.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        self.norm = "L2"

    def init(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        g = torch.randn(x.shape, generator=generator, dtype=torch.float32)
        r = torch.rand(x.shape[0], generator=generator, dtype=torch.float32)
        n = _flatnorm(g, 2).clamp_min(1e-12)
        return (g * _bc(r * self.eps / n, g)).to(x.device)

    def ascent(self, theta: Tensor, grad: Tensor, rel_step: float | Tensor) -> Tensor:
        n = _flatnorm(grad, 2).clamp_min(1e-12)
        return theta + _bc(rel_step * self.eps / n, grad) * grad

    def project(self, theta: Tensor, x: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        n = _flatnorm(theta, 2)
        f = torch.clamp(self.eps / n.clamp_min(1e-12), max=1.0)
        return self._box(theta * _bc(f, theta), x, data_range)

    def size(self, theta: Tensor) -> Tensor:
        return _flatnorm(theta, 2)


@dataclass
class L1(Threat):
    r"""L1 additive threat: ``||delta||_1 <= eps`` per sample.

    Ascent is the sparse steepest step of Tramer & Boneh ("Adversarial training and robustness for
    multiple perturbations", NeurIPS 2019): the sign of the top ``sparsity`` fraction of gradient
    coordinates, scaled to L1 norm ``a``. Projection: exact L1-ball projection (Duchi et al. 2008),
    then ``data_range`` clipping.

    Args:
        sparsity: Fraction of coordinates updated per step (at least one).
    """

    sparsity: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.sparsity <= 1:
            raise ValueError(f"`sparsity` must be in (0, 1], got {self.sparsity!r}.")
        self.norm = "L1"

    @property
    def step_size(self) -> float:
        if self.alpha is not None:
            return float(self.alpha)
        return 2.0 * self.eps / max(self.steps, 1)

    def init(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        lap = torch.rand(x.shape, generator=generator, dtype=torch.float32) * 2 - 1
        r = torch.rand(x.shape[0], generator=generator, dtype=torch.float32)
        n = _flatnorm(lap, 1).clamp_min(1e-12)
        return (lap * _bc(r * self.eps / n, lap)).to(x.device)

    def ascent(self, theta: Tensor, grad: Tensor, rel_step: float | Tensor) -> Tensor:
        flat = grad.flatten(1)
        k = max(1, math.ceil(self.sparsity * flat.shape[1]))
        thr = flat.abs().topk(k, dim=1).values[:, -1:]
        e = torch.where(flat.abs() >= thr, flat.sign(), torch.zeros_like(flat))
        e = e / e.abs().sum(1, keepdim=True).clamp_min(1e-12)
        s = rel_step if not isinstance(rel_step, Tensor) else rel_step[:, None]
        return theta + (s * self.eps * e).reshape(theta.shape)

    def project(self, theta: Tensor, x: Tensor, data_range: tuple[float, float] | None) -> Tensor:
        return self._box(project_l1_ball(theta, self.eps), x, data_range)

    def size(self, theta: Tensor) -> Tensor:
        return _flatnorm(theta, 1)
