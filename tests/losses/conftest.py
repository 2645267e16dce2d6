"""Fixtures of the loss tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _global_rng_untouched():
    """Every test in this folder must leave the global RNGs as it found them."""
    import random

    import numpy as np

    torch_state = torch.get_rng_state()
    np_state = np.random.get_state()[1].copy()  # noqa: NPY002
    py_state = random.getstate()
    yield
    assert torch.equal(torch.get_rng_state(), torch_state), "global torch RNG state changed"
    assert (np.random.get_state()[1] == np_state).all(), "numpy RNG state changed"  # noqa: NPY002
    assert random.getstate() == py_state, "global random state changed"
