"""Speed of robustaug's ultrasound and histology artifacts against the nearest peer transforms.

Rows and contenders (same inputs, matched parameters, probability 1):

| row | robustaug | peers |
|---|---|---|
| Speckle | ``Speckle(nakagami_m=1, axial 0.3 mm, lateral 0.6 mm)`` | MedMNIST-C-style ``x + x*N(0, c)`` written inline (numpy per sample, as MedMNIST-C does; and torch batched) |
| JPEG | ``JPEGCompression(quality=50)`` | kornia ``jpeg_codec_differentiable`` called directly; PIL encode/decode (albumentations/MedMNIST-C style, uint8) |
| Defocus | ``Defocus(defocus_um=2)`` (disk r = 4.5 px) | kornia ``gaussian_blur2d`` (sigma = r/2); MedMNIST-C-style disk ``scipy.ndimage.convolve`` per channel |
| HEDJitter | ``HEDJitter(scale_sigma=0.05, shift_sigma=0.01)`` | skimage ``rgb2hed``/``hed2rgb`` jitter per sample (Tellez/hi-ml style) |

Inputs: one ultrasound envelope 1x256x256 and a batch of 32 (Speckle); one H&E tile 3x256x256 and
a batch of 32 (the others). Peers that take one sample per call are called 32 times for the batch.
Times are per sample (median over interleaved repeats), CPU, ``torch.set_num_threads(1)`` unless
``--threads`` says otherwise.

Usage::

    python benchmarks/bench_us_histo.py            # ~1-2 minutes on one core
    python benchmarks/bench_us_histo.py --quick    # smoke run, no Markdown update
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
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

from robustaug.artifacts.histology import Defocus, HEDJitter, JPEGCompression
from robustaug.artifacts.ultrasound import Speckle
from robustaug.data.histology import he_tile
from robustaug.data.ultrasound import ultrasound_phantom
from robustaug.functional.histology import defocus_radius_px, disk_kernel


def _medmnistc_speckle_np(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(x + x * rng.normal(size=x.shape, scale=c), 0, 1)


def _contenders(x: torch.Tensor, n: int, row: str) -> dict[str, Callable[[], Any]]:
    out: dict[str, Callable[[], Any]] = {}
    xs = list(x)  # per-sample views for one-at-a-time peers
    if row == "Speckle":
        t = Speckle(nakagami_m=1.0, axial_fwhm_mm=0.3, lateral_fwhm_mm=0.6, seed=0)
        out["robustaug"] = lambda: t(x)
        rng = np.random.default_rng(0)
        xn = [s.numpy() for s in xs]
        out["MedMNIST-C style (numpy, per sample)"] = lambda: [_medmnistc_speckle_np(s, 0.2, rng) for s in xn]
        g = torch.Generator().manual_seed(0)
        out["x + x*N(0,c) (torch, batched)"] = lambda: (x + x * 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    elif row == "JPEG":
        t = JPEGCompression(quality=50.0)
        out["robustaug"] = lambda: t(x)
        try:
            from kornia.enhance import jpeg_codec_differentiable

            q = torch.full((x.shape[0],), 50.0)
            out["kornia jpeg_codec_differentiable"] = lambda: jpeg_codec_differentiable(x, q)
        except ImportError:  # pragma: no cover
            pass
        try:
            from PIL import Image

            u8 = [(s.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for s in xs]

            def pil() -> list[np.ndarray]:
                res = []
                for a in u8:
                    buf = io.BytesIO()
                    Image.fromarray(a).save(buf, format="JPEG", quality=50)
                    res.append(np.asarray(Image.open(io.BytesIO(buf.getvalue()))))
                return res

            out["PIL encode/decode (uint8, per sample)"] = pil
        except ImportError:  # pragma: no cover
            pass
    elif row == "Defocus":
        t = Defocus(defocus_um=2.0)
        out["robustaug"] = lambda: t(x)
        r = float(defocus_radius_px(torch.tensor(2.0), 0.75, 0.5))
        try:
            from kornia.filters import gaussian_blur2d

            k = 2 * int(np.ceil(3 * r / 2)) + 1
            out["kornia gaussian_blur2d"] = lambda: gaussian_blur2d(x, (k, k), (r / 2, r / 2))
        except ImportError:  # pragma: no cover
            pass
        from scipy.ndimage import convolve

        ker = disk_kernel(torch.tensor([r], dtype=torch.float64), 2 * int(np.ceil(r + 0.5)) + 1)[0].numpy()
        xn = [s.numpy() for s in xs]
        out["MedMNIST-C style disk (scipy, per sample)"] = lambda: [
            np.stack([convolve(ch, ker, mode="nearest") for ch in s]) for s in xn
        ]
    elif row == "HEDJitter":
        t = HEDJitter(scale_sigma=0.05, shift_sigma=0.01, seed=0)
        out["robustaug"] = lambda: t(x)
        try:
            from skimage.color import hed2rgb, rgb2hed

            rng = np.random.default_rng(0)
            xn = [s.permute(1, 2, 0).numpy() for s in xs]

            def sk() -> list[np.ndarray]:
                res = []
                for a in xn:
                    hed = rgb2hed(a)
                    al = rng.uniform(0.95, 1.05, 3)
                    be = rng.uniform(-0.01, 0.01, 3)
                    res.append(np.clip(hed2rgb(hed * al + be), 0, 1))
                return res

            out["skimage rgb2hed/hed2rgb (per sample)"] = sk
        except ImportError:  # pragma: no cover
            pass
    del n
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="2 repeats, no Markdown update")
    ap.add_argument("--no-markdown", action="store_true")
    args = ap.parse_args(argv)
    threads = set_threads(args.threads)
    repeats = 2 if args.quick else args.repeats
    us1 = ultrasound_phantom((256, 256), seed=0)["echogenicity"][None]
    us32 = torch.stack([ultrasound_phantom((256, 256), seed=i)["echogenicity"] for i in range(32)])
    he1 = he_tile((256, 256), seed=0)["image"][None]
    he32 = torch.stack([he_tile((256, 256), seed=i)["image"] for i in range(32)])
    cases = {
        "Speckle": {"1x256x256": (us1, 1), "32x1x256x256": (us32, 32)},
        "JPEG": {"3x256x256": (he1, 1), "32x3x256x256": (he32, 32)},
        "Defocus": {"3x256x256": (he1, 1), "32x3x256x256": (he32, 32)},
        "HEDJitter": {"3x256x256": (he1, 1), "32x3x256x256": (he32, 32)},
    }
    rows, results = [], []
    for row, inputs in cases.items():
        for name, (x, n) in inputs.items():
            cont = _contenders(x, n, row)
            timings = time_interleaved(cont, repeats=repeats, warmup=1, samples_per_call=n)
            ours = timings["robustaug"].per_sample_s
            peers = [f"{k}: {fmt_seconds(v.per_sample_s)} ({v.per_sample_s / ours:.2g}x)"
                     for k, v in timings.items() if k != "robustaug"]
            rows.append([row, name, fmt_seconds(ours), "<br>".join(peers) or "—"])
            for lib, tm in timings.items():
                results.append({"row": row, "input": name, "contender": lib, **tm.to_dict()})
            print(" | ".join(rows[-1]).replace("<br>", "; "), flush=True)
    meta = metadata(threads, extra_libs=("kornia", "skimage", "PIL"))
    payload = {"benchmark": "us_histo", "parameters": {"repeats": repeats}, "metadata": meta, "results": results}
    path = write_json("us_histo", payload)
    print(f"wrote {path}")
    git = meta["git"]
    body = (
        f"Measured {meta['date']} on {meta['machine']['cpu']} ({meta['machine']['cpu_count']} logical "
        f"CPUs, shared with other jobs), torch {meta['torch']}, kornia {meta['libraries']['kornia']}, "
        f"scikit-image {meta['libraries']['skimage']}, **{threads} thread(s)**, median of {repeats} "
        f"interleaved repeats, commit `{(git['commit'] or 'unknown')[:10]}`"
        f"{' (dirty tree)' if git['dirty'] else ''}. Times are per sample; the ratio is peer time / "
        "robustaug time (> 1: robustaug is faster).\n\n"
        + markdown_table(["artifact", "input", "robustaug", "peers (ratio)"], rows)
        + f"\n\nRaw numbers: `benchmarks/results/{path.name}`."
    )
    if not (args.no_markdown or args.quick):
        write_markdown_section(BENCH_DIR / "us_histo.md", body)
        print(f"updated {BENCH_DIR / 'us_histo.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
