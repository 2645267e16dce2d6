"""Metrics for robustness studies: classification and segmentation, with bootstrap confidence intervals.

All functions take torch tensors (any device) and return Python floats or tensors on the CPU.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "METRICS",
    "accuracy",
    "auroc",
    "balanced_accuracy",
    "bootstrap_ci",
    "dice_per_class",
    "expected_calibration_error",
    "hausdorff95",
    "mean_dice",
]


def _labels(y: Tensor) -> Tensor:
    return y.detach().cpu().long().reshape(-1)


def _probs(p: Tensor) -> Tensor:
    p = p.detach().cpu().double()
    if p.ndim != 2:
        raise ValueError(f"`probs` must be (N, C) class probabilities, got shape {tuple(p.shape)}.")
    return p


def accuracy(probs: Tensor, y: Tensor) -> float:
    """Fraction of samples whose arg-max class equals the label."""
    p, t = _probs(probs), _labels(y)
    return float((p.argmax(1) == t).double().mean()) if len(t) else float("nan")


def balanced_accuracy(probs: Tensor, y: Tensor) -> float:
    """Mean per-class recall over the classes present in ``y`` (Brodersen et al., ICPR 2010)."""
    p, t = _probs(probs), _labels(y)
    pred = p.argmax(1)
    recalls = [float((pred[t == c] == c).double().mean()) for c in t.unique().tolist()]
    return float(np.mean(recalls)) if recalls else float("nan")


def _binary_auroc(score: np.ndarray, pos: np.ndarray) -> float:
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    # Mann-Whitney U with average ranks for ties.
    from scipy.stats import rankdata

    r = rankdata(score)
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def auroc(probs: Tensor, y: Tensor) -> float:
    """Area under the ROC curve: binary (class 1 score) or macro one-vs-rest for C > 2.

    Computed as the Mann-Whitney U statistic (ties get average ranks); classes absent from ``y`` are
    skipped.
    """
    p, t = _probs(probs).numpy(), _labels(y).numpy()
    if p.shape[1] == 2:
        return _binary_auroc(p[:, 1], t == 1)
    vals = [_binary_auroc(p[:, c], t == c) for c in range(p.shape[1])]
    vals = [v for v in vals if not np.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def expected_calibration_error(probs: Tensor, y: Tensor, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (Guo et al., ICML 2017).

    $$ ECE = \\sum_b \\frac{|B_b|}{N} |acc(B_b) - conf(B_b)| $$
    """
    p, t = _probs(probs), _labels(y)
    conf, pred = p.max(1)
    correct = (pred == t).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += float(m.double().mean()) * abs(float(correct[m].mean()) - float(conf[m].mean()))
    return ece


def dice_per_class(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """Dice per class over the whole batch: ``2|P∩T| / (|P| + |T|)`` (NaN where both are empty).

    Args:
        pred: Integer label maps ``(N, *spatial)``.
        target: Integer label maps of the same shape.
        num_classes: Number of classes C.
        ignore_index: Label excluded from all classes.

    Returns:
        ``(C,)`` float64 tensor.
    """
    pred, target = pred.detach().cpu().long(), target.detach().cpu().long()
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    out = torch.full((num_classes,), float("nan"), dtype=torch.float64)
    for c in range(num_classes):
        pc, tc = (pred == c) & valid, (target == c) & valid
        denom = int(pc.sum() + tc.sum())
        if denom:
            out[c] = 2.0 * float((pc & tc).sum()) / denom
    return out


def mean_dice(pred: Tensor, target: Tensor, num_classes: int, ignore_background: bool = True) -> float:
    """Mean Dice over the foreground classes (classes 1..C-1 by default)."""
    d = dice_per_class(pred, target, num_classes)
    d = d[1:] if ignore_background and num_classes > 1 else d
    d = d[~torch.isnan(d)]
    return float(d.mean()) if len(d) else float("nan")


def hausdorff95(pred: Tensor, target: Tensor, spacing: tuple[float, ...] | None = None) -> float:
    """95th-percentile symmetric Hausdorff distance between two binary masks (one sample).

    Surface distances come from Euclidean distance transforms (scipy), so the cost is linear in the
    number of voxels. Returns NaN when either mask is empty.
    """
    from scipy import ndimage

    a = pred.detach().cpu().numpy().astype(bool)
    b = target.detach().cpu().numpy().astype(bool)
    if not a.any() or not b.any():
        return float("nan")
    sp = spacing or (1.0,) * a.ndim
    sa = a & ~ndimage.binary_erosion(a)
    sb = b & ~ndimage.binary_erosion(b)
    da = ndimage.distance_transform_edt(~sb, sampling=sp)[sa]
    db = ndimage.distance_transform_edt(~sa, sampling=sp)[sb]
    return float(np.percentile(np.concatenate([da, db]), 95))


METRICS: dict[str, Callable[[Tensor, Tensor], float]] = {
    "accuracy": accuracy,
    "balanced_accuracy": balanced_accuracy,
    "auroc": auroc,
    "ece": expected_calibration_error,
}


def bootstrap_ci(
    fn: Callable[[np.ndarray], float],
    n: int,
    *,
    resamples: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a statistic over ``n`` samples.

    Args:
        fn: Maps an index array (a resample of ``range(n)``) to the statistic.
        n: Number of samples.
        resamples: Bootstrap resamples.
        seed: Seed of a private numpy generator (global state untouched).
        level: Confidence level.

    Returns:
        ``(low, high)``.
    """
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    stats = np.array([fn(rng.integers(0, n, size=n)) for _ in range(resamples)], dtype=np.float64)
    stats = stats[~np.isnan(stats)]
    if len(stats) == 0:
        return (float("nan"), float("nan"))
    a = (1 - level) / 2
    return (float(np.quantile(stats, a)), float(np.quantile(stats, 1 - a)))
