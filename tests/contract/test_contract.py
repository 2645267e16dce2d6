"""Runs the contract harness over every registered artifact (new artifacts are covered automatically)."""

from __future__ import annotations

import pytest
import torch

import robustaug
from robustaug.core.registry import get_artifact

from . import harness as H

NAMES = robustaug.list_artifacts()
CASES = [(n, d) for n in NAMES for d in get_artifact(n).dims]
IDS = [f"{n}-{d}d" for n, d in CASES]


def test_registry_is_populated():
    assert {"GaussianNoise", "PoissonNoise", "GaussianBlur", "MotionBlur", "Downsample", "Gamma"} <= set(NAMES)


@pytest.mark.parametrize(("name", "dims"), CASES, ids=IDS)
@pytest.mark.parametrize(
    "check",
    [
        H.check_pickle,
        H.check_input_not_modified,
        H.check_dtypes,
        H.check_batched_equals_single,
        H.check_empty_batch,
        H.check_identity,
        H.check_replay,
        H.check_seeding,
    ],
    ids=lambda f: f.__name__.removeprefix("check_"),
)
def test_contract(name, dims, check):
    check(get_artifact(name), dims)


@pytest.mark.parametrize("name", NAMES)
def test_from_severity_all_levels(name):
    cls = get_artifact(name)
    assert set(cls.severity_table) == {1, 2, 3, 4, 5}, "severity table must define levels 1..5"
    for k in range(6):
        t = cls.from_severity(k)
        assert t.severity == k


@pytest.mark.parametrize("name", [n for n in NAMES if get_artifact(n).differentiable])
def test_gradcheck(name):
    H.check_gradcheck(get_artifact(name))


@pytest.mark.parametrize("name", NAMES)
def test_severity_monotone(name):
    H.check_severity_monotone(get_artifact(name))


# ----------------------------------------------------------------------------- DataLoader
def _loader_setup():
    transforms, images = {}, {}
    for n in NAMES:
        cls = get_artifact(n)
        dims = 2 if 2 in cls.dims else 3
        transforms[n] = cls(seed=0)
        images[n] = H.make_input(cls, dims, batch=1, size=16 if dims == 3 else 24)[0]
        if dims == 3:
            transforms[n] = cls(seed=0, spatial_dims=3)
    return transforms, images


@pytest.fixture(scope="module")
def loader_runs():
    transforms, images = _loader_setup()
    a = H.run_loader(transforms, images, workers=2, epochs=2)
    b = H.run_loader(transforms, images, workers=2, epochs=2)
    return a, b


@pytest.mark.parametrize("name", NAMES)
def test_dataloader_workers(name, loader_runs):
    a, b = loader_runs
    H.check_loader_draws(a[name + "/params"], b[name + "/params"])  # distinct, reproducible draws
    for ya, yb in zip(a[name], b[name]):
        assert torch.equal(ya, yb), "the same seeded DataLoader run gave different outputs"


def test_spawn_dataloader_all_artifacts():
    """Every artifact pickles into a spawn-context worker and runs there."""
    transforms, images = _loader_setup()
    out = H.run_loader(transforms, images, workers=1, epochs=1, context="spawn", n=2)
    for name in transforms:
        ys = out[name]
        assert len(ys) == 2 and ys[0].shape == images[name].shape, name


def test_global_rng_default_path_differs_per_worker():
    """With seed=None the global torch RNG drives draws, which DataLoader seeds per worker."""
    t = robustaug.GaussianNoise(std=0.1)
    img = torch.zeros(1, 8, 8)
    a = H.run_loader({"g": t}, {"g": img})["g"]
    b = H.run_loader({"g": t}, {"g": img})["g"]
    H.check_loader_draws(a, b)  # outputs are continuous noise: compare them directly
