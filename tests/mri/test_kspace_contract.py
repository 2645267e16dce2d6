"""Contract checks for the k-space MRI artifacts (mirrors tests/contract for these classes)."""

from __future__ import annotations

import pytest

from robustaug.artifacts import mri as A

CLASSES = [
    A.Motion,
    A.Ghosting,
    A.NyquistGhost,
    A.Spike,
    A.Zipper,
    A.Gibbs,
    A.Undersampling,
    A.WrapAround,
]
CASES = [(cls, d) for cls in CLASSES for d in cls.dims]
IDS = [f"{c.__name__}-{d}d" for c, d in CASES]


def _x(cls, dims, batch=3):
    return cls.example_input(dims, batch=batch, size=32 if dims == 2 else 24)


def test_bad_arguments():
    with pytest.raises(ValueError, match="amplitude"):
        A.Ghosting(amplitude=-1.0)
    with pytest.raises(ValueError, match="fraction"):
        A.Gibbs(fraction=0.0)
    with pytest.raises(ValueError, match="pattern"):
        A.Undersampling(pattern="poisson")
    with pytest.raises(ValueError, match="pe_axis"):
        A.Ghosting(pe_axis=5)
    with pytest.raises(ValueError, match="moved_energy"):
        A.Motion(moved_energy=1.5)
    with pytest.raises(TypeError):
        A.Spike(bogus=1)
