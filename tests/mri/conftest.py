"""Shared fixtures for the MRI tests."""

from __future__ import annotations

import pytest
import torch

from robustaug.core.rng import seeded_global_rng


@pytest.fixture(scope="module")
def one_thread_fixed_seed():
    """One torch thread (tiny tensors; no OpenMP oversubscription on shared CPUs) and a pinned
    ``torch.initial_seed()``, from which seeded transforms derive their streams, so results do not
    depend on which tests ran before. Everything, the initial seed included, is restored afterwards.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with seeded_global_rng(0):
        yield
    torch.set_num_threads(n)
