"""The artifact contract, as reusable checks.

Every check takes an artifact class and raises ``AssertionError`` when the class breaks the contract
of DESIGN §2. ``test_contract.py`` runs them over every registered artifact; ``test_harness_catches``
runs them on deliberately broken transforms to show that they can fail.
"""

from __future__ import annotations

import json
import pickle
import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from robustaug.core.rng import new_generator
from robustaug.core.transform import Transform, params_to_json, subset_params
from robustaug.functional.metrics import ssim

SIZES = {2: 32, 3: 24}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8]


def dims_of(cls: type[Transform]) -> list[int]:
    return list(cls.dims)


def make_input(cls: type[Transform], dims: int, batch: int = 3, size: int | None = None) -> torch.Tensor:
    x = cls.example_input(dims, batch=batch, size=size or SIZES[dims])
    assert isinstance(x, torch.Tensor), f"{cls.__name__}.example_input must return a tensor"
    assert x.ndim == dims + 2 and x.shape[0] == batch, (
        f"{cls.__name__}.example_input({dims}, {batch}) returned shape {tuple(x.shape)}"
    )
    return x.float()


def build(cls: type[Transform], severity: int = 3, **kw: Any) -> Transform:
    return cls.from_severity(severity, **kw)


def _scale(x: torch.Tensor) -> float:
    return float(x.abs().max()) or 1.0


def _to_dtype(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.uint8:
        lo, hi = float(x.min()), float(x.max())
        return ((x - lo) / max(hi - lo, 1e-12) * 255).round().clamp(0, 255).to(torch.uint8)
    return x.to(dtype)


# ----------------------------------------------------------------------------- checks
def check_pickle(cls: type[Transform], dims: int) -> None:
    x = make_input(cls, dims)
    t = build(cls, seed=0)
    t2 = pickle.loads(pickle.dumps(t))
    assert type(t2) is type(t)
    assert torch.allclose(t(x), t2(x), atol=1e-6 * _scale(x)), "unpickled copy draws differently"
    pickle.loads(pickle.dumps(t))  # still picklable after use (no live generator in state)


def check_input_not_modified(cls: type[Transform], dims: int) -> None:
    x = make_input(cls, dims)
    ref = x.clone()
    version = x._version
    y = build(cls, seed=0)(x)
    assert torch.equal(x, ref), "the transform modified its input tensor"
    assert x._version == version, "the transform wrote into its input tensor in place"
    assert y.data_ptr() != x.data_ptr(), "the output aliases the input"


def check_dtypes(cls: type[Transform], dims: int) -> None:
    x = make_input(cls, dims, batch=2)
    t = build(cls, seed=0)
    for dtype in DTYPES:
        xi = _to_dtype(x, dtype)
        ref = xi.clone()
        y = t(xi)
        assert y.dtype == dtype, f"{dtype}: output dtype {y.dtype}"
        assert y.shape == xi.shape, f"{dtype}: output shape {tuple(y.shape)} != {tuple(xi.shape)}"
        assert y.device == xi.device
        assert torch.equal(xi, ref), f"{dtype}: input modified"
        if dtype.is_floating_point:
            assert torch.isfinite(y.float()).all(), f"{dtype}: non-finite output"
    # unbatched input keeps its rank
    single = x[0]
    t1 = build(cls, seed=0, spatial_dims=3) if dims == 3 else build(cls, seed=0)
    y1 = t1(single)
    assert y1.shape == single.shape, f"unbatched: {tuple(y1.shape)} != {tuple(single.shape)}"


def check_batched_equals_single(cls: type[Transform], dims: int) -> None:
    x = make_input(cls, dims, batch=3)
    t = build(cls, seed=0)
    y, params = t(x, return_params=True)
    for i in range(x.shape[0]):
        idx = torch.tensor([i])
        yi = t(x[i : i + 1], params=subset_params(params, idx))
        err = float((yi[0] - y[i]).abs().max())
        assert err <= 1e-4 * _scale(x), f"sample {i}: batched != per-sample (max err {err:.3g})"


def check_empty_batch(cls: type[Transform], dims: int) -> None:
    x = make_input(cls, dims, batch=1)[:0]
    y = build(cls, seed=0)(x)
    assert y.shape == x.shape and y.dtype == x.dtype


def check_identity(cls: type[Transform], dims: int) -> None:
    x = make_input(cls, dims)
    assert torch.equal(build(cls, p=0.0, seed=0)(x), x), "p=0 is not the identity"
    assert torch.equal(cls.from_severity(0, seed=0)(x), x), "severity 0 is not the identity"


def check_replay(cls: type[Transform], dims: int) -> None:
    x = make_input(cls, dims)
    t = build(cls, seed=0)
    y, params = t(x, return_params=True)
    assert t.last_params is params
    y2 = t(x, params=params)
    assert torch.equal(y, y2), "replay with recorded params differs from forward"
    as_json = json.loads(json.dumps(params_to_json(params)))
    y3 = t(x, params=as_json)
    err = float((y3 - y).abs().max())
    assert err <= 1e-5 * _scale(x), f"replay from JSON differs (max err {err:.3g})"


def _rng_states() -> tuple:
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()  # noqa: NPY002


def check_seeding(cls: type[Transform], dims: int) -> None:
    x = make_input(cls, dims)
    before = _rng_states()
    a, b, c = cls(seed=0), cls(seed=0), cls(seed=1)
    ya, yb, yc = a(x), b(x), c(x)
    after = _rng_states()
    assert torch.equal(before[0], after[0]), "seeded transform changed torch's global RNG state"
    assert np.array_equal(before[1], after[1]), "seeded transform changed numpy's global RNG state"
    assert before[2] == after[2], "seeded transform changed Python's random state"
    assert torch.equal(ya, yb), "same seed gave different outputs"
    assert not torch.equal(ya, yc), "different seeds gave identical outputs (defaults must be random)"
    assert not torch.equal(a(x), ya), "a second call with the same instance repeated the first draw"


def check_gradcheck(cls: type[Transform]) -> None:
    if not cls.differentiable:
        return
    dims = 2 if 2 in cls.dims else 3
    size = 12 if dims == 2 else 8
    x = cls.example_input(dims, batch=1, size=size).double()
    # a generic point: break exact ties (flat backgrounds), where min/max/abs have no derivative
    x = x + 1e-3 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    t = build(cls, seed=0)
    _, params = t(x, return_params=True)
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda z: t.apply(z, params), (xg,), eps=1e-6, atol=1e-4, rtol=1e-3, fast_mode=True
    ), "gradcheck failed"


def severity_ssim(cls: type[Transform], draws: int = 3) -> list[float]:
    dims = 2 if 2 in cls.dims else 3
    x = cls.example_input(dims, batch=2, size=64 if dims == 2 else 24).float()
    rng = float(x.max() - x.min()) or 1.0
    out = []
    for k in range(6):
        # explicit generators: the draws do not depend on torch.initial_seed() (test order)
        vals = [
            float(ssim(build(cls, k, seed=d)(x, generator=new_generator(d)), x, data_range=rng).mean())
            for d in range(draws)
        ]
        out.append(sum(vals) / len(vals))
    return out


def check_severity_monotone(cls: type[Transform], tol: float = 0.01) -> None:
    s = severity_ssim(cls)
    assert abs(s[0] - 1.0) < 1e-6, f"severity 0 SSIM {s[0]} != 1"
    for k in range(5):
        assert s[k + 1] <= s[k] + tol, f"SSIM rises from severity {k} to {k + 1}: {s}"


# ----------------------------------------------------------------------------- DataLoader checks
class ArtifactDataset(Dataset):
    """Applies each transform to the same clean image; item i returns a dict name -> output."""

    def __init__(self, transforms: dict[str, Transform], images: dict[str, torch.Tensor], n: int = 4):
        self.transforms = transforms
        self.images = images
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        out = {}
        for k, t in self.transforms.items():
            y, params = t(self.images[k], return_params=True)
            out[k] = y
            out[k + "/params"] = _flat_params(params)
        return out


def _flat_params(params: dict) -> torch.Tensor:
    """All recorded parameter values of one draw as a float64 vector (the draw's fingerprint)."""
    vals: list[torch.Tensor] = []

    def walk(v: Any) -> None:
        if isinstance(v, torch.Tensor):
            vals.append(v.detach().reshape(-1).to(torch.float64))
        elif isinstance(v, dict):
            for w in v.values():
                walk(w)
        elif isinstance(v, (list, tuple)):
            for w in v:
                walk(w)

    walk(params)
    return torch.cat(vals) if vals else torch.zeros(0, dtype=torch.float64)


def run_loader(transforms, images, *, workers=2, epochs=2, context=None, seed=123, n=4):
    ds = ArtifactDataset(transforms, images, n=n)
    dl = DataLoader(
        ds,
        batch_size=1,
        num_workers=workers,
        generator=torch.Generator().manual_seed(seed),
        multiprocessing_context=context,
    )
    out: dict[str, list[torch.Tensor]] = {}
    for _ in range(epochs):
        for batch in dl:
            for k, v in batch.items():
                out.setdefault(k, []).append(v[0])
    return out


def check_loader_draws(draws_a: list[torch.Tensor], draws_b: list[torch.Tensor]) -> None:
    """Distinct draws per worker and epoch; identical when the run is repeated with the same seed.

    ``draws_*`` are per-item fingerprints of the random draw (the recorded parameters, or the
    output when the transform records none), so artifacts whose output is discrete on small
    images (a k-space line count, say) are judged by their draws, not by coinciding pixels.
    """
    n = len(draws_a)
    for i in range(n):
        for j in range(i + 1, n):
            assert not torch.equal(draws_a[i], draws_a[j]), (
                f"DataLoader items {i} and {j} got identical draws (worker/epoch streams repeat)"
            )
    for a, b in zip(draws_a, draws_b):
        assert torch.equal(a, b), "the same seeded DataLoader run is not reproducible"
