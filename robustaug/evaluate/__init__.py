"""Robustness evaluation: sweeps, metrics, aggregates, reports, and the study behind `robustaug study`."""

from .aggregate import (
    area_under_severity_curve,
    corruption_errors,
    failure_point,
    relative_robustness,
    summarize,
    worst_artifact,
)
from .metrics import (
    accuracy,
    auroc,
    balanced_accuracy,
    dice_per_class,
    expected_calibration_error,
    hausdorff95,
    mean_dice,
)
from .report import RobustnessReport
from .sweeps import (
    adversarial_sweep,
    label_noise_sweep,
    physical_threat,
    predict,
    severity_sweep,
    worst_case_vs_average,
)

__all__ = [
    "RobustnessReport",
    "accuracy",
    "adversarial_sweep",
    "area_under_severity_curve",
    "auroc",
    "balanced_accuracy",
    "corruption_errors",
    "dice_per_class",
    "expected_calibration_error",
    "failure_point",
    "hausdorff95",
    "label_noise_sweep",
    "mean_dice",
    "physical_threat",
    "predict",
    "relative_robustness",
    "severity_sweep",
    "summarize",
    "worst_artifact",
    "worst_case_vs_average",
]
