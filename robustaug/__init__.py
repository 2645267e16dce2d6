"""robustaug: physics-based artifacts, label noise, robust losses and adversarial training.

The flat namespace re-exports the core API and every artifact class, so ``robustaug.GaussianNoise``
and ``robustaug.create("GaussianNoise", severity=3)`` both work.
"""

from . import adversarial, data, evaluate, functional, integrations, labelnoise, losses
from ._version import __version__
from .artifacts import *  # noqa: F403
from .artifacts import __all__ as _artifact_names
from .core import (
    Compose,
    OneOf,
    RandomApply,
    SomeOf,
    Transform,
    create,
    get_artifact,
    list_artifacts,
    params_from_json,
    params_to_json,
    register,
)

__all__ = [
    "Compose",
    "OneOf",
    "RandomApply",
    "SomeOf",
    "Transform",
    "__version__",
    "adversarial",
    "data",
    "evaluate",
    "functional",
    "integrations",
    "labelnoise",
    "losses",
    "create",
    "get_artifact",
    "list_artifacts",
    "params_from_json",
    "params_to_json",
    "register",
    *_artifact_names,
]
