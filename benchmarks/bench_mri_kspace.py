"""Benchmark robustaug's k-space MRI artifacts against TorchIO and MONAI, side by side.

One command, one thread, median CPU time per sample (``time.process_time``), peers and robustaug
interleaved rep by rep together with one ``fftn+ifftn`` of the same tensor (so every ratio is
measured under the same load). Inputs are built from :func:`robustaug.data.phantom`:
a 1x160x192x160 volume and a 1x256x256 image; batch-of-32 rows report the cost per image.

    python benchmarks/bench_mri_kspace.py [--reps3d 5] [--reps2d 30] [--out benchmarks/mri_kspace.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

torch.set_num_threads(1)


def _timeit(fn, n_samples: int = 1) -> float:
    t0 = time.process_time()
    fn()
    return (time.process_time() - t0) * 1e3 / n_samples


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps3d", type=int, default=5)
    ap.add_argument("--reps2d", type=int, default=30)
    ap.add_argument("--out", default="benchmarks/mri_kspace.md")
    args = ap.parse_args()

    import monai
    import torchio as tio

    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    except Exception:  # pragma: no cover
        pass
    from robustaug.artifacts import mri as A
    from robustaug.data import phantom

    x3 = phantom((160, 192, 160), seed=0)["image"][None]  # (1, 1, 160, 192, 160)
    # the same volume with a noise floor (|N(0, 0.01)| background, as a magnitude scanner image):
    # no phase-encode line and no region is exactly zero, so nothing can be skipped or cropped
    g = torch.Generator().manual_seed(0)
    x3n = (x3 + 0.01 * torch.randn(x3.shape, generator=g)).abs()
    x2 = phantom((256, 256), seed=0)["image"][None]  # (1, 1, 256, 256)
    x32 = torch.cat([phantom((256, 256), seed=i)["image"][None] for i in range(32)])

    ours = {
        "Motion": A.Motion(
            degrees=10.0, translation_mm=10.0, num_events=2, moved_energy=(0.15, 0.35), seed=0
        ),
        # TorchIO's defaults: num_ghosts in 4..10 (period), intensity 0.5..1 (amplitude)
        "Ghosting": A.Ghosting(amplitude=(0.5, 1.0), period=(4, 10), seed=0),
        # the two code paths separately: N/n = 48 whole pixels, N/n = 38.4 (band-limited shift)
        "Ghosting n=4 (whole-pixel shift)": A.Ghosting(amplitude=(0.5, 1.0), period=4, seed=0),
        "Ghosting n=5 (fractional shift)": A.Ghosting(amplitude=(0.5, 1.0), period=5, seed=0),
        "Ghosting n=5, noisy background": A.Ghosting(amplitude=(0.5, 1.0), period=5, seed=0),
        "Motion, noisy background": A.Motion(
            degrees=10.0, translation_mm=10.0, num_events=2, moved_energy=(0.15, 0.35), seed=0
        ),
        "Spike": A.Spike(intensity=(1.0, 3.0), seed=0),
        "Gibbs": A.Gibbs(fraction=(0.4, 0.9), seed=0),
    }
    peers = {
        "Motion": (
            "TorchIO RandomMotion(10 deg, 10 mm, 2)",
            tio.RandomMotion(degrees=10, translation=10, num_transforms=2),
        ),
        "Ghosting": ("TorchIO RandomGhosting (default)", tio.RandomGhosting()),
        "Ghosting n=4 (whole-pixel shift)": ("TorchIO RandomGhosting (default)", tio.RandomGhosting()),
        "Ghosting n=5 (fractional shift)": ("TorchIO RandomGhosting (default)", tio.RandomGhosting()),
        "Ghosting n=5, noisy background": ("TorchIO RandomGhosting (default)", tio.RandomGhosting()),
        "Motion, noisy background": (
            "TorchIO RandomMotion(10 deg, 10 mm, 2)",
            tio.RandomMotion(degrees=10, translation=10, num_transforms=2),
        ),
        "Spike": ("TorchIO RandomSpike (default)", tio.RandomSpike()),
        "Gibbs": (
            "MONAI RandGibbsNoise(alpha 0.1-0.6)",
            monai.transforms.RandGibbsNoise(prob=1.0, alpha=(0.1, 0.6)),
        ),
    }

    def peer_call(name, t, x):
        if name == "Gibbs":
            return lambda: t(x[0])
        img = tio.ScalarImage(tensor=x[0] if x.ndim == 5 else x[0][..., None])
        return lambda: t(img)

    def fft_pair(x):
        dims = tuple(range(2, x.ndim))
        return lambda: torch.fft.ifftn(torch.fft.fftn(x, dim=dims), dim=dims)

    # Context for fractional ghost shifts: one real FFT pair along phase encode of the whole
    # image (the exact band-limited shift needs it on every line that is not identically zero).
    def floor_fn(name, x):
        if "n=5" in name:
            return lambda: torch.fft.irfft(torch.fft.rfft(x, dim=-2), n=x.shape[-2], dim=-2)
        return None

    rows = []
    for name, t in ours.items():
        pname, pt = peers[name]
        res = {}
        v3 = x3n if "noisy" in name else x3
        for label, x, reps in (("3d", v3, args.reps3d), ("2d", x2, args.reps2d)):
            if "noisy" in name and label == "2d":
                continue
            fns = {
                "ours": lambda t=t, x=x: t(x),
                "peer": peer_call(name, pt, x),
                "fft": fft_pair(x),
            }
            fl = floor_fn(name, x)
            if fl is not None:
                fns["floor"] = fl
            for f in fns.values():  # warm-up
                f()
            times = {k: [] for k in fns}
            for _ in range(reps):
                for k, f in fns.items():
                    times[k].append(_timeit(f))
            res[label] = {k: statistics.median(v) for k, v in times.items()}
        if "noisy" in name:
            rows.append((name, pname, res))
            print(name, json.dumps(res))
            continue
        # batch of 32 vs one image (per image)
        b1, b32 = [], []
        t(x2)
        t(x32)
        for _ in range(max(3, args.reps2d // 5)):
            b1.append(_timeit(lambda t=t: t(x2)))
            b32.append(_timeit(lambda t=t: t(x32), 32))
        res["b32"] = statistics.median(b32)
        res["b1"] = statistics.median(b1)
        rows.append((name, pname, res))
        print(name, json.dumps(res))

    try:
        load = os.getloadavg()
        load_s = f"load average at the end of the run {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min)"
    except OSError:  # pragma: no cover
        load_s = "load average unavailable"
    lines = [
        "# MRI k-space artifacts: speed vs TorchIO / MONAI",
        "",
        f"`python benchmarks/bench_mri_kspace.py` - torch {torch.__version__}, TorchIO {tio.__version__}, "
        f"MONAI {monai.__version__}, {platform.processor() or platform.machine()}, 1 thread, median CPU "
        f"time per sample (ms), peers/robustaug/FFT pair interleaved rep by rep; inputs from "
        f"`robustaug.data.phantom` (3D 1x160x192x160: {args.reps3d} reps, 2D 256x256: {args.reps2d} reps); "
        f"{os.cpu_count()} CPUs, {load_s}.",
        "",
        "| artifact | peer | 3D peer | 3D robustaug | 3D speed-up | 3D / fftn+ifftn | 2D peer | 2D robustaug "
        "| 2D speed-up | 2D / fftn+ifftn | B=32 per image / B=1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, pname, r in rows:
        a = r["3d"]
        if "2d" in r:
            b = r["2d"]
            tail = (f"{b['peer']:.2f} | {b['ours']:.2f} | **{b['peer'] / b['ours']:.1f}x** | "
                    f"{b['ours'] / b['fft']:.2f} | {r['b32']:.2f} / {r['b1']:.2f} ms |")
        else:
            tail = "- | - | - | - | - |"
        lines.append(
            f"| {name} | {pname} | {a['peer']:.1f} | {a['ours']:.1f} | **{a['peer'] / a['ours']:.1f}x** | "
            f"{a['ours'] / a['fft']:.2f} | " + tail
        )
    targets = {"Motion": 2.5, "Ghosting": 10.0, "Spike": 5.0, "Gibbs": 6.0}
    status = []
    for name, _, r in rows:
        tgt = targets[name.split(" ")[0].rstrip(",")]
        for label, shape in (("3d", "3D volume"), ("2d", "2D image")):
            if label not in r:
                continue
            m = r[label]
            ratio = m["peer"] / m["ours"]
            line = f"- {name}, {shape}: {ratio:.1f}x vs >= {tgt:g}x: " + ("met" if ratio >= tgt else "**not met**")
            if "floor" in m:
                line += (f" (one bare rfft+irfft along phase encode of the whole input: {m['floor']:.2f} ms, "
                         f"peer / that = {m['peer'] / m['floor']:.1f}x)")
            status.append(line)
        if "b32" in r:
            ok = r["b32"] <= r["b1"]
            status.append(f"- {name}, batch of 32 2D images: {r['b32']:.2f} ms per image vs {r['b1']:.2f} ms "
                          f"alone: " + ("met" if ok else "**not met**"))
    lines += [
        "",
        f"FFT pair (fftn+ifftn) floor: 3D {rows[0][2]['3d']['fft']:.1f} ms, 2D {rows[0][2]['2d']['fft']:.2f} ms.",
        "Targets (issue 3): Motion >= 2.5x, Ghosting >= 10x, Spike >= 5x, Gibbs >= 6x; a batch of 32 "
        "2D images costs no more per image than one alone.",
        "",
        "The noisy-background rows use the same volume plus |N(0, 0.01)| everywhere: Ghosting skips "
        "phase-encode lines that are exactly zero and Motion resamples only the support of the object, "
        "which a zero background (skull-stripped or zero-padded data) allows and a noise floor does not.",
        "",
        "## Status (computed from this run)",
        "",
        *status,
        "",
    ]
    with open(args.out, "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
