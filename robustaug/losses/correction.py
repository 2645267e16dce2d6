"""Loss correction with a noise transition matrix, and early-learning regularisation (ELR).

Transition matrices are row-stochastic: ``T[i, j] = P(noisy = j | true = i)``. cleanlab's
``noise_matrix`` is the transpose (columns sum to 1): pass ``noise_matrix.T``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from . import _fused
from ._common import LabelIndex, RobustLoss, class_dot, register_loss, rows_for_labels

__all__ = ["ELR", "BackwardCorrected", "ForwardCorrected", "check_transition_matrix"]


def check_transition_matrix(T: Tensor, atol: float = 1e-5) -> Tensor:
    """Validate a row-stochastic ``(C, C)`` transition matrix and return it as a float64 tensor.

    Raises:
        ValueError: If ``T`` is not square, has negative entries or rows that do not sum to 1.
    """
    T = torch.as_tensor(T, dtype=torch.float64)
    if T.dim() != 2 or T.shape[0] != T.shape[1] or T.shape[0] < 2:
        raise ValueError(
            f"T must be a square (C, C) matrix with C >= 2, got shape {tuple(T.shape)}."
        )
    if not bool(torch.isfinite(T).all()) or bool((T < 0).any()):
        raise ValueError("T must have finite, non-negative entries.")
    rows = T.sum(1)
    if not torch.allclose(rows, torch.ones_like(rows), atol=atol):
        cols = T.sum(0)
        hint = (
            " Its columns sum to 1: this looks like cleanlab's noise_matrix, pass its transpose."
            if torch.allclose(cols, torch.ones_like(cols), atol=atol)
            else ""
        )
        raise ValueError(
            "T must be row-stochastic (T[i, j] = P(noisy=j | true=i), rows sum to 1); row sums are "
            f"{rows.tolist()}.{hint}"
        )
    return T


def _class_view(logp: Tensor) -> Tensor:
    return logp.movedim(1, -1)


@register_loss("forward", "forward_corrected")
class ForwardCorrected(RobustLoss):
    """Forward-corrected CE ``-log (T^T p)_y``: the model's clean posterior is pushed through ``T``.

    Computed as ``log sum_i p_i T[i, y]`` with a max shift, in the compute dtype; ``T = I`` is CE.

    Args:
        T: Row-stochastic ``(C, C)`` transition matrix, ``T[i, j] = P(noisy=j | true=i)``.

    References:
        Patrini et al., "Making Deep Neural Networks Robust to Label Noise: a Loss Correction
        Approach", CVPR 2017.
    """

    def __init__(self, T: Tensor, **kw) -> None:
        super().__init__(**kw)
        self.register_buffer("T", check_transition_matrix(T))

    def class_losses(self, logp: Tensor) -> Tensor:
        _check_classes(self.T, logp)
        lp = _class_view(logp)
        m = lp.amax(-1, keepdim=True).detach()
        mixed = torch.exp(lp - m) @ self.T.to(lp.dtype)
        tiny = torch.finfo(lp.dtype).tiny
        out = -(torch.log(mixed.clamp_min(tiny)) + m)
        return out.movedim(-1, 1)

    def _fused_call(self, z: Tensor) -> Callable[..., tuple[Tensor, Tensor | None]]:
        _check_classes(self.T, z)
        M, _ = _kernel_matrix(self, self.T, transpose=True)  # row y: column y of T
        return functools.partial(_fused.correction, M=M, row_sums=None, forward=True)

    def _index_terms(self, z: Tensor, y: LabelIndex, p: Tensor, lse: Tensor):
        # L = -log m, m = sum_i p_i T[i, y]; dL/dlog p_i = -p_i T[i, y] / m
        _check_classes(self.T, z)
        pt = rows_for_labels(self.T.t(), y.y, p, out=_scratch(y, p)).mul_(p)  # p_i T[i, y]
        mixed = pt.sum(1).clamp_min_(torch.finfo(p.dtype).tiny)
        return -torch.log(mixed), [(pt, -1.0 / mixed, mixed)], []


def _kernel_matrix(loss: RobustLoss, src: Tensor, transpose: bool) -> tuple[Tensor, Tensor]:
    """``src`` (or its transpose) as a contiguous float32 matrix for the fused kernel, and its row
    sums; kept on the loss until ``src`` changes (an in-place edit, ``.to()``, a state dict load),
    not converted on every call (``C^2`` values)."""
    key = (src.data_ptr(), src._version, src.dtype, src.device, transpose)
    cached = loss.__dict__.get("_kernel_matrix")
    if cached is None or cached[0] != key:
        M = (src.t() if transpose else src).to(torch.float32).contiguous()
        cached = loss.__dict__["_kernel_matrix"] = (key, M, M.sum(1))
    return cached[1], cached[2]


def _check_classes(T: Tensor, z: Tensor) -> None:
    if z.shape[1] != T.shape[0]:
        raise ValueError(f"T is {tuple(T.shape)} but input has {z.shape[1]} classes.")


def _scratch(y: LabelIndex, p: Tensor) -> Tensor | None:
    """A workspace buffer like ``p`` for :func:`rows_for_labels` where it writes one (2-D, or few
    classes on a grid), else None."""
    return y.scratch(p) if p.dim() == 2 or p.shape[1] <= 16 else None


@register_loss("backward", "backward_corrected")
class BackwardCorrected(RobustLoss):
    """Backward-corrected CE ``(T^{-1} l)_y`` with ``l_k = -log p_k``: unbiased for the clean loss.

    Unbounded below when ``T^{-1}`` has negative entries (a known weakness with deep models).

    Args:
        T: Row-stochastic, invertible ``(C, C)`` transition matrix.

    References:
        Patrini et al., CVPR 2017.
    """

    def __init__(self, T: Tensor, **kw) -> None:
        super().__init__(**kw)
        T = check_transition_matrix(T)
        if torch.linalg.matrix_rank(T) < T.shape[0]:
            raise ValueError("T must be invertible for backward correction.")
        self.register_buffer("T", T)
        self.register_buffer("T_inv", torch.linalg.inv(T))

    def class_losses(self, logp: Tensor) -> Tensor:
        _check_classes(self.T, logp)
        lp = _class_view(-logp)
        return (lp @ self.T_inv.to(lp.dtype).T).movedim(-1, 1)

    def _fused_call(self, z: Tensor) -> Callable[..., tuple[Tensor, Tensor | None]]:
        _check_classes(self.T, z)
        M, sums = _kernel_matrix(self, self.T_inv, transpose=False)
        return functools.partial(_fused.correction, M=M, row_sums=sums, forward=False)

    def _index_terms(self, z: Tensor, y: LabelIndex, p: Tensor, lse: Tensor):
        # L = -sum_j Tinv[y, j] log p_j; dL/dlog p_j = -Tinv[y, j]
        _check_classes(self.T, z)
        R = rows_for_labels(self.T_inv, y.y, p, out=_scratch(y, p))
        rs = self.T_inv.to(p.dtype).sum(1)[y.y]
        if p.dim() == 2:  # the class sum through a workspace product (no fresh temporary)
            rz = torch.mul(R, z, out=y.scratch(p)).sum(1)
        else:
            rz = class_dot(R, z.contiguous())
        ell = rz.sub_(rs * lse.squeeze(1)).neg_()
        return ell, [(R, -1.0, rs)], []


@register_loss("elr")
class ELR(RobustLoss):
    """Early-learning regularisation: ``CE + lam * log(1 - <t_i, p_i>)``.

    Each sample ``i`` keeps a running target ``t_i <- beta * t_i + (1 - beta) * p_hat_i`` (detached,
    ``p`` clamped to ``[1e-4, 1 - 1e-4]`` and renormalised) that remembers the early-learning
    predictions; the regulariser pulls ``p_i`` towards it and keeps the model from memorising wrong
    labels. Stateful: call ``loss(logits, target, index)`` with the dataset indices of the batch; the
    buffer is updated in training mode only (``loss.eval()`` freezes it) and saved in ``state_dict``.
    ``argmax(t_i) != y_i`` flags likely label errors (:meth:`flag_errors`).

    Args:
        num_examples: Size of the training set (indices in ``[0, num_examples)``).
        num_classes: Number of classes ``C``.
        beta: Momentum of the targets; CIFAR-10 0.7 (default), CIFAR-100 0.9.
        lam: Regulariser weight; CIFAR-10 3.0 (default), CIFAR-100 7.0.
        spatial_shape: Spatial shape for segmentation (one target per voxel); ``()`` for
            classification.

    References:
        Liu et al., "Early-Learning Regularization Prevents Memorization of Noisy Labels",
        NeurIPS 2020.
    """

    linear = False

    def __init__(
        self,
        num_examples: int,
        num_classes: int,
        beta: float = 0.7,
        lam: float = 3.0,
        spatial_shape: Sequence[int] = (),
        **kw,
    ) -> None:
        super().__init__(**kw)
        if int(num_examples) < 1 or int(num_classes) < 2:
            raise ValueError(
                f"num_examples must be >= 1 and num_classes >= 2, got {num_examples}, {num_classes}."
            )
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta}.")
        if lam < 0:
            raise ValueError(f"lam must be >= 0, got {lam}.")
        self.num_examples = int(num_examples)
        self.num_classes = int(num_classes)
        self.beta = float(beta)
        self.lam = float(lam)
        self.spatial_shape = tuple(int(s) for s in spatial_shape)
        self.register_buffer(
            "targets", torch.zeros(self.num_examples, self.num_classes, *self.spatial_shape)
        )
        self._index: Tensor | None = None

    def element_loss(self, logp: Tensor, target: Tensor, soft: bool) -> Tensor:
        ce = -(target * logp).sum(1) if soft else -logp.gather(1, target.unsqueeze(1)).squeeze(1)
        index = self._index
        p = logp.exp().clamp(1e-4, 1 - 1e-4)
        if self.training:
            with torch.no_grad():
                p_hat = p.detach().float()
                p_hat = p_hat / p_hat.sum(1, keepdim=True)
                buf = self.targets
                buf[index] = self.beta * buf[index] + (1 - self.beta) * p_hat.to(buf.device)
        if self.lam == 0:
            return ce
        t = self.targets[index].to(device=logp.device, dtype=logp.dtype).detach()
        reg = torch.log(1 - (t * p).sum(1))
        return ce + self.lam * reg

    def forward(self, input: Tensor, target: Tensor, index: Tensor | None = None) -> Tensor:  # type: ignore[override]
        """Loss for a batch; ``index`` holds the dataset indices ``(N,)`` of its samples."""
        if index is None:
            raise ValueError(
                "ELR needs the dataset indices of the batch: loss(input, target, index)."
            )
        index = torch.as_tensor(index, device=self.targets.device).long()
        if index.shape != (input.shape[0],):
            raise ValueError(
                f"index must have shape ({input.shape[0]},), got {tuple(index.shape)}."
            )
        if bool(((index < 0) | (index >= self.num_examples)).any()):
            raise ValueError(f"index values must lie in [0, {self.num_examples}).")
        if tuple(input.shape[1:]) != (self.num_classes, *self.spatial_shape):
            raise ValueError(
                f"input must have shape (N, {self.num_classes}, *{self.spatial_shape}) to match the "
                f"ELR buffer, got {tuple(input.shape)}."
            )
        self._index = index
        try:
            return super().forward(input, target)
        finally:
            self._index = None

    def flag_errors(self, labels: Tensor, index: Tensor | None = None) -> Tensor:
        """Boolean mask of samples (voxels) whose running target disagrees with ``labels``.

        Args:
            labels: Given labels, ``(M, *spatial)`` for the samples in ``index`` (all when None).
            index: Dataset indices; ``None`` means all ``num_examples`` in order.
        """
        t = self.targets if index is None else self.targets[torch.as_tensor(index).long()]
        labels = torch.as_tensor(labels, device=t.device)
        seen = t.sum(1) > 0
        return (t.argmax(1) != labels) & seen
