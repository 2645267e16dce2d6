"""Core machinery: the Transform contract, compositions, seeding, checks and the registry."""

from .checks import check_probability, check_range, check_severity, check_tensor
from .compose import Compose, OneOf, RandomApply, SomeOf
from .registry import create, get_artifact, list_artifacts, register
from .rng import per_sample_noise, sample_seeds
from .transform import Params, Transform, bcast, params_from_json, params_to_json

__all__ = [
    "Compose",
    "OneOf",
    "Params",
    "RandomApply",
    "SomeOf",
    "Transform",
    "bcast",
    "check_probability",
    "check_range",
    "check_severity",
    "check_tensor",
    "create",
    "get_artifact",
    "list_artifacts",
    "params_from_json",
    "params_to_json",
    "per_sample_noise",
    "register",
    "sample_seeds",
]
