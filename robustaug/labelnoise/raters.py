"""Simulated rater panels and consensus (majority vote, STAPLE) for segmentation masks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import segmentation as seg
from ._common import from_numpy_like, make_rng, to_numpy

__all__ = ["Rater", "RaterPanel", "StapleResult", "majority_vote", "staple"]

ArrayLike = Any


@dataclass(frozen=True)
class Rater:
    """One simulated annotator.

    Attributes:
        bias_mm: Systematic boundary bias: > 0 over-segments (dilation), < 0 under-segments (erosion).
        jitter_mm: RMS amplitude of the smooth contour wobble (:func:`segmentation.contour_jitter`).
        smoothness_mm: Correlation length of the wobble.
        p_miss: Probability of missing each connected component (:func:`drop_components`).
        fp_rate: Expected number of spurious blobs per mask (:func:`add_false_positives`).
        fp_size_mm: Radius range of spurious blobs.
    """

    bias_mm: float = 0.0
    jitter_mm: float = 0.0
    smoothness_mm: float = 4.0
    p_miss: float = 0.0
    fp_rate: float = 0.0
    fp_size_mm: tuple[float, float] = (2.0, 4.0)

    def __call__(
        self,
        mask: ArrayLike,
        spacing: float | Sequence[float] | None = None,
        *,
        ignore_index: int | None = None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        m = to_numpy(mask, "mask").astype(np.int64)
        kw = {"ignore_index": ignore_index}
        if self.bias_mm > 0:
            m = seg.dilate(m, self.bias_mm, spacing, **kw).labels
        elif self.bias_mm < 0:
            m = seg.erode(m, -self.bias_mm, spacing, **kw).labels
        if self.jitter_mm > 0:
            m = seg.contour_jitter(m, self.jitter_mm, self.smoothness_mm, spacing, seed=rng, **kw).labels
        if self.p_miss > 0:
            m = seg.drop_components(m, self.p_miss, seed=rng, **kw).labels
        if self.fp_rate > 0:
            m = seg.add_false_positives(
                m, self.fp_rate, self.fp_size_mm, spacing, seed=rng, **kw
            ).labels
        return m


class RaterPanel:
    """K simulated raters, each with its own bias, and their consensus.

    Args:
        raters: ``Rater`` objects (or callables ``(mask, spacing, ignore_index=, rng=) -> mask``).
        seed: Base seed; rater ``k`` on call ``sample(mask, seed=s)`` uses an independent stream
            derived from ``(seed or s, k)``.

    Examples:
        >>> import numpy as np
        >>> m = np.zeros((32, 32), int); m[8:24, 8:24] = 1
        >>> panel = RaterPanel([Rater(bias_mm=1.0), Rater(bias_mm=-1.0), Rater(jitter_mm=1.0)], seed=0)
        >>> masks = panel.sample(m)
        >>> masks.shape
        (3, 32, 32)
        >>> panel.consensus(masks, method="majority").shape
        (32, 32)
    """

    def __init__(self, raters: Sequence[Rater | Any], seed: int | None = 0) -> None:
        if len(raters) == 0:
            raise ValueError("`raters` must contain at least one rater")
        self.raters = list(raters)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.raters)

    def sample(
        self,
        mask: ArrayLike,
        spacing: float | Sequence[float] | None = None,
        *,
        ignore_index: int | None = None,
        seed: int | None = None,
    ) -> ArrayLike:
        """Draw one annotation per rater: ``(K, *mask.shape)``, same container/dtype/device as ``mask``."""
        base = self.seed if seed is None else seed
        if base is None:
            base = int(make_rng().integers(0, 2**62))
        outs = []
        for k, r in enumerate(self.raters):
            rng = np.random.default_rng([int(base), k])
            outs.append(np.asarray(r(mask, spacing, ignore_index=ignore_index, rng=rng)))
        stacked = np.stack(outs)
        if isinstance(mask, torch.Tensor):
            return torch.from_numpy(stacked).to(device=mask.device, dtype=mask.dtype)
        return stacked.astype(to_numpy(mask).dtype)

    def consensus(self, masks: ArrayLike, method: str = "staple", **kw: Any) -> ArrayLike:
        """Consensus of the ``(K, ...)`` annotations: ``"majority"`` or ``"staple"`` (labels only)."""
        if method == "majority":
            return majority_vote(masks, **kw)
        if method == "staple":
            return staple(masks, **kw).labels
        raise ValueError(f"`method` must be 'majority' or 'staple', got {method!r}")


def majority_vote(masks: ArrayLike, num_classes: int | None = None) -> ArrayLike:
    """Voxel-wise majority vote over raters; ties go to the smallest class index.

    Args:
        masks: ``(K, ...)`` label maps of K raters.
        num_classes: Number of classes (default ``max + 1``).

    Returns:
        ``(...)`` consensus label map, same container/dtype/device as ``masks``.
    """
    m = to_numpy(masks, "masks").astype(np.int64)
    if m.ndim < 2:
        raise ValueError(f"`masks` must be (K, ...) with K raters, got shape {m.shape}")
    C = int(m.max()) + 1 if num_classes is None else int(num_classes)
    votes = np.stack([(m == c).sum(0) for c in range(C)])
    out = np.argmax(votes, axis=0)
    return from_numpy_like(out, masks)


@dataclass(frozen=True)
class StapleResult:
    """STAPLE output.

    Attributes:
        labels: Consensus label map (argmax of the posterior), container of the input.
        posterior: ``(C, ...)`` float64 posterior ``P(true = c | all ratings)`` (numpy).
        confusion: ``(K, C, C)`` per-rater matrices ``theta[k, s, d] = P(rater k says d | true s)``
            (row-stochastic, rows = true class). For binary masks ``theta[k, 1, 1]`` is the
            sensitivity and ``theta[k, 0, 0]`` the specificity.
        iterations: EM iterations run.
    """

    labels: ArrayLike
    posterior: np.ndarray
    confusion: np.ndarray
    iterations: int


def staple(
    masks: ArrayLike,
    num_classes: int | None = None,
    *,
    prior: ArrayLike | None = None,
    max_iter: int = 100,
    tol: float = 1e-7,
    init_quality: float = 0.99,
) -> StapleResult:
    """Multi-class STAPLE: expectation-maximisation of the true segmentation and rater quality.

    Model (Warfield et al. 2004, multi-label form): each rater ``k`` has a confusion matrix
    ``theta_k[s, d] = P(D_k = d | T = s)``; voxels are independent with prior ``pi`` (default: the
    pooled label frequencies over raters, fixed).

    * E-step: ``W[v, s] ∝ pi_s prod_k theta_k[s, D_k(v)]`` (computed in log space).
    * M-step: ``theta_k[s, d] = sum_{v: D_k(v) = d} W[v, s] / sum_v W[v, s]``.

    Iterates until the change of ``theta`` is below ``tol``. Initial ``theta_k`` has
    ``init_quality`` on the diagonal.

    Args:
        masks: ``(K, ...)`` label maps of K raters (2D or 3D each).
        num_classes: Number of classes (default ``max + 1``).
        prior: Class prior ``pi`` (default: pooled frequencies).
        max_iter: Maximum EM iterations.
        tol: Convergence tolerance on ``theta``.
        init_quality: Initial diagonal of every ``theta_k``.

    Returns:
        :class:`StapleResult`.

    References:
        Warfield, Zou & Wells, "Simultaneous truth and performance level estimation (STAPLE): an
        algorithm for the validation of image segmentation", IEEE TMI 23(7), 2004.
    """
    D = to_numpy(masks, "masks").astype(np.int64)
    if D.ndim < 2:
        raise ValueError(f"`masks` must be (K, ...) with K raters, got shape {D.shape}")
    K = D.shape[0]
    spatial = D.shape[1:]
    D = D.reshape(K, -1)
    C = int(D.max()) + 1 if num_classes is None else int(num_classes)
    C = max(C, 2)
    if not 0 < init_quality < 1:
        raise ValueError(f"`init_quality` must be in (0, 1), got {init_quality}")
    if prior is None:
        pi = np.bincount(D.ravel(), minlength=C).astype(np.float64)
        pi = pi / pi.sum()
    else:
        pi = np.asarray(to_numpy(prior, "prior"), np.float64)
    logpi = np.log(np.clip(pi, 1e-12, None))
    theta = np.full((K, C, C), (1 - init_quality) / (C - 1))
    for k in range(K):
        np.fill_diagonal(theta[k], init_quality)
    onehot = [np.eye(C, dtype=np.float64)[D[k]] for k in range(K)]  # (V, C) each
    W = None
    iterations = 0
    for _ in range(max_iter):
        iterations += 1
        logw = np.broadcast_to(logpi, (D.shape[1], C)).copy()
        for k in range(K):
            logw += np.log(np.clip(theta[k][:, D[k]].T, 1e-300, None))
        logw -= logw.max(1, keepdims=True)
        W = np.exp(logw)
        W /= W.sum(1, keepdims=True)
        denom = np.clip(W.sum(0), 1e-300, None)  # (C,)
        new = np.stack([(W.T @ onehot[k]) / denom[:, None] for k in range(K)])
        delta = np.abs(new - theta).max()
        theta = new
        if delta < tol:
            break
    post = W.T.reshape((C, *spatial))
    labels = np.argmax(post, axis=0)
    return StapleResult(from_numpy_like(labels, masks), post, theta, iterations)
