"""Label noise: seeded injection (classes and segmentation masks), a noisy-dataset wrapper, and
detection and cleaning on top of cleanlab.

Transition matrices are row-stochastic, ``T[i, j] = P(noisy = j | true = i)``; cleanlab's
``noise_matrix`` is the transpose (see :func:`to_cleanlab` / :func:`from_cleanlab`).
"""

from ._common import LabelNoiseWarning, NoiseResult, realised_transition
from .classification import (
    ASYMMETRIC_PRESETS,
    asymmetric,
    from_cleanlab,
    from_trace,
    instance_dependent,
    is_valid_transition,
    multilabel,
    pairflip,
    symmetric,
    to_cleanlab,
    transition,
)
from .dataset import NoisyLabels
from .detection import (
    LabelIssues,
    TrainingSignals,
    estimate_noise_rate,
    find_label_issues,
    find_segmentation_issues,
    lesion_scores,
    make_train_fn,
    out_of_fold_probs,
    prune,
    relabel,
    reweight,
    segmentation_quality_scores,
    single_run_signals,
    stratified_folds,
)
from .raters import Rater, RaterPanel, StapleResult, majority_vote, staple
from .segmentation import (
    add_false_positives,
    contour_jitter,
    dice,
    dilate,
    drop_components,
    erode,
    interface_swap,
    slice_sparse,
)

__all__ = [
    "ASYMMETRIC_PRESETS",
    "LabelIssues",
    "LabelNoiseWarning",
    "NoiseResult",
    "NoisyLabels",
    "Rater",
    "RaterPanel",
    "StapleResult",
    "TrainingSignals",
    "add_false_positives",
    "asymmetric",
    "contour_jitter",
    "dice",
    "dilate",
    "drop_components",
    "erode",
    "estimate_noise_rate",
    "find_label_issues",
    "find_segmentation_issues",
    "from_cleanlab",
    "from_trace",
    "instance_dependent",
    "interface_swap",
    "is_valid_transition",
    "lesion_scores",
    "majority_vote",
    "make_train_fn",
    "multilabel",
    "out_of_fold_probs",
    "pairflip",
    "prune",
    "realised_transition",
    "relabel",
    "reweight",
    "segmentation_quality_scores",
    "single_run_signals",
    "slice_sparse",
    "staple",
    "stratified_folds",
    "symmetric",
    "to_cleanlab",
    "transition",
]
