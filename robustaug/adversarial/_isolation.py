"""Side-effect-free model calls for attacks: modes, BatchNorm buffers, grads and RNG restored.

Every attack in :mod:`robustaug.adversarial` runs inside :func:`isolated`, which guarantees that after
the attack the model and the process look exactly as before:

* every module's ``training`` flag;
* BatchNorm running statistics (bit-identical, including ``num_batches_tracked``);
* every parameter's ``requires_grad`` flag and existing ``.grad`` (the same tensor object);
* the global torch, numpy and ``random`` RNG states.

Parameters have ``requires_grad`` switched off during the attack, so autograd never builds a graph to
the weights (that is also what makes the attack as cheap as a hand-written loop).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "BN_MODES",
    "check_range",
    "isolated",
    "make_forward",
    "rng_guard",
    "unwrap",
]

BN_MODES = ("eval", "train", "keep")

_BN_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def unwrap(model: nn.Module) -> nn.Module:
    """Return ``model.module`` for DistributedDataParallel / DataParallel wrappers, else ``model``.

    Attacks run on the unwrapped module so that DDP's reducer never sees the attack's backward passes;
    the training forward still goes through the wrapper, so gradient synchronisation is unchanged.
    """
    wrappers: tuple[type, ...] = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model


@contextlib.contextmanager
def rng_guard() -> Iterator[None]:
    """Restore the global torch (CPU and CUDA), numpy and ``random`` RNG states on exit."""
    t_state = torch.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    np_state = np.random.get_state()  # noqa: NPY002 (we restore the legacy global state)
    py_state = random.getstate()
    try:
        yield
    finally:
        torch.set_rng_state(t_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)


@contextlib.contextmanager
def isolated(
    model: nn.Module, bn_mode: str = "eval", *, params_grad: bool = False
) -> Iterator[nn.Module]:
    """Context manager for attacks (built-in or user-written) without side effects on ``model``.

    Inside the block the (unwrapped) model is in the requested mode and its parameters do not require
    gradients; on exit, modes, BatchNorm buffers, ``requires_grad`` flags, existing ``.grad`` tensors and
    the global RNG states are restored.

    Args:
        model: The model (DDP/DataParallel wrappers are unwrapped; the inner module is yielded).
        bn_mode: ``"eval"`` puts every module in eval mode (BatchNorm uses running statistics, dropout
            is off; the default and the usual choice). ``"train"`` puts every module in train mode
            (batch statistics; running statistics are restored afterwards). ``"keep"`` leaves each
            module's flag as the user set it (e.g. frozen-BN fine-tuning), restoring buffers afterwards.
        params_grad: Keep parameters' ``requires_grad`` (for weight perturbations such as AWP, which
            take gradients with :func:`torch.autograd.grad`; ``.grad`` is still restored).

    Yields:
        The unwrapped model.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).train()
        >>> with isolated(net, bn_mode="eval") as m:
        ...     _ = m(torch.zeros(2, 4))
        ...     m.training
        False
        >>> net.training
        True
    """
    if bn_mode not in BN_MODES:
        raise ValueError(f"`bn_mode` must be one of {BN_MODES}, got {bn_mode!r}.")
    inner = unwrap(model)
    modules = list(inner.modules())
    flags = [m.training for m in modules]
    params = list(inner.parameters())
    req = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    buffers: list[tuple[Tensor, Tensor]] = []
    if bn_mode != "eval":
        for m in modules:
            if isinstance(m, _BN_TYPES):
                for b in m.buffers(recurse=False):
                    buffers.append((b, b.detach().clone()))
    untracked: list[nn.Module] = []
    try:
        with rng_guard():
            if bn_mode == "eval":
                inner.eval()
            elif bn_mode == "train":
                inner.train()
            # BatchNorm layers that would use batch statistics must not update their running
            # buffers: stop tracking for the duration (no in-place write, no version bump).
            for m in modules:
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats:
                    m.track_running_stats = False
                    untracked.append(m)
            if not params_grad:
                for p in params:
                    if p.requires_grad:
                        p.requires_grad_(False)
            yield inner
    finally:
        for m in untracked:
            m.track_running_stats = True
        for m, f in zip(modules, flags):
            m.training = f
        for p, r, g in zip(params, req, grads):
            if p.requires_grad != r:
                p.requires_grad_(r)
            if p.grad is not g:
                p.grad = g
        with torch.no_grad():
            for b, saved in buffers:
                # copy only when changed: an unconditional copy_ bumps the version counter and
                # would invalidate a user graph that saved the buffer (eval-mode BN backward).
                if not torch.equal(b, saved):
                    b.copy_(saved)


def _as_channel_tensor(v: Any, ref: Tensor, name: str) -> Tensor:
    t = torch.as_tensor(v, dtype=torch.float32, device=ref.device)
    if t.ndim == 0:
        return t
    if t.ndim != 1 or (t.numel() != ref.shape[1] and t.numel() != 1):
        raise ValueError(
            f"`normalize` {name} must be a scalar or have one value per channel "
            f"({ref.shape[1]}), got shape {tuple(t.shape)}."
        )
    return t.reshape(1, -1, *([1] * (ref.ndim - 2)))


def make_forward(
    model: nn.Module,
    normalize: Callable[[Tensor], Tensor] | Sequence[Any] | None,
    x: Tensor,
) -> Callable[[Tensor], Tensor]:
    """``z -> model(normalize(z))``; ``normalize`` is ``(mean, std)`` per channel or a callable.

    The attack variable always lives in raw (un-normalised) units, so budgets stay physical.
    """
    if normalize is None:
        return model
    if callable(normalize):
        fn = normalize
        return lambda z: model(fn(z))
    if not isinstance(normalize, (tuple, list)) or len(normalize) != 2:
        raise ValueError(
            f"`normalize` must be None, a callable or a (mean, std) pair, got {normalize!r}."
        )
    mean = _as_channel_tensor(normalize[0], x, "mean")
    std = _as_channel_tensor(normalize[1], x, "std")
    if bool((std <= 0).any()):
        raise ValueError("`normalize` std must be > 0.")
    return lambda z: model((z - mean.to(z.dtype)) / std.to(z.dtype))


def check_range(x: Tensor, data_range: tuple[float, float] | None, name: str = "x") -> None:
    """Raise ``ValueError`` if ``x`` lies outside ``data_range`` (never clamp silently)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(x).__name__}.")
    if not x.is_floating_point():
        raise TypeError(f"`{name}` must be a floating tensor, got {x.dtype}.")
    if x.ndim < 2:
        raise ValueError(f"`{name}` must be batched (N, C, ...), got shape {tuple(x.shape)}.")
    if data_range is None:
        return
    lo, hi = data_range
    if not lo < hi:
        raise ValueError(f"`data_range` must be (low, high) with low < high, got {data_range!r}.")
    if x.numel() == 0:
        return
    mn, mx = float(x.min()), float(x.max())
    if mn < lo or mx > hi:
        raise ValueError(
            f"`{name}` has values in [{mn:.4g}, {mx:.4g}], outside data_range=({lo}, {hi}). "
            "Pass the correct data_range (budgets are in its units) or data_range=None; inputs are "
            "never clamped silently."
        )
