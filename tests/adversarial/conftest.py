"""Shared fixtures for the adversarial tests: tiny models and data, all seeded locally."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

torch.set_num_threads(1)  # the machine is shared; avoid OpenMP spin-waiting


def make_cnn(seed: int = 0, in_ch: int = 1, n_cls: int = 5, dims: int = 2) -> nn.Module:
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
    pool = nn.AdaptiveAvgPool2d(2) if dims == 2 else nn.AdaptiveAvgPool3d(2)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(conv(in_ch, 6, 3, padding=1), bn(6), nn.ReLU(), conv(6, 8, 3, padding=1),
                             bn(8), nn.ReLU(), pool, nn.Flatten(), nn.Linear(8 * 2**dims, n_cls))


def make_data(n: int = 8, shape=(1, 8, 8), n_cls: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *shape, generator=g), torch.randint(0, n_cls, (n,), generator=g)


class TinyUNet(nn.Module):
    """A two-level U-Net for 2D or 3D dense prediction."""

    def __init__(self, k: int = 3, dims: int = 2, width: int = 8, seed: int = 0) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.e1 = nn.Sequential(conv(1, width, 3, padding=1), nn.ReLU())
            self.e2 = nn.Sequential(conv(width, width, 3, padding=1, stride=2), nn.ReLU())
            self.d = nn.Sequential(conv(2 * width, width, 3, padding=1), nn.ReLU(), conv(width, k, 1))
        self.dims = dims

    def forward(self, x):
        a = self.e1(x)
        b = self.e2(a)
        up = nn.functional.interpolate(b, size=a.shape[2:], mode="nearest")
        return self.d(torch.cat([a, up], 1))


@pytest.fixture
def cnn():
    return make_cnn()


@pytest.fixture
def batch():
    return make_data()


def rng_snapshot():
    return torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate()  # noqa: NPY002


def rng_equal(a, b) -> bool:
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
