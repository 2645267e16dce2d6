"""Seeding helpers: worker-aware generators that never touch global RNG state."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor

__all__ = [
    "SeedMixin",
    "mix_seeds",
    "new_generator",
    "per_sample_noise",
    "sample_seeds",
    "seeded_global_rng",
]

_MASK64 = (1 << 64) - 1
_MAX_SEED = (1 << 62) - 1


def mix_seeds(*values: int) -> int:
    """Combine integers into one 62-bit seed (splitmix64 finaliser, stable across runs)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & _MASK64)) & _MASK64
        h = (h + 0x9E3779B97F4A7C15) & _MASK64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
        h ^= h >> 31
    return h & _MAX_SEED


def new_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) & _MAX_SEED)
    return g


def sample_seeds(n: int, generator: torch.Generator | None) -> Tensor:
    """Draw ``n`` integer seeds (int64, CPU) for noise fields; recorded in params for replay."""
    return torch.randint(0, 2**62, (n,), generator=generator, dtype=torch.int64)


def per_sample_noise(
    seeds: Tensor,
    shape: Sequence[int],
    *,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    kind: str = "normal",
) -> Tensor:
    """Generate one noise field per recorded seed, stacked along a new first axis.

    Each sample's field depends only on its own seed, so a batch gives the same fields as the samples
    one by one. The global RNG is not used.

    Args:
        seeds: ``(B,)`` int64 seeds.
        shape: Shape of one sample's field.
        device: Device on which the field is generated.
        dtype: Floating dtype of the field.
        kind: ``"normal"`` (standard normal) or ``"uniform"`` (U[0, 1)).

    Returns:
        A tensor of shape ``(B, *shape)``.
    """
    out = torch.empty((len(seeds), *shape), device=device, dtype=dtype)
    for i, s in enumerate(seeds.tolist()):
        g = new_generator(s, device)
        if kind == "normal":
            torch.randn(tuple(shape), generator=g, device=device, dtype=dtype, out=out[i])
        elif kind == "uniform":
            torch.rand(tuple(shape), generator=g, device=device, dtype=dtype, out=out[i])
        else:
            raise ValueError(f"`kind` must be 'normal' or 'uniform', got {kind!r}.")
    return out


@contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Run a block under ``torch.manual_seed(seed)`` and restore the global RNG completely afterwards.

    For code that can only draw from torch's global RNG (``nn.Module`` weight initialisation). Unlike
    ``torch.random.fork_rng``, this also restores ``torch.initial_seed()``, which seeded robustaug
    transforms use to derive their streams, so nothing outside the block can tell it ran.
    """
    init = torch.initial_seed()
    state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.manual_seed(init)
        torch.set_rng_state(state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)


class SeedMixin:
    """Worker-aware seeding shared by transforms and other random objects.

    With ``seed=None`` draws come from torch's global RNG (so ``torch.manual_seed`` and DataLoader
    worker seeding work as for any torch op). With an int seed the global RNG is never read or
    changed: a private CPU generator is derived from ``(seed, torch.initial_seed())`` and re-derived
    whenever ``torch.initial_seed()`` changes, which happens in each DataLoader worker and epoch.
    Only the int is stored, so the object pickles.
    """

    _seed: int | None
    _gen: torch.Generator | None
    _gen_key: int | None

    def _init_seed(self, seed: int | None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"`seed` must be an int or None, got {seed!r}.")
        object.__setattr__(self, "_seed", seed)
        object.__setattr__(self, "_gen", None)
        object.__setattr__(self, "_gen_key", None)

    @property
    def seed(self) -> int | None:
        """The user seed (``None`` means the global torch RNG is used)."""
        return self._seed

    def set_random_state(self, seed: int | None = None, state: object | None = None):
        """Reseed (MONAI's ``set_rnd`` duck-typing calls this in each worker).

        Args:
            seed: New seed, or ``None`` to go back to the global RNG.
            state: Ignored; accepted for MONAI API compatibility.

        Returns:
            ``self``.
        """
        self._init_seed(None if seed is None else int(seed))
        return self

    def _generator(self) -> torch.Generator | None:
        if self._seed is None:
            return None
        key = torch.initial_seed()
        if self._gen is None or self._gen_key != key:
            object.__setattr__(self, "_gen", new_generator(mix_seeds(self._seed, key)))
            object.__setattr__(self, "_gen_key", key)
        return self._gen

    def _drop_generator_state(self, state: dict) -> dict:
        state = dict(state)
        state["_gen"] = None
        state["_gen_key"] = None
        return state
