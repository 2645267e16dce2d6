"""Grid execution shared by all sweeps: a results cache (resume) and a split across ranks.

A sweep is a list of *cells* (for example ``("GaussianBlur", 3)``), each producing a list of result
rows. :func:`run_cells` skips cells already in the cache file, runs this rank's share of the rest
(round-robin over ``torch.distributed`` ranks when a process group is initialised), appends each
finished cell to the cache as one JSON line, and gathers all rows on every rank.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["cell_key", "dist_info", "run_cells"]

Row = dict[str, Any]


def cell_key(kind: str, cell: Sequence[Hashable]) -> str:
    """A stable string key for a cell of a sweep of ``kind``."""
    return json.dumps([kind, *[str(c) for c in cell]])


def dist_info() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group, or ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _load_cache(path: Path | None) -> dict[str, list[Row]]:
    done: dict[str, list[Row]] = {}
    if path is None or not path.exists():
        return done
    with path.open() as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interruption
                continue
            done[rec["key"]] = rec["rows"]
    return done


def run_cells(
    kind: str,
    cells: Sequence[Sequence[Hashable]],
    fn: Callable[[Sequence[Hashable]], list[Row]],
    *,
    cache: str | os.PathLike | None = None,
    progress: Any = None,
) -> list[Row]:
    """Run ``fn`` over ``cells`` with resume and distribution; returns all rows in cell order.

    Args:
        kind: Sweep name, part of each cache key.
        cells: The grid.
        fn: Computes the rows of one cell.
        cache: A JSON-lines file; finished cells are read from and appended to it. In a distributed
            run each rank appends to ``<cache>.rank<r>`` and reads all of them.
        progress: Optional callable ``progress(n)`` advanced by one per finished cell.

    Returns:
        Rows of all cells (gathered from all ranks), in the order of ``cells``.
    """
    rank, world = dist_info()
    base = Path(cache) if cache is not None else None
    done: dict[str, list[Row]] = {}
    if base is not None:
        for p in [base, *base.parent.glob(base.name + ".rank*")]:
            done.update(_load_cache(p))
    mine = base if (base is None or world == 1) else base.with_name(f"{base.name}.rank{rank}")
    keys = [cell_key(kind, c) for c in cells]
    local: dict[str, list[Row]] = {}
    for i, (key, cell) in enumerate(zip(keys, cells)):
        if key in done:
            if progress is not None:
                progress(1)
            continue
        if i % world != rank:
            continue
        rows = fn(cell)
        local[key] = rows
        if mine is not None:
            mine.parent.mkdir(parents=True, exist_ok=True)
            with mine.open("a") as fh:
                fh.write(json.dumps({"key": key, "rows": rows}) + "\n")
        if progress is not None:
            progress(1)
    if world > 1:
        gathered: list[Any] = [None] * world
        torch.distributed.all_gather_object(gathered, local)
        for part in gathered:
            done.update(part)
    done.update(local)
    out: list[Row] = []
    for key in keys:
        out.extend(done.get(key, []))
    return out
