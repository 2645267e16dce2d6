"""Shared helpers for label-noise injection: array conversion, seeding, result record."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "LabelNoiseWarning",
    "NoiseResult",
    "from_numpy_like",
    "make_rng",
    "realised_transition",
    "to_numpy",
]

ArrayLike = Any  # torch.Tensor | np.ndarray


class LabelNoiseWarning(UserWarning):
    """Warning raised by robustaug.labelnoise guardrails (suspicious inputs, degenerate settings)."""


@dataclass(frozen=True)
class NoiseResult:
    """Result of a label-noise injector.

    Unpacks like a 3-tuple: ``noisy, changed, T = symmetric(...)``.

    Attributes:
        labels: Noisy labels, same type (tensor/array), shape, dtype and device as the input labels.
        mask: Boolean array of the input's shape, ``True`` where the label was changed.
        transition: Realised ``(C, C)`` row-stochastic matrix ``T[i, j]`` = fraction of entries with true
            class ``i`` that received noisy label ``j`` (float64). Rows of absent classes are identity rows.
        requested: The requested transition matrix when the injector has one (else ``None``).
    """

    labels: ArrayLike
    mask: ArrayLike
    transition: ArrayLike
    requested: ArrayLike | None = None

    def __iter__(self):
        return iter((self.labels, self.mask, self.transition))

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int):
        return (self.labels, self.mask, self.transition)[i]


def to_numpy(x: ArrayLike, name: str = "labels") -> np.ndarray:
    """Copy a tensor/array/sequence to a numpy array (never a view of the caller's memory)."""
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy().copy()
    if isinstance(x, np.ndarray):
        return x.copy()
    try:
        return np.array(x)
    except Exception as exc:  # pragma: no cover - defensive
        raise TypeError(f"`{name}` must be a torch.Tensor or numpy array, got {type(x)!r}") from exc


def from_numpy_like(arr: np.ndarray, like: ArrayLike, dtype: Any | None = None) -> ArrayLike:
    """Convert ``arr`` back to the container type (and device) of ``like``.

    ``dtype`` overrides the output dtype (numpy or torch dtype); by default the dtype of ``like``.
    """
    if isinstance(like, Tensor):
        t = torch.from_numpy(np.ascontiguousarray(arr))
        return t.to(device=like.device, dtype=like.dtype if dtype is None else dtype)
    if dtype is None:
        dtype = like.dtype if isinstance(like, np.ndarray) else arr.dtype
    return np.asarray(arr, dtype=dtype)


def bool_like(arr: np.ndarray, like: ArrayLike) -> ArrayLike:
    """Boolean mask in the container type (and device) of ``like``."""
    return from_numpy_like(arr.astype(bool), like, torch.bool if isinstance(like, Tensor) else bool)


def float_like(arr: np.ndarray, like: ArrayLike) -> ArrayLike:
    """float64 matrix in the container type (and device) of ``like``."""
    return from_numpy_like(
        arr.astype(np.float64), like, torch.float64 if isinstance(like, Tensor) else np.float64
    )


def make_rng(seed: int | None = None, generator: torch.Generator | None = None) -> np.random.Generator:
    """A private numpy ``Generator``; never reads or advances the global RNGs.

    ``seed`` seeds it directly. A ``torch.Generator`` is advanced by one draw to derive the seed (so a
    shared generator gives different noise on successive calls). With neither, fresh OS entropy is used
    (non-reproducible, but still no global state is touched).
    """
    if seed is not None and generator is not None:
        raise ValueError("pass either `seed` or `generator`, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"`generator` must be a torch.Generator, got {type(generator)!r}")
        g = generator
        if g.device.type != "cpu":
            s = int(torch.randint(0, 2**62, (1,), generator=g, device=g.device).item())
        else:
            s = int(torch.randint(0, 2**62, (1,), generator=g).item())
        return np.random.default_rng(s)
    if seed is not None:
        if isinstance(seed, np.random.Generator):
            return seed
        return np.random.default_rng(int(seed))
    return np.random.default_rng()


def realised_transition(true: np.ndarray, noisy: np.ndarray, num_classes: int) -> np.ndarray:
    """Row-normalised confusion ``T[i, j] = #(true=i, noisy=j) / #(true=i)`` (identity row if absent)."""
    t = np.asarray(true).reshape(-1).astype(np.int64)
    n = np.asarray(noisy).reshape(-1).astype(np.int64)
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    np.add.at(counts, (t, n), 1.0)
    rows = counts.sum(1, keepdims=True)
    out = np.where(rows > 0, counts / np.maximum(rows, 1.0), np.eye(num_classes))
    return out


def check_rate(rate: float, name: str = "rate", hi: float = 1.0, inclusive: bool = True) -> float:
    rate = float(rate)
    ok = (0.0 <= rate <= hi) if inclusive else (0.0 <= rate < hi)
    if not ok:
        bracket = "]" if inclusive else ")"
        raise ValueError(f"`{name}` must be in [0, {hi}{bracket}, got {rate}")
    return rate


def warn(msg: str) -> None:
    warnings.warn(msg, LabelNoiseWarning, stacklevel=3)
