"""Argument and input validation with errors that name the argument, the expected form and a tip."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "check_choice",
    "check_int",
    "check_probability",
    "check_range",
    "check_severity",
    "check_tensor",
    "resolve_layout",
]

Range = tuple[float, float]


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _finite(name: str, v: float) -> float:
    v = float(v)
    if math.isnan(v) or math.isinf(v):
        raise ValueError(f"`{name}` must be a finite number, got {v}.")
    return v


def check_probability(p: Any, name: str = "p") -> float:
    """Validate a probability in [0, 1].

    Args:
        p: The value to check.
        name: The argument name used in the error message.

    Returns:
        ``p`` as a float.

    Raises:
        TypeError: If ``p`` is not a real number.
        ValueError: If ``p`` is NaN or outside [0, 1].
    """
    if not _is_number(p):
        raise TypeError(f"`{name}` must be a float in [0, 1], got {type(p).__name__} {p!r}.")
    p = _finite(name, p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1], got {p}.")
    return p


def check_range(
    value: Any,
    name: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_inclusive: bool = True,
    unit: str = "",
) -> Range:
    """Validate a scalar (fixed) or a ``(lo, hi)`` pair (sampled uniformly per sample).

    Args:
        value: A real number or a pair ``(lo, hi)`` with ``lo <= hi``.
        name: The argument name used in the error message.
        low: Smallest allowed value.
        high: Largest allowed value (inclusive).
        low_inclusive: Whether ``low`` itself is allowed.
        unit: A unit named in the message (for example ``"mm"``).

    Returns:
        The pair ``(lo, hi)``; a scalar ``v`` becomes ``(v, v)``.

    Raises:
        TypeError: If ``value`` is neither a number nor a pair of numbers.
        ValueError: If a value is NaN/inf, ``lo > hi``, or a value lies outside [low, high].
    """
    u = f" {unit}" if unit else ""
    bound = f"{'[' if low_inclusive else '('}{low}, {high}]{u}"
    if _is_number(value):
        lo = hi = _finite(name, value)
    elif (
        isinstance(value, (Sequence, Tensor))
        and not isinstance(value, str)
        and len(value) == 2
        and all(_is_number(float(v)) if isinstance(v, Tensor) else _is_number(v) for v in value)
    ):
        lo, hi = (_finite(name, float(v)) for v in value)
        if lo > hi:
            raise ValueError(f"`{name}` range must satisfy lo <= hi, got ({lo}, {hi}).")
    else:
        raise TypeError(
            f"`{name}` must be a number or a (lo, hi) pair of numbers in {bound}, got {value!r}. "
            "Tip: a scalar is fixed; a tuple is sampled uniformly per sample."
        )
    for v in (lo, hi):
        bad_low = v < low if low_inclusive else v <= low
        if bad_low or v > high:
            raise ValueError(f"`{name}` must lie in {bound}, got {value!r}.")
    return (lo, hi)


def check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """Validate an integer in ``[low, high]``.

    Raises:
        TypeError: If ``value`` is not an integer.
        ValueError: If it is out of range.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__} {value!r}.")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"`{name}` must be in [{low}, {high}], got {value}.")
    return value


def check_severity(severity: Any) -> int:
    """Validate a severity level: an int in 0..5 (0 is the identity)."""
    if isinstance(severity, bool) or not isinstance(severity, numbers.Integral):
        raise TypeError(f"`severity` must be an int in 0..5, got {severity!r}.")
    if not 0 <= int(severity) <= 5:
        raise ValueError(f"`severity` must be in 0..5 (0 = identity), got {severity}.")
    return int(severity)


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """Validate that ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {list(choices)}, got {value!r}.")
    return value


def check_tensor(x: Any, name: str = "x") -> Tensor:
    """Validate that ``x`` is a real-valued torch tensor.

    Raises:
        TypeError: If ``x`` is not a tensor, or is boolean/complex.
    """
    if not isinstance(x, Tensor):
        tip = ""
        if type(x).__module__.startswith("numpy"):
            tip = " Tip: wrap numpy arrays with torch.from_numpy(x)."
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}.{tip}")
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(
            f"`{name}` must be a real floating or integer tensor, got dtype {x.dtype}. "
            "Tip: artifacts act on magnitude images; pass x.abs() for complex data."
        )
    return x


def resolve_layout(x: Tensor, supported: Sequence[int], spatial_dims: int | None, name: str = "x"):
    """Work out how to read ``x`` as a batch ``(B, C, *spatial)``.

    Rules: 3D tensors are one 2D image ``(C,H,W)``; 4D tensors are a 2D batch ``(B,C,H,W)`` unless
    ``spatial_dims == 3``, when they are one volume ``(C,D,H,W)``; 5D tensors are a batch of volumes.

    Args:
        x: The input tensor.
        supported: Spatial dimensionalities the transform supports.
        spatial_dims: The user's resolution of the 4D ambiguity (``None``, 2 or 3).
        name: Argument name for messages.

    Returns:
        ``(ndim_spatial, batched)``.

    Raises:
        ValueError: On an unsupported rank, with a tip.
    """
    tip_shapes = "(C,H,W), (B,C,H,W) for 2D; (C,D,H,W) with spatial_dims=3, or (B,C,D,H,W) for 3D"
    if x.ndim == 3:
        if spatial_dims == 3:
            raise ValueError(
                f"`{name}` has shape {tuple(x.shape)} but the transform was built with spatial_dims=3, "
                f"which needs (C,D,H,W) or (B,C,D,H,W). Tip: add a channel axis with x[None]."
            )
        nd, batched = 2, False
    elif x.ndim == 4:
        nd, batched = (3, False) if spatial_dims == 3 else (2, True)
    elif x.ndim == 5:
        nd, batched = 3, True
    else:
        tip = ""
        if x.ndim == 2:
            tip = " Tip: a single-channel 2D image needs a channel axis: x[None] gives (1,H,W)."
        raise ValueError(
            f"`{name}` must have 3, 4 or 5 dimensions ({tip_shapes}), got shape {tuple(x.shape)}.{tip}"
        )
    if nd not in supported:
        tip = ""
        if nd == 2 and 3 in supported and x.ndim == 4:
            tip = " Tip: a single volume (C,D,H,W) needs spatial_dims=3 to be read as 3D."
        raise ValueError(
            f"`{name}` with shape {tuple(x.shape)} is read as {nd}D, but this transform supports "
            f"{', '.join(f'{d}D' for d in supported)} only.{tip}"
        )
    return nd, batched
