"""Compositions of transforms: Compose, OneOf, SomeOf, RandomApply.

Each composition is itself a :class:`~robustaug.core.transform.Transform`: it pickles, records
nested parameters (replayable with ``params=``), resolves the input layout once, and, when built
with ``seed=``, drives all its children from its own worker-aware generator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .checks import check_int
from .transform import Params, Transform, _intersect_dims

__all__ = ["Compose", "OneOf", "RandomApply", "SomeOf"]


def _check_transforms(transforms: Any, name: str = "transforms") -> list[Transform]:
    if isinstance(transforms, Transform):
        transforms = [transforms]
    if not isinstance(transforms, Sequence) or len(transforms) == 0:
        raise ValueError(f"`{name}` must be a non-empty sequence of robustaug Transforms.")
    for i, t in enumerate(transforms):
        if not isinstance(t, Transform):
            raise TypeError(
                f"`{name}[{i}]` must be a robustaug Transform, got {type(t).__name__}. Tip: wrap "
                "other callables in your own Transform subclass."
            )
    return list(transforms)


class _Composition(Transform):
    """Shared machinery: children in an ``nn.ModuleList`` and subset-wise application."""

    def __init__(
        self,
        transforms: Sequence[Transform],
        *,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        ts = _check_transforms(transforms)
        # dims is a ClassVar on leaf transforms; a composition supports what all children support.
        object.__setattr__(self, "dims", _intersect_dims(ts))
        super().__init__(p=p, seed=seed, spatial_dims=spatial_dims)
        self.transforms = nn.ModuleList(ts)
        self.differentiable = all(t.differentiable for t in ts)  # type: ignore[misc]

    def _child_gen(self, g: torch.Generator | None, child: Transform) -> torch.Generator | None:
        return g if g is not None else child._generator()

    def _run_child(
        self,
        i: int,
        x: Tensor,
        sel: Tensor,
        child_params: Params | None,
        g: torch.Generator | None,
    ) -> tuple[Tensor, Params | None]:
        """Run child ``i`` on the samples where ``sel`` is True."""
        child = self.transforms[i]
        if not bool(sel.any()):
            return x, child_params if child_params is not None else None
        if bool(sel.all()):
            return child._run(x, child_params, self._child_gen(g, child))
        idx = sel.nonzero().squeeze(1).to(x.device)
        y_sub, rec = child._run(x.index_select(0, idx), child_params, self._child_gen(g, child))
        return x.index_copy(0, idx, y_sub), rec

    def _split(
        self, x: Tensor, params: Mapping[str, Any] | None, g: torch.Generator | None
    ) -> tuple[Params, bool]:
        n = x.shape[0]
        if params is None:
            return {"apply": self._sample_mask(n, g)}, True
        return self._check_params(params, n), False


class Compose(_Composition):
    """Apply transforms in sequence.

    Args:
        transforms: The transforms, applied in order.
        p: Probability, per sample, of applying the whole sequence.
        seed: Seed for a private generator that drives the sequence and all children.
        spatial_dims: Resolves the 4D ambiguity (see :class:`Transform`).

    Examples:
        >>> import torch, robustaug as ra
        >>> t = ra.Compose([ra.GaussianBlur(sigma=1.0), ra.GaussianNoise(std=0.05)], seed=0)
        >>> t(torch.zeros(2, 1, 32, 32)).shape
        torch.Size([2, 1, 32, 32])
    """

    def _run(self, x, params, generator):
        g = generator if generator is not None else self._generator()
        rec, fresh = self._split(x, params, g)
        mask = rec["apply"]
        child_recs = rec.get("transforms") or [None] * len(self.transforms)
        if len(child_recs) != len(self.transforms):
            raise ValueError("`params['transforms']` must have one entry per transform.")
        out = []
        if x.shape[0] and bool(mask.any()):
            idx = mask.nonzero().squeeze(1).to(x.device)
            xs = x if bool(mask.all()) else x.index_select(0, idx)
            for i, child in enumerate(self.transforms):
                xs, r = child._run(xs, None if fresh else child_recs[i], self._child_gen(g, child))
                out.append(r)
            y = xs if bool(mask.all()) else x.index_copy(0, idx, xs)
        else:
            y, out = x, [None] * len(self.transforms)
        rec["transforms"] = out
        return y, rec


class RandomApply(Compose):
    """Apply a sequence of transforms with probability ``p`` per sample (default 0.5).

    Args:
        transforms: A transform or a sequence of transforms, applied in order.
        p: Probability of applying the sequence to a sample.
        seed: Seed for a private generator.
        spatial_dims: Resolves the 4D ambiguity.
    """

    def __init__(
        self,
        transforms: Transform | Sequence[Transform],
        *,
        p: float = 0.5,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(_check_transforms(transforms), p=p, seed=seed, spatial_dims=spatial_dims)


class OneOf(_Composition):
    """Apply exactly one transform per sample, chosen with the given weights.

    Args:
        transforms: The candidates.
        weights: Non-negative selection weights (normalised); uniform by default.
        p: Probability, per sample, of applying any of them.
        seed: Seed for a private generator.
        spatial_dims: Resolves the 4D ambiguity.
    """

    def __init__(
        self,
        transforms: Sequence[Transform],
        weights: Sequence[float] | None = None,
        *,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(transforms, p=p, seed=seed, spatial_dims=spatial_dims)
        k = len(self.transforms)
        if weights is None:
            weights = [1.0] * k
        if len(weights) != k:
            raise ValueError(f"`weights` must have {k} entries (one per transform), got {len(weights)}.")
        w = torch.tensor([float(v) for v in weights], dtype=torch.float64)
        if not torch.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"`weights` must be finite, non-negative and not all zero, got {weights}.")
        self.weights = (w / w.sum()).tolist()

    def _run(self, x, params, generator):
        g = generator if generator is not None else self._generator()
        rec, fresh = self._split(x, params, g)
        n = x.shape[0]
        if fresh:
            w = torch.tensor(self.weights, dtype=torch.float64)
            rec["choice"] = (
                torch.multinomial(w, n, replacement=True, generator=g)
                if n
                else torch.zeros(0, dtype=torch.int64)
            )
        choice = rec["choice"].to(torch.int64)
        child_recs = rec.get("transforms") or [None] * len(self.transforms)
        y, out = x, []
        for i in range(len(self.transforms)):
            sel = rec["apply"] & (choice == i)
            y, r = self._run_child(i, y, sel, None if fresh else child_recs[i], g)
            out.append(r)
        rec["transforms"] = out
        return y, rec


class SomeOf(_Composition):
    """Apply a random subset of ``n`` transforms per sample, in the given order.

    Args:
        transforms: The candidates.
        n: How many to apply: an int, or ``(lo, hi)`` sampled uniformly per sample (inclusive).
        p: Probability, per sample, of applying any of them.
        seed: Seed for a private generator.
        spatial_dims: Resolves the 4D ambiguity.
    """

    def __init__(
        self,
        transforms: Sequence[Transform],
        n: int | tuple[int, int] = 1,
        *,
        p: float = 1.0,
        seed: int | None = None,
        spatial_dims: int | None = None,
    ) -> None:
        super().__init__(transforms, p=p, seed=seed, spatial_dims=spatial_dims)
        k = len(self.transforms)
        lo, hi = (n, n) if isinstance(n, int) else tuple(n)
        self.n = (check_int(lo, "n", low=0, high=k), check_int(hi, "n", low=0, high=k))
        if self.n[0] > self.n[1]:
            raise ValueError(f"`n` range must satisfy lo <= hi, got {n}.")

    def _run(self, x, params, generator):
        g = generator if generator is not None else self._generator()
        rec, fresh = self._split(x, params, g)
        n, k = x.shape[0], len(self.transforms)
        if fresh:
            counts = torch.randint(self.n[0], self.n[1] + 1, (n,), generator=g)
            order = torch.argsort(torch.rand(n, k, generator=g), dim=1)
            rank = torch.argsort(order, dim=1)
            rec["chosen"] = rank < counts[:, None]
        chosen = rec["chosen"].to(torch.bool).reshape(n, k)
        child_recs = rec.get("transforms") or [None] * k
        y, out = x, []
        for i in range(k):
            sel = rec["apply"] & chosen[:, i]
            y, r = self._run_child(i, y, sel, None if fresh else child_recs[i], g)
            out.append(r)
        rec["transforms"] = out
        return y, rec

