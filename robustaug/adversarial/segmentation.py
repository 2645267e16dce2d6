"""Dense prediction: segmentation attack losses, SegPGD, CosPGD, targeted mask attack, sliding-window
attacks for large volumes, and per-class Dice / mIoU under attack.

Logits are ``(N, K, *spatial)`` and labels ``(N, *spatial)`` (2D or 3D). Every loss returns one value
per sample (the mean over valid pixels), and pixels with ``y == ignore_index`` contribute neither
value nor gradient.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._isolation import isolated, make_forward
from .attacks import AttackResult, _valid, ce_loss, get_loss, pgd
from .threats import Linf, Threat

__all__ = [
    "CosPGDLoss",
    "SegPGDLoss",
    "confusion_matrix",
    "dice_attack_loss",
    "dice_per_class",
    "evaluate_segmentation",
    "mean_iou",
    "seg_attack",
    "sliding_window_attack",
    "targeted_mask_loss",
]


def _pixel_ce(logits: Tensor, y: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor]:
    z = logits.float()
    yy, valid = _valid(y, ignore_index)
    ce = -F.log_softmax(z, 1).gather(1, yy.unsqueeze(1)).squeeze(1)
    v = torch.ones_like(ce, dtype=torch.bool) if valid is None else valid
    return torch.where(v, ce, torch.zeros_like(ce)), v


def dice_attack_loss(logits: Tensor, y: Tensor, ignore_index: int | None = None) -> Tensor:
    r"""Soft Dice loss per sample, ``1 - mean_k 2|P_k G_k| / (|P_k| + |G_k|)``, to maximise.

    ``P = softmax(logits)``, ``G`` one-hot labels; ignored pixels are masked out of both.
    """
    z = logits.float()
    yy, valid = _valid(y, ignore_index)
    p = F.softmax(z, 1)
    g = F.one_hot(yy, z.shape[1]).movedim(-1, 1).to(p.dtype)
    if valid is not None:
        m = valid.unsqueeze(1).to(p.dtype)
        p, g = p * m, g * m
    dims = tuple(range(2, z.ndim))
    inter = (p * g).sum(dims)
    den = p.sum(dims) + g.sum(dims)
    dice = (2 * inter + 1e-6) / (den + 1e-6)
    return 1 - dice.mean(1)


class SegPGDLoss:
    r"""SegPGD loss: ``(1 - l_t) CE_correct + l_t CE_wrong``, ``l_t = t / (2T)``.

    Both sums are normalised by the number of valid pixels. Early steps focus on pixels that are
    still correct, later ones balance both. Gu et al., "SegPGD: an effective and efficient adversarial
    attack for evaluating and boosting segmentation robustness", ECCV 2022.

    Args:
        ignore_index: Label to ignore.
    """

    def __init__(self, ignore_index: int | None = None) -> None:
        self.ignore_index = ignore_index
        self.lam = 0.0

    def set_step(self, t: int, steps: int) -> None:
        """Called by the engines before each evaluation."""
        self.lam = t / (2.0 * max(steps, 1))

    def __call__(self, logits: Tensor, y: Tensor) -> Tensor:
        ce, valid = _pixel_ce(logits, y, self.ignore_index)
        yy, _ = _valid(y, self.ignore_index)
        correct = (logits.argmax(1) == yy) & valid
        w = torch.where(correct, 1 - self.lam, self.lam)
        num = valid.flatten(1).sum(1).clamp_min(1).to(ce.dtype)
        return (w * ce).flatten(1).sum(1) / num


class CosPGDLoss:
    r"""CosPGD loss: per-pixel CE weighted by ``cos(sigmoid(z), onehot(y))`` (detached).

    Pixels whose prediction is still aligned with the label get larger weight. Agnihotri & Keuper,
    "CosPGD: an efficient white-box adversarial attack for pixel-wise prediction tasks", ICML 2024.
    """

    def __init__(self, ignore_index: int | None = None) -> None:
        self.ignore_index = ignore_index

    def __call__(self, logits: Tensor, y: Tensor) -> Tensor:
        ce, valid = _pixel_ce(logits, y, self.ignore_index)
        yy, _ = _valid(y, self.ignore_index)
        z = logits.float().detach()
        oh = F.one_hot(yy, z.shape[1]).movedim(-1, 1).to(z.dtype)
        cos = F.cosine_similarity(torch.sigmoid(z), oh, dim=1)
        num = valid.flatten(1).sum(1).clamp_min(1).to(ce.dtype)
        return (cos * ce * valid).flatten(1).sum(1) / num


def targeted_mask_loss(target: Tensor, ignore_index: int | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    r"""Targeted mask attack (maximised): ``-CE(z, target)`` on pixels not yet predicted as target.

    Pixels that already match the target are dropped from the loss, in the spirit of the adaptive
    segmentation mask attack (Ozbulak et al., MICCAI 2019).
    """

    def fn(logits: Tensor, y: Tensor) -> Tensor:
        ce, valid = _pixel_ce(logits, target, ignore_index)
        yy, _ = _valid(target, ignore_index)
        todo = valid & (logits.argmax(1) != yy)
        num = valid.flatten(1).sum(1).clamp_min(1).to(ce.dtype)
        return -(ce * todo).flatten(1).sum(1) / num

    return fn


def seg_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: Threat | None = None,
    method: str = "segpgd",
    *,
    ignore_index: int | None = None,
    target: Tensor | None = None,
    **kw: Any,
) -> AttackResult:
    """Attack a segmentation model: ``method`` in ``"pgd"`` (per-pixel CE), ``"dice"``,
    ``"segpgd"``, ``"cospgd"`` or ``"targeted"`` (needs ``target`` masks).

    Keyword arguments go to :func:`~robustaug.adversarial.attacks.pgd` (``data_range``, ``seed``,
    ``on_step`` ...). SegPGD returns the last iterate (its loss changes over steps).
    """
    threat = Linf() if threat is None else threat
    m = method.lower()
    best = kw.pop("best", m not in ("segpgd",))
    if m == "pgd":
        lf: Any = get_loss("ce", ignore_index)
    elif m == "dice":
        lf = lambda z, t: dice_attack_loss(z, t, ignore_index)  # noqa: E731
    elif m == "segpgd":
        lf = SegPGDLoss(ignore_index)
    elif m == "cospgd":
        lf = CosPGDLoss(ignore_index)
    elif m == "targeted":
        if target is None:
            raise ValueError("method='targeted' needs `target` masks.")
        lf = targeted_mask_loss(target, ignore_index)
    else:
        raise ValueError(f"`method` must be pgd, dice, segpgd, cospgd or targeted, got {method!r}.")
    return pgd(model, x, y, threat, lf, best=best, **kw)


# ----------------------------------------------------------------------------- sliding window
def _gauss_weight(size: Sequence[int], device: torch.device) -> Tensor:
    ws = []
    for s in size:
        c = torch.arange(s, dtype=torch.float32, device=device) - (s - 1) / 2
        sig = max(s / 8.0, 1e-3)
        ws.append(torch.exp(-(c**2) / (2 * sig**2)))
    w = ws[0]
    for v in ws[1:]:
        w = w[..., None] * v
    return (w / w.max()).clamp_min(1e-3)


def _starts(n: int, roi: int, overlap: float) -> list[int]:
    if roi >= n:
        return [0]
    step = max(int(roi * (1 - overlap)), 1)
    s = list(range(0, n - roi + 1, step))
    if s[-1] != n - roi:
        s.append(n - roi)
    return s


def sliding_window_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: Threat | None = None,
    roi_size: Sequence[int] = (64, 64, 64),
    overlap: float = 0.25,
    method: str = "pgd",
    **kw: Any,
) -> Tensor:
    """Attack a volume too large for one pass, window by window, and blend the perturbations.

    Each window (``roi_size``, with ``overlap``) is attacked with :func:`seg_attack`; perturbations are
    averaged with Gaussian weights (a convex combination, so an L-inf budget still holds), projected
    onto the threat once more, and added to ``x``. With one window covering the volume this equals
    the whole-volume attack. The model must be fully convolutional (it sees windows). Pixel threats only.

    Returns:
        The detached adversarial volume.
    """
    threat = Linf() if threat is None else threat
    if not threat.additive:
        raise ValueError("sliding_window_attack supports additive pixel threats only.")
    spatial = x.shape[2:]
    roi = [min(int(r), int(s)) for r, s in zip(roi_size, spatial)]
    if len(roi) != len(spatial):
        raise ValueError(f"`roi_size` needs {len(spatial)} values, got {tuple(roi_size)}.")
    data_range = kw.get("data_range", (0.0, 1.0))
    gen = kw.pop("generator", None)
    if gen is None:
        gen = torch.Generator()
        gen.manual_seed(int(kw.pop("seed", 0) or 0))
    else:
        kw.pop("seed", None)
    starts = [_starts(s, r, overlap) for s, r in zip(spatial, roi)]
    windows = list(itertools.product(*starts))
    if len(windows) == 1:
        return seg_attack(model, x, y, threat, method, generator=gen, **kw).x_adv
    acc = torch.zeros_like(x, dtype=torch.float32)
    wsum = torch.zeros((1, 1, *spatial), dtype=torch.float32, device=x.device)
    wt = _gauss_weight(roi, x.device)[None, None]
    for st in windows:
        sl = tuple(slice(a, a + r) for a, r in zip(st, roi))
        xi, yi = x[(slice(None), slice(None), *sl)], y[(slice(None), *sl)]
        res = seg_attack(model, xi, yi, threat, method, generator=gen, **kw)
        acc[(slice(None), slice(None), *sl)] += (res.x_adv.float() - xi.float()) * wt
        wsum[(slice(None), slice(None), *sl)] += wt
    delta = acc / wsum.clamp_min(1e-12)
    x32 = x.float()
    delta = threat.project(delta, x32, data_range)
    return (x32 + delta).to(x.dtype).detach()


# ----------------------------------------------------------------------------- metrics
def confusion_matrix(pred: Tensor, y: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """``C[i, j]`` = number of valid pixels with label ``i`` predicted as ``j`` (int64)."""
    p, t = pred.flatten(), y.flatten()
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    idx = t.long() * num_classes + p.long()
    return torch.bincount(idx, minlength=num_classes**2).reshape(num_classes, num_classes).cpu()


def dice_per_class(cm: Tensor) -> Tensor:
    """Dice ``2 TP / (2 TP + FP + FN)`` per class from a confusion matrix (NaN if absent)."""
    cm = cm.double()
    tp = cm.diag()
    den = 2 * tp + (cm.sum(0) - tp) + (cm.sum(1) - tp)
    return torch.where(den > 0, 2 * tp / den.clamp_min(1), torch.full_like(tp, math.nan))


def mean_iou(cm: Tensor) -> float:
    """Mean IoU over classes present in labels or predictions."""
    cm = cm.double()
    tp = cm.diag()
    den = cm.sum(0) + cm.sum(1) - tp
    iou = tp[den > 0] / den[den > 0]
    return float(iou.mean()) if iou.numel() else math.nan


def evaluate_segmentation(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    num_classes: int,
    threat: Threat | None = None,
    methods: Sequence[str] = ("segpgd",),
    *,
    ignore_index: int | None = None,
    data_range: tuple[float, float] | None = (0.0, 1.0),
    normalize: Any = None,
    bn_mode: str = "eval",
    seed: int = 0,
) -> dict[str, Any]:
    """Per-class Dice and mIoU, clean and under each attack method (and their worst case per image).

    The worst case per image is the attack with the lowest mean Dice on that image.

    Returns:
        ``{"clean": {"dice": [...], "miou": m}, "<method>": {...}, "worst": {...}}``.
    """
    threat = Linf() if threat is None else threat
    g = torch.Generator()
    g.manual_seed(seed)
    cms: dict[str, Tensor] = {k: torch.zeros(num_classes, num_classes, dtype=torch.long)
                              for k in ("clean", *methods, "worst")}
    for xb, yb in loader:
        with isolated(model, bn_mode) as inner, torch.no_grad():
            fwd = make_forward(inner, normalize, xb)
            pc = fwd(xb).argmax(1)
        cms["clean"] += confusion_matrix(pc, yb, num_classes, ignore_index)
        preds = []
        for m in methods:
            res = seg_attack(model, xb, yb, threat, m, ignore_index=ignore_index,
                             data_range=data_range, normalize=normalize, bn_mode=bn_mode,
                             generator=g)
            with isolated(model, bn_mode) as inner, torch.no_grad():
                pa = make_forward(inner, normalize, res.x_adv)(res.x_adv).argmax(1)
            cms[m] += confusion_matrix(pa, yb, num_classes, ignore_index)
            preds.append(pa)
        for i in range(len(xb)):
            scores = [float(torch.nan_to_num(dice_per_class(
                confusion_matrix(p[i], yb[i], num_classes, ignore_index)), nan=1.0).mean())
                for p in preds]
            j = int(torch.tensor(scores).argmin())
            cms["worst"] += confusion_matrix(preds[j][i], yb[i], num_classes, ignore_index)
    return {k: {"dice": dice_per_class(v).tolist(), "miou": mean_iou(v)} for k, v in cms.items()}


_ = ce_loss  # re-exported for users building per-pixel losses
