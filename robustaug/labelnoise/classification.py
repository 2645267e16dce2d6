"""Seeded class-label noise injectors (symmetric, pair-flip, asymmetric, general T, IDN, multi-label).

Convention: a transition matrix is **row-stochastic**, ``T[i, j] = P(noisy = j | true = i)`` (Patrini et
al. 2017; Han et al. 2018). cleanlab's ``noise_matrix`` is the transpose (``noise_matrix[s, y] =
P(s | y)``, columns sum to 1): use :func:`to_cleanlab` / :func:`from_cleanlab` to convert.

Every injector takes a torch tensor or numpy array, a ``seed`` (int) or a ``generator``
(``torch.Generator``), never touches the global RNGs, and returns a :class:`NoiseResult`
``(labels, mask, transition)`` where ``transition`` is the *realised* row-stochastic matrix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from scipy import special, stats

from ._common import (
    NoiseResult,
    bool_like,
    check_rate,
    float_like,
    from_numpy_like,
    make_rng,
    realised_transition,
    to_numpy,
)

__all__ = [
    "ASYMMETRIC_PRESETS",
    "asymmetric",
    "from_cleanlab",
    "from_trace",
    "instance_dependent",
    "is_valid_transition",
    "multilabel",
    "pairflip",
    "symmetric",
    "to_cleanlab",
    "transition",
]

ArrayLike = Any

#: Class maps of the class-dependent ("asymmetric") noise of Patrini et al. (2017), as used by
#: APL/ANL/GCE: source -> destination. Swaps (3<->5, 5<->6) are sampled from the *original* labels.
ASYMMETRIC_PRESETS: dict[str, dict[int, int]] = {
    # truck->automobile, bird->airplane, deer->horse, cat<->dog
    "cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
    # 7->1, 2->7, 5<->6, 3->8
    "mnist": {7: 1, 2: 7, 5: 6, 6: 5, 3: 8},
}


# --------------------------------------------------------------------------------------------- utils
def _labels_1d(labels: ArrayLike, num_classes: int | None) -> tuple[np.ndarray, int]:
    y = to_numpy(labels)
    if y.dtype.kind not in "iu" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        raise TypeError(f"`labels` must hold integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError("`labels` must be non-negative class indices")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 1
    elif y.size and y.max() >= num_classes:
        raise ValueError(f"`labels` has class {int(y.max())} >= num_classes={num_classes}")
    return y, int(num_classes)


def _finish(y: np.ndarray, noisy: np.ndarray, labels: ArrayLike, C: int, requested=None) -> NoiseResult:
    T = realised_transition(y, noisy, C)
    req = None if requested is None else float_like(np.asarray(requested), labels)
    return NoiseResult(
        labels=from_numpy_like(noisy.reshape(y.shape), labels),
        mask=bool_like((noisy != y).reshape(y.shape), labels),
        transition=float_like(T, labels),
        requested=req,
    )


def _check_T(T: np.ndarray, name: str = "T", atol: float = 1e-6) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 2 or T.shape[0] != T.shape[1]:
        raise ValueError(f"`{name}` must be a square (C, C) matrix, got shape {T.shape}")
    if (T.min() if T.size else 0.0) < -atol or not np.allclose(T.sum(1), 1.0, atol=atol):
        raise ValueError(
            f"`{name}` must be row-stochastic (T[i, j] = P(noisy=j | true=i), rows sum to 1, "
            f"entries >= 0); row sums are {np.round(T.sum(1), 6).tolist()}. If it comes from "
            "cleanlab (columns sum to 1), convert it with from_cleanlab()."
        )
    T = np.clip(T, 0.0, None)
    return T / T.sum(1, keepdims=True)


def to_cleanlab(T: ArrayLike) -> ArrayLike:
    """Convert a row-stochastic ``T[i, j] = P(noisy=j | true=i)`` to cleanlab's ``noise_matrix``.

    cleanlab uses ``noise_matrix[s, y] = P(label=s | true_label=y)`` (columns sum to 1), i.e. ``T.T``.
    The round trip ``from_cleanlab(to_cleanlab(T))`` is exact.

    Args:
        T: ``(C, C)`` row-stochastic matrix (tensor or array).

    Returns:
        The transpose, same container type.
    """
    _check_T(to_numpy(T, "T"))
    return T.T.clone() if isinstance(T, torch.Tensor) else np.array(T).T.copy()


def from_cleanlab(noise_matrix: ArrayLike) -> ArrayLike:
    """Convert cleanlab's column-stochastic ``noise_matrix[s, y] = P(s | y)`` to row-stochastic ``T``.

    Args:
        noise_matrix: ``(C, C)`` matrix whose columns sum to 1 (tensor or array).

    Returns:
        ``T = noise_matrix.T`` (rows sum to 1), same container type.
    """
    nm = to_numpy(noise_matrix, "noise_matrix")
    _check_T(nm.T, "noise_matrix.T")
    return noise_matrix.T.clone() if isinstance(noise_matrix, torch.Tensor) else nm.T.copy()


def is_valid_transition(T: ArrayLike, prior: ArrayLike | None = None) -> bool:
    """Identifiability check in the sense of cleanlab's ``noise_matrix_is_valid``.

    ``T`` is valid when ``trace(T) > 1`` and, for every noisy class ``j``, the joint
    ``P(true=j, noisy=j) = prior[j] T[j, j]`` exceeds ``prior[i] T[i, j]`` for every other ``i``
    (the true class dominates each noisy column).
    """
    Tn = _check_T(to_numpy(T, "T"))
    C = Tn.shape[0]
    p = np.full(C, 1.0 / C) if prior is None else np.asarray(to_numpy(prior, "prior"), np.float64)
    joint = p[:, None] * Tn
    if np.trace(Tn) <= 1:
        return False
    for j in range(C):
        others = np.delete(joint[:, j], j)
        if others.size and np.any(others >= joint[j, j]):
            return False
    return True


def _sample_rows(y: np.ndarray, T: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw ``noisy_n ~ Categorical(T[y_n])`` independently for every entry (vectorised)."""
    cdf = np.cumsum(T, axis=1)
    cdf[:, -1] = 1.0
    u = rng.random(y.shape[0])
    rows = cdf[y]
    return np.minimum((u[:, None] >= rows).sum(1), T.shape[0] - 1).astype(np.int64)


# ------------------------------------------------------------------------------------------ injectors
def symmetric(
    labels: ArrayLike,
    rate: float,
    num_classes: int | None = None,
    *,
    include_true_class: bool = False,
    mode: Literal["bernoulli", "exact"] = "bernoulli",
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> NoiseResult:
    """Symmetric (uniform) label noise.

    Model: each label is selected for corruption with probability ``rate`` (``mode="bernoulli"``), or
    exactly ``round(rate * n_c)`` labels of every class ``c`` are selected (``mode="exact"``,
    class-balanced, so the total is ``round(rate * N)`` up to ``+-C/2``). A selected label is replaced by a
    class drawn uniformly from the ``C - 1`` *other* classes (``include_true_class=False``, the APL / ANL /
    co-teaching convention: ``T = (1 - rate) I + rate/(C-1) (11^T - I)``) or from all ``C`` classes
    (``include_true_class=True``, DivideMix convention: the realised flip rate is ``rate (C-1)/C``).

    Args:
        labels: Integer class indices, any shape (tensor or array).
        rate: Noise rate in [0, 1].
        num_classes: Number of classes ``C`` (default ``labels.max() + 1``).
        include_true_class: Whether a resampled label may keep its class.
        mode: ``"bernoulli"`` (independent per entry) or ``"exact"`` (fixed count per class).
        seed: Integer seed. Mutually exclusive with ``generator``.
        generator: ``torch.Generator`` used to derive the seed (advanced by one draw).

    Returns:
        :class:`NoiseResult` ``(labels, mask, transition)``; ``requested`` holds the nominal T.

    References:
        Han et al., "Co-teaching", NeurIPS 2018; Ma et al., "Normalized loss functions for deep learning
        with noisy labels" (APL), ICML 2020.
    """
    rate = check_rate(rate)
    if mode not in ("bernoulli", "exact"):
        raise ValueError(f"`mode` must be 'bernoulli' or 'exact', got {mode!r}")
    y0, C = _labels_1d(labels, num_classes)
    if C < 2 and not include_true_class and rate > 0:
        raise ValueError("`num_classes` must be >= 2 for symmetric noise with include_true_class=False")
    rng = make_rng(seed, generator)
    y = y0.reshape(-1)
    N = y.size
    if mode == "bernoulli":
        sel = rng.random(N) < rate
    else:
        sel = np.zeros(N, dtype=bool)
        for c in range(C):
            idx = np.flatnonzero(y == c)
            k = int(np.floor(rate * idx.size + 0.5))
            if k:
                sel[rng.choice(idx, size=k, replace=False)] = True
    noisy = y.copy()
    if include_true_class:
        noisy[sel] = rng.integers(0, C, size=int(sel.sum()))
        T_req = (1 - rate) * np.eye(C) + rate / C
    else:
        offs = rng.integers(1, C, size=int(sel.sum())) if C > 1 else np.zeros(0, np.int64)
        noisy[sel] = (y[sel] + offs) % C
        T_req = (1 - rate) * np.eye(C) + (rate / max(C - 1, 1)) * (1 - np.eye(C))
    return _finish(y0, noisy.reshape(y0.shape), labels, C, T_req)


def transition(
    labels: ArrayLike,
    T: ArrayLike,
    *,
    convention: Literal["row", "cleanlab"] = "row",
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> NoiseResult:
    """Class-conditional noise from a transition matrix.

    Model: every entry is resampled independently, ``noisy ~ Categorical(T[true])`` with
    ``T[i, j] = P(noisy = j | true = i)``. All draws use the *original* labels (no sequential flipping).

    Args:
        labels: Integer class indices, any shape.
        T: ``(C, C)`` matrix. Row-stochastic (``convention="row"``) or cleanlab's column-stochastic
            ``noise_matrix`` (``convention="cleanlab"``, transposed internally).
        convention: Orientation of ``T``.
        seed: Integer seed (exclusive with ``generator``).
        generator: ``torch.Generator`` used to derive the seed.

    Returns:
        :class:`NoiseResult`; ``requested`` holds ``T`` in row convention.

    References:
        Patrini et al., "Making deep neural networks robust to label noise: a loss correction
        approach", CVPR 2017.
    """
    Tn = to_numpy(T, "T").astype(np.float64)
    if convention == "cleanlab":
        Tn = Tn.T
    elif convention != "row":
        raise ValueError(f"`convention` must be 'row' or 'cleanlab', got {convention!r}")
    Tn = _check_T(Tn)
    y0, C = _labels_1d(labels, Tn.shape[0])
    rng = make_rng(seed, generator)
    noisy = _sample_rows(y0.reshape(-1), Tn, rng)
    return _finish(y0, noisy.reshape(y0.shape), labels, C, Tn)


def pairflip(
    labels: ArrayLike,
    rate: float,
    num_classes: int | None = None,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> NoiseResult:
    """Pair-flip noise: class ``c`` flips to ``(c + 1) mod C`` with probability ``rate``.

    Model: ``T = (1 - rate) I + rate P`` with ``P`` the cyclic shift. ``rate >= 0.5`` raises, because the
    majority of a class would then carry the wrong label (not identifiable).

    Args:
        labels: Integer class indices.
        rate: Flip probability in [0, 0.5).
        num_classes: Number of classes (default ``labels.max() + 1``).
        seed: Integer seed (exclusive with ``generator``).
        generator: ``torch.Generator`` used to derive the seed.

    Returns:
        :class:`NoiseResult`.

    References:
        Han et al., "Co-teaching: robust training of deep neural networks with extremely noisy labels",
        NeurIPS 2018 (pair-flip noise).
    """
    rate = check_rate(rate, hi=0.5, inclusive=False)
    _, C = _labels_1d(labels, num_classes)
    T = (1 - rate) * np.eye(C) + rate * np.roll(np.eye(C), 1, axis=1)
    return transition(labels, T, seed=seed, generator=generator)


def asymmetric(
    labels: ArrayLike,
    rate: float,
    preset: str | Mapping[int, int] = "cifar10",
    num_classes: int | None = None,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> NoiseResult:
    """Class-dependent ("asymmetric") noise from a class map.

    Model: for each ``source -> destination`` pair of the map, ``T[source, source] = 1 - rate`` and
    ``T[source, destination] = rate``; other classes are clean. The noisy labels are drawn from the
    *original* labels, so swaps (cat<->dog) realise the nominal rate (APL's sequential in-place loop
    realises only 24 % cat->dog at a nominal 40 %).

    Args:
        labels: Integer class indices.
        rate: Flip probability for mapped classes, in [0, 1].
        preset: ``"cifar10"`` (9->1, 2->0, 4->7, 3<->5), ``"mnist"`` (7->1, 2->7, 5<->6, 3->8), or a
            user mapping ``{source: destination}``.
        num_classes: Number of classes (default: 10 for presets, else ``max(labels, map) + 1``).
        seed: Integer seed (exclusive with ``generator``).
        generator: ``torch.Generator`` used to derive the seed.

    Returns:
        :class:`NoiseResult`.

    References:
        Patrini et al., CVPR 2017 (class maps); Ma et al., ICML 2020 (APL code).
    """
    rate = check_rate(rate)
    if isinstance(preset, str):
        if preset not in ASYMMETRIC_PRESETS:
            raise ValueError(f"`preset` must be one of {sorted(ASYMMETRIC_PRESETS)} or a dict")
        mapping = ASYMMETRIC_PRESETS[preset]
        default_C = 10
    elif isinstance(preset, Mapping):
        mapping = {int(k): int(v) for k, v in preset.items()}
        default_C = max([*mapping.keys(), *mapping.values()]) + 1
    else:
        raise TypeError(f"`preset` must be a preset name or a mapping, got {type(preset)!r}")
    _, C = _labels_1d(labels, num_classes)
    if num_classes is None:
        C = max(C, default_C)
    if any(k >= C or v >= C or k < 0 or v < 0 for k, v in mapping.items()):
        raise ValueError(f"class map {mapping} refers to classes outside [0, {C})")
    T = np.eye(C)
    for s, d in mapping.items():
        if s != d:
            T[s, s] = 1 - rate
            T[s, d] = rate
    return transition(labels, T, seed=seed, generator=generator)


def from_trace(
    labels: ArrayLike,
    trace: float,
    prior: ArrayLike | None = None,
    num_classes: int | None = None,
    *,
    valid: bool = True,
    concentration: float = 10.0,
    max_tries: int = 10000,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> NoiseResult:
    """Noise from a random transition matrix with a given trace.

    Model: the per-class noise rates ``r_i = 1 - T[i, i]`` are ``(C - trace) * Dirichlet(concentration)``,
    each row's off-diagonal mass is split by a ``Dirichlet(1)`` draw; a draw is rejected when
    ``r_i > 1`` or (``valid=True``) when it is not identifiable (:func:`is_valid_transition` with
    ``prior``). Then labels are sampled as in :func:`transition`. Equivalent in purpose to cleanlab's
    ``generate_noise_matrix_from_trace`` (which uses the column convention and global ``np.random``).

    Args:
        labels: Integer class indices.
        trace: ``sum_i T[i, i]`` in (1, C] when ``valid``, else [0, C].
        prior: Class prior ``p(true = i)`` for the validity check (default: empirical from ``labels``).
        num_classes: Number of classes.
        valid: Require an identifiable matrix.
        concentration: Dirichlet concentration of the per-class noise rates (large = equal rates).
        max_tries: Rejection-sampling budget.
        seed: Integer seed (exclusive with ``generator``).
        generator: ``torch.Generator`` used to derive the seed.

    Returns:
        :class:`NoiseResult`; ``requested`` holds the generated ``T`` (row convention).
    """
    y0, C = _labels_1d(labels, num_classes)
    trace = float(trace)
    lo = 1.0 if valid else 0.0
    if not (lo < trace <= C if valid else 0 <= trace <= C):
        raise ValueError(f"`trace` must be in ({lo}, {C}] (valid={valid}), got {trace}")
    if prior is None:
        prior_np = np.bincount(y0.reshape(-1), minlength=C).astype(np.float64)
        prior_np = prior_np / max(prior_np.sum(), 1.0)
    else:
        prior_np = np.asarray(to_numpy(prior, "prior"), np.float64)
        if prior_np.shape != (C,) or np.any(prior_np < 0) or not np.isclose(prior_np.sum(), 1):
            raise ValueError(f"`prior` must be a length-{C} probability vector")
    rng = make_rng(seed, generator)
    budget = C - trace
    for _ in range(max_tries):
        r = budget * rng.dirichlet(np.full(C, concentration)) if budget > 0 else np.zeros(C)
        if np.any(r > 1):
            continue
        T = np.diag(1 - r)
        for i in range(C):
            w = rng.dirichlet(np.ones(C - 1))
            T[i, np.arange(C) != i] = r[i] * w
        if not valid or is_valid_transition(T, prior_np):
            break
    else:
        raise ValueError(
            f"could not draw a valid transition matrix with trace={trace} in {max_tries} tries; "
            "raise `trace`, pass valid=False or a more balanced `prior`"
        )
    noisy = _sample_rows(y0.reshape(-1), T, rng)
    return _finish(y0, noisy.reshape(y0.shape), labels, C, T)


def instance_dependent(
    labels: ArrayLike,
    features: ArrayLike,
    rate: float,
    num_classes: int | None = None,
    *,
    norm_std: float = 0.1,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> NoiseResult:
    """Instance-dependent (part/feature-dependent) label noise after Xia et al. (2020).

    Model. Features are flattened to ``x_n in R^d`` and standardised per dimension over the dataset
    (zero mean, unit variance), so the result does not depend on the raw feature scale. With
    ``W ~ N(0, 1)^{C x d x C}`` and ``v ~ N(0, 1)^d``:

    * flip probability: ``q_n = F^{-1}(Phi(z_n))`` where ``F`` is the CDF of
      ``TruncNormal(rate, norm_std, [0, 1])`` (Xia's marginal) and ``z_n = v.x_n / ||v||`` (standardised).
      Xia's reference draws ``q_n`` independently of ``x``; here it is a monotone function of a random
      projection of ``x`` with the same marginal, so the *flip itself* depends on the instance (harder
      instances flip more often). Larger ``norm_std`` = stronger dependence.
    * destination: ``P(noisy = j | flip) = softmax(x_n W_{y_n} / sqrt(d))_j`` over ``j != y_n``.

    So the per-sample row is ``(1 - q_n) e_{y_n} + q_n softmax(...)``. The mean realised rate is
    ``E[q] ~= rate`` (truncation biases it upwards when ``rate < 2 norm_std``).

    Args:
        labels: ``(N,)`` integer class indices.
        features: ``(N, ...)`` features (flattened). Any device; computed on CPU in float64.
        rate: Mean flip probability in [0, 1].
        num_classes: Number of classes.
        norm_std: Standard deviation of the per-sample flip probability.
        seed: Integer seed (exclusive with ``generator``).
        generator: ``torch.Generator`` used to derive the seed.

    Returns:
        :class:`NoiseResult`.

    References:
        Xia et al., "Part-dependent label noise: towards instance-dependent label noise", NeurIPS 2020.
    """
    rate = check_rate(rate)
    if norm_std <= 0:
        raise ValueError(f"`norm_std` must be > 0, got {norm_std}")
    y0, C = _labels_1d(labels, num_classes)
    if y0.ndim != 1:
        raise ValueError(f"`labels` must be 1-D (N,), got shape {y0.shape}")
    x = to_numpy(features, "features").astype(np.float64).reshape(y0.shape[0], -1)
    if x.shape[0] != y0.shape[0]:
        raise ValueError("`features` and `labels` must have the same first dimension")
    N, d = x.shape
    x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
    rng = make_rng(seed, generator)
    W = rng.standard_normal((C, d, C))
    v = rng.standard_normal(d)
    z = x @ v / max(np.linalg.norm(v), 1e-12)
    sd = z.std()
    z = (z - z.mean()) / (sd if sd > 0 else 1.0)
    a, b = (0 - rate) / norm_std, (1 - rate) / norm_std
    u = np.clip(special.ndtr(z), 1e-12, 1 - 1e-12)
    q = stats.truncnorm.ppf(u, a, b, loc=rate, scale=norm_std)
    logits = np.einsum("nd,ndc->nc", x, W[y0]) / np.sqrt(max(d, 1))
    logits[np.arange(N), y0] = -np.inf
    logits -= logits.max(1, keepdims=True)
    dest = np.exp(logits)
    dest /= dest.sum(1, keepdims=True)
    flip = rng.random(N) < q
    cdf = np.cumsum(dest, 1)
    cdf[:, -1] = 1.0
    d_draw = np.minimum((rng.random(N)[:, None] >= cdf).sum(1), C - 1)
    noisy = np.where(flip, d_draw, y0)
    return _finish(y0, noisy, labels, C)


def multilabel(
    labels: ArrayLike,
    fn_rate: float,
    fp_rate: float,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> NoiseResult:
    """Multi-label noise: each positive is dropped w.p. ``fn_rate``, each negative set w.p. ``fp_rate``.

    Model: independent per entry of the multi-hot matrix, ``P(noisy=0 | true=1) = fn_rate`` (missed
    finding), ``P(noisy=1 | true=0) = fp_rate`` (spurious finding). The realised ``transition`` is the
    ``(2, 2)`` matrix pooled over all entries, rows = true value (0, 1).

    Args:
        labels: ``(N, C)`` multi-hot labels (0/1, bool, int or float).
        fn_rate: False-negative rate in [0, 1].
        fp_rate: False-positive rate in [0, 1].
        seed: Integer seed (exclusive with ``generator``).
        generator: ``torch.Generator`` used to derive the seed.

    Returns:
        :class:`NoiseResult` with labels of the input dtype.
    """
    fn_rate = check_rate(fn_rate, "fn_rate")
    fp_rate = check_rate(fp_rate, "fp_rate")
    y = to_numpy(labels)
    yb = y.astype(np.float64)
    if not np.all((yb == 0) | (yb == 1)):
        raise ValueError("`labels` must be multi-hot (entries 0/1)")
    yb = yb.astype(np.int64)
    rng = make_rng(seed, generator)
    u = rng.random(yb.shape)
    flip = np.where(yb == 1, u < fn_rate, u < fp_rate)
    noisy = np.where(flip, 1 - yb, yb)
    T = realised_transition(yb, noisy, 2)
    out = noisy.astype(y.dtype) if isinstance(labels, np.ndarray) else noisy
    req = np.array([[1 - fp_rate, fp_rate], [fn_rate, 1 - fn_rate]])
    return NoiseResult(
        labels=from_numpy_like(out, labels),
        mask=bool_like(flip, labels),
        transition=float_like(T, labels),
        requested=float_like(req, labels),
    )
