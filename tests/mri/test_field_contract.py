"""Extra checks for the MRI noise/field artifacts (the registry harness in tests/contract/ covers the contract).

The lead's harness in tests/contract/ runs over every registered artifact; this file checks the same
properties for the six classes of robustaug.artifacts.mri_field so that they hold on their own.
"""

from __future__ import annotations

import pytest

from robustaug.artifacts import mri_field as M

pytestmark = pytest.mark.usefixtures("one_thread_fixed_seed")


CLASSES = [getattr(M, n) for n in M.__all__]
IDS = [c.__name__ for c in CLASSES]


def _x(cls, dims, batch=3):
    return cls.example_input(dims, batch=batch, size=32 if dims == 2 else 24)


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_class_metadata(cls):
    assert cls.modality == "mri"
    assert set(cls.dims) == {2, 3}
    assert sorted(cls.severity_table) == [1, 2, 3, 4, 5]
    for lvl in range(1, 6):
        cls.from_severity(lvl, seed=0)


@pytest.mark.parametrize("cls", CLASSES, ids=IDS)
def test_small_inputs(cls):
    t = cls.from_severity(3, seed=0)
    assert t(cls.example_input(3, 1, 24)).shape == (1, 1, 24, 24, 24)
    assert t(cls.example_input(2, 1, 12)).shape == (1, 1, 12, 12)

