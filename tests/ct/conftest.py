"""Shared fixtures of the CT tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny operators: OpenMP thread hand-offs dominate on a loaded machine (and timings don't matter)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
