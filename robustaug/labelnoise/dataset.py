"""``NoisyLabels``: a map-style Dataset wrapper that injects recorded, seeded label noise."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ._common import NoiseResult, to_numpy

__all__ = ["NoisyLabels"]


def _mix(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, np.uint64)[0] >> 2)


class NoisyLabels(Dataset):
    """Wrap a map-style dataset and replace its labels by seeded noisy labels.

    Two modes:

    * ``per_sample=False`` (classification, default): all labels are read once, the injector is called
      on the whole label vector (so ``mode="exact"`` counts and realised matrices are dataset-wide), and
      ``true_labels``, ``noisy_labels``, ``noise_mask`` and ``transition`` are stored.
    * ``per_sample=True`` (segmentation masks): the injector is called on item ``i`` with seed
      ``mix(seed, i)`` each time it is read (deterministic, nothing cached); ``noise_mask_of(i)``
      gives the changed voxels of item ``i``.

    Items may be ``(x, y, ...)`` tuples/lists or dicts (``label_key``); everything except the label is
    passed through untouched.

    Args:
        dataset: Map-style dataset (``__getitem__`` and ``__len__``).
        injector: Callable ``injector(labels, seed=int) -> NoiseResult``, e.g.
            ``functools.partial(symmetric, rate=0.4, num_classes=10)``.
        seed: Integer seed.
        label_key: Index (tuple items) or key (dict items) of the label. Default 1 / ``"label"``.
        labels: Optional precomputed clean labels (avoids reading every item, e.g. ``ds.targets``).
        per_sample: See above.

    Examples:
        >>> import functools, torch
        >>> from torch.utils.data import TensorDataset
        >>> from robustaug.labelnoise import NoisyLabels, symmetric
        >>> ds = TensorDataset(torch.randn(100, 3), torch.arange(100) % 5)
        >>> noisy = NoisyLabels(ds, functools.partial(symmetric, rate=0.2, num_classes=5), seed=0)
        >>> x, y = noisy[0]
        >>> bool(noisy.noise_mask.any())
        True
    """

    def __init__(
        self,
        dataset: Any,
        injector: Callable[..., NoiseResult],
        seed: int = 0,
        *,
        label_key: int | str | None = None,
        labels: Any | None = None,
        per_sample: bool = False,
    ) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError("`dataset` must be a map-style dataset with __getitem__ and __len__")
        if not callable(injector):
            raise TypeError("`injector` must be callable: injector(labels, seed=int) -> NoiseResult")
        self.dataset = dataset
        self.injector = injector
        self.seed = int(seed)
        self.label_key = label_key
        self.per_sample = bool(per_sample)
        self.true_labels: torch.Tensor | None = None
        self.noisy_labels: torch.Tensor | None = None
        self.noise_mask: torch.Tensor | None = None
        self.transition: torch.Tensor | None = None
        if not self.per_sample:
            if labels is None:
                labels = [self._get_label(dataset[i]) for i in range(len(dataset))]
                labels = torch.as_tensor(np.asarray([to_numpy(v) for v in labels]))
            y = torch.as_tensor(to_numpy(labels)).clone()
            if y.shape[0] != len(dataset):
                raise ValueError(f"`labels` has {y.shape[0]} entries, dataset has {len(dataset)}")
            res = injector(y, seed=self.seed)
            self.true_labels = y
            self.noisy_labels = torch.as_tensor(res.labels)
            self.noise_mask = torch.as_tensor(res.mask)
            self.transition = torch.as_tensor(res.transition)

    def _key(self, item: Any) -> int | str:
        if self.label_key is not None:
            return self.label_key
        return "label" if isinstance(item, Mapping) else 1

    def _get_label(self, item: Any) -> Any:
        return item[self._key(item)]

    def _replace(self, item: Any, new: Any) -> Any:
        key = self._key(item)
        if isinstance(item, Mapping):
            out = dict(item)
            out[key] = new
            return out
        if isinstance(item, (tuple, list)):
            seq = list(item)
            seq[key] = new
            return type(item)(seq) if isinstance(item, tuple) else seq
        raise TypeError(f"items must be tuples, lists or dicts, got {type(item)!r}")

    def __len__(self) -> int:
        return len(self.dataset)

    def _noisy_item(self, index: int) -> tuple[Any, NoiseResult | None]:
        item = self.dataset[index]
        if not self.per_sample:
            y = self._get_label(item)
            new = self.noisy_labels[index]
            if isinstance(y, torch.Tensor):
                new = new.to(device=y.device, dtype=y.dtype)
            elif isinstance(y, np.ndarray | np.generic):
                new = np.asarray(new.numpy(), dtype=np.asarray(y).dtype)
            elif isinstance(y, int | np.integer):
                new = int(new)
            return self._replace(item, new), None
        res = self.injector(self._get_label(item), seed=_mix(self.seed, index))
        return self._replace(item, res.labels), res

    def __getitem__(self, index: int) -> Any:
        return self._noisy_item(index)[0]

    def noise_mask_of(self, index: int) -> Any:
        """Changed entries of item ``index`` (scalar bool for classification, voxel mask otherwise)."""
        if not self.per_sample:
            return self.noise_mask[index]
        return self._noisy_item(index)[1].mask

    def true_label_of(self, index: int) -> Any:
        """The clean label of item ``index``."""
        if not self.per_sample:
            return self.true_labels[index]
        return self._get_label(self.dataset[index])
