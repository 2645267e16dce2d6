"""Evaluate a trained classifier under artifacts x severities with `severity_sweep`.

Trains a small CNN on the built-in phantom slices (lesion present vs absent), then measures accuracy
and AUROC under three artifacts at severities 0..5 and prints the table and the findings.

Run: python examples/severity_sweep.py [--quick]
"""

from __future__ import annotations

import argparse

from robustaug.data.datasets import phantom_slices
from robustaug.evaluate import RobustnessReport, severity_sweep
from robustaug.evaluate.study import SmallCNN, train_classifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smallest settings (for CI)")
    args = ap.parse_args()
    n_train, n_test, size, epochs = (300, 100, 48, 4) if args.quick else (800, 200, 64, 6)

    train = phantom_slices(n_train, size=size, seed=1)
    test = phantom_slices(n_test, size=size, seed=2)
    model = train_classifier(lambda: SmallCNN(1, 2), train["image"], train["label"], epochs=epochs,
                             batch_size=16, seed=0)

    rows = severity_sweep(
        model,
        (test["image"], test["label"]),
        artifacts=["GaussianBlur", "GaussianNoise", "Downsample"],
        severities=range(6),
        metrics=["accuracy", "auroc"],
        draws=1 if args.quick else 3,
        seed=0,
    )
    report = RobustnessReport(rows, baseline="model")
    print(report.to_markdown())


if __name__ == "__main__":
    main()
