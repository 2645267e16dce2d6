"""Fused CPU kernels of robustaug's losses: every non-stateful softmax loss (the focal family: focal
loss, NFL, NNFL, NCE, NNCE, NGCE; the per-label losses: CE, MAE, RCE, SCE, GCE, truncated Lq, AGCE,
AUL, AEL, Taylor-CE, NMAE; their active-passive sums; soft and hard bootstrapping; forward and
backward correction) and the noise-robust Dice loss.

On the CPU these losses are a dozen elementwise passes over ``(N, C, *)`` buffers when written with
eager torch operations, several times the memory traffic of ``F.cross_entropy``'s two fused
kernels. ``_fused.c`` computes the softmax, the loss and its gradient with respect to the logits in
one kernel per loss family (the formulas are in its comments). It is plain C (no torch headers),
compiled on first use with the system's C compiler into a per-user cache (about 10 s, once per
machine and source version) and called through :mod:`ctypes`, which releases the GIL during the
call.

Where no C compiler is found, the build fails, or ``ROBUSTAUG_FUSED=0`` is set in the environment
before the first loss call, :func:`kernel` returns None and the losses use their eager code (the
same values to float rounding, tested side by side). Only float32 CPU tensors with integer targets
go through the kernels; everything else (float64, other devices, soft targets) uses the eager code.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["FocalTerms", "correction", "dice", "focal_family", "kernel"]

_SRC = Path(__file__).with_name("_fused.c")
# (-fno-trapping-math: comparisons may be if-converted into vector selects; no FP exception flag is
# read, and no value changes: unlike -ffast-math there is no reassociation or finite-math assumption)
_BASE_FLAGS = [
    "-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-fPIC", "-shared", "-pthread"
]
_lock = threading.Lock()
_state: dict[str, object] = {}


def _cpu_key() -> str:
    """What the compiled code depends on besides its source: machine, OS and, for ``-march=native``,
    the CPU's feature flags (a shared home directory may be used by different CPUs)."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(("flags", "Features", "model name")):
                    flags += line
                    if line.startswith(("flags", "Features")):
                        break
    except OSError:
        pass
    return f"{sys.platform}|{platform.machine()}|{flags}"


def _cache_dirs() -> list[Path]:
    """Where the compiled kernel is kept: ``ROBUSTAUG_CACHE_DIR``, else ``$XDG_CACHE_HOME/robustaug``
    (``~/.cache/robustaug``); the system's temporary directory if that cannot be written."""
    own = os.environ.get("ROBUSTAUG_CACHE_DIR")
    if own:
        return [Path(own)]
    base = os.environ.get("XDG_CACHE_HOME")
    home = (Path(base) if base else Path.home() / ".cache") / "robustaug"
    user = getattr(os, "getuid", lambda: 0)()
    return [home, Path(tempfile.gettempdir()) / f"robustaug-{user}"]


def _torch_uses_gomp() -> bool:
    """Whether torch runs on GNU OpenMP here (its libgomp.so.1 loaded in this process)."""
    try:
        with open("/proc/self/maps") as fh:
            return "libgomp" in fh.read() and "OpenMP" in torch.__config__.parallel_info()
    except OSError:
        return False


def _compiler() -> str | None:
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and shutil.which(cand):
            return cand
    return None


def _build() -> ctypes.CDLL | None:
    if os.environ.get("ROBUSTAUG_FUSED", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    if not sys.platform.startswith(("linux", "darwin")):
        return None
    cc = _compiler()
    if cc is None:
        return None
    src = _SRC.read_bytes()
    # (a compiler without these options: the next set; an unwritable cache: the next one)
    # (-fopenmp: the threads of torch's OpenMP runtime, already loaded as libgomp.so.1, which the
    # library then shares; its own POSIX threads would compete with torch's spinning ones)
    omp = ["-fopenmp"] if _torch_uses_gomp() else []
    for extra in (
        [*omp, "-march=native", "-mprefer-vector-width=512"], [*omp, "-march=native"],
        ["-march=native"], [],
    ):
        flags = _BASE_FLAGS + extra
        key = hashlib.sha256(src + " ".join([cc, *flags, _cpu_key()]).encode()).hexdigest()[:20]
        for cache in _cache_dirs():
            try:
                dll = ctypes.CDLL(str(_compiled(cc, flags, cache, f"rf_kernels_{key}.so")))
            except (OSError, subprocess.SubprocessError):
                continue
            vp, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
            for fn in (dll.rf_focal, dll.rf_dice):  # (pointers, then N, C, V, prm, gm, threads)
                fn.restype = i32
                fn.argtypes = [vp] * 5 + [i64] * 3 + [vp, i32, i32]
            dll.rf_correction.restype = i32
            dll.rf_correction.argtypes = [vp] * 5 + [i64] * 3 + [vp, vp, ctypes.c_float, i32, i32]
            return dll
    return None


def _compiled(cc: str, flags: list[str], cache: Path, name: str) -> Path:
    """The shared library ``cache / name``, compiled from ``_fused.c`` if it is not there yet."""
    cache.mkdir(parents=True, exist_ok=True)
    lib = cache / name
    if lib.exists():
        return lib
    # compiled to a private name, then renamed: concurrent processes (DDP ranks) may build at the
    # same time, and a loader never sees a partial file
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=cache)
    os.close(fd)
    try:
        subprocess.run([cc, *flags, "-o", tmp, str(_SRC)], check=True, capture_output=True,
                       timeout=120)
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


def kernel() -> ctypes.CDLL | None:
    """The compiled kernel library, built on first use; None where it is unavailable (see the module
    docstring)."""
    if "lib" not in _state:
        with _lock:
            if "lib" not in _state:
                _state["lib"] = _build()
    return _state["lib"]  # type: ignore[return-value]


class FocalTerms:
    """Coefficients of a loss of the focal family (see ``_fused.c``): ``a_f FL_y + a_n FL_y / S +
    a_nn (1 - f_y / S_f) + c (1 - p_y) + k0 + k1 (ca + cs p_y)^cq + a_h H(p) - a_m log p_max``.

    ``kind``: the classes' terms ``FL_k``, ``"focal"`` (``-(1 - p_k)^gamma log p_k``) or ``"gce"``
    (NGCE's ``1 - p_k^gamma``). ``col``: a column term of ``p_y``, ``(k0, k1, ca, cs, cq, type)``
    (``colterm`` in ``_fused.c``: type 0 ``k0 + k1 (ca + cs p_y)^cq``, 1 ``k1 exp(cs p_y)``, 2
    ``k1 sum_{j<=cq} (1 - p_y)^j / j``, 3 ``k0 + k1 max(p_y, ca)^cq``).
    ``combine`` adds two such losses (an active-passive sum); it returns None when they cannot share
    one kernel call (different ``gamma``, kinds or NNFL floors, or two column terms)."""

    __slots__ = ("a_f", "a_h", "a_m", "a_n", "a_nn", "c", "col", "gamma", "kind", "min_prob")

    def __init__(
        self, gamma: float | None = None, a_f: float = 0.0, a_n: float = 0.0, a_nn: float = 0.0,
        c: float = 0.0, min_prob: float | None = None, kind: str = "focal",
        col: tuple[float, float, float, float, float, int] | None = None, a_h: float = 0.0,
        a_m: float = 0.0,
    ) -> None:
        self.gamma, self.a_f, self.a_n, self.a_nn, self.c = gamma, a_f, a_n, a_nn, c
        self.min_prob, self.kind, self.col, self.a_h, self.a_m = min_prob, kind, col, a_h, a_m

    def scaled(self, w: float) -> FocalTerms:
        col = None if self.col is None else (w * self.col[0], w * self.col[1], *self.col[2:])
        return FocalTerms(self.gamma, w * self.a_f, w * self.a_n, w * self.a_nn, w * self.c,
                          self.min_prob, self.kind, col, w * self.a_h, w * self.a_m)

    def combine(self, other: FocalTerms) -> FocalTerms | None:
        if None not in (self.gamma, other.gamma) and (
            self.gamma != other.gamma or self.kind != other.kind
        ):
            return None
        if None not in (self.min_prob, other.min_prob) and self.min_prob != other.min_prob:
            return None
        if self.col is not None and other.col is not None:
            return None
        lead = self if self.gamma is not None else other
        out = FocalTerms(
            lead.gamma, self.a_f + other.a_f, self.a_n + other.a_n, self.a_nn + other.a_nn,
            self.c + other.c, self.min_prob if self.min_prob is not None else other.min_prob,
            lead.kind, self.col if self.col is not None else other.col,
            self.a_h + other.a_h, self.a_m + other.a_m,
        )
        if out.kind == "gce" and out.a_nn:  # (the floor's terms are of the focal kind)
            return None
        return out

    def params(self, fac: float) -> tuple[list[float], int]:
        """The kernel's parameter vector and its case ``gm`` of the classes' terms."""
        g = float(self.gamma or 0.0)
        gm = 5 if self.kind == "gce" else {0.0: 0, 0.5: 1, 1.0: 2, 2.0: 3}.get(g, 4)
        if self.a_nn:
            mp = float(self.min_prob)  # type: ignore[arg-type]
            A = -math.log(mp)
            kc = A * -math.expm1(g * math.log1p(-mp))  # f of a clamped class: A (1 - (1 - mp)^g)
        else:
            A, kc = math.inf, 0.0  # (no floor: every class is live)
        col = self.col if self.col is not None else (0.0, 0.0, 1.0, 1.0, 1.0, 0)
        return [g, self.a_f, self.a_n, self.a_nn, self.c, A, kc, fac, *col, self.a_h, self.a_m], gm


def usable(z: Tensor) -> bool:
    """Whether the kernel takes these logits: float32 on the CPU, at least two classes, and the
    compiled library available."""
    return (
        z.device.type == "cpu" and z.dtype == torch.float32 and z.dim() >= 2 and z.shape[1] >= 2
        and z.numel() > 0 and kernel() is not None
    )


def _layout(z: Tensor) -> tuple[Tensor, bool]:
    """``z`` (copied only if neither layout fits) and whether its classes are contiguous per
    element (``(N, C)``, channels-last grids: the rows layout)."""
    if z.dim() > 2 and z.movedim(1, -1).is_contiguous():
        return z, True
    z = z.contiguous()
    return z, z.dim() == 2


def focal_family(
    z: Tensor, y: Tensor, ew: Tensor | None, fac: float, grad: bool, *, terms: FocalTerms
) -> tuple[Tensor, Tensor | None]:
    """Per-element loss ``ew * l`` with ``y``'s shape and, if ``grad``, its gradient with respect to
    ``z`` times ``ew * fac`` (zero where ``ew`` is 0), in ``z``'s memory format.

    ``z``: float32 CPU logits ``(N, C, *)``; ``y``: class indices in ``[0, C)``; ``ew``: element
    weights or None (all 1)."""
    prm, gm = terms.params(fac)
    prm_t = torch.tensor(prm, dtype=torch.float32)
    return _elementwise(
        "rf_focal", z, y, ew, grad, lambda lib, *a: lib.rf_focal(*a, prm_t.data_ptr(), gm, _threads())
    )


def correction(
    z: Tensor, y: Tensor, ew: Tensor | None, fac: float, grad: bool, *, M: Tensor,
    row_sums: Tensor | None, forward: bool,
) -> tuple[Tensor, Tensor | None]:
    """Backward (``M = T^-1``, ``row_sums`` its row sums) or forward (``M = T^T``, no row sums)
    loss correction: per-element losses and gradient as :func:`focal_family` (see ``_fused.c``).
    ``M``: ``(C, C)`` float32 contiguous CPU."""
    sums = M if row_sums is None else row_sums  # (a valid pointer the forward mode does not read)
    return _elementwise(
        "rf_correction", z, y, ew, grad,
        lambda lib, *a: lib.rf_correction(
            *a, M.data_ptr(), sums.data_ptr(), fac, int(forward), _threads()
        ),
    )


def _threads() -> int:
    return torch.get_num_threads()


def _elementwise(
    name: str, z: Tensor, y: Tensor, ew: Tensor | None, grad: bool, run: Callable[..., int]
) -> tuple[Tensor, Tensor | None]:
    """Calls ``run(lib, z, y, ew, ell, g, N, C, V)`` with the layout of ``z`` (rows or grid), fresh
    outputs and contiguous inputs; raises MemoryError if the kernel could not allocate."""
    lib = kernel()
    assert lib is not None
    z, rows = _layout(z)
    n, c = z.shape[0], z.shape[1]
    v = z[0, 0].numel()
    y = y.contiguous()
    if ew is not None:
        ew = ew.to(torch.float32).contiguous()
    ell = torch.empty(y.shape, dtype=torch.float32)
    g = torch.empty_like(z) if grad else None
    n_el, v_el = (n * v, 1) if rows else (n, v)
    status = run(
        lib, z.data_ptr(), y.data_ptr(), None if ew is None else ew.data_ptr(), ell.data_ptr(),
        None if g is None else g.data_ptr(), n_el, c, v_el,
    )
    if status:
        raise MemoryError(f"robustaug fused loss kernel {name}: out of memory for its scratch.")
    return ell, g


def dice(
    z: Tensor, y: Tensor, a: Tensor, gamma: float, eps: float, kappa: float
) -> tuple[Tensor, Tensor]:
    """Noise-robust Dice for integer masks: per-sample losses ``(N,)`` and the gradient of
    ``kappa * sum_n L_n`` with respect to ``z`` (see ``_fused.c``).

    ``z``: contiguous float32 CPU logits ``(N, C, *)``; ``y``: class indices in ``[0, C)``;
    ``a``: the class weights of the average ``(C,)``."""
    lib = kernel()
    assert lib is not None
    n, c = z.shape[0], z.shape[1]
    v = z[0, 0].numel()
    z, y = z.contiguous(), y.contiguous()
    a = a.to(torch.float32).contiguous()
    loss = torch.empty(n, dtype=torch.float32)
    g = torch.empty_like(z, memory_format=torch.contiguous_format)
    gm = {1.0: 0, 1.5: 1, 2.0: 2}.get(float(gamma), 3)
    prm = torch.tensor([gamma, eps, kappa], dtype=torch.float32)
    status = lib.rf_dice(
        z.data_ptr(), y.data_ptr(), a.data_ptr(), g.data_ptr(), loss.data_ptr(), n, c, v,
        prm.data_ptr(), gm, _threads(),
    )
    if status:
        raise MemoryError("robustaug fused loss kernel: out of memory for its scratch buffers.")
    return loss, g
