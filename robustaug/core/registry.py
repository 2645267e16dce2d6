"""A registry of artifact classes, for sweeps, configs and the CLI."""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from .transform import Transform

__all__ = ["create", "get_artifact", "list_artifacts", "register"]

_REGISTRY: dict[str, type[Transform]] = {}

T = TypeVar("T", bound=type[Transform])


def register(cls: T) -> T:
    """Class decorator: add an artifact class to the registry under its class name."""
    name = cls.__name__
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"An artifact named {name!r} is already registered.")
    _REGISTRY[name] = cls
    return cls


def _ensure_loaded() -> None:
    from .. import artifacts  # noqa: F401  (importing registers the built-in artifacts)


def get_artifact(name: str) -> type[Transform]:
    """Look up an artifact class by name (case-insensitive).

    Raises:
        KeyError: If no artifact has that name; the message suggests close matches.
    """
    _ensure_loaded()
    if name in _REGISTRY:
        return _REGISTRY[name]
    lower = {k.lower(): k for k in _REGISTRY}
    if name.lower() in lower:
        return _REGISTRY[lower[name.lower()]]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    tip = f" Did you mean {', '.join(close)}?" if close else ""
    raise KeyError(
        f"Unknown artifact {name!r}.{tip} Tip: robustaug.list_artifacts() lists all of them."
    )


def list_artifacts(modality: str | None = None, dims: int | None = None) -> list[str]:
    """Names of registered artifacts, sorted.

    Args:
        modality: Keep those of this modality (``"mri"``, ``"ct"``, ``"xray"``, ``"ultrasound"``,
            ``"histology"``, ``"camera"`` or ``"any"`` for generic ones).
        dims: Keep those that support this spatial dimensionality (2 or 3).

    Returns:
        Sorted artifact names.
    """
    _ensure_loaded()
    if dims is not None and dims not in (2, 3):
        raise ValueError(f"`dims` must be None, 2 or 3, got {dims!r}.")
    out = []
    for name, cls in _REGISTRY.items():
        if modality is not None and cls.modality != modality:
            continue
        if dims is not None and dims not in cls.dims:
            continue
        out.append(name)
    return sorted(out)


def create(name: str, severity: int | None = None, **kwargs: Any) -> Transform:
    """Instantiate a registered artifact by name.

    Args:
        name: Registered name (see :func:`list_artifacts`).
        severity: If given, build with ``from_severity(severity, **kwargs)``.
        **kwargs: Constructor arguments.

    Returns:
        The transform.

    Examples:
        >>> import robustaug as ra
        >>> ra.create("GaussianNoise", severity=2).severity
        2
    """
    cls = get_artifact(name)
    if severity is not None:
        return cls.from_severity(severity, **kwargs)
    return cls(**kwargs)
