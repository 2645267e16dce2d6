"""The harness must be able to fail: deliberately broken transforms are caught."""

from __future__ import annotations

import pytest
import torch

from robustaug.artifacts.generic import GaussianNoise
from robustaug.core.transform import Transform

from . import harness as H


class WritesIntoInput(GaussianNoise):
    def apply(self, x, params):
        x.add_(0.1)  # the defect: in-place write into the caller's tensor
        return x * 1.0


class GlobalRNGNoise(GaussianNoise):
    def apply(self, x, params):
        return x + params["std"].to(x).reshape(-1, *[1] * (x.ndim - 1)) * torch.randn_like(x)


class BatchCoupled(GaussianNoise):
    def apply(self, x, params):
        return x + 0.1 * x.mean(0, keepdim=True)  # output depends on the other samples


class WrongDtype(GaussianNoise):
    def forward(self, x, **kw):
        return super().forward(x.float(), **kw)  # the defect: always returns float32


class NotIdentityAtZero(Transform):
    severity_table = {k: {} for k in range(1, 6)}

    def _run(self, x, params, generator):
        return x + 1.0, {"apply": torch.ones(x.shape[0], dtype=torch.bool)}


class DegradesLessAtHigherSeverity(GaussianNoise):
    severity_table = {1: {"std": 0.2}, 2: {"std": 0.1}, 3: {"std": 0.05}, 4: {"std": 0.02}, 5: {"std": 0.01}}


class NonDifferentiableClaim(GaussianNoise):
    differentiable = True

    def apply(self, x, params):
        return x.detach() ** 2 + x - x.detach()  # value x^2 but gradient 1: wrong


@pytest.mark.parametrize(
    ("cls", "check"),
    [
        (WritesIntoInput, H.check_input_not_modified),
        (GlobalRNGNoise, H.check_seeding),
        (GlobalRNGNoise, H.check_replay),
        (BatchCoupled, H.check_batched_equals_single),
        (WrongDtype, H.check_dtypes),
        (NotIdentityAtZero, H.check_identity),
    ],
    ids=["inplace", "global-rng", "no-replay", "batch-coupled", "dtype", "identity"],
)
def test_broken_transform_fails(cls, check):
    with pytest.raises(AssertionError):
        check(cls, 2)


def test_severity_check_catches_inverted_table():
    with pytest.raises(AssertionError):
        H.check_severity_monotone(DegradesLessAtHigherSeverity)


def test_gradcheck_catches_wrong_gradient():
    with pytest.raises((AssertionError, RuntimeError)):
        H.check_gradcheck(NonDifferentiableClaim)


def test_loader_check_catches_repeated_worker_streams():
    same = [torch.ones(3)] * 4
    with pytest.raises(AssertionError):
        H.check_loader_draws(same, same)
