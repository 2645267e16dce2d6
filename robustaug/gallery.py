"""Severity galleries: a grid of an artifact at severities 0..5 (columns) over several draws (rows).

Rendering needs matplotlib (``pip install 'robustaug[plot]'``); it is imported only when a grid is
drawn, and drawing never changes matplotlib's global backend (an Agg canvas is attached to the
figure). The inputs are ``cls.example_input(...)`` (the built-in phantom unless the artifact
provides its own realistic input) and every draw is seeded, so a gallery is reproducible.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .core.registry import get_artifact
from .core.transform import Transform

__all__ = ["default_size", "format_params", "render_severity_grid", "save_severity_grid"]


def _require_matplotlib() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            "Drawing a gallery needs matplotlib. Install it with: pip install 'robustaug[plot]'"
        ) from err
    return Figure, FigureCanvasAgg


def default_size(dims: int) -> int:
    """Default edge length of the example input: 128 pixels in 2D, 48 voxels in 3D."""
    return 128 if dims == 2 else 48


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt(w) for w in v) + ")"
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def format_params(params: Mapping[str, Any], index: int = 0, max_items: int = 3) -> str:
    """A short ``key=value`` summary of one sample's recorded scalar parameters.

    Noise seeds, the apply mask and nested or large entries are left out.
    """
    parts = []
    for k, v in params.items():
        if k == "apply" or "seed" in k or not isinstance(v, Tensor) or v.ndim == 0:
            continue
        if v.shape[0] <= index:
            continue
        vi = v[index]
        if vi.numel() > 3 or vi.dtype == torch.bool:
            continue
        vals = [float(a) for a in vi.reshape(-1)]
        parts.append(f"{k}=" + (_fmt(vals[0]) if len(vals) == 1 else _fmt(vals)))
        if len(parts) == max_items:
            break
    return ", ".join(parts)


def _resolve(artifact: str | type[Transform]) -> type[Transform]:
    if isinstance(artifact, str):
        return get_artifact(artifact)
    if isinstance(artifact, type) and issubclass(artifact, Transform):
        return artifact
    raise TypeError(
        f"`artifact` must be a registered name or a Transform subclass, got {artifact!r}."
    )


def _display(y: Tensor) -> Tensor:
    """``(1, C, *spatial)`` -> a 2D picture ``(H, W)`` or ``(H, W, 3)`` (central slice for 3D)."""
    img = y[0].detach().float().cpu()
    if img.ndim == 4:  # (C, D, H, W): central axial slice
        img = img[:, img.shape[1] // 2]
    if img.shape[0] == 3:
        return img.permute(1, 2, 0)
    return img[0]


def render_severity_grid(
    artifact: str | type[Transform],
    *,
    draws: int = 3,
    dims: int | None = None,
    seed: int = 0,
    size: int | None = None,
    severities: Sequence[int] = (0, 1, 2, 3, 4, 5),
) -> Any:
    """Draw the severity grid of an artifact and return the matplotlib ``Figure``.

    Args:
        artifact: Registered name (e.g. ``"GaussianBlur"``) or the class.
        draws: Number of rows; row ``r`` uses ``from_severity(k, seed=seed + r)`` in every column,
            so a row shows one random draw growing in strength.
        dims: 2 or 3 (3D shows the central slice of the volume); the default is 2 when supported.
        seed: Base seed of the draws.
        size: Edge of the example input (default :func:`default_size`).
        severities: Severity levels to show (0 is the clean input).

    Returns:
        A ``matplotlib.figure.Figure`` with an Agg canvas attached.
    """
    figure_cls, canvas_cls = _require_matplotlib()
    cls = _resolve(artifact)
    if dims is None:
        dims = 2 if 2 in cls.dims else 3
    if dims not in cls.dims:
        raise ValueError(f"{cls.__name__} supports dims {cls.dims}, got dims={dims}.")
    if not isinstance(draws, int) or draws < 1:
        raise ValueError(f"`draws` must be a positive int, got {draws!r}.")
    if not cls.severity_table:
        raise ValueError(f"{cls.__name__} has no severity table, so it has no severity gallery.")
    size = default_size(dims) if size is None else int(size)
    x = cls.example_input(dims, batch=1, size=size)
    clean = _display(x)
    lo = float(torch.quantile(clean.flatten(), 0.005))
    hi = float(torch.quantile(clean.flatten(), 0.995))
    if hi <= lo:
        lo, hi = float(clean.min()), float(clean.max()) + 1e-6

    cols = len(severities)
    fig = figure_cls(figsize=(2.1 * cols, 2.25 * draws + 0.9), dpi=100)
    canvas_cls(fig)
    axes = fig.subplots(draws, cols, squeeze=False)
    for r in range(draws):
        for c, k in enumerate(severities):
            t = cls.from_severity(k, seed=seed + r)
            with torch.no_grad():
                y = t(x)
            pic = _display(y)
            ax = axes[r][c]
            if pic.ndim == 3:
                ax.imshow(((pic - lo) / (hi - lo)).clamp(0, 1).numpy())
            else:
                ax.imshow(pic.numpy(), cmap="gray", vmin=lo, vmax=hi)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                if k == 0:
                    head = "severity 0\n(clean)"
                else:
                    kw = ", ".join(f"{a}={_fmt(v)}" for a, v in cls.severity_table[k].items())
                    head = f"severity {k}\n" + "\n".join(textwrap.wrap(kw, 30)[:2])
                ax.set_title(head, fontsize=8)
            if c == 0:
                ax.set_ylabel(f"draw {r + 1}", fontsize=8)
            if k > 0 and t.last_params is not None:
                ax.set_xlabel("\n".join(textwrap.wrap(format_params(t.last_params), 32)), fontsize=6)
    fig.suptitle(
        f"{cls.__name__} ({cls.modality}, {dims}D{', central slice' if dims == 3 else ''}): "
        f"severity 0-5 x {draws} draws, seed {seed}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def save_severity_grid(
    artifact: str | type[Transform],
    out: str | Path,
    *,
    draws: int = 3,
    dims: int | None = None,
    seed: int = 0,
    size: int | None = None,
    dpi: int = 100,
) -> Path:
    """Render :func:`render_severity_grid` and write it as a PNG.

    Args:
        artifact: Registered name or class.
        out: Output path (``.png``); parent folders are created.
        draws: Rows (random draws).
        dims: 2 or 3.
        seed: Base seed.
        size: Edge of the example input.
        dpi: Resolution of the PNG.

    Returns:
        The path written.

    Examples:
        >>> import tempfile, pathlib
        >>> p = save_severity_grid("GaussianNoise", pathlib.Path(tempfile.mkdtemp()) / "g.png",
        ...                        draws=1, size=32)
        >>> p.read_bytes()[:4] == b"\\x89PNG"
        True
    """
    fig = render_severity_grid(artifact, draws=draws, dims=dims, seed=seed, size=size)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path
