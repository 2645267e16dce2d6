"""Speed of robustaug's generic artifacts against TorchIO and MONAI, side by side.

Rows: GaussianNoise, GaussianBlur and Downsample; inputs: one 1x160x192x160 volume, one 1x256x256
image and a batch of 32 such images. Every contender gets the same data (TorchIO in its own
(C, W, H, D) layout), matched parameters and probability 1:

| robustaug | TorchIO 1.2 | MONAI |
|---|---|---|
| ``GaussianNoise(std=0.05)`` | ``RandomNoise(mean=0, std=(0.05, 0.05))`` | ``RandGaussianNoise(prob=1, mean=0, std=0.05, sample_std=False)`` |
| ``GaussianBlur(sigma=1.5)`` | ``RandomBlur(std=(1.5, 1.5))`` (mm, 1 mm voxels) | ``RandGaussianSmooth(sigma_*=(1.5, 1.5), prob=1)`` |
| ``Downsample(factor=2, axes=(slice axis,))`` | ``RandomAnisotropy(axes=(slice axis,), downsampling=(2, 2))`` | — (no matching transform) |

TorchIO and MONAI take one sample at a time, so "batch of 32" calls them 32 times; robustaug
takes the batch in one call. Times are per sample (median over interleaved repeats / samples per
call), on CPU with ``torch.set_num_threads(1)`` unless ``--threads`` says otherwise.

Usage::

    python benchmarks/bench_generic.py             # ~2-4 minutes on one core
    python benchmarks/bench_generic.py --quick     # fewer repeats
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    BENCH_DIR,
    fmt_seconds,
    markdown_table,
    metadata,
    set_threads,
    time_interleaved,
    write_json,
    write_markdown_section,
)

import robustaug as ra
from robustaug.data import phantom

STD, SIGMA, FACTOR = 0.05, 1.5, 2.0


def _inputs() -> dict[str, dict[str, Any]]:
    """The three inputs, in robustaug layout, with their sample count and spatial dims."""
    vol = phantom((160, 192, 160), seed=0, smooth=0.0)["image"]  # (1, D, H, W)
    img = phantom((256, 256), seed=0)["image"]  # (1, H, W)
    batch = torch.stack([phantom((256, 256), seed=i)["image"] for i in range(32)])  # (32, 1, H, W)
    return {
        "volume 1x160x192x160": {"x": vol, "n": 1, "dims": 3},
        "image 1x256x256": {"x": img, "n": 1, "dims": 2},
        "batch 32x1x256x256": {"x": batch, "n": 32, "dims": 2},
    }


def _tio_layout(x: torch.Tensor, dims: int) -> list[torch.Tensor]:
    """robustaug samples -> TorchIO tensors (C, W, H, D), one per sample."""
    samples = [x] if x.ndim == dims + 1 else list(x)
    if dims == 3:
        return [s.permute(0, 3, 2, 1).contiguous() for s in samples]
    return [s.permute(0, 2, 1).unsqueeze(-1).contiguous() for s in samples]


def _contenders(row: str, case: dict[str, Any]) -> dict[str, tuple[Callable[[], Any], str]]:
    import monai.transforms as mt
    import torchio as tio

    x, dims = case["x"], case["dims"]
    sd = 3 if dims == 3 else None
    slice_axis = 0  # robustaug: D for volumes, H for images
    tio_axis = 2 if dims == 3 else 1  # the same axis in TorchIO's (W, H, D)
    if row == "GaussianNoise":
        ours = ra.GaussianNoise(std=STD, spatial_dims=sd)
        tio_t = tio.RandomNoise(mean=0.0, std=(STD, STD))
        mon = mt.RandGaussianNoise(prob=1.0, mean=0.0, std=STD, sample_std=False)
        names = ("RandomNoise", "RandGaussianNoise")
    elif row == "GaussianBlur":
        ours = ra.GaussianBlur(sigma=SIGMA, spatial_dims=sd)
        tio_t = tio.RandomBlur(std=(SIGMA, SIGMA))
        sig = (SIGMA, SIGMA)
        mon = mt.RandGaussianSmooth(sigma_x=sig, sigma_y=sig, sigma_z=sig, prob=1.0)
        names = ("RandomBlur", "RandGaussianSmooth")
    elif row == "Downsample":
        ours = ra.Downsample(factor=FACTOR, axes=(slice_axis,), spatial_dims=sd)
        tio_t = tio.RandomAnisotropy(axes=(tio_axis,), downsampling=(FACTOR, FACTOR))
        mon = None
        names = ("RandomAnisotropy", "")
    else:
        raise ValueError(row)
    tio_in = _tio_layout(x, dims)
    monai_in = [x] if x.ndim == dims + 1 else list(x)  # MONAI: channel-first, one sample per call

    def run_ours() -> Any:
        return ours(x)

    def run_tio() -> Any:
        return [tio_t(s) for s in tio_in]

    out = {"robustaug": (run_ours, type(ours).__name__), "torchio": (run_tio, names[0])}
    if mon is not None:

        def run_monai() -> Any:
            return [mon(s) for s in monai_in]

        out["monai"] = (run_monai, names[1])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved timed repeats (default 7)")
    ap.add_argument(
        "--quick", action="store_true", help="3 repeats, and generic.md is left unchanged (smoke run)"
    )
    ap.add_argument("--no-markdown", action="store_true", help="do not rewrite benchmarks/generic.md")
    args = ap.parse_args(argv)
    threads = set_threads(args.threads)
    repeats = 3 if args.quick else args.repeats
    cases = _inputs()
    results: list[dict[str, Any]] = []
    table_rows = []
    for row in ("GaussianNoise", "GaussianBlur", "Downsample"):
        for case_name, case in cases.items():
            cont = _contenders(row, case)
            warm = 1 if case["dims"] == 3 else 2
            timings = time_interleaved(
                {k: v[0] for k, v in cont.items()},
                repeats=repeats,
                warmup=warm,
                samples_per_call=case["n"],
            )
            ours = timings["robustaug"].per_sample_s
            cells = [row, case_name, fmt_seconds(ours)]
            for lib in ("torchio", "monai"):
                if lib in timings:
                    t = timings[lib].per_sample_s
                    cells.append(f"{fmt_seconds(t)} ({t / ours:.2g}x)")
                else:
                    cells.append("—")
            table_rows.append(cells)
            for lib, tm in timings.items():
                results.append(
                    {"row": row, "input": case_name, "library": lib, "transform": cont[lib][1], **tm.to_dict()}
                )
            print(" | ".join(cells), flush=True)
    meta = metadata(threads)
    payload = {
        "benchmark": "generic",
        "parameters": {"std": STD, "sigma": SIGMA, "factor": FACTOR, "repeats": repeats, "probability": 1.0},
        "metadata": meta,
        "results": results,
    }
    path = write_json("generic", payload)
    print(f"wrote {path}")
    header = ["artifact", "input", "robustaug", "TorchIO (ratio)", "MONAI (ratio)"]
    table = markdown_table(header, table_rows)
    git = meta["git"]
    body = (
        f"Measured {meta['date']} on {meta['machine']['cpu']} ({meta['machine']['cpu_count']} "
        f"logical CPUs, shared with other jobs), torch {meta['torch']}, TorchIO "
        f"{meta['libraries']['torchio']}, MONAI {meta['libraries']['monai']}, "
        f"**{threads} thread(s)**, median of {repeats} interleaved repeats, commit "
        f"`{(git['commit'] or 'unknown')[:10]}`{' (dirty tree)' if git['dirty'] else ''}. "
        "Times are per sample; the ratio is peer time / robustaug time (> 1: robustaug is faster).\n\n"
        + table
        + f"\n\nRaw numbers: `benchmarks/results/{path.name}`."
    )
    if not (args.no_markdown or args.quick):
        write_markdown_section(BENCH_DIR / "generic.md", body)
        print(f"updated {BENCH_DIR / 'generic.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
