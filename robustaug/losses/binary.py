"""Sigmoid (binary / multi-label) variants of the robust losses.

A logit ``z`` with a sigmoid is a two-class softmax over ``(0, z)``: ``log_softmax([0, z]) =
[log sigmoid(-z), log sigmoid(z)]``. :class:`SigmoidLoss` applies any softmax loss of this package to
that two-class view, element by element, with the target ``t`` in [0, 1] as the soft two-class target
``(1 - t, t)``. So ``SigmoidLoss("ce")`` is :func:`torch.nn.functional.binary_cross_entropy_with_logits`,
and every robustness property of the softmax loss (boundedness, symmetry with ``C = 2``) carries over
to each label independently.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import RobustLoss, check_reduction, compute_dtype, reduce_loss, register_loss

__all__ = [
    "BinaryCE",
    "BinaryFocal",
    "BinaryGCE",
    "BinaryMAE",
    "BinaryNCERCE",
    "BinaryNFL",
    "BinarySCE",
    "SigmoidLoss",
]


class SigmoidLoss(nn.Module):
    """Per-label sigmoid version of a softmax loss (binary and multi-label tasks).

    Called like :class:`torch.nn.BCEWithLogitsLoss`: ``input`` logits of any shape, ``target`` the same
    shape with values in [0, 1] (0/1 labels or soft labels).

    Args:
        loss: A :class:`RobustLoss` (its ``weight``/``ignore_index``/``reduction`` are not used) or a
            registered name, built with ``**loss_kw``.
        weight: Optional per-element weights, broadcastable to ``input`` (as in BCEWithLogitsLoss).
        pos_weight: Optional weight of the positive term, broadcastable to ``input`` (e.g. one per
            label, last dimension), as in BCEWithLogitsLoss.
        reduction: ``"mean"`` (over all elements, like BCE), ``"sum"`` or ``"none"``.

    References:
        See the wrapped loss; the two-class view is standard (e.g. Zhang & Sabuncu 2018, §3).
    """

    def __init__(
        self,
        loss: RobustLoss | str,
        *,
        weight: Tensor | None = None,
        pos_weight: Tensor | None = None,
        reduction: str = "mean",
        **loss_kw,
    ) -> None:
        super().__init__()
        if isinstance(loss, str):
            from . import robust_loss

            loss = robust_loss(loss, **loss_kw)
        elif loss_kw:
            raise TypeError(f"unexpected keyword arguments {sorted(loss_kw)} with a loss instance.")
        if not isinstance(loss, RobustLoss) or not loss.linear:
            raise TypeError("loss must be a per-label (linear) RobustLoss or its registered name.")
        self.loss = loss
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight))
        self.register_buffer(
            "pos_weight", None if pos_weight is None else torch.as_tensor(pos_weight)
        )
        self.reduction = check_reduction(reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Per-label loss of logits ``input`` against targets in [0, 1] of the same shape."""
        if target.shape != input.shape:
            raise ValueError(
                f"target must have the input's shape {tuple(input.shape)}, got {tuple(target.shape)}."
            )
        dtype = compute_dtype(input)
        with torch.autocast(device_type=input.device.type, enabled=False):
            z = input.to(dtype)
            t = target.to(dtype)
            logp = torch.stack(
                [torch.nn.functional.logsigmoid(-z), torch.nn.functional.logsigmoid(z)], dim=1
            )
            L = self.loss.class_losses(logp)  # (..., 2 in dim 1)
            neg, pos = L[:, 0], L[:, 1]
            if self.pos_weight is not None:
                pos = pos * self.pos_weight.to(dtype)
            ell = (1 - t) * neg + t * pos
            if self.weight is not None:
                ell = ell * self.weight.to(dtype)
            return reduce_loss(ell, None, self.reduction)


def _named(cls_name: str, base: str, doc: str, **defaults):
    def __init__(self, *, weight=None, pos_weight=None, reduction="mean", **kw):
        SigmoidLoss.__init__(
            self,
            base,
            weight=weight,
            pos_weight=pos_weight,
            reduction=reduction,
            **{**defaults, **kw},
        )

    cls = type(cls_name, (SigmoidLoss,), {"__init__": __init__, "__doc__": doc})
    cls.__module__ = __name__
    return cls


BinaryCE = _named(
    "BinaryCE",
    "ce",
    """Binary cross-entropy on logits (equals ``F.binary_cross_entropy_with_logits``); baseline.""",
)
BinaryGCE = _named(
    "BinaryGCE",
    "gce",
    """Sigmoid GCE ``(1 - p_t^q) / q`` per label, ``p_t = sigmoid(z)`` if ``t = 1`` else
    ``1 - sigmoid(z)``; ``q`` default 0.7.

    References: Zhang & Sabuncu, NeurIPS 2018.""",
)
BinaryMAE = _named(
    "BinaryMAE",
    "mae",
    """Sigmoid MAE ``scale * (1 - p_t)`` per label (``scale`` default 1).

    References: Ghosh et al., AAAI 2017.""",
)
BinarySCE = _named(
    "BinarySCE",
    "sce",
    """Sigmoid SCE ``alpha * BCE + beta * (-A)(1 - p_t)`` per label (alpha 0.1, beta 1, A ln 1e-4).

    References: Wang et al., ICCV 2019.""",
)
BinaryFocal = _named(
    "BinaryFocal",
    "focal",
    """Sigmoid focal loss ``-(1 - p_t)^gamma log p_t`` per label, ``gamma`` default 2; stable gradients
    for saturated logits. Class balancing ``alpha`` = ``pos_weight``/``weight``.

    References: Lin et al., ICCV 2017.""",
)
BinaryNFL = _named(
    "BinaryNFL",
    "nfl",
    """Sigmoid normalized focal loss per label (two-class NFL, ``gamma`` default 0.5).

    References: Ma et al., ICML 2020.""",
)
BinaryNCERCE = _named(
    "BinaryNCERCE",
    "nce+rce",
    """Sigmoid NCE+RCE (two-class active-passive loss) per label, alpha = beta = 1.

    References: Ma et al., ICML 2020.""",
)

for _cls, _name in [
    (BinaryCE, "binary_ce"),
    (BinaryGCE, "binary_gce"),
    (BinaryMAE, "binary_mae"),
    (BinarySCE, "binary_sce"),
    (BinaryFocal, "binary_focal"),
    (BinaryNFL, "binary_nfl"),
    (BinaryNCERCE, "binary_nce+rce"),
]:
    register_loss(_name, sigmoid=True)(_cls)
