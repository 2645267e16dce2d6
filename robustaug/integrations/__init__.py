"""Adapters that run robustaug transforms inside host libraries' pipelines.

- :func:`robustaug.integrations.torchio.as_torchio` wraps a transform as a TorchIO
  ``IntensityTransform`` for ``tio.Compose`` on ``tio.Subject`` objects.
- :class:`robustaug.integrations.monai.Dictionary` wraps a transform as a MONAI dictionary
  transform (``MapTransform`` + ``Randomizable``) for ``monai.transforms.Compose``.

The submodules import their host library lazily: importing :mod:`robustaug.integrations` never
imports TorchIO or MONAI, and a missing library gives an error that says what to install.
"""

from __future__ import annotations

from typing import Any

__all__ = ["as_torchio", "monai_dictionary"]


def as_torchio(transform: Any, **kwargs: Any) -> Any:
    """Wrap ``transform`` for TorchIO; see :func:`robustaug.integrations.torchio.as_torchio`."""
    from .torchio import as_torchio as _as_torchio

    return _as_torchio(transform, **kwargs)


def monai_dictionary(transform: Any, keys: Any = ("image",), **kwargs: Any) -> Any:
    """Wrap ``transform`` for MONAI; see :class:`robustaug.integrations.monai.Dictionary`."""
    from .monai import Dictionary

    return Dictionary(transform, keys=keys, **kwargs)
