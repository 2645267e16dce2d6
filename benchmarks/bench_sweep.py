"""Throughput of the robustness sweep: samples x artifacts per second.

Compares, on the same model, test set and artifacts, in one process with interleaved repeats:

* ``robustaug severity_sweep``: artifacts applied batched on the model's device, metrics from the
  gathered probabilities (the library path);
* ``per-sample loop``: the same artifacts applied one sample at a time before batching for the
  model (how a Dataset-based pipeline with TorchIO/MONAI-style per-sample transforms evaluates).

Run: ``python benchmarks/bench_sweep.py [--quick]``; writes ``benchmarks/sweep.md`` and a JSON file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from harness import (
    fmt_seconds,
    markdown_table,
    metadata,
    set_threads,
    time_interleaved,
    write_json,
    write_markdown_section,
)

import robustaug as ra
from robustaug.data.datasets import phantom_slices
from robustaug.evaluate import severity_sweep
from robustaug.evaluate.study import SmallCNN

ARTIFACTS = ["GaussianNoise", "GaussianBlur", "BiasField", "RicianNoise", "Motion", "Gibbs"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    threads = set_threads(args.threads)
    n = 64 if args.quick else 256
    arts = [a for a in ARTIFACTS if a in ra.list_artifacts()]
    data = phantom_slices(n, size=64, seed=0)
    x, y = data["image"], data["label"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SmallCNN(1, 2).eval()
    severities = [0, 3]

    def library() -> None:
        severity_sweep(model, (x, y), arts, severities, ["accuracy"], draws=1, batch_size=64)

    def per_sample() -> None:
        with torch.no_grad():
            for a in arts:
                t = ra.create(a, severity=3, seed=0)
                xs = torch.stack([t(x[i]) for i in range(n)])
                for i in range(0, n, 64):
                    model(xs[i : i + 64]).softmax(1)

    def apply_only_batched() -> None:
        for a in arts:
            ra.create(a, severity=3, seed=0)(x)

    def apply_only_loop() -> None:
        for a in arts:
            t = ra.create(a, severity=3, seed=0)
            for i in range(n):
                t(x[i])

    reps = 2 if args.quick else 5
    cells = n * len(arts)
    res = time_interleaved(
        {"severity_sweep (batched, with metrics + CIs)": library, "per-sample loop (no metrics)": per_sample,
         "artifacts only, batched": apply_only_batched, "artifacts only, per sample": apply_only_loop},
        repeats=reps,
        warmup=1,
        samples_per_call=cells,
    )
    rows = []
    for name, t in res.items():
        rows.append([name, fmt_seconds(t.median_s), f"{cells / t.median_s:.0f}"])
    meta = metadata(threads, extra_libs=())
    body = (
        f"Measured {meta['date']} on {meta['machine']['cpu']} ({meta['machine']['cpu_count']} logical CPUs, "
        f"shared), torch {meta['torch']}, **{threads} thread(s)**, median of {reps} interleaved repeats. "
        f"{n} test images 64x64, artifacts {', '.join(arts)} at severity 3 (the sweep also evaluates the "
        f"clean cell), SmallCNN on CPU.\n\n"
        + markdown_table(["path", "time per call", "samples x artifacts per second"], rows)
    )
    write_json("sweep", {"meta": meta, "timings": {k: v.to_dict() for k, v in res.items()}})
    write_markdown_section(Path(__file__).with_name("sweep.md"), body)
    print(body)


if __name__ == "__main__":
    main()
