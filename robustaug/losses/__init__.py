"""Noise-robust losses (drop-in for ``nn.CrossEntropyLoss``) and co-teaching.

Every softmax loss takes logits ``(N, C)`` or ``(N, C, *spatial)`` and class indices ``(N, *spatial)``
or probabilities ``(N, C, *spatial)``, with ``weight``, ``ignore_index`` and ``reduction`` as in torch.
Sigmoid (binary / multi-label) variants take logits and targets of the same shape, like
``nn.BCEWithLogitsLoss``. Build any of them by name with :func:`robust_loss`.
"""

from __future__ import annotations

import difflib

from torch import nn

from ._common import CANONICAL, LOSS_REGISTRY, SIGMOID_REGISTRY, RobustLoss, _normalise_name
from .binary import (
    BinaryCE,
    BinaryFocal,
    BinaryGCE,
    BinaryMAE,
    BinaryNCERCE,
    BinaryNFL,
    BinarySCE,
    SigmoidLoss,
)
from .correction import ELR, BackwardCorrected, ForwardCorrected, check_transition_matrix
from .coteaching import CoTeaching, keep_ratio
from .robust import (
    AEL,
    AGCE,
    ANL,
    AUL,
    GCE,
    MAE,
    NCE,
    NFL,
    NGCE,
    NMAE,
    NNCE,
    NNFL,
    RCE,
    SCE,
    SCE_A_CODE,
    SCE_A_PAPER,
    ActivePassive,
    Bootstrap,
    CrossEntropy,
    FocalLoss,
    TaylorCE,
    TruncatedGCE,
    l1_penalty,
)
from .segmentation import NoiseRobustDice

__all__ = [
    "AEL",
    "AGCE",
    "ANL",
    "AUL",
    "ELR",
    "GCE",
    "MAE",
    "NCE",
    "NFL",
    "NGCE",
    "NMAE",
    "NNCE",
    "NNFL",
    "RCE",
    "SCE",
    "SCE_A_CODE",
    "SCE_A_PAPER",
    "ActivePassive",
    "BackwardCorrected",
    "BinaryCE",
    "BinaryFocal",
    "BinaryGCE",
    "BinaryMAE",
    "BinaryNCERCE",
    "BinaryNFL",
    "BinarySCE",
    "Bootstrap",
    "CoTeaching",
    "CrossEntropy",
    "FocalLoss",
    "ForwardCorrected",
    "NoiseRobustDice",
    "RobustLoss",
    "SigmoidLoss",
    "TaylorCE",
    "TruncatedGCE",
    "check_transition_matrix",
    "keep_ratio",
    "l1_penalty",
    "list_losses",
    "robust_loss",
]


def list_losses(kind: str = "softmax", aliases: bool = False) -> list[str]:
    """Registered loss names, sorted (``kind="softmax"``, ``"sigmoid"`` or ``"all"``).

    Names are lower case; ``+`` is spelled ``_plus_`` (``robust_loss`` accepts both). With
    ``aliases=False`` each loss is listed once, under its canonical name.
    """
    if kind == "softmax":
        names = list(LOSS_REGISTRY)
    elif kind == "sigmoid":
        names = list(SIGMOID_REGISTRY)
    elif kind == "all":
        names = [*LOSS_REGISTRY, *SIGMOID_REGISTRY]
    else:
        raise ValueError(f"kind must be 'softmax', 'sigmoid' or 'all', got {kind!r}.")
    if not aliases:
        names = [n for n in names if n in CANONICAL]
    return sorted(names)


def robust_loss(name: str, **kw) -> nn.Module:
    """Build a loss by name, e.g. ``robust_loss("gce", q=0.7)`` or ``robust_loss("nce+agce")``.

    Names are case-insensitive; ``-``/``_`` are interchangeable. Keyword arguments go to the
    constructor (``weight``, ``ignore_index``, ``reduction`` and the loss's own parameters).

    Raises:
        KeyError: For an unknown name (with close matches).
    """
    key = _normalise_name(name)
    table = {**LOSS_REGISTRY, **SIGMOID_REGISTRY}
    if key not in table:
        close = difflib.get_close_matches(key, list(table), n=3, cutoff=0.5)
        tip = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(
            f"Unknown loss {name!r}.{tip} robustaug.losses.list_losses('all') lists them."
        )
    return table[key](**kw)
