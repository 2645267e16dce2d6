"""Label-issue detection and cleaning: torch-native out-of-fold probabilities, single-run signals
(small-loss rank, AUM), a tensor adapter over cleanlab, native 2D/3D segmentation detection, and
cleaning actions (prune, relabel, reweight, noise-rate estimation).

Out-of-sample probabilities matter: cleanlab's methods assume ``pred_probs`` were produced by a model that
did not train on the example (K-fold cross-validation). :func:`out_of_fold_probs` does that for any
``nn.Module`` factory; :func:`find_label_issues` warns when the probabilities look in-sample.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from ..core.rng import seeded_global_rng
from ._common import LabelNoiseWarning, from_numpy_like, to_numpy

__all__ = [
    "LabelIssues",
    "TrainingSignals",
    "estimate_noise_rate",
    "find_label_issues",
    "find_segmentation_issues",
    "lesion_scores",
    "make_train_fn",
    "out_of_fold_probs",
    "prune",
    "relabel",
    "reweight",
    "segmentation_quality_scores",
    "single_run_signals",
    "stratified_folds",
]

ArrayLike = Any

# cleanlab.experimental.label_issues_batched constants (streaming segmentation thresholds)
_CONF_LOWER_BOUND = 2e-6
_FLOAT_CMP = 1e-6


# ------------------------------------------------------------------------------------ data helpers
def _dataset_labels(dataset: Any, labels: ArrayLike | None) -> np.ndarray:
    if labels is not None:
        return to_numpy(labels).astype(np.int64).reshape(-1)
    for attr in ("targets", "labels"):
        if hasattr(dataset, attr):
            return to_numpy(getattr(dataset, attr)).astype(np.int64).reshape(-1)
    if hasattr(dataset, "tensors") and len(dataset.tensors) >= 2:  # TensorDataset
        return to_numpy(dataset.tensors[1]).astype(np.int64).reshape(-1)
    ys = []
    for i in range(len(dataset)):
        item = dataset[i]
        ys.append(int(item["label"] if isinstance(item, dict) else item[1]))
    return np.asarray(ys, dtype=np.int64)


def _split_item(item: Any) -> tuple[Tensor, Tensor]:
    if isinstance(item, dict):
        return item["image"] if "image" in item else item["x"], item["label"]
    return item[0], item[1]


def stratified_folds(labels: ArrayLike, k: int = 5, seed: int = 0) -> np.ndarray:
    """Fold id in ``[0, k)`` for every sample; each class is shuffled and dealt round-robin.

    Args:
        labels: ``(N,)`` integer labels.
        k: Number of folds (>= 2).
        seed: Integer seed.

    Returns:
        ``(N,)`` int64 fold assignment (numpy).
    """
    if int(k) < 2:
        raise ValueError(f"`k` must be >= 2, got {k}")
    y = to_numpy(labels).astype(np.int64).reshape(-1)
    rng = np.random.default_rng(seed)
    folds = np.empty(y.size, dtype=np.int64)
    start = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        folds[idx] = (np.arange(idx.size) + start) % k
        start += idx.size
    return folds


def make_train_fn(
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> Callable[[nn.Module, Any, torch.Generator], None]:
    """A minimal Adam training loop usable as ``train_fn`` of :func:`out_of_fold_probs`.

    Args:
        epochs: Passes over the training subset.
        lr: Adam learning rate.
        batch_size: Mini-batch size.
        weight_decay: Adam weight decay.
        loss_fn: ``loss(logits, targets)`` (default cross-entropy).
        device: Device to train on.

    Returns:
        ``train_fn(model, dataset, generator)``: trains ``model`` in place.
    """
    crit = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()

    def train_fn(model: nn.Module, dataset: Any, generator: torch.Generator) -> None:
        model.to(device).train()
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)
        for _ in range(epochs):
            for item in loader:
                x, y = _split_item(item)
                opt.zero_grad(set_to_none=True)
                loss = crit(model(x.to(device)), y.to(device).long())
                loss.backward()
                opt.step()

    return train_fn


@torch.no_grad()
def _predict(model: nn.Module, dataset: Any, batch_size: int, device: Any) -> Tensor:
    was_training = model.training
    model.eval()
    out = []
    for item in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x, _ = _split_item(item)
        out.append(torch.softmax(model(x.to(device)).float(), dim=1).cpu())
    model.train(was_training)
    return torch.cat(out)


def out_of_fold_probs(
    model_factory: Callable[[], nn.Module],
    dataset: Any,
    k: int = 5,
    train_fn: Callable[[nn.Module, Any, torch.Generator], None] | None = None,
    *,
    labels: ArrayLike | None = None,
    seed: int = 0,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> Tensor:
    """Out-of-sample predicted probabilities by stratified K-fold cross-validation (torch-native).

    For fold ``f``, a fresh model ``model_factory()`` is trained by ``train_fn(model, train_subset,
    generator)`` on the other ``k - 1`` folds and predicts ``softmax(model(x))`` on fold ``f``.
    Every sample thus receives probabilities from a model that never saw it, as cleanlab requires.

    Args:
        model_factory: Returns a fresh ``nn.Module`` producing logits ``(B, C)``. Seed its weights
            yourself if you need bit-reproducibility (e.g. ``torch.Generator`` in init) - the factory is
            called inside ``seeded_global_rng`` seeded with ``(seed, fold)``, so the global RNG state is
            restored afterwards.
        dataset: Map-style dataset of ``(x, y)`` tuples or dicts (``"image"``/``"x"``, ``"label"``).
        k: Number of folds.
        train_fn: Training loop (default :func:`make_train_fn` ``()``).
        labels: Labels for stratification (default: ``dataset.targets``/tensors/items).
        seed: Seed for fold assignment, shuffling and model initialisation.
        batch_size: Prediction batch size.
        device: Device for prediction.
        progress: Show a tqdm progress bar over folds.

    Returns:
        ``(N, C)`` float32 CPU tensor of out-of-fold probabilities.

    References:
        Northcutt, Jiang & Chuang, "Confident learning: estimating uncertainty in dataset labels",
        JAIR 70, 2021 (out-of-sample probabilities for confident learning).
    """
    y = _dataset_labels(dataset, labels)
    if y.size != len(dataset):
        raise ValueError(f"`labels` has {y.size} entries, dataset has {len(dataset)}")
    folds = stratified_folds(y, k, seed)
    train_fn = train_fn if train_fn is not None else make_train_fn(device=device)
    probs: Tensor | None = None
    it = range(k)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="out-of-fold folds")
    for f in it:
        tr = np.flatnonzero(folds != f).tolist()
        te = np.flatnonzero(folds == f).tolist()
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, f]).generate_state(1)[0]))
        with seeded_global_rng(int(np.random.SeedSequence([seed, f, 1]).generate_state(1)[0])):
            model = model_factory()
            train_fn(model, Subset(dataset, tr), g)
            p = _predict(model, Subset(dataset, te), batch_size, device)
        if probs is None:
            probs = torch.zeros(len(dataset), p.shape[1])
        probs[torch.as_tensor(te)] = p
    assert probs is not None
    return probs


# ------------------------------------------------------------------------ single-run signals
class TrainingSignals:
    """Per-sample signals recorded during one ordinary training run (no K-fold).

    Call :meth:`update` with the sample indices, logits and (noisy) labels of each mini-batch and
    :meth:`end_epoch` after every epoch. Signals, averaged over the recorded epochs:

    * small-loss: mean per-sample cross-entropy ``l_n = -log softmax(z_n)_{y_n}``. Networks fit clean
      labels before noisy ones, so noisy samples have large early losses (Han et al. 2018).
      :meth:`small_loss_rank` returns the rank in [0, 1] (1 = largest loss = most suspicious).
    * AUM (area under the margin): mean over epochs of ``z_{n,y_n} - max_{j != y_n} z_{n,j}`` (logits);
      low or negative = likely mislabelled (Pleiss et al. 2020).

    Args:
        num_samples: Dataset size ``N``.
        start_epoch: Epochs before this one are not recorded.

    References:
        Han et al., "Co-teaching", NeurIPS 2018; Pleiss et al., "Identifying mislabeled data using the
        area under the margin ranking", NeurIPS 2020.
    """

    def __init__(self, num_samples: int, start_epoch: int = 0) -> None:
        self.num_samples = int(num_samples)
        self.start_epoch = int(start_epoch)
        self.epoch = 0
        self._loss = torch.zeros(self.num_samples, dtype=torch.float64)
        self._margin = torch.zeros(self.num_samples, dtype=torch.float64)
        self._count = torch.zeros(self.num_samples, dtype=torch.float64)

    @torch.no_grad()
    def update(self, index: Tensor, logits: Tensor, labels: Tensor) -> None:
        """Record one mini-batch: ``index`` (B,), ``logits`` (B, C), ``labels`` (B,)."""
        if self.epoch < self.start_epoch:
            return
        z = logits.detach().float().cpu()
        y = labels.detach().long().cpu()
        idx = index.detach().long().cpu()
        loss = F.cross_entropy(z, y, reduction="none").double()
        zy = z.gather(1, y[:, None]).squeeze(1)
        other = z.scatter(1, y[:, None], float("-inf")).max(1).values
        self._loss.index_add_(0, idx, loss)
        self._margin.index_add_(0, idx, (zy - other).double())
        self._count.index_add_(0, idx, torch.ones_like(loss))

    def end_epoch(self) -> None:
        """Mark the end of an epoch."""
        self.epoch += 1

    def _mean(self, v: Tensor) -> Tensor:
        c = self._count
        return torch.where(c > 0, v / c.clamp_min(1), torch.full_like(v, float("nan")))

    def mean_loss(self) -> Tensor:
        """Mean recorded loss per sample (NaN if never seen)."""
        return self._mean(self._loss)

    def small_loss_rank(self) -> Tensor:
        """Rank of the mean loss scaled to [0, 1]; 1 = largest loss (most likely noisy)."""
        m = self.mean_loss()
        r = torch.argsort(torch.argsort(m)).double()
        return r / max(self.num_samples - 1, 1)

    def aum(self) -> Tensor:
        """Area under the margin per sample (mean logit margin); low = likely mislabelled."""
        return self._mean(self._margin)


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, ds: Any) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        x, y = _split_item(self.ds[i])
        return x, y, i


def single_run_signals(
    model: nn.Module,
    dataset: Any,
    *,
    epochs: int = 20,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    start_epoch: int = 0,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> TrainingSignals:
    """Train ``model`` once on the (noisy) dataset with Adam and record :class:`TrainingSignals`.

    Args:
        model: Classifier producing logits; trained in place.
        dataset: Map-style dataset of ``(x, y)`` or dicts.
        epochs: Training epochs.
        lr: Learning rate.
        batch_size: Mini-batch size.
        weight_decay: Adam weight decay.
        start_epoch: First epoch whose signals are recorded.
        loss_fn: Training loss ``loss(logits, y)`` (default cross-entropy). A noise-robust loss keeps the
            small-loss signal informative for longer; the recorded signal is always cross-entropy.
        seed: Shuffling seed.
        device: Training device.

    Returns:
        The filled :class:`TrainingSignals`.
    """
    crit = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    sig = TrainingSignals(len(dataset), start_epoch)
    g = torch.Generator().manual_seed(int(seed))
    loader = DataLoader(_Indexed(dataset), batch_size=batch_size, shuffle=True, generator=g)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        for x, y, idx in loader:
            x, y = x.to(device), y.to(device).long()
            logits = model(x)
            loss = crit(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sig.update(idx, logits, y)
        sig.end_epoch()
    return sig


# ------------------------------------------------------------------------ cleanlab adapter
@dataclass(frozen=True)
class LabelIssues:
    """Result of :func:`find_label_issues`.

    Attributes:
        mask: ``(N,)`` bool, ``True`` = label issue (identical to cleanlab's boolean mask).
        indices: Flagged indices ranked from most to least severe (lowest ``quality`` first).
        suggested: ``(N,)`` suggested label = ``argmax`` of ``pred_probs`` (meaningful where flagged).
        quality: ``(N,)`` label-quality score in [0, 1] (cleanlab ``rank.get_label_quality_scores``);
            low = likely wrong.
        confidence: ``(N,)`` predicted probability of the suggested label.
    """

    mask: ArrayLike
    indices: ArrayLike
    suggested: ArrayLike
    quality: ArrayLike
    confidence: ArrayLike


def _guardrails(y: np.ndarray, P: np.ndarray, in_sample_acc: float = 0.99) -> None:
    if P.ndim != 2 or y.size < 20:
        return
    onehot = np.zeros_like(P)
    onehot[np.arange(y.size), np.clip(y, 0, P.shape[1] - 1)] = 1.0
    if np.allclose(P, onehot, atol=1e-6):
        warnings.warn(
            "pred_probs equal the given labels one-hot: they carry no information about label "
            "errors. Pass out-of-sample model probabilities (e.g. out_of_fold_probs()).",
            LabelNoiseWarning,
            stacklevel=3,
        )
        return
    acc = float(np.mean(P.argmax(1) == y))
    if acc >= in_sample_acc:
        warnings.warn(
            f"pred_probs agree with the given labels on {acc:.1%} of samples: they look in-sample "
            "(the model was trained on these labels and memorised them), so few or no issues can be "
            "found. Use out-of-fold probabilities (out_of_fold_probs()).",
            LabelNoiseWarning,
            stacklevel=3,
        )


def find_label_issues(
    labels: ArrayLike,
    pred_probs: ArrayLike,
    *,
    filter_by: str = "prune_by_noise_rate",
    rank_by: str = "self_confidence",
    multi_label: bool = False,
    n_jobs: int | None = 1,
    check: bool = True,
    **kwargs: Any,
) -> LabelIssues:
    """Find label issues with cleanlab's confident learning; tensors (or arrays) in and out.

    The boolean mask is exactly ``cleanlab.filter.find_label_issues(labels, pred_probs,
    filter_by=filter_by, **kwargs)``. Soft labels ``(N, C)`` (rows summing to 1) are converted with
    ``argmax``; multi-hot ``(N, C)`` labels with ``multi_label=True`` are converted to lists.

    Args:
        labels: ``(N,)`` integer labels, ``(N, C)`` soft labels, or ``(N, C)`` multi-hot.
        pred_probs: ``(N, C)`` out-of-sample predicted probabilities.
        filter_by: Any cleanlab ``filter_by`` (``prune_by_noise_rate``, ``prune_by_class``, ``both``,
            ``confident_learning``, ``predicted_neq_given``, ``low_normalized_margin``,
            ``low_self_confidence``).
        rank_by: Quality score used for ``quality`` and the ranking of ``indices``
            (``self_confidence``, ``normalized_margin``, ``confidence_weighted_entropy``).
        multi_label: Multi-label task.
        n_jobs: cleanlab worker processes (1 = deterministic, no multiprocessing).
        check: Run the guardrails (warn when ``pred_probs`` look in-sample or equal the labels).
        **kwargs: Passed to ``cleanlab.filter.find_label_issues`` (``frac_noise``,
            ``num_to_remove_per_class``, ``min_examples_per_class``, ``confident_joint``).

    Returns:
        :class:`LabelIssues`, in torch tensors if ``pred_probs`` is a tensor (on its device), else numpy.

    References:
        Northcutt, Jiang & Chuang, "Confident learning", JAIR 2021; cleanlab 2.x.
    """
    from cleanlab.filter import find_label_issues as cl_find
    from cleanlab.rank import get_label_quality_scores

    P = to_numpy(pred_probs, "pred_probs").astype(np.float64, copy=False)
    if P.ndim != 2:
        raise ValueError(f"`pred_probs` must be (N, C), got shape {P.shape}")
    yl = to_numpy(labels)
    if multi_label:
        if yl.ndim != 2:
            raise ValueError("with multi_label=True, `labels` must be (N, C) multi-hot")
        y_in: Any = [list(np.flatnonzero(r)) for r in yl]
        y_int = None
    else:
        if yl.ndim == 2:
            if yl.shape != P.shape:
                raise ValueError(f"soft `labels` {yl.shape} must match `pred_probs` {P.shape}")
            yl = yl.argmax(1)
        if yl.ndim != 1 or yl.shape[0] != P.shape[0]:
            raise ValueError(f"`labels` must be (N,) with N={P.shape[0]}, got {yl.shape}")
        y_int = yl.astype(np.int64)
        y_in = y_int
        if check:
            _guardrails(y_int, P)
    mask = cl_find(y_in, P, filter_by=filter_by, multi_label=multi_label, n_jobs=n_jobs, **kwargs)
    suggested = P.argmax(1)
    conf = P.max(1)
    if multi_label:
        from cleanlab.multilabel_classification.rank import get_label_quality_scores as ml_q

        quality = ml_q(yl.astype(int), P)
    else:
        quality = get_label_quality_scores(y_int, P, method=rank_by)
    flagged = np.flatnonzero(mask)
    order = flagged[np.argsort(quality[flagged], kind="stable")]
    like = pred_probs
    if isinstance(like, Tensor):
        dev = like.device
        return LabelIssues(
            torch.as_tensor(mask, dtype=torch.bool, device=dev),
            torch.as_tensor(order, dtype=torch.long, device=dev),
            torch.as_tensor(suggested, dtype=torch.long, device=dev),
            torch.as_tensor(quality, dtype=torch.float64, device=dev),
            torch.as_tensor(conf, dtype=torch.float64, device=dev),
        )
    return LabelIssues(mask.astype(bool), order, suggested, quality, conf)


# ------------------------------------------------------------------------ segmentation
def _seg_inputs(labels: ArrayLike, pred_probs: ArrayLike) -> tuple[Tensor, Tensor]:
    y = labels if isinstance(labels, Tensor) else torch.as_tensor(np.asarray(labels))
    P = pred_probs if isinstance(pred_probs, Tensor) else torch.as_tensor(np.asarray(pred_probs))
    if P.ndim not in (4, 5):
        raise ValueError(
            f"`pred_probs` must be (N, K, H, W) or (N, K, D, H, W), got shape {tuple(P.shape)}"
        )
    if tuple(y.shape) != (P.shape[0], *P.shape[2:]):
        raise ValueError(
            f"`labels` shape {tuple(y.shape)} must be (N, *spatial) = {(P.shape[0], *P.shape[2:])}"
        )
    return y.to(P.device).long(), P


def find_segmentation_issues(
    labels: ArrayLike,
    pred_probs: ArrayLike,
    *,
    batch_size: int | None = None,
    ignore_index: int | None = None,
) -> ArrayLike:
    """Per-voxel label issues for 2D or 3D segmentation, streamed over the batch (torch-native).

    Same algorithm as ``cleanlab.segmentation.filter.find_label_issues`` (which accepts 2D only): with
    per-class confident thresholds ``t_k`` = mean of ``p_k`` over voxels labelled ``k`` (pass 1), the
    number of issues is ``n = #{v : argmax p(v) = j != y(v), p_j(v) >= t_j - 1e-6}`` (pass 2); the ``n``
    voxels of lowest self-confidence ``p_{y(v)}(v)`` are flagged, except those whose argmax equals the
    label. On 2D input the mask is identical to cleanlab's (``downsample=1``). Voxels equal to
    ``ignore_index`` are excluded from thresholds and counts and never flagged.

    Args:
        labels: ``(N, H, W)`` or ``(N, D, H, W)`` integer labels.
        pred_probs: ``(N, K, H, W)`` or ``(N, K, D, H, W)`` probabilities (tensor on any device, or array).
        batch_size: Images per streamed batch (default: as many as fit in ~10^7 elements).
        ignore_index: Label of voxels to skip.

    Returns:
        ``(N, *spatial)`` bool mask (tensor on the device of ``pred_probs``, or numpy).

    References:
        Lad & Mueller, "Estimating label quality and errors in semantic segmentation data via any
        model", ICML DMLR workshop 2023; Northcutt et al., JAIR 2021.
    """
    y, P = _seg_inputs(labels, pred_probs)
    N, K = P.shape[:2]
    per_img = int(np.prod(P.shape[1:]))
    bs = batch_size or max(1, 10_000_000 // max(per_img, 1))
    dev = P.device
    sums = torch.zeros(K, dtype=torch.float64, device=dev)
    cnts = torch.zeros(K, dtype=torch.float64, device=dev)
    for s in range(0, N, bs):
        yb = y[s : s + bs].reshape(-1)
        pb = P[s : s + bs].movedim(1, -1).reshape(-1, K)
        valid = yb != ignore_index if ignore_index is not None else torch.ones_like(yb, dtype=torch.bool)
        yv, pv = yb[valid], pb[valid]
        sums.index_add_(0, yv, pv.gather(1, yv[:, None]).squeeze(1).double())
        cnts.index_add_(0, yv, torch.ones_like(yv, dtype=torch.float64))
    thr = (sums / cnts.clamp_min(1)).clamp_min(_CONF_LOWER_BOUND) - _FLOAT_CMP
    n_issues = 0
    scores = torch.empty(y.numel(), dtype=P.dtype, device=dev)
    wrong = torch.empty(y.numel(), dtype=torch.bool, device=dev)
    off = 0
    for s in range(0, N, bs):
        yb = y[s : s + bs].reshape(-1)
        pb = P[s : s + bs].movedim(1, -1).reshape(-1, K)
        valid = yb != ignore_index if ignore_index is not None else torch.ones_like(yb, dtype=torch.bool)
        yc = torch.where(valid, yb, torch.zeros_like(yb))
        pred = pb.argmax(1)
        pmax = pb.gather(1, pred[:, None]).squeeze(1)
        w = (pred != yc) & valid
        n_issues += int(((pmax.double() >= thr[pred]) & w).sum())
        sc = pb.gather(1, yc[:, None]).squeeze(1)
        scores[off : off + yb.numel()] = torch.where(valid, sc, torch.full_like(sc, float("inf")))
        wrong[off : off + yb.numel()] = w
        off += yb.numel()
    flagged = torch.zeros(y.numel(), dtype=torch.bool, device=dev)
    if n_issues > 0:
        # cleanlab: argsort of the scores, first n (ties are measure-zero for continuous probabilities)
        idx = torch.topk(scores, n_issues, largest=False, sorted=False).indices
        flagged[idx] = True
    flagged &= wrong
    out = flagged.reshape(y.shape)
    return out if isinstance(pred_probs, Tensor) else out.cpu().numpy()


def segmentation_quality_scores(
    labels: ArrayLike,
    pred_probs: ArrayLike,
    *,
    temperature: float = 0.1,
    ignore_index: int | None = None,
) -> tuple[ArrayLike, ArrayLike]:
    """Image- and voxel-level label quality for 2D/3D segmentation (cleanlab's ``softmin`` method).

    Voxel score ``s_v = p_{y(v)}(v)``; image score ``softmin_T(s) = sum_v s_v w_v`` with
    ``w = softmax((1 - s) / T)``, dominated by the worst voxels (``T = 0.1``). Matches
    ``cleanlab.segmentation.rank.get_label_quality_scores(method="softmin")`` on 2D input.

    Args:
        labels: ``(N, *spatial)`` integer labels.
        pred_probs: ``(N, K, *spatial)`` probabilities.
        temperature: Softmin temperature (> 0).
        ignore_index: Voxels excluded from the image score (voxel score NaN there).

    Returns:
        ``(image_scores (N,), voxel_scores (N, *spatial))``, float64, tensors or numpy like ``pred_probs``.
    """
    if temperature <= 0:
        raise ValueError(f"`temperature` must be > 0, got {temperature}")
    y, P = _seg_inputs(labels, pred_probs)
    valid = y != ignore_index if ignore_index is not None else torch.ones_like(y, dtype=torch.bool)
    yc = torch.where(valid, y, torch.zeros_like(y))
    vox = P.gather(1, yc[:, None]).squeeze(1).double()
    img = torch.empty(P.shape[0], dtype=torch.float64, device=P.device)
    for i in range(P.shape[0]):
        s = vox[i][valid[i]]
        w = torch.softmax((1 - s) / temperature, dim=0)
        img[i] = (s * w).sum()
    vox = torch.where(valid, vox, torch.full_like(vox, float("nan")))
    if isinstance(pred_probs, Tensor):
        return img, vox
    return img.cpu().numpy(), vox.cpu().numpy()


def lesion_scores(
    labels: ArrayLike,
    pred_probs: ArrayLike,
    *,
    background: int = 0,
    connectivity: int = 1,
    min_size: int = 1,
    ignore_index: int | None = None,
) -> list[dict[str, Any]]:
    """Component-level (lesion-level) label-quality scores for 2D/3D segmentation.

    * ``kind="labelled"``: every connected component of every foreground class ``c`` in ``labels``;
      ``score`` = mean of ``p_c`` over the component (low = the component is probably spurious or
      of the wrong class).
    * ``kind="missed"``: every connected component of predicted foreground class ``c``
      (``argmax p = c``) that does not overlap a labelled ``c`` voxel; ``score = 1 - mean p_c``
      (low = a lesion the annotator probably missed).

    Args:
        labels: ``(N, *spatial)`` integer labels.
        pred_probs: ``(N, K, *spatial)`` probabilities.
        background: Background class (not scored).
        connectivity: Component connectivity (1 = faces .. ndim = full).
        min_size: Ignore components smaller than this (voxels).
        ignore_index: Voxels excluded.

    Returns:
        List of dicts ``{"image", "class", "kind", "size", "score", "centroid"}`` sorted by score
        (most suspicious first).
    """
    y = to_numpy(labels).astype(np.int64)
    P = to_numpy(pred_probs).astype(np.float64)
    if P.ndim not in (4, 5) or y.shape != (P.shape[0], *P.shape[2:]):
        raise ValueError("`labels` (N, *spatial) and `pred_probs` (N, K, *spatial) do not match")
    nd = y.ndim - 1
    st = ndimage.generate_binary_structure(nd, connectivity)
    out: list[dict[str, Any]] = []
    for i in range(y.shape[0]):
        yi = y[i]
        ign = (yi == ignore_index) if ignore_index is not None else np.zeros(yi.shape, bool)
        pred = P[i].argmax(0)
        for c in range(P.shape[1]):
            if c == background:
                continue
            for kind, region in (("labelled", (yi == c) & ~ign), ("missed", (pred == c) & ~ign)):
                lab, n = ndimage.label(region, structure=st)
                for j in range(1, n + 1):
                    comp = lab == j
                    size = int(comp.sum())
                    if size < min_size:
                        continue
                    if kind == "missed" and np.any(yi[comp] == c):
                        continue
                    mean_p = float(P[i, c][comp].mean())
                    score = mean_p if kind == "labelled" else 1.0 - mean_p
                    cen = tuple(float(v) for v in np.argwhere(comp).mean(0))
                    out.append(
                        {"image": i, "class": c, "kind": kind, "size": size, "score": score,
                         "centroid": cen}
                    )
    out.sort(key=lambda d: d["score"])
    return out


# ------------------------------------------------------------------------ actions
def prune(issues: ArrayLike | LabelIssues) -> ArrayLike:
    """Indices of the samples to keep (those *not* flagged), ascending.

    Args:
        issues: ``(N,)`` bool issue mask or a :class:`LabelIssues`.

    Returns:
        ``(N_keep,)`` int64 indices (tensor or numpy like the mask). Use with ``torch.utils.data.Subset``.
    """
    m = issues.mask if isinstance(issues, LabelIssues) else issues
    if isinstance(m, Tensor):
        return torch.nonzero(~m.bool(), as_tuple=False).reshape(-1)
    return np.flatnonzero(~np.asarray(m, dtype=bool))


def relabel(
    labels: ArrayLike,
    pred_probs: ArrayLike,
    threshold: float = 0.9,
    *,
    issues: ArrayLike | LabelIssues | None = None,
) -> tuple[ArrayLike, ArrayLike]:
    """Replace a label by the model's prediction when the model is confident enough.

    A label ``y_n`` becomes ``argmax p_n`` when ``max p_n >= threshold``, ``argmax p_n != y_n`` and (if
    ``issues`` is given) the sample is flagged.

    Args:
        labels: ``(N,)`` integer labels.
        pred_probs: ``(N, C)`` (out-of-sample) probabilities.
        threshold: Minimum confidence in [0, 1].
        issues: Optional issue mask or :class:`LabelIssues` restricting which samples may change.

    Returns:
        ``(new_labels, changed_mask)`` in the container type of ``labels``.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"`threshold` must be in [0, 1], got {threshold}")
    y = to_numpy(labels).astype(np.int64)
    P = to_numpy(pred_probs).astype(np.float64)
    if P.shape[0] != y.shape[0]:
        raise ValueError("`labels` and `pred_probs` must have the same length")
    pred, conf = P.argmax(1), P.max(1)
    change = (pred != y) & (conf >= threshold)
    if issues is not None:
        m = issues.mask if isinstance(issues, LabelIssues) else issues
        change &= to_numpy(m).astype(bool)
    new = np.where(change, pred, y)
    if isinstance(labels, Tensor):
        return (torch.as_tensor(new, device=labels.device, dtype=labels.dtype),
                torch.as_tensor(change, device=labels.device))
    return from_numpy_like(new, labels), change


def reweight(
    quality: ArrayLike | LabelIssues,
    *,
    power: float = 1.0,
    floor: float = 0.0,
    normalize: bool = True,
) -> ArrayLike:
    """Per-sample loss weights from label-quality scores: ``w_n = max(q_n, floor)^power``.

    With ``normalize`` the weights are rescaled to mean 1 (so the loss scale is unchanged).

    Args:
        quality: ``(N,)`` scores in [0, 1] (e.g. ``LabelIssues.quality``) or a :class:`LabelIssues`.
        power: Sharpness (> 0); larger down-weights doubtful samples more.
        floor: Minimum score before the power (keeps every sample slightly weighted).
        normalize: Rescale to mean 1.

    Returns:
        ``(N,)`` float weights, tensor or numpy like the input.
    """
    q = quality.quality if isinstance(quality, LabelIssues) else quality
    if power <= 0:
        raise ValueError(f"`power` must be > 0, got {power}")
    qn = np.clip(to_numpy(q).astype(np.float64), floor, None) ** power
    if normalize:
        m = qn.mean()
        qn = qn / m if m > 0 else np.ones_like(qn)
    if isinstance(q, Tensor):
        return torch.as_tensor(qn, dtype=torch.float64, device=q.device)
    return qn


def estimate_noise_rate(labels: ArrayLike, pred_probs: ArrayLike) -> float:
    """Estimated fraction of wrong labels: ``1 - trace(Q)`` with ``Q`` cleanlab's estimated joint
    ``P(given label, true label)`` (``cleanlab.count.estimate_joint``).

    Feed it to co-teaching as the forget rate ``tau``.

    Args:
        labels: ``(N,)`` integer labels.
        pred_probs: ``(N, C)`` out-of-sample probabilities.

    Returns:
        Noise-rate estimate in [0, 1].

    References:
        Northcutt et al., JAIR 2021 (confident joint); Han et al., NeurIPS 2018 (forget rate).
    """
    from cleanlab.count import estimate_joint

    y = to_numpy(labels).astype(np.int64)
    P = to_numpy(pred_probs).astype(np.float64)
    Q = estimate_joint(y, P)
    return float(np.clip(1.0 - np.trace(Q), 0.0, 1.0))
