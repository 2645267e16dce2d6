"""Shared timing utilities for robustaug's benchmarks (import as ``from harness import ...``).

Methodology (kept the same by every ``bench_*.py`` that uses it):

* all contenders run in one process on the same input tensors;
* repeats are **interleaved** (round-robin over contenders, order rotated each round), so slow
  drifts of a shared machine (other jobs, thermal state) hit every contender alike;
* each contender gets ``warmup`` untimed calls first (allocator, lazy imports, kernel caches);
* the reported figure is the **median** wall time over repeats divided by the number of samples
  processed per call (per-sample time), with the interquartile range alongside;
* the torch thread count is fixed (``torch.set_num_threads``) and recorded;
* results go to JSON with machine, library versions and the git commit, and to a Markdown table.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "RESULTS_DIR",
    "Timing",
    "fmt_seconds",
    "git_commit",
    "markdown_table",
    "metadata",
    "set_threads",
    "time_interleaved",
    "write_json",
    "write_markdown_section",
]

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"


@dataclass
class Timing:
    """Timing of one contender: all repeats, their median and IQR, per call and per sample."""

    name: str
    times_s: list[float] = field(default_factory=list)
    samples_per_call: int = 1

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def iqr_s(self) -> float:
        if len(self.times_s) < 4:
            return max(self.times_s) - min(self.times_s)
        q = statistics.quantiles(self.times_s, n=4)
        return q[2] - q[0]

    @property
    def per_sample_s(self) -> float:
        return self.median_s / self.samples_per_call

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(median_s=self.median_s, iqr_s=self.iqr_s, per_sample_s=self.per_sample_s)
        return d


def set_threads(n: int = 1) -> int:
    """Fix torch's intra-op thread count (and OMP/MKL hints for libraries started later)."""
    torch.set_num_threads(n)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    return torch.get_num_threads()


def _sync(device: str | None) -> None:
    if device and device.startswith("cuda"):
        torch.cuda.synchronize()


def time_interleaved(
    contenders: Mapping[str, Callable[[], Any]],
    *,
    repeats: int = 7,
    warmup: int = 1,
    samples_per_call: int | Mapping[str, int] = 1,
    device: str | None = None,
) -> dict[str, Timing]:
    """Time several callables on the same inputs with interleaved repeats.

    Args:
        contenders: ``{name: fn}``; each ``fn()`` does one call on its pre-built inputs.
        repeats: Timed rounds; in each round every contender runs once, in a rotated order.
        warmup: Untimed calls per contender before timing.
        samples_per_call: Samples processed by one call (e.g. 32 for a batch of 32), per contender
            or for all.
        device: ``"cuda..."`` synchronises around each call.

    Returns:
        ``{name: Timing}``.
    """
    names = list(contenders)
    spc = (
        {n: int(samples_per_call[n]) for n in names}
        if isinstance(samples_per_call, Mapping)
        else dict.fromkeys(names, int(samples_per_call))
    )
    for n in names:
        for _ in range(warmup):
            contenders[n]()
    _sync(device)
    out = {n: Timing(n, [], spc[n]) for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            _sync(device)
            t0 = time.perf_counter()
            contenders[n]()
            _sync(device)
            out[n].times_s.append(time.perf_counter() - t0)
    return out


def git_commit() -> dict[str, Any]:
    """The repository's HEAD commit and whether the work tree has local changes."""

    def run(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=BENCH_DIR, capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _version(mod: str) -> str | None:
    try:
        m = __import__(mod)
    except ImportError:
        return None
    return getattr(m, "__version__", None)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def metadata(threads: int, extra_libs: Sequence[str] = ("torchio", "monai")) -> dict[str, Any]:
    """Machine, software and commit metadata for a result file."""
    libs = {name: _version(name) for name in ("robustaug", "numpy", "scipy", *extra_libs)}
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "threads": threads,
        "libraries": libs,
        "git": git_commit(),
    }


def write_json(name: str, payload: Mapping[str, Any], results_dir: Path | None = None) -> Path:
    """Write ``payload`` to ``benchmarks/results/<name>-<UTC timestamp>.json``; returns the path."""
    d = RESULTS_DIR if results_dir is None else Path(results_dir)
    d.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(payload, indent=2, default=str)
    path = d / f"{name}-{stamp}.json"
    path.write_text(text + "\n")
    return path


def fmt_seconds(s: float | None) -> str:
    """Human-readable time: µs, ms or s with 3 significant digits."""
    if s is None:
        return "—"
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1.0:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


_BEGIN = "<!-- results:begin -->"
_END = "<!-- results:end -->"


def write_markdown_section(path: Path, body: str) -> None:
    """Replace the text between ``<!-- results:begin -->`` and ``<!-- results:end -->`` in ``path``.

    The rest of the page (methodology, notes) is kept; a missing file or missing markers get a
    new page / section.
    """
    block = f"{_BEGIN}\n{body.rstrip()}\n{_END}"
    text = path.read_text() if path.exists() else ""
    if _BEGIN in text and _END in text:
        pre, rest = text.split(_BEGIN, 1)
        post = rest.split(_END, 1)[1]
        text = pre + block + post
    else:
        text = (text.rstrip() + "\n\n" if text else "") + block + "\n"
    path.write_text(text)
