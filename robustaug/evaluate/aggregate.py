"""Aggregates over sweep rows: corruption error, mCE, relative robustness, AUC, failure points.

Definitions follow Hendrycks & Dietterich, "Benchmarking neural network robustness to common
corruptions and perturbations", ICLR 2019, with error ``E = 1 - accuracy``:

$$ CE_c^f = \\frac{\\sum_{s=1}^{5} E_{s,c}^f}{\\sum_{s=1}^{5} E_{s,c}^{base}},\\quad
   mCE^f = \\frac{1}{|C|}\\sum_c CE_c^f,\\quad
   rCE_c^f = \\frac{\\sum_s (E_{s,c}^f - E_{clean}^f)}{\\sum_s (E_{s,c}^{base} - E_{clean}^{base})} $$
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "area_under_severity_curve",
    "corruption_errors",
    "curve",
    "failure_point",
    "relative_robustness",
    "summarize",
    "worst_artifact",
]

Row = dict[str, Any]


def _nanmean(v: Sequence[float]) -> float:
    a = np.asarray(v, dtype=float)
    a = a[~np.isnan(a)]
    return float(a.mean()) if len(a) else float("nan")


def curve(rows: Sequence[Row], model: str, artifact: str, metric: str = "accuracy") -> dict[int, float]:
    """Severity -> mean metric for one model and artifact."""
    return {
        int(r["severity"]): float(r["mean"])
        for r in rows
        if r.get("kind") == "severity" and r["model"] == model and r["artifact"] == artifact
        and r["metric"] == metric
    }


def _artifacts(rows: Sequence[Row], model: str) -> list[str]:
    seen: list[str] = []
    for r in rows:
        if r.get("kind") == "severity" and r["model"] == model and r["artifact"] not in seen:
            seen.append(r["artifact"])
    return seen


def area_under_severity_curve(c: dict[int, float]) -> float:
    """Trapezoidal area under the metric-versus-severity curve over 0..5, normalised to [0, 1]."""
    s = sorted(c)
    if len(s) < 2:
        return float("nan")
    xs, ys = np.array(s, dtype=float), np.array([c[k] for k in s], dtype=float)
    return float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(xs)) / (xs[-1] - xs[0]))


def failure_point(c: dict[int, float], threshold: float) -> int | None:
    """The lowest severity at which the metric falls below ``threshold`` (None if it never does)."""
    for s in sorted(c):
        if c[s] < threshold:
            return s
    return None


def corruption_errors(
    rows: Sequence[Row], model: str, baseline: str, metric: str = "accuracy"
) -> dict[str, dict[str, float]]:
    """Per-artifact CE and relative CE of ``model`` against ``baseline``, plus ``mCE``/``rel_mCE``."""
    out: dict[str, dict[str, float]] = {}
    ces, rces = [], []
    for a in _artifacts(rows, model):
        cf, cb = curve(rows, model, a, metric), curve(rows, baseline, a, metric)
        levels = [s for s in sorted(cf) if s > 0 and s in cb]
        if not levels or 0 not in cf or 0 not in cb:
            continue
        ef = np.array([1 - cf[s] for s in levels])
        eb = np.array([1 - cb[s] for s in levels])
        ce = float(ef.sum() / eb.sum()) if eb.sum() > 0 else float("nan")
        db = float((eb - (1 - cb[0])).sum())
        rce = float((ef - (1 - cf[0])).sum() / db) if abs(db) > 1e-12 else float("nan")
        out[a] = {"CE": ce, "relative_CE": rce}
        ces.append(ce)
        rces.append(rce)
    out["mean"] = {
        "mCE": _nanmean(ces),
        "relative_mCE": _nanmean(rces),
    }
    return out


def relative_robustness(rows: Sequence[Row], model: str, metric: str = "accuracy") -> float:
    """Mean corrupted metric (severities 1..5, all artifacts) divided by the clean metric."""
    vals, clean = [], None
    for a in _artifacts(rows, model):
        c = curve(rows, model, a, metric)
        clean = c.get(0, clean)
        vals += [c[s] for s in c if s > 0]
    if not vals or not clean:
        return float("nan")
    return float(np.mean(vals) / clean)


def worst_artifact(rows: Sequence[Row], model: str, metric: str = "accuracy") -> tuple[str, float] | None:
    """The artifact with the lowest area under its severity curve, and that area."""
    best: tuple[str, float] | None = None
    for a in _artifacts(rows, model):
        auc = area_under_severity_curve(curve(rows, model, a, metric))
        if not math.isnan(auc) and (best is None or auc < best[1]):
            best = (a, auc)
    return best


def summarize(
    rows: Sequence[Row],
    models: Sequence[str],
    baseline: str,
    *,
    metric: str = "accuracy",
    threshold: float | None = None,
) -> dict[str, Any]:
    """All aggregates for each model: clean and mean-corrupted metric, mCE, AUCs, failure points."""
    out: dict[str, Any] = {}
    for m in models:
        arts = _artifacts(rows, m)
        if not arts:
            continue
        curves = {a: curve(rows, m, a, metric) for a in arts}
        clean = next((c[0] for c in curves.values() if 0 in c), float("nan"))
        thr = threshold if threshold is not None else (clean - 0.1 if not math.isnan(clean) else 0.5)
        corrupted = [v for c in curves.values() for s, v in c.items() if s > 0]
        ce = corruption_errors(rows, m, baseline, metric)
        wa = worst_artifact(rows, m, metric)
        out[m] = {
            "clean": clean,
            "mean_corrupted": float(np.mean(corrupted)) if corrupted else float("nan"),
            "relative_robustness": relative_robustness(rows, m, metric),
            "mCE": ce["mean"]["mCE"],
            "relative_mCE": ce["mean"]["relative_mCE"],
            "auc": {a: area_under_severity_curve(c) for a, c in curves.items()},
            "failure_threshold": thr,
            "failure_point": {a: failure_point(c, thr) for a, c in curves.items()},
            "worst_artifact": wa[0] if wa else None,
            "corruption_errors": {a: v for a, v in ce.items() if a != "mean"},
        }
    return out
