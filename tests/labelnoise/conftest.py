"""Shared helpers for the label-noise tests."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from scipy import stats


def wilson(k: np.ndarray, n: np.ndarray, conf: float = 0.999) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for binomial proportions k/n (elementwise)."""
    z = stats.norm.ppf(1 - (1 - conf) / 2)
    n = np.asarray(n, dtype=np.float64)
    p = np.asarray(k, dtype=np.float64) / n
    den = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / den
    half = z / den * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


def assert_T_in_wilson(true, noisy, T_req, conf: float = 0.999) -> None:
    t = np.asarray(true).reshape(-1)
    s = np.asarray(noisy).reshape(-1)
    C = T_req.shape[0]
    counts = np.zeros((C, C))
    np.add.at(counts, (t, s), 1)
    n = counts.sum(1, keepdims=True)
    lo, hi = wilson(counts, np.broadcast_to(n, counts.shape), conf)
    bad = (T_req < lo - 1e-12) | (T_req > hi + 1e-12)
    assert not bad.any(), f"cells outside Wilson CI: {np.argwhere(bad).tolist()}"


class GlobalRNGGuard:
    def __enter__(self):
        self.t = torch.get_rng_state()
        self.n = np.random.get_state()  # noqa: NPY002 (checking it is untouched)
        self.r = random.getstate()
        return self

    def __exit__(self, *exc):
        assert torch.equal(self.t, torch.get_rng_state()), "torch global RNG changed"
        n2 = np.random.get_state()  # noqa: NPY002 (checking it is untouched)
        assert self.n[0] == n2[0] and np.array_equal(self.n[1], n2[1]) and self.n[2:] == n2[2:], (
            "numpy global RNG changed"
        )
        assert self.r == random.getstate(), "python global RNG changed"
        return False


@pytest.fixture
def rng_guard():
    return GlobalRNGGuard
