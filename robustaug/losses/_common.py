"""Shared machinery for the noise-robust losses: input checks, targets, weights and reductions.

Every loss in :mod:`robustaug.losses` follows the contract of :class:`torch.nn.CrossEntropyLoss`:

* ``input`` holds logits ``(N, C)`` or ``(N, C, d1, ..., dk)`` (2-D/3-D segmentation);
* ``target`` holds class indices ``(N, d1, ..., dk)`` (an integer tensor) or class probabilities
  ``(N, C, d1, ..., dk)`` (a floating-point tensor, the same shape as ``input``);
* ``weight`` (per class), ``ignore_index`` (integer targets only, as in torch) and ``reduction``
  (``"mean"``, ``"sum"``, ``"none"``).

A weighted ``"mean"`` divides by the sum of the weights of the non-ignored elements (torch's rule for
class indices). For probability targets torch divides by the number of elements even when ``weight``
is given; here the weight of an element with soft target ``q`` is ``sum_k weight[k] * q[k]`` so that a
soft one-hot target gives exactly the same value as the integer target. Without ``weight`` both rules
agree with torch.

Everything is computed in float32 (float64 inputs stay float64) from ``log_softmax`` with autocast
disabled, so fp16/bf16 logits under autocast are handled, and the result is float32.

Speed: for integer targets (the common case) every stateless softmax loss runs through
:class:`_IndexLossFn`, a custom autograd Function: one softmax pass gives ``p`` and
``logsumexp``, only the label's column is gathered (no one-hot), and the backward is the loss's
closed-form gradient with respect to ``log p`` pushed through the softmax Jacobian
(``G - p * sum_k G_k``). The exact gradient is kept (nothing is detached); ``tests/losses/
test_analytic_grad.py`` checks it against autograd of the per-class formulas, which soft targets
still use. On CPU the cost is dominated by how many new ``(N, C, *)`` buffers a loss writes (a
fresh buffer's memory is cold and costs several elementwise passes), so the closed forms are
written with in-place operations, masks are written by comparisons straight into floating
buffers, and losses with dense gradient terms assemble the gradient per unit of incoming
gradient in the forward, in ``p``'s buffer (their temporaries are freed before the backward,
which is a single pass).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _fused

__all__ = [
    "RobustLoss",
    "as_probabilities",
    "compute_dtype",
    "log1m_softmax",
    "one_minus_p",
    "reduce_loss",
    "register_loss",
]

_REDUCTIONS = ("mean", "sum", "none")

#: name -> class (or preset factory) of the softmax losses; filled by :func:`register_loss`.
LOSS_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
#: name -> class of the sigmoid (binary / multi-label) losses.
SIGMOID_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
#: canonical (first) name of every registered loss.
CANONICAL: list[str] = []


def _normalise_name(name: str) -> str:
    return name.lower().replace("-", "_").replace(" ", "").replace("+", "_plus_")


def register_loss(*names: str, sigmoid: bool = False) -> Callable[[Any], Any]:
    """Decorator adding a loss class (or preset factory) to the registry under ``names``."""
    table = SIGMOID_REGISTRY if sigmoid else LOSS_REGISTRY

    def deco(obj: Any) -> Any:
        CANONICAL.append(_normalise_name(names[0]))
        for n in names:
            key = _normalise_name(n)
            known = LOSS_REGISTRY.get(key, SIGMOID_REGISTRY.get(key))
            if known is not None and known is not obj:
                raise ValueError(f"A loss named {n!r} is already registered.")
            table[key] = obj
        return obj

    return deco


def host_checks(t: Tensor) -> bool:
    """Whether data-dependent shortcuts may be decided on the host for ``t`` (a ``bool``/``float``
    of a reduction is free on the CPU, a synchronisation elsewhere). The general branch is exact
    too; tests switch this off to run the branches other devices take."""
    return t.device.type == "cpu"


def no_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast switched off for ``device_type`` (a no-op context when it is not on: entering
    ``torch.autocast`` costs microseconds on every call)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64; every other floating dtype is computed in float32."""
    if not torch.is_floating_point(x):
        raise TypeError(f"input must hold floating-point logits, got dtype {x.dtype}.")
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
    return reduction


def one_minus_p(logp: Tensor) -> Tensor:
    """``1 - p`` from log-probabilities (``-expm1(log p)``), exact for small ``p``."""
    return -torch.expm1(logp)


def log1m_softmax(logp: Tensor, dim: int = 1) -> Tensor:
    """``log(1 - p_k)`` for every class, finite with finite gradients even when ``p_k == 1``.

    For a class with ``p > 1/2`` (at most one per element) ``1 - p`` is the sum of the other
    probabilities, so its log is a ``logsumexp`` over the other classes; for the remaining classes
    ``log(-expm1(log p))`` is well conditioned. The unused branch is fed a harmless constant, so no
    ``0 * inf`` reaches the gradient (the NaN of naive autograd through ``(1 - p)**gamma``).
    """
    big = logp > -math.log(2.0)
    lse_others = torch.logsumexp(logp.masked_fill(big, float("-inf")), dim=dim, keepdim=True)
    safe = logp.masked_fill(big, -1.0)
    return torch.where(big, lse_others, torch.log(-torch.expm1(safe)))


def as_probabilities(target: Tensor, num_classes: int, dtype: torch.dtype) -> Tensor:
    """One-hot ``(N, C, *)`` from integer targets ``(N, *)`` (ignored positions must be replaced)."""
    oh = F.one_hot(target, num_classes).to(dtype)
    return oh.movedim(-1, 1)


def check_input_target(input: Tensor, target: Tensor) -> bool:
    """Validate shapes; return True for soft (probability) targets."""
    if input.dim() < 2:
        raise ValueError(
            f"input must be logits of shape (N, C) or (N, C, *spatial), got shape {tuple(input.shape)}."
        )
    if input.shape[1] < 2:
        raise ValueError(f"input must have at least 2 classes in dim 1, got {input.shape[1]}.")
    if torch.is_floating_point(target):
        if target.shape != input.shape:
            raise ValueError(
                "a floating-point target holds class probabilities and must have the input's shape "
                f"{tuple(input.shape)}, got {tuple(target.shape)}."
            )
        return True
    if target.dtype == torch.bool or torch.is_complex(target):
        raise TypeError(
            f"target must be class indices (integer) or probabilities, got {target.dtype}."
        )
    expected = (input.shape[0], *input.shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"integer target (class indices) must have shape {expected} for input of shape "
            f"{tuple(input.shape)}, got {tuple(target.shape)}."
        )
    return False


def softmax_parts(z: Tensor, index: LabelIndex | None = None) -> tuple[Tensor, Tensor]:
    """``p = softmax(z)`` and ``lse = logsumexp(z)`` (keepdim) along dim 1 with a single ``exp`` pass
    (torch's fused softmax kernel).

    ``lse = z_k - log p_k`` for any class ``k`` whose ``p_k`` is a normal float (softmax gives every
    ``p_k`` to a few ulps, relative): with ``index`` (the labels of ``(N, C)`` logits) the label's
    column, an ``O(N)`` gather, when every ``p_y`` is above the float's normal range by a margin (a
    free check on the CPU); otherwise the largest class (``p >= 1/C``: always well conditioned), two
    reductions over the classes.
    ``log p = z - lse``; no graph is recorded (used inside the analytic autograd Functions).
    """
    p = F.softmax(z, dim=1)
    # (on a grid with few classes two reductions over dim 1 are cheaper than two gathers)
    if index is not None and index.flat is None and host_checks(z) and index.y.numel():
        p_y = index.take(p)  # (remembered: RCE-like parts reuse it)
        if float(p_y.amin()) > torch.finfo(p.dtype).tiny * 2.0**24:
            return p, index.take(z).sub(torch.log(p_y)).unsqueeze(1)
    pm = p.amax(1, keepdim=True)
    if index is not None and host_checks(p) and pm.numel():
        index.p_max = float(pm.max())  # (saturation checks of the losses, free here)
    return p, z.amax(1, keepdim=True).sub_(_log_(pm))


def _log_(t: Tensor) -> Tensor:
    """In-place natural log; on CPU float tensors NumPy's (about 3x faster than torch's here)."""
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) and t.is_contiguous():
        np.log(t.numpy(), out=t.numpy())
        return t
    return t.log_()


#: A term ``coef[:, None] * base`` of the gradient with respect to ``log p`` (``base`` ``None``
#: means all ones); ``base_sum`` is ``base.sum(1)`` (or ``C``).
DenseTerm = tuple[Tensor | None, Tensor | float, Tensor | float]
#: A term ``coef`` added at class ``index`` of the gradient with respect to ``log p``.
ColumnTerm = tuple["LabelIndex", Tensor | float]


class _IndexLossFn(torch.autograd.Function):
    """Per-element loss for integer targets with an analytic backward.

    The loss object's ``_index_terms(z, y, p, lse)`` returns the per-element loss ``ell`` ``(N, *)``
    and its gradient with respect to ``log p`` as dense terms and column terms
    (``G = sum coef * base + sum_j coef_j * onehot(index_j)``); the gradient with respect to the
    logits is the log-softmax Jacobian applied to it, ``G - p * sum_k G_k``. The reduction is
    applied here too. With dense terms the gradient per unit of incoming gradient is assembled in
    the forward, in ``p``'s buffer (the dense bases are freed before the backward, a single
    pass); otherwise the backward assembles it from ``p`` and the per-element coefficients.
    """

    @staticmethod
    def forward(ctx, z, y, ew, valid, loss, reduction):  # type: ignore[override]
        index = LabelIndex(y, z.shape, loss.workspace())
        p, lse = softmax_parts(z, index)
        ell, dense, cols = loss._index_terms(z, index, p, lse)
        cols = _merge_columns(cols)
        index.release()
        for idx, _ in cols:
            idx.release()
        if valid is not None:
            ell = torch.where(valid, ell, torch.zeros((), dtype=ell.dtype, device=ell.device))
        if ew is not None:
            ell = ell * ew
        # the reduction is part of the Function (two autograd nodes fewer per call)
        ctx.reduction, ctx.elem_shape = reduction, ell.shape
        if reduction != "none":
            red = ell.sum()
            if reduction == "mean":
                ctx.denom = ell.numel() if ew is None else ew.sum()
                red = red / ctx.denom
            ell = red
        # everything of the backward that does not depend on the incoming gradient:
        # -sum_k G_k and the coefficient of the all-ones terms
        total: Tensor | float = 0.0
        for _, coef, bsum in dense:
            total = _accumulate(total, coef * bsum, owned=True)
        for _, coef in cols:
            total = _accumulate(total, coef)
        ones: Tensor | float = 0.0
        for base, coef, _ in dense:
            if base is None:
                ones = _accumulate(ones, coef)
        neg_total = total.neg_() if isinstance(total, Tensor) else -total
        dense_b = [(base, coef) for base, coef, _ in dense if base is not None]
        lazy = not dense_b or any(isinstance(i, ArgmaxIndex) for i, _ in cols)
        if lazy or any(b is p for b, _ in dense_b):  # the gradient is assembled in the backward
            index.return_scratch(reuse=False)  # (the dense bases are saved)
            ctx.eager = False
            ctx.neg_total, ctx.ones, ctx.dense, ctx.cols = neg_total, ones, dense_b, cols
            ctx.save_for_backward(p, ew)
            return ell
        # with dense terms: the gradient per unit of incoming gradient, in p's buffer (p is not
        # needed after it); the dense bases are freed before the backward, a single pass. For
        # "mean"/"sum" the reduction's weights (1/denominator, element weights) are folded into the
        # per-element coefficients here (O(N) work), so that the usual ``loss.backward()`` (an
        # incoming gradient of exactly 1) returns this buffer as it is: no new (N, C, *) buffer.
        ctx.eager = True
        ctx.folded = reduction != "none"
        scale = 1.0  # a scalar factor of the dense and column terms, applied by the ops below
        if ctx.folded:
            sc: Tensor | float = 1.0
            if reduction == "mean":  # (no element: a 0/0 mean, as torch's)
                sc = 1.0 / ctx.denom if not isinstance(ctx.denom, int) else (
                    1.0 / ctx.denom if ctx.denom else math.nan
                )
            if ew is not None:
                sc = ew * sc
            if not _is_one(sc):
                # (neg_total is a fresh tensor of this call: scaled in place)
                inplace = isinstance(neg_total, Tensor) and (
                    not isinstance(sc, Tensor) or sc.shape == neg_total.shape
                )
                neg_total = neg_total.mul_(sc) if inplace else neg_total * sc
                ones = ones * sc if not _is_zero(ones) else ones
                if isinstance(sc, Tensor):
                    dense_b = [(base, coef * sc) for base, coef in dense_b]
                    cols = [(idx, coef * sc) for idx, coef in cols]
                else:  # (as addcmul's value / index_add's alpha: no new (N, *) products)
                    scale = sc
        gu = p if _is_one(neg_total) else p.mul_(_bcast(neg_total))
        if not _is_zero(ones):
            gu.add_(_bcast(ones))
        for base, coef in dense_b:
            if isinstance(coef, Tensor):
                gu.addcmul_(base, coef.unsqueeze(1), value=scale)
            else:
                gu.add_(base, alpha=coef * scale)
        for idx, coef in cols:
            if not isinstance(coef, Tensor):
                coef = torch.full((), coef, dtype=gu.dtype, device=gu.device).expand(idx.y.shape)
            idx.add_to(gu, coef, alpha=scale)
        del dense, dense_b
        index.return_scratch(reuse=True)  # the temporaries were only read up to here
        ctx.save_for_backward(gu, ew)
        return ell

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        p, ew = ctx.saved_tensors
        with no_autocast(p.device.type):
            if ctx.eager and ctx.folded:  # p holds the gradient of the reduced loss
                return _scaled_by(p, g), None, None, None, None, None
            if ctx.reduction != "none":
                g = (g / ctx.denom if ctx.reduction == "mean" else g).expand(ctx.elem_shape)
            w = g.to(p.dtype) if ew is None else g.to(p.dtype) * ew
            if ctx.eager:  # p holds the unit gradient
                return p * w.unsqueeze(1), None, None, None, None, None
            neg_a = (w * ctx.neg_total).unsqueeze(1)
            first = [(i, c) for i, c in ctx.cols if isinstance(i, ArgmaxIndex)]
            if first:  # a one-hot column built directly in the output buffer
                idx, coef = first[0]
                gz = idx.scaled_onehot(w * coef)
                gz.addcmul_(p, neg_a)
                if not isinstance(ctx.ones, float) or ctx.ones != 0.0:
                    gz.add_((w * ctx.ones).unsqueeze(1))
            elif not isinstance(ctx.ones, float) or ctx.ones != 0.0:
                # broadcast terms fused with the softmax Jacobian: one dense pass
                flat = (w * ctx.ones).unsqueeze(1).expand_as(p)
                gz = torch.addcmul(flat, p, neg_a)
            else:
                gz = p * neg_a
            for base, coef in ctx.dense:
                gz.addcmul_(base, (w * coef).unsqueeze(1))
            for idx, coef in ctx.cols:
                if not isinstance(idx, ArgmaxIndex):
                    idx.add_to(gz, w * coef)
        return gz, None, None, None, None, None


class _FusedFn(torch.autograd.Function):
    """A per-element loss for integer targets and float32 CPU logits through a fused kernel of
    :mod:`robustaug.losses._fused` (``call(z, y, ew, fac, grad)``, from the loss's
    :meth:`RobustLoss._fused_call`): the softmax, the per-element loss and the gradient per unit of
    incoming gradient in one call (the reduction's weights folded in, as in :class:`_IndexLossFn`),
    so the backward is at most one pass."""

    @staticmethod
    def forward(ctx, z, y, ew, call, reduction):  # type: ignore[override]
        fac: float = 1.0
        denom: float | int = 0
        if reduction == "mean":
            denom = y.numel() if ew is None else float(ew.sum())
            fac = 1.0 / denom if denom else math.nan  # (no element: a 0/0 mean, as torch's)
        ell, g = call(z, y, ew, fac, ctx.needs_input_grad[0])
        ctx.reduction = reduction
        ctx.save_for_backward(g)
        if reduction == "none":
            return ell
        red = ell.sum()
        return red / denom if reduction == "mean" else red

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (gz,) = ctx.saved_tensors
        if ctx.reduction == "none":
            gz = gz * g.to(gz.dtype).unsqueeze(1)
        else:
            gz = _scaled_by(gz, g)
        return gz, None, None, None, None


def _scaled_by(gu: Tensor, g: Tensor) -> Tensor:
    """``gu * g`` for a scalar incoming gradient ``g``; ``gu`` itself when ``g`` is exactly 1 on the
    CPU (``loss.backward()`` on the loss itself) and no graph of the gradient is asked for.

    Returning the saved buffer is safe: autograd releases the saved tensors after this call unless
    the graph is retained, and then a second backward reads the same, unmodified values (the
    engine never writes into a gradient that something else still references)."""
    if host_checks(g) and not g.requires_grad and g.numel() == 1 and float(g) == 1.0:
        return gu
    return gu * g.to(gu.dtype)


def _is_one(v: Tensor | float) -> bool:
    return not isinstance(v, Tensor) and v == 1.0


def _is_zero(v: Tensor | float) -> bool:
    return not isinstance(v, Tensor) and v == 0.0


def _bcast(v: Tensor | float) -> Tensor | float:
    """A per-element coefficient ``(N, *)`` broadcast over the class dimension."""
    return v.unsqueeze(1) if isinstance(v, Tensor) else v


def _accumulate(acc: Tensor | float, v: Tensor | float, owned: bool = False) -> Tensor | float:
    """``acc + v``; the tensor it returns is always a new one (``v`` when ``owned``: a fresh
    temporary of the caller), so later calls add in place."""
    if isinstance(acc, Tensor):
        if not isinstance(v, Tensor) or v.shape == acc.shape or v.dim() == 0:
            return acc.add_(v)
        return acc + v
    if isinstance(v, Tensor):
        if acc == 0.0:
            return v if owned else v.clone()
        return v.add_(acc) if owned else v + acc
    return acc + v


def _offsets(shape: torch.Size, device: torch.device) -> Tensor:
    """Flat offsets ``n C V + v`` of class 0 of every element of a contiguous ``(N, C, *)`` tensor,
    as ``(N, V)`` int64."""
    n, c = shape[0], shape[1]
    hw = math.prod(shape[2:])
    offs = torch.arange(0, n * c * hw, c * hw, device=device).view(n, 1)
    return offs + torch.arange(hw, device=device).view(1, hw)


def _pool_bytes(pool: dict[tuple, list[Tensor]]) -> int:
    return sum(t.nbytes for lst in pool.values() for t in lst)


class Workspace:
    """Dense scratch buffers of one loss object, reused from call to call on the CPU.

    torch allocates CPU tensors with the C allocator, which hands memory back to the OS when the
    heap shrinks (glibc trims it), so a fresh ``(N, C, *)`` temporary then costs a page fault per
    4 KiB page on its first write: measured 0-1,700 faults per call of the same loss on
    ``(4096, 100)``, up to about a millisecond, varying from run to run. The analytic Functions take
    their temporaries from here (:meth:`take`: a free buffer of the same shape, strides and dtype, or
    a new one) and give them back after the forward when nothing refers to them any more (never the
    tensors saved for the backward or returned). Only CPU buffers are kept, of at most
    :attr:`max_layouts` layouts and :attr:`max_bytes` in all; they are not pickled or copied with
    the loss, and :meth:`clear` drops them. Other devices have caching allocators: nothing is kept
    there.
    """

    #: Upper bound on the bytes kept between calls.
    max_bytes: int = 64 << 20
    #: Upper bound on the number of distinct layouts (shape, strides, dtype) kept.
    max_layouts: int = 8

    def __init__(self) -> None:
        self._pool: dict[tuple, list[Tensor]] = {}

    @staticmethod
    def _key(t: Tensor) -> tuple:
        return Workspace._layout(t.shape, t.stride(), t.dtype, t.device)

    @staticmethod
    def _layout(shape: Sequence[int], stride: Sequence[int], dtype: torch.dtype,
                device: torch.device) -> tuple:
        return (torch.Size(shape), tuple(stride), dtype, torch.device(device),
                torch.is_inference_mode_enabled())

    def _pop(self, key: tuple) -> Tensor | None:
        free = self._pool.get(key)
        if free:
            try:
                return free.pop()
            except IndexError:  # (emptied by a concurrent call)
                pass
        return None

    def take(self, like: Tensor) -> Tensor:
        """A buffer like ``like`` (uninitialised): a kept one when there is one, else new."""
        buf = self._pop(self._key(like))
        return torch.empty_like(like) if buf is None else buf

    def take_new(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        """A contiguous buffer of ``shape`` and ``dtype`` on ``device`` (kept or new)."""
        stride = [math.prod(shape[k + 1 :]) for k in range(len(shape))]
        buf = self._pop(self._layout(shape, stride, dtype, device))
        return torch.empty(shape, dtype=dtype, device=device) if buf is None else buf

    def give(self, bufs: list[Tensor]) -> None:
        """Keep ``bufs`` (which nothing else refers to) for the next calls, within the limits: when
        they would be exceeded, only the layouts given back now are kept."""
        bufs = [b for b in bufs if b.device.type == "cpu"]
        if not bufs:
            return
        pool = dict(self._pool)  # (copy, then one assignment: safe under concurrent calls)
        for b in bufs:
            pool.setdefault(self._key(b), []).append(b)
        if len(pool) > self.max_layouts or _pool_bytes(pool) > self.max_bytes:
            keys = {self._key(b) for b in bufs}
            pool = {k: v for k, v in pool.items() if k in keys}
            while pool and _pool_bytes(pool) > self.max_bytes:
                k = max(pool, key=lambda q: sum(t.nbytes for t in pool[q]))
                pool[k].pop()
                if not pool[k]:
                    del pool[k]
        self._pool = pool

    def offsets(self, shape: torch.Size, device: torch.device) -> Tensor:
        """:func:`_offsets` for ``shape``, kept for the most recent shape (two integer passes fewer
        per call; any device)."""
        key = (tuple(shape), device)
        memo = self.__dict__.get("_offs")
        if memo is None or memo[0] != key:
            memo = self.__dict__["_offs"] = (key, _offsets(shape, device))
        return memo[1]

    def clear(self) -> None:
        """Drop the kept buffers."""
        self._pool = {}
        self.__dict__.pop("_offs", None)

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()


class LabelIndex:
    """Positions of one class per element (``y`` ``(N, *)``) in ``(N, C, *)`` tensors.

    For spatial inputs the flat offsets ``n C V + y V + v`` are computed once (two integer passes):
    ``take``/``add_to`` on a contiguous ``(N, C, *)`` tensor are then 1-D ``index_select`` /
    ``index_add_``, much faster on CPU than ``gather`` or ``scatter_add`` along a strided dim 1.
    ``take`` remembers its results for the tensors it was given until :meth:`release` (the parts of
    a composite loss gather the logits' label column once); the results must not be modified.
    """

    def __init__(self, y: Tensor, shape: torch.Size, ws: Workspace | None = None) -> None:
        self.y = y
        self.flat: Tensor | None = None
        self._memo: list[tuple[Tensor, Tensor]] = []
        self._ws = ws
        self._taken: list[Tensor] = []
        #: the largest probability of all elements, when the softmax noted it (CPU)
        self.p_max: float | None = None
        if len(shape) > 2 and y.numel() > 0:
            n = shape[0]
            hw = y.numel() // n
            if ws is not None:
                base = ws.offsets(shape, y.device)
                out = self._scratch_new((n, hw), base.dtype)
                self.flat = torch.add(base, y.reshape(n, hw), alpha=hw, out=out).view(-1)
            else:
                self.flat = torch.add(_offsets(shape, y.device), y.reshape(n, hw), alpha=hw).view(-1)

    def take(self, x: Tensor, remember: bool = True) -> Tensor:
        """``x[n, y[n, *], *]`` as ``(N, *)`` (``remember=False`` for a buffer that is modified
        later)."""
        for src, val in self._memo:
            if src is x:
                return val
        if self.flat is not None and x.is_contiguous():
            val = x.reshape(-1).index_select(0, self.flat).view(self.y.shape)
        else:
            val = x.gather(1, self.y.unsqueeze(1)).squeeze(1)
        if remember:
            self._memo.append((x, val))
        return val

    def release(self) -> None:
        """Forget the remembered gathers (their sources may be freed or reused)."""
        self._memo.clear()

    def _track(self, buf: Tensor) -> Tensor:
        self._taken.append(buf)
        return buf

    def _scratch_new(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        assert self._ws is not None
        return self._track(self._ws.take_new(shape, dtype, self.y.device))

    def scratch(self, like: Tensor) -> Tensor:
        """A dense temporary like ``like`` from the loss's :class:`Workspace` (or a new one)."""
        if self._ws is None:
            return torch.empty_like(like)
        return self._track(self._ws.take(like))

    def return_scratch(self, reuse: bool) -> None:
        """Give the temporaries back to the workspace (``reuse``: nothing refers to them any more)
        or just forget them."""
        if reuse and self._ws is not None:
            self._ws.give(self._taken)
        self._taken = []

    def add_to(self, x: Tensor, v: Tensor, alpha: float = 1.0) -> None:
        """In place ``x[n, y[n, *], *] += alpha * v``."""
        if self.flat is not None and x.is_contiguous():
            x.view(-1).index_add_(0, self.flat, v.reshape(-1), alpha=alpha)
        else:
            x.scatter_add_(1, self.y.unsqueeze(1), (v if alpha == 1.0 else v * alpha).unsqueeze(1))


class ArgmaxIndex:
    """The first arg-max of the logits over classes as a column term of :class:`_IndexLossFn`.

    Nothing is indexed: the backward builds ``v * onehot(argmax z)`` in its output buffer from
    ``z == max z`` (written as 1./0. straight to it); elements with tied maxima (checked on the
    CPU; always on other devices) take the first one, as :func:`torch.argmax`.
    """

    def __init__(self, z: Tensor, z_max: Tensor) -> None:
        self.z, self.z_max, self._version = z, z_max, z._version

    def release(self) -> None:
        pass

    def scaled_onehot(self, v: Tensor) -> Tensor:
        z = self.z
        if z._version != self._version:
            raise RuntimeError(
                "the logits were modified in place after the loss was computed; the hard "
                "bootstrapping gradient needs their arg-max."
            )
        e = torch.eq(z, self.z_max.unsqueeze(1), out=torch.empty_like(z))  # 1. at the maxima
        if not host_checks(z) or float(e.sum(1).amax()) > 1.0:  # ties: first maximum
            first = e.argmax(1)  # torch.argmax returns the first maximal index
            e.zero_()
            LabelIndex(first, e.shape).add_to(e, v)
            return e
        return e.mul_(v.unsqueeze(1))


def class_dot(a: Tensor, b: Tensor) -> Tensor:
    """``(a * b).sum(1)`` without a dense temporary where that is cheap (2-D: ``vecdot``, about 2.5x
    faster than a batched matrix product of 1 x C rows on CPU; few classes: a loop over them)."""
    if a.dim() == 2:
        return torch.linalg.vecdot(a, b, dim=1)
    if a.shape[1] <= 16:
        out = a[:, 0] * b[:, 0]
        for k in range(1, a.shape[1]):
            out.addcmul_(a[:, k], b[:, k])
        return out
    return (a * b).sum(1)


def rows_for_labels(M: Tensor, y: Tensor, like: Tensor, out: Tensor | None = None) -> Tensor:
    """``M[y[n, *], :]`` laid out as ``(N, C, *)`` like ``like`` (one row of ``M`` per element),
    contiguous. For few classes on spatial inputs one ``index_select`` per class column. ``out``:
    a contiguous buffer like ``like`` to write it to (2-D, or few classes)."""
    M = M.to(like.dtype)
    if like.dim() == 2:
        return M.index_select(0, y) if out is None else torch.index_select(M, 0, y, out=out)
    c = M.shape[1]
    if c <= 16:
        if out is None:
            out = torch.empty_like(like, memory_format=torch.contiguous_format)
        flat_y = y.reshape(-1)
        for j in range(c):
            out[:, j].copy_(M[:, j].index_select(0, flat_y).view(y.shape))
        return out
    r = M.index_select(0, y.reshape(-1)).view(*y.shape, c)
    return r.movedim(-1, 1).contiguous()


def _merge_columns(cols: list[ColumnTerm]) -> list[ColumnTerm]:
    """Sum the coefficients of column terms that share a label index (one scatter each)."""
    out: list[list] = []
    for idx, coef in cols:
        for item in out:
            if item[0] is idx:
                item[1] = item[1] + coef
                break
        else:
            out.append([idx, coef])
    return [(i, c) for i, c in out]


def gather_column(x: Tensor, y: Tensor | LabelIndex, remember: bool = True) -> Tensor:
    """``x[n, y[n, *], *]``: the label's column of ``(N, C, *)`` as ``(N, *)`` (``remember=False``:
    a new tensor the caller may modify)."""
    if isinstance(y, LabelIndex):
        return y.take(x, remember=remember)
    return x.gather(1, y.unsqueeze(1)).squeeze(1)


def reduce_loss(ell: Tensor, elem_weight: Tensor | None, reduction: str) -> Tensor:
    """Reduce per-element (already weighted) losses with torch's semantics.

    ``"mean"`` divides by the sum of ``elem_weight`` (number of elements when it is ``None``).
    """
    if reduction == "none":
        return ell
    total = ell.sum()
    if reduction == "sum":
        return total
    return total / (ell.numel() if elem_weight is None else elem_weight.sum())


class RobustLoss(nn.Module):
    """Base class of the softmax losses (drop-in for :class:`torch.nn.CrossEntropyLoss`).

    Subclasses define either :meth:`class_losses` (a loss that is linear in the target: the value for a
    soft target ``q`` is ``sum_k q_k L_k``) or set ``linear = False`` and define :meth:`element_loss`.

    Args:
        weight: Optional per-class weights, shape ``(C,)``.
        ignore_index: Integer-target value whose elements contribute nothing (loss and gradient 0).
        reduction: ``"mean"`` (weighted mean over non-ignored elements), ``"sum"`` or ``"none"``
            (per-element losses with the target's shape ``(N, *spatial)``).
    """

    linear: ClassVar[bool] = True
    #: ``class_losses`` is elementwise in ``log p`` (``L_k`` depends on ``p_k`` only): for integer
    #: targets only the label's column is computed.
    pointwise: ClassVar[bool] = False

    def __init__(
        self,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if weight is not None:
            weight = torch.as_tensor(weight)
            if weight.dim() != 1 or not torch.is_floating_point(weight):
                raise ValueError(
                    f"weight must be a 1-D floating tensor of per-class weights, got {weight!r}."
                )
            if bool((weight < 0).any()):
                raise ValueError("weight must be non-negative.")
        self.register_buffer("weight", weight)
        self.ignore_index = int(ignore_index)
        self.reduction = check_reduction(reduction)

    # --- to override -------------------------------------------------------------------------------
    def _column(self, s: Tensor) -> tuple[Tensor, Tensor | float] | None:
        """Pointwise losses: value ``L(s)`` and derivative ``dL/ds`` at ``s = log p_y`` ``(N, *)``
        (None: no analytic form, autograd is used)."""
        return None

    def _index_terms(
        self, z: Tensor, y: LabelIndex, p: Tensor, lse: Tensor
    ) -> tuple[Tensor, list[DenseTerm], list[ColumnTerm]] | None:
        """Integer targets: per-element loss and its gradient with respect to ``log p`` (see
        :class:`_IndexLossFn`) from logits ``z``, labels ``y``, ``p = softmax(z)`` and
        ``lse = logsumexp(z)`` (keepdim). None: no analytic form, autograd is used."""
        if not self.pointwise:
            return None
        s = gather_column(z, y) - lse.squeeze(1)
        out = self._column(s)
        if out is None:
            return None
        ell, d = out
        return ell, [], [(y, d)]

    def _focal_terms(self) -> _fused.FocalTerms | None:
        """The loss as coefficients of the fused focal-family kernel (:mod:`._fused`); None when it
        is not of that family."""
        return None

    def _fused_call(self, z: Tensor) -> Callable[..., tuple[Tensor, Tensor | None]] | None:
        """A fused kernel computing this loss for float32 CPU logits ``z`` with integer targets,
        called as ``call(z, y, ew, fac, grad)`` (see :class:`_FusedFn`); None: the eager code. By
        default the focal-family kernel, for a loss that has :meth:`_focal_terms`."""
        terms = self._focal_terms()
        if terms is None:
            return None
        return functools.partial(_fused.focal_family, terms=terms)

    def _has_analytic(self) -> bool:
        cls = type(self)
        return cls._index_terms is not RobustLoss._index_terms or (
            self.pointwise and cls._column is not RobustLoss._column
        )

    def class_losses(self, logp: Tensor) -> Tensor:
        """Loss ``L_k`` for every candidate label ``k``: ``(N, C, *)`` from log-probabilities."""
        raise NotImplementedError

    def element_loss(self, logp: Tensor, target: Tensor, soft: bool) -> Tensor:
        """Unweighted per-element loss ``(N, *)``; ``target`` is indices (ignored ones set to 0)
        or probabilities."""
        if not soft and self.pointwise:
            return self.class_losses(logp.gather(1, target.unsqueeze(1))).squeeze(1)
        L = self.class_losses(logp)
        if soft:
            return (target * L).sum(1)
        return L.gather(1, target.unsqueeze(1)).squeeze(1)

    # --- machinery ---------------------------------------------------------------------------------
    def workspace(self) -> Workspace:
        """The :class:`Workspace` of this loss's dense temporaries (created on first use)."""
        ws = self.__dict__.get("_workspace")
        if ws is None:
            ws = self.__dict__["_workspace"] = Workspace()
        return ws

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, ignore_index={self.ignore_index}"

    def _prepare(self, input: Tensor, target: Tensor) -> tuple[Tensor, Tensor, bool, Tensor | None]:
        soft = check_input_target(input, target)
        dtype = compute_dtype(input)
        z = input.to(dtype)
        valid = None
        if soft:
            target = target.to(dtype)
        else:
            target = target.long()
            c = input.shape[1]
            if host_checks(target):
                if target.numel() == 0:
                    return z, target, soft, None
                # one reduction decides the common case (a free check on the CPU only): all labels
                # in [0, C) and ignore_index outside it, so nothing is ignored and no mask is built
                lo, hi = (int(v) for v in torch.aminmax(target))
                if lo >= 0 and hi < c and not 0 <= self.ignore_index < c:
                    return z, target, soft, None
                valid = target != self.ignore_index
                if bool(valid.all()):
                    valid = None
                else:
                    target = target.masked_fill(~valid, 0)
                    lo, hi = (int(v) for v in torch.aminmax(target))
                if lo < 0 or hi >= c:
                    raise ValueError(
                        f"target class indices must lie in [0, {c}) or equal "
                        f"ignore_index={self.ignore_index}."
                    )
            else:
                valid = target != self.ignore_index
                target = target.masked_fill(~valid, 0)
        return z, target, soft, valid

    def _weights(
        self, target: Tensor, soft: bool, valid: Tensor | None, dtype: torch.dtype
    ) -> Tensor | None:
        """Per-element weights ``(N, *)`` (None when all are 1)."""
        if self.weight is None:
            return None if valid is None else valid.to(dtype)
        w = self.weight.to(dtype=dtype, device=target.device)
        if soft:
            shape = [1, -1] + [1] * (target.dim() - 2)
            return (target * w.view(shape)).sum(1)
        ew = w[target]
        return ew if valid is None else ew * valid

    def _finish(self, ell: Tensor, ew: Tensor | None, valid: Tensor | None) -> Tensor:
        if valid is not None:
            ell = torch.where(valid, ell, torch.zeros((), dtype=ell.dtype, device=ell.device))
        if ew is not None:
            ell = ell * ew
        return reduce_loss(ell, ew, self.reduction)

    def _linear_weighted(self, logp: Tensor, target: Tensor, soft: bool) -> Tensor:
        """Linear losses with soft targets and class weights: ``sum_k w_k q_k L_k`` (torch's rule)."""
        L = self.class_losses(logp)
        w = self.weight.to(dtype=logp.dtype, device=logp.device)
        shape = [1, -1] + [1] * (logp.dim() - 2)
        return (target * w.view(shape) * L).sum(1)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Loss of logits ``input`` against ``target`` (indices or probabilities)."""
        z, target, soft, valid = self._prepare(input, target)
        # computed in the (N, C, *spatial) layout: torch's softmax kernels along dim 1 are much faster
        # than along a short last dimension after a transpose (measured 5x for C=4)
        with no_autocast(z.device.type):
            if not soft and self._has_analytic():
                ew = self._weights(target, soft, valid, z.dtype)
                call = self._fused_call(z) if _fused.usable(z) else None
                if call is not None:
                    return _FusedFn.apply(z, target, ew, call, self.reduction)
                return _IndexLossFn.apply(z, target, ew, valid, self, self.reduction)
            logp = F.log_softmax(z, dim=1)
            ew = self._weights(target, soft, valid, z.dtype)
            if soft and self.linear and self.weight is not None:
                ell = self._linear_weighted(logp, target, soft)
                return reduce_loss(ell, ew, self.reduction)
            ell = self.element_loss(logp, target, soft)
            return self._finish(ell, ew, valid)
