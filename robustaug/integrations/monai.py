"""Run a robustaug transform inside a MONAI dictionary pipeline (``monai.transforms.Compose``).

One generic adapter, :class:`Dictionary`, replaces MONAI's per-transform ``*d`` twins. It is a
``MapTransform`` and ``Randomizable``: ``Compose.set_random_state`` and the worker seeding of
``monai.data.DataLoader`` (``set_rnd``) reach it, and it forwards the seed to the robustaug
transform, so every worker gets its own reproducible stream.

Layout. MONAI arrays are channel-first and unbatched: ``(C, H, W)`` or ``(C, *3 spatial)``. Each
value is passed to robustaug as a batch of one, ``(1, C, ...)``, so there is no 4D ambiguity. The
spatial axes are used in array order (robustaug reads the three spatial axes as ``D, H, W``); with
``reverse_spatial=True`` they are reversed first, which maps NIfTI/ITK order ``(C, I, J, K)`` (as
loaded by ``LoadImage``) to robustaug's ``(C, D, H, W)`` exactly as the TorchIO adapter does.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core.transform import Transform, params_to_json

try:
    from monai.config import KeysCollection
    from monai.data import MetaTensor
    from monai.transforms import MapTransform, Randomizable
    from monai.utils import convert_to_dst_type
except ImportError as err:
    raise ImportError(
        "robustaug.integrations.monai needs MONAI. Install it with: pip install 'robustaug[bench]' "
        "(or: pip install monai)"
    ) from err

__all__ = ["Dictionary"]


class Dictionary(MapTransform, Randomizable):
    """A MONAI dictionary transform that applies a robustaug :class:`~robustaug.Transform` to ``keys``.

    Args:
        transform: The robustaug transform (artifact or robustaug ``Compose``).
        keys: Keys of the image entries to corrupt; other entries (labels, masks) are untouched.
        allow_missing_keys: Skip keys missing from the data instead of raising ``KeyError``.
        shared_params: If ``True`` (MONAI's convention for dictionary transforms), one draw per data
            dict, replayed on every key; if ``False`` each key gets its own draw.
        reverse_spatial: Reverse the spatial axes before applying (and back after): maps
            ``(C, I, J, K)`` NIfTI order to robustaug's ``(C, D, H, W)``.

    Convention:
        Values may be ``MetaTensor`` (returned as ``MetaTensor`` with the same meta data and
        applied operations), ``torch.Tensor`` or ``numpy.ndarray`` (returned as the same type);
        dtype and device are kept. The parameters used for each key are stored, JSON-serialisable,
        in :attr:`last_params` (``{key: params}``) of the instance that ran (in a worker, that is the
        worker's copy). :meth:`set_random_state` reseeds the robustaug transform (``seed=None`` goes
        back to torch's global RNG).

    Examples:
        >>> import torch
        >>> from monai.transforms import Compose
        >>> from robustaug import GaussianNoise
        >>> t = Compose([Dictionary(GaussianNoise(std=0.1), keys=("image",))])
        >>> t.set_random_state(seed=0)  # doctest: +ELLIPSIS
        <monai.transforms.compose.Compose object at ...>
        >>> out = t({"image": torch.zeros(1, 16, 16), "label": torch.ones(1, 16, 16)})
        >>> bool(out["image"].std() > 0), bool((out["label"] == 1).all())
        (True, True)
    """

    def __init__(
        self,
        transform: Transform,
        keys: KeysCollection = ("image",),
        allow_missing_keys: bool = False,
        *,
        shared_params: bool = True,
        reverse_spatial: bool = False,
    ) -> None:
        if not isinstance(transform, Transform):
            raise TypeError(
                "`transform` must be a robustaug Transform (an artifact or a robustaug Compose), "
                f"got {type(transform).__name__}."
            )
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.transform = transform
        self.shared_params = bool(shared_params)
        self.reverse_spatial = bool(reverse_spatial)
        self.last_params: dict[Hashable, dict[str, Any]] | None = None

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> Dictionary:
        """Seed this adapter and the robustaug transform (called by MONAI's ``set_rnd``).

        Args:
            seed: Integer seed forwarded to ``transform.set_random_state``; ``None`` returns the
                robustaug transform to torch's global RNG.
            state: A ``numpy.random.RandomState`` for MONAI's own ``self.R`` (unused by robustaug,
                whose draws then come from torch's global RNG).

        Returns:
            ``self``.
        """
        super().set_random_state(seed=seed, state=state)
        self.transform.set_random_state(None if seed is None else int(seed))
        return self

    def randomize(self, data: Any = None) -> None:
        """No-op: the robustaug transform samples its parameters when it is applied."""
        return None

    def _to_batch(self, key: Hashable, value: Any) -> tuple[Tensor, Any]:
        if isinstance(value, MetaTensor):
            x = value.as_tensor()
        elif isinstance(value, Tensor):
            x = value
        elif isinstance(value, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(value))
        else:
            raise TypeError(
                f"data[{key!r}] must be a MetaTensor, torch.Tensor or numpy.ndarray, "
                f"got {type(value).__name__}."
            )
        if x.ndim not in (3, 4):
            raise ValueError(
                f"data[{key!r}] must be channel-first (C, H, W) or (C, D, H, W), got shape "
                f"{tuple(x.shape)}. Tip: add a channel axis, e.g. with monai EnsureChannelFirstd."
            )
        nd = x.ndim - 1
        t = self.transform
        if nd not in t.dims:
            raise ValueError(
                f"{type(t).__name__} supports {t.dims}D inputs, but data[{key!r}] is {nd}D "
                f"(shape {tuple(x.shape)})."
            )
        if self.reverse_spatial:
            x = x.permute(0, *range(x.ndim - 1, 0, -1))
        return x.unsqueeze(0), value

    def _from_batch(self, y: Tensor, like: Any) -> Any:
        y = y[0]
        if self.reverse_spatial:
            y = y.permute(0, *range(y.ndim - 1, 0, -1))
        if isinstance(like, MetaTensor):
            out = MetaTensor(y.contiguous(), meta=like.meta, applied_operations=like.applied_operations)
            out.is_batch = like.is_batch
            return out
        if isinstance(like, np.ndarray):
            return convert_to_dst_type(y.contiguous(), dst=like)[0]
        return y.contiguous()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Corrupt ``data[key]`` for every key; returns a new dict (the input is not modified)."""
        d = dict(data)
        used: dict[Hashable, dict[str, Any]] = {}
        first: dict[str, Any] | None = None
        for key in self.key_iterator(d):
            x, like = self._to_batch(key, d[key])
            given = first if self.shared_params else None
            if x.ndim == 4 and self.transform.spatial_dims == 3:
                raise ValueError(
                    f"data[{key!r}] is 2D but {type(self.transform).__name__} was built with "
                    "spatial_dims=3."
                )
            y, rec = self.transform(x, params=given, return_params=True)
            if first is None:
                first = rec
            used[key] = params_to_json(rec)
            d[key] = self._from_batch(y, like)
        self.last_params = used
        return d

    def __repr__(self) -> str:
        return f"Dictionary({self.transform!r}, keys={tuple(self.keys)})"

