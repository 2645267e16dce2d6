"""Co-teaching: two networks, each trained on the small-loss samples selected by its peer."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CoTeaching", "keep_ratio"]


def keep_ratio(
    epoch: float, forget_rate: float, num_gradual: int = 10, exponent: float = 1.0
) -> float:
    """Co-teaching schedule ``R(T) = 1 - tau * min(T^c / T_k, 1)``.

    Args:
        epoch: ``T``, the epoch (0-based: epoch 0 keeps every sample).
        forget_rate: ``tau`` in [0, 1), usually the (estimated) noise rate.
        num_gradual: ``T_k`` > 0, the epochs over which the forget rate ramps up (paper: 10).
        exponent: ``c`` > 0 (paper: 1).

    Note: the reference code fills a table with ``linspace(0, tau**c, T_k)``, which reaches ``tau``
    at epoch ``T_k - 1``; this function follows the paper's formula.
    """
    if not 0 <= forget_rate < 1:
        raise ValueError(f"forget_rate must be in [0, 1), got {forget_rate}.")
    if num_gradual <= 0 or exponent <= 0:
        raise ValueError(f"num_gradual and exponent must be > 0, got {num_gradual}, {exponent}.")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}.")
    return 1.0 - forget_rate * min(float(epoch) ** exponent / num_gradual, 1.0)


def _default_criterion(logits: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(logits.float(), target, reduction="none")


class CoTeaching:
    """Co-teaching step (Han et al. 2018), called in your own training loop.

    Each network ranks the batch by its own per-sample loss and hands its ``R(T)`` smallest-loss
    fraction to the peer, which is updated on those samples only; the loss of each network is the
    **mean over its kept samples** (the reference code divides that mean by ``num_remember`` once
    more, shrinking the effective learning rate).

    With optimizers the step does ``zero_grad``, ``backward`` and ``step`` for both networks and
    returns detached losses; without them it returns the graph-connected losses (``out["loss"]`` is
    their sum, whose backward fills each network's gradients) and you step yourself.

    Args:
        model1, model2: The two networks (different initialisations).
        optimizer1, optimizer2: Optional optimizers of the two networks (both or none).
        forget_rate: ``tau``, the final fraction of each batch that is dropped; the paper sets it to
            the noise rate, e.g. ``robustaug.labelnoise.estimate_noise_rate(...)`` (a float).
        num_gradual: ``T_k``, epochs of the linear ramp (paper: 10).
        exponent: ``c`` in ``T^c / T_k`` (paper: 1).
        criterion: Per-sample loss ``f(logits, target) -> (N,)`` or ``(N, *spatial)`` (averaged over
            the spatial dims for ranking and for the loss), e.g. any robustaug loss with
            ``reduction="none"``. Default: cross-entropy.

    Example:
        >>> import torch
        >>> m1, m2 = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
        >>> opt1 = torch.optim.SGD(m1.parameters(), lr=0.1)
        >>> opt2 = torch.optim.SGD(m2.parameters(), lr=0.1)
        >>> step = CoTeaching(m1, m2, opt1, opt2, forget_rate=0.4)
        >>> x, y, idx = torch.randn(10, 4), torch.randint(0, 3, (10,)), torch.arange(10)
        >>> for epoch in range(2):
        ...     out = step(x, y, epoch=epoch, index=idx)
        >>> kept = out["kept_index1"]   # dataset indices used to update model1
        >>> 0 < len(kept) <= 10
        True

    References:
        Han et al., "Co-teaching: Robust Training of Deep Neural Networks with Extremely Noisy
        Labels", NeurIPS 2018.
    """

    def __init__(
        self,
        model1: nn.Module,
        model2: nn.Module,
        optimizer1: torch.optim.Optimizer | None = None,
        optimizer2: torch.optim.Optimizer | None = None,
        *,
        forget_rate: float,
        num_gradual: int = 10,
        exponent: float = 1.0,
        criterion: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> None:
        if (optimizer1 is None) != (optimizer2 is None):
            raise ValueError("pass both optimizer1 and optimizer2, or neither.")
        keep_ratio(0, forget_rate, num_gradual, exponent)  # validates
        self.model1, self.model2 = model1, model2
        self.optimizer1, self.optimizer2 = optimizer1, optimizer2
        self.forget_rate = float(forget_rate)
        self.num_gradual = int(num_gradual)
        self.exponent = float(exponent)
        self.criterion = criterion or _default_criterion
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch used by the schedule when ``__call__`` gets no ``epoch``."""
        self.epoch = int(epoch)

    def keep_ratio(self, epoch: float | None = None) -> float:
        """``R(T)`` for ``epoch`` (default: the current epoch)."""
        e = self.epoch if epoch is None else epoch
        return keep_ratio(e, self.forget_rate, self.num_gradual, self.exponent)

    @staticmethod
    def num_keep(ratio: float, n: int) -> int:
        """Number of samples kept from a batch of ``n``: ``max(1, floor(ratio * n))``."""
        return max(1, min(n, math.floor(ratio * n + 1e-9)))

    def _per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        ell = self.criterion(logits, target)
        if ell.dim() == 0 or ell.shape[0] != logits.shape[0]:
            raise ValueError(
                "criterion must return per-sample losses of shape (N,) or (N, *spatial), e.g. a "
                f"loss with reduction='none'; got shape {tuple(ell.shape)}."
            )
        return ell.reshape(ell.shape[0], -1).float().mean(1)

    def __call__(
        self,
        x: Tensor,
        y: Tensor,
        *,
        epoch: int | None = None,
        index: Tensor | None = None,
    ) -> dict[str, Any]:
        """One co-teaching step on a batch.

        Args:
            x: Input batch.
            y: Labels (any target the criterion accepts, batch first).
            epoch: Epoch for the schedule (default: the one set by :meth:`set_epoch`).
            index: Optional dataset indices ``(N,)`` of the batch, to report kept dataset indices.

        Returns:
            Dict with ``loss`` (loss1 + loss2), ``loss1``, ``loss2`` (means over the kept samples),
            ``kept1``/``kept2`` (batch positions used to update model1/model2, i.e. chosen by the
            peer), ``kept_index1``/``kept_index2`` (dataset indices, when ``index`` is given),
            ``keep_ratio``, ``num_keep``, ``logits1``, ``logits2``.
        """
        ratio = self.keep_ratio(epoch)
        logits1 = self.model1(x)
        logits2 = self.model2(x)
        ell1 = self._per_sample(logits1, y)
        ell2 = self._per_sample(logits2, y)
        k = self.num_keep(ratio, ell1.shape[0])
        # model1 learns from the samples model2 finds easy, and vice versa
        kept1 = torch.argsort(ell2.detach(), stable=True)[:k]
        kept2 = torch.argsort(ell1.detach(), stable=True)[:k]
        loss1 = ell1[kept1].mean()
        loss2 = ell2[kept2].mean()
        out: dict[str, Any] = {
            "loss1": loss1,
            "loss2": loss2,
            "loss": loss1 + loss2,
            "kept1": kept1,
            "kept2": kept2,
            "keep_ratio": ratio,
            "num_keep": k,
            "logits1": logits1.detach(),
            "logits2": logits2.detach(),
        }
        if index is not None:
            index = torch.as_tensor(index)
            out["kept_index1"] = index[kept1.to(index.device)]
            out["kept_index2"] = index[kept2.to(index.device)]
        if self.optimizer1 is not None:
            self.optimizer1.zero_grad(set_to_none=True)
            self.optimizer2.zero_grad(set_to_none=True)
            (loss1 + loss2).backward()
            self.optimizer1.step()
            self.optimizer2.step()
            for key in ("loss", "loss1", "loss2"):
                out[key] = out[key].detach()
        return out
