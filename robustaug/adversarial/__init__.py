"""Adversarial robustness: threat models, attacks, reliable evaluation and robust training.

Pixel threats (:class:`Linf`, :class:`L2`, :class:`L1`) and physically parameterised threats
(:class:`BiasField`, :class:`Motion`, :class:`NoiseBudget`, :class:`Ghosting`, :class:`Spike`,
:class:`Gamma`, :class:`IntensityShift`, :class:`Affine`) are optimised by the same PGD / APGD engines.
Every attack is side-effect free (see :func:`isolated`), takes an explicit ``data_range`` and an
optional ``normalize``, and draws randomness only from an explicit seed / generator.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> import robustaug.adversarial as adv
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    >>> x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    >>> x_adv = adv.perturb(net, x, y, threat=adv.Linf(eps=0.1, steps=5), data_range=(0, 1))
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
    True
    >>> robust = adv.RobustLoss(net, method="trades", threat=adv.Linf(eps=0.1, steps=3))
    >>> robust(x, y).ndim
    0
"""

from ._isolation import check_range, isolated, unwrap
from .apgd import apgd, apgd_targeted
from .attacks import (
    AttackResult,
    ce_loss,
    dlr_loss,
    fgsm,
    fgsm_rs,
    get_loss,
    margin_loss,
    perturb,
    pgd,
    targeted_dlr_loss,
)
from .fab import fab_targeted
from .physical import (
    Affine,
    ArtifactThreat,
    BiasField,
    Gamma,
    Ghosting,
    IntensityShift,
    Motion,
    NoiseBudget,
    PhysicalThreat,
    RicianNoise,
    Spike,
)
from .segmentation import (
    CosPGDLoss,
    SegPGDLoss,
    confusion_matrix,
    dice_attack_loss,
    dice_per_class,
    evaluate_segmentation,
    mean_iou,
    seg_attack,
    sliding_window_attack,
    targeted_mask_loss,
)
from .square import square
from .suites import SUITES, EvalReport, GradientMaskingWarning, evaluate, masking_flags
from .threats import L1, L2, Linf, Threat
from .training import (
    AWP,
    METHODS,
    CatastrophicOverfittingWarning,
    RobustLoss,
    jsd_consistency,
    kl_divergence,
    mart_loss,
    replay,
    trades_loss,
)

__all__ = [
    "AWP",
    "L1",
    "L2",
    "METHODS",
    "SUITES",
    "Affine",
    "ArtifactThreat",
    "AttackResult",
    "BiasField",
    "CatastrophicOverfittingWarning",
    "CosPGDLoss",
    "EvalReport",
    "Gamma",
    "Ghosting",
    "GradientMaskingWarning",
    "IntensityShift",
    "Linf",
    "Motion",
    "NoiseBudget",
    "PhysicalThreat",
    "RicianNoise",
    "RobustLoss",
    "SegPGDLoss",
    "Spike",
    "Threat",
    "apgd",
    "apgd_targeted",
    "ce_loss",
    "check_range",
    "confusion_matrix",
    "dice_attack_loss",
    "dice_per_class",
    "dlr_loss",
    "evaluate",
    "evaluate_segmentation",
    "fab_targeted",
    "fgsm",
    "fgsm_rs",
    "get_loss",
    "isolated",
    "jsd_consistency",
    "kl_divergence",
    "margin_loss",
    "mart_loss",
    "masking_flags",
    "mean_iou",
    "perturb",
    "pgd",
    "replay",
    "seg_attack",
    "sliding_window_attack",
    "square",
    "targeted_dlr_loss",
    "targeted_mask_loss",
    "trades_loss",
    "unwrap",
]
