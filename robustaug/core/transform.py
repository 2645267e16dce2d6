"""The Transform base class: sample parameters, apply them, record them, replay them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .checks import check_probability, check_severity, check_tensor, resolve_layout
from .rng import SeedMixin

__all__ = [
    "Params",
    "Transform",
    "bcast",
    "params_from_json",
    "params_to_json",
    "subset_params",
]

Params = dict[str, Any]


def bcast(v: Tensor, x: Tensor) -> Tensor:
    """Reshape per-sample values ``(B,)`` to broadcast against ``x`` ``(B, C, *spatial)``.

    The values are moved to ``x``'s device and dtype (real dtypes only).
    """
    dtype = x.real.dtype if x.is_complex() else x.dtype
    return v.to(device=x.device, dtype=dtype).reshape(-1, *([1] * (x.ndim - 1)))


def subset_params(params: Params, idx: Tensor) -> Params:
    """Select samples ``idx`` from every per-sample entry (recursively through dicts and lists)."""

    def sel(v: Any) -> Any:
        if isinstance(v, Tensor):
            return v[idx.to(v.device)]
        if isinstance(v, Mapping):
            return {k: sel(w) for k, w in v.items()}
        return v

    return {k: sel(v) for k, v in params.items()}


def params_to_json(params: Params) -> dict[str, Any]:
    """Convert recorded params (tensors, nested dicts/lists) to JSON-serialisable Python objects.

    Floating tensors are stored as float64 values, so :func:`params_from_json` restores them exactly.
    """

    def conv(v: Any) -> Any:
        if isinstance(v, Tensor):
            return v.detach().cpu().tolist()
        if isinstance(v, Mapping):
            return {str(k): conv(w) for k, w in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(w) for w in v]
        return v

    return {str(k): conv(v) for k, v in params.items()}


def _infer_dtype(v: Any) -> torch.dtype:
    while isinstance(v, list) and v:
        v = v[0]
    if isinstance(v, bool):
        return torch.bool
    if isinstance(v, int):
        return torch.int64
    return torch.float64


def params_from_json(params: Mapping[str, Any]) -> Params:
    """Inverse of :func:`params_to_json`: lists become tensors (float64, int64 or bool).

    Entries that are already tensors are kept; the list-valued ``"transforms"`` entry of a
    composition is converted element by element.
    """

    def conv(k: str, v: Any) -> Any:
        if isinstance(v, Tensor) or v is None:
            return v
        if isinstance(v, Mapping):
            return {kk: conv(kk, vv) for kk, vv in v.items()}
        if k == "transforms" and isinstance(v, (list, tuple)):
            return [None if w is None else params_from_json(w) for w in v]
        if isinstance(v, (list, tuple, int, float, bool)):
            return torch.tensor(v, dtype=_infer_dtype(v))
        return v

    return {k: conv(k, v) for k, v in params.items()}


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _cast_back(y: Tensor, dtype: torch.dtype) -> Tensor:
    if y.dtype == dtype:
        return y
    if dtype.is_floating_point:
        return y.to(dtype)
    info = torch.iinfo(dtype)
    return y.round().clamp(info.min, info.max).to(dtype)


class Transform(SeedMixin, nn.Module):
    """Base class of every robustaug artifact: a seeded, replayable ``nn.Module``.

    Subclasses implement :meth:`sample_params` (all randomness, on a CPU generator) and :meth:`apply`
    (deterministic, no RNG, no in-place writes to its input). :meth:`forward` resolves the input
    layout, samples per-sample parameters and the per-sample apply mask from ``p``, applies, records
    the parameters in :attr:`last_params` and restores the input's rank and dtype.

    Args:
        p: Probability, per sample, that the artifact is applied.
        seed: ``None`` draws from torch's global RNG; an int uses a private generator derived from
            ``(seed, torch.initial_seed())``, re-derived in each DataLoader worker and epoch, and never
            reads or changes global RNG state.
        spatial_dims: Resolves the 4D ambiguity: ``3`` reads a 4D input as one volume ``(C,D,H,W)``;
            ``None`` or ``2`` read it as a batch of 2D images ``(B,C,H,W)``.

    Convention:
        Inputs are channel-first: ``(C,H,W)``, ``(B,C,H,W)``, ``(C,D,H,W)`` (with ``spatial_dims=3``)
        or ``(B,C,D,H,W)``. The output has the input's shape, dtype and device. Half precision and
        integer inputs are computed in float32 and cast back (integers rounded and clipped to the
        dtype's range). The input is never modified.
    """

    modality: ClassVar[str] = "any"
    dims: ClassVar[tuple[int, ...]] = (2, 3)
    differentiable: ClassVar[bool] = False
    severity_table: ClassVar[Mapping[int, Mapping[str, Any]]] = {}
    #: Read ``uint8`` input as 0..255 = [0, 1] (display/transmission-domain models) instead of raw values.
    uint8_unit_range: ClassVar[bool] = False

    def __init__(
        self, *, p: float = 1.0, seed: int | None = None, spatial_dims: int | None = None
    ) -> None:
        super().__init__()
        self.p = check_probability(p, "p")
        self._init_seed(seed)
        if spatial_dims not in (None, 2, 3):
            raise ValueError(f"`spatial_dims` must be None, 2 or 3, got {spatial_dims!r}.")
        if spatial_dims is not None and spatial_dims not in self.dims:
            raise ValueError(
                f"`spatial_dims={spatial_dims}` is not supported by {type(self).__name__}, "
                f"which supports {self.dims}."
            )
        self.spatial_dims = spatial_dims
        self.severity: int | None = None
        self.last_params: Params | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_severity(cls, severity: int, **overrides: Any) -> Transform:
        """Build the artifact at a severity level (1..5); 0 gives the identity.

        Args:
            severity: Level 0..5. Level 0 returns an instance that never applies (``p=0``).
            **overrides: Constructor arguments that replace the table's values.

        Returns:
            A configured instance with ``.severity`` set.
        """
        s = check_severity(severity)
        if not cls.severity_table:
            raise NotImplementedError(f"{cls.__name__} has no severity table.")
        kwargs = dict(cls.severity_table[max(s, 1)])
        kwargs.update(overrides)
        if s == 0:
            kwargs["p"] = 0.0
        t = cls(**kwargs)
        t.severity = s
        return t

    # ------------------------------------------------------------------ subclass API
    def sample_params(self, x: Tensor, generator: torch.Generator | None) -> Params:
        """Draw per-sample parameters for the batch ``x`` ``(B, C, *spatial)``.

        Every tensor returned has leading dimension ``B`` and lives on the CPU.
        """
        return {}

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """Apply the artifact with fixed ``params`` to a float batch ``(B, C, *spatial)``."""
        raise NotImplementedError

    @classmethod
    def example_input(cls, dims: int = 2, batch: int = 2, size: int = 64) -> Tensor:
        """A realistic clean input for this artifact (used by the contract tests and the gallery).

        Args:
            dims: 2 or 3.
            batch: Batch size.
            size: Edge length in pixels.

        Returns:
            A float32 tensor ``(batch, C, *spatial)``.
        """
        from ..data.phantoms import phantom

        shape = (size, size) if dims == 2 else (size, size, size)
        imgs = [phantom(shape, seed=i)["image"] for i in range(batch)]
        return torch.stack(imgs) if imgs else torch.zeros((0, 1, *shape))

    # ------------------------------------------------------------------ helpers for subclasses
    @staticmethod
    def uniform(rng: tuple[float, float], n: int, generator: torch.Generator | None) -> Tensor:
        """Draw ``n`` values uniformly in ``[lo, hi]`` (float64, CPU); a fixed value if lo == hi."""
        lo, hi = float(rng[0]), float(rng[1])
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        # the same two float64 operations in NumPy (~1 us each instead of ~3 for torch ops)
        return torch.from_numpy(lo + (hi - lo) * u.numpy())

    @staticmethod
    def log_uniform(rng: tuple[float, float], n: int, generator: torch.Generator | None) -> Tensor:
        """Draw ``n`` values log-uniformly in ``[lo, hi]`` (both > 0)."""
        lo, hi = math.log(float(rng[0])), math.log(float(rng[1]))
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.exp(torch.from_numpy(lo + (hi - lo) * u.numpy()))

    # ------------------------------------------------------------------ call path
    def _sample_mask(self, n: int, generator: torch.Generator | None) -> Tensor:
        if self.p >= 1.0:
            return torch.ones(n, dtype=torch.bool)
        if self.p <= 0.0:
            return torch.zeros(n, dtype=torch.bool)
        return torch.rand(n, generator=generator) < self.p

    def _check_params(self, params: Mapping[str, Any], n: int) -> Params:
        if not isinstance(params, Mapping):
            raise TypeError(f"`params` must be a dict as recorded in last_params, got {params!r}.")
        params = params_from_json(params)
        if "apply" not in params:
            params["apply"] = torch.ones(n, dtype=torch.bool)
        for k, v in params.items():
            if isinstance(v, Tensor) and (v.ndim == 0 or v.shape[0] != n):
                raise ValueError(
                    f"`params['{k}']` must have leading dimension {n} (the batch size), got shape "
                    f"{tuple(v.shape)}. Tip: replay params recorded on a batch of the same size."
                )
        params["apply"] = params["apply"].to(torch.bool)
        return params

    def _run(
        self, x: Tensor, params: Mapping[str, Any] | None, generator: torch.Generator | None
    ) -> tuple[Tensor, Params]:
        """Sample (or take) params and apply them to a float batch; returns ``(y, params)``."""
        n = x.shape[0]
        if params is None:
            g = generator if generator is not None else self._generator()
            if n == 0:
                rec: Params = {"apply": torch.zeros(0, dtype=torch.bool)}
            else:
                rec = dict(self.sample_params(x, g))
                rec["apply"] = self._sample_mask(n, g)
        else:
            rec = self._check_params(params, n)
        if n and params is None and self.p >= 1.0:  # every sample is corrupted: no mask checks
            return self.apply(x, rec), rec
        mask = rec["apply"]
        if n == 0 or not bool(mask.any()):
            return x, rec
        if bool(mask.all()):
            return self.apply(x, rec), rec
        idx = mask.nonzero().squeeze(1)
        sub = subset_params({k: v for k, v in rec.items() if k != "apply"}, idx)
        dev_idx = idx.to(x.device)
        y_sub = self.apply(x.index_select(0, dev_idx), sub)
        return x.index_copy(0, dev_idx, y_sub.to(x.dtype)), rec

    def forward(
        self,
        x: Tensor,
        *,
        params: Mapping[str, Any] | None = None,
        return_params: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor | tuple[Tensor, Params]:
        """Corrupt ``x``; pass ``params=`` (as recorded in :attr:`last_params`) to replay a draw.

        Args:
            x: Channel-first image or batch (see the class Convention). A dict is accepted too: its
                ``"image"`` entry is corrupted and every other entry (masks, labels) passes through
                untouched; likewise a tuple/list ``(image, *targets)``.
            params: Parameters recorded by an earlier call, as tensors or as from
                :func:`params_to_json`. Must match the batch size.
            return_params: Also return the parameters used.
            generator: A CPU generator to draw this call's parameters from, overriding ``seed`` and
                the global RNG (for evaluation loops that must not depend on any process state).

        Returns:
            The corrupted tensor, or the same structure with the image replaced (and the params if
            ``return_params``).
        """
        if isinstance(x, Mapping):
            if "image" not in x:
                raise KeyError(
                    f"A dict sample needs an 'image' entry, got keys {sorted(x)}. Tip: use "
                    "robustaug.integrations.monai.Dictionary(t, keys=...) for other key names."
                )
            y, rec = self.forward(x["image"], params=params, return_params=True, generator=generator)
            out_d = {**x, "image": y}
            return (out_d, rec) if return_params else out_d
        if isinstance(x, (tuple, list)) and x and isinstance(x[0], Tensor):
            y, rec = self.forward(x[0], params=params, return_params=True, generator=generator)
            out_s = type(x)([y, *x[1:]]) if isinstance(x, list) else (y, *x[1:])
            return (out_s, rec) if return_params else out_s
        check_tensor(x, "x")
        _, batched = resolve_layout(x, self.dims, self.spatial_dims, "x")
        xb = x if batched else x.unsqueeze(0)
        unit = self.uint8_unit_range and x.dtype == torch.uint8
        cd = _compute_dtype(xb.dtype)
        xc = xb if xb.dtype == cd else xb.to(cd)
        if unit:
            xc = xc / 255.0
        y, rec = self._run(xc, params, generator)
        # a plain dict attribute: skip nn.Module.__setattr__'s parameter/module/buffer bookkeeping
        object.__setattr__(self, "last_params", rec)
        if unit:
            y = y * 255.0
        if y is xb:
            y = y.clone()
        y = _cast_back(y, x.dtype)
        if not batched:
            y = y.squeeze(0)
        return (y, rec) if return_params else y

    # ------------------------------------------------------------------ misc
    def __getstate__(self) -> dict:
        return self._drop_generator_state(self.__dict__)

    def extra_repr(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self._repr_args().items()]
        parts.append(f"p={self.p}")
        if self.seed is not None:
            parts.append(f"seed={self.seed}")
        if self.severity is not None:
            parts.append(f"severity={self.severity}")
        return ", ".join(parts)

    def _repr_args(self) -> dict[str, Any]:
        return {}


def _intersect_dims(transforms: Sequence[Transform]) -> tuple[int, ...]:
    dims = {2, 3}
    for t in transforms:
        dims &= set(t.dims)
    return tuple(sorted(dims))
