"""CT projector benchmark: robustaug sparse-matrix projector vs scikit-image, same run, 1 thread.

Pipeline per slice: 256x256 Shepp-Logan, 180 views: forward projection, transmission noise
(Poisson I0 = 1e4 + Gaussian electronic noise sigma_e^2 = 10, log), ramp FBP.
Also reports the per-slice cost for batches of 4 and 16, the one-off matrix build, the memory
of the cached matrices, the machine load, and the accuracy against scikit-image.

Run: ``python benchmarks/bench_ct.py [--repeats 7] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import iradon, radon, resize

from robustaug.functional import radon as R

I0, SIGMA_E2, MU_SCALE = 1e4, 10.0, 0.02  # photons, electronic variance, line-integral scale


def skimage_pipeline(img: np.ndarray, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sino = radon(img, theta, circle=True) * MU_SCALE
    counts = rng.poisson(I0 * np.exp(-sino)) + rng.normal(0, np.sqrt(SIGMA_E2), sino.shape)
    p = np.log(I0 / np.clip(counts, 1, None)) / MU_SCALE
    return iradon(p, theta, circle=True, filter_name="ramp")


def torch_pipeline(x: torch.Tensor, g: R.ParallelBeam, gen: torch.Generator) -> torch.Tensor:
    sino = R.forward_project(x, g) * MU_SCALE
    counts = torch.poisson(I0 * torch.exp(-sino), generator=gen)
    counts = counts + np.sqrt(SIGMA_E2) * torch.randn(sino.shape, generator=gen)
    p = torch.log(I0 / counts.clamp_min(1)) / MU_SCALE
    return R.fbp(p, g, "ramp")


def median_time(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--views", type=int, default=180)
    ap.add_argument("--json", type=str, default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    n = a.size
    img = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True)
    theta = np.arange(a.views) * (180.0 / a.views)
    g = R.ParallelBeam(n, n_views=a.views)
    x1 = torch.tensor(img, dtype=torch.float32)[None, None]
    x16 = x1.repeat(16, 1, 1, 1)
    x4 = x1.repeat(4, 1, 1, 1)
    load0 = os.getloadavg()[0]
    R.clear_cache()
    t0 = time.perf_counter()
    torch_pipeline(x1, g, torch.Generator().manual_seed(0))  # builds and caches the matrices
    build = time.perf_counter() - t0
    nnz = sum(int(m.nnz) for m in R._NP_CACHE.values())
    buffers = {}  # distinct memory blocks (torch shares index arrays with scipy on the CPU)
    for m in R._NP_CACHE.values():
        for arr in (m.data, m.indices, m.indptr):
            buffers[arr.__array_interface__["data"][0]] = arr.nbytes
    for t in R._T_CACHE.values():
        for arr in (t.values(), t.col_indices(), t.crow_indices()):
            buffers[arr.data_ptr()] = arr.nbytes
    mem = sum(buffers.values())
    rng = np.random.default_rng(0)
    t_sk = median_time(lambda: skimage_pipeline(img, theta, rng), a.repeats)
    gen = torch.Generator().manual_seed(0)
    t_one = median_time(lambda: torch_pipeline(x1, g, gen), a.repeats)
    t_b4 = median_time(lambda: torch_pipeline(x4, g, gen), a.repeats) / 4
    t_b16 = median_time(lambda: torch_pipeline(x16, g, gen), max(3, a.repeats // 2)) / 16
    t_fp = median_time(lambda: R.forward_project(x1, g), a.repeats)
    s1 = R.forward_project(x1, g)
    t_fbp = median_time(lambda: R.fbp(s1, g), a.repeats)
    t_sk_radon = median_time(lambda: radon(img, theta, circle=True), max(3, a.repeats // 2))
    load1 = os.getloadavg()[0]
    # accuracy (float64) against scikit-image inside the reconstruction circle
    sk_s = radon(img, theta, circle=True)
    ra_s = R.forward_project(torch.tensor(img)[None, None], g)[0, 0].numpy().T
    sk_r = iradon(sk_s, theta, circle=True, filter_name="ramp")
    ra_r = R.fbp(torch.tensor(sk_s.T)[None, None], g, "ramp")[0, 0].numpy()
    rr, cc = np.mgrid[:n, :n]
    m = (rr - n // 2) ** 2 + (cc - n // 2) ** 2 <= (n // 2) ** 2
    acc_s = float(np.sqrt(((ra_s - sk_s) ** 2).mean() / (sk_s**2).mean()))
    acc_r = float(np.sqrt(((ra_r - sk_r)[m] ** 2).mean() / (sk_r[m] ** 2).mean()))
    res = {
        "size": n,
        "views": a.views,
        "threads": 1,
        "skimage_ms": 1e3 * t_sk,
        "robustaug_ms": 1e3 * t_one,
        "speedup": t_sk / t_one,
        "robustaug_batch4_ms_per_slice": 1e3 * t_b4,
        "robustaug_batch16_ms_per_slice": 1e3 * t_b16,
        "skimage_radon_only_ms": 1e3 * t_sk_radon,
        "matrix_nnz": nnz,
        "matrix_cache_mb": mem / 2**20,
        "load_average_1min": [load0, load1],
        "cpu_count": os.cpu_count(),
        "forward_ms": 1e3 * t_fp,
        "fbp_ms": 1e3 * t_fbp,
        "matrix_build_s": build,
        "sinogram_rel_rmse": acc_s,
        "fbp_rel_rmse_in_circle": acc_r,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine()},
    }
    print(f"| pipeline ({n}x{n}, {a.views} views, 1 thread, median) | ms/slice |")
    print("|---|---|")
    print(f"| scikit-image radon + noise + iradon | {res['skimage_ms']:.1f} |")
    print(f"| robustaug forward + noise + FBP (B=1) | {res['robustaug_ms']:.1f} ({res['speedup']:.1f}x faster) |")
    print(f"| robustaug, batch of 4 | {res['robustaug_batch4_ms_per_slice']:.1f} per slice |")
    print(f"| robustaug, batch of 16 | {res['robustaug_batch16_ms_per_slice']:.1f} per slice |")
    print(f"| robustaug forward only / FBP only (B=1) | {res['forward_ms']:.1f} / {res['fbp_ms']:.1f} |")
    print(f"| scikit-image radon only | {res['skimage_radon_only_ms']:.1f} |")
    print(f"| one-off matrix build (cached per geometry) | {1e3 * build:.0f} |")
    print(f"\ncached matrices: {nnz / 1e6:.1f} M non-zeros, {res['matrix_cache_mb']:.0f} MB "
          f"(scipy float64 + torch float32); load average {load0:.1f} -> {load1:.1f} "
          f"on {os.cpu_count()} CPUs")
    print(f"\nsinogram rel. RMSE vs skimage: {acc_s:.2e}; FBP rel. RMSE in circle: {acc_r:.2e}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
