"""Robustness sweeps: artifacts x severities, attacks x budgets, label-noise rates x losses.

Every sweep returns a list of *rows* (plain dicts, JSON-able): one per cell and metric, with the mean
over independent draws, a 95 % bootstrap confidence interval over test samples, and the number of
samples and draws. Artifacts are applied batched on the model's device; the data never goes through
numpy in the loop.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core.registry import create
from ..core.rng import mix_seeds, new_generator
from ..core.transform import Transform
from .aggregate import _nanmean
from .metrics import METRICS, bootstrap_ci, dice_per_class
from .runner import run_cells

__all__ = [
    "adversarial_sweep",
    "as_tensors",
    "label_noise_sweep",
    "physical_threat",
    "predict",
    "sample_scores",
    "severity_sweep",
    "worst_case_vs_average",
]

Row = dict[str, Any]
ArtifactSpec = str | Callable[[int, int], Transform]


def as_tensors(data: Any) -> tuple[Tensor, Tensor]:
    """Materialise evaluation data as ``(x, y)`` tensors.

    Args:
        data: A pair ``(x, y)`` of tensors, a map-style ``Dataset`` or a ``DataLoader`` yielding
            ``(x, y)`` pairs or dicts with ``"image"`` and ``"label"`` keys.

    Returns:
        ``(x, y)`` stacked along the first axis.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(d, Tensor) for d in data):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"`data` images and labels differ in length: {len(x)} vs {len(y)}.")
        return x, y
    if isinstance(data, torch.utils.data.DataLoader):
        items: Iterable[Any] = data
        batched = True
    elif isinstance(data, torch.utils.data.Dataset):
        items = (data[i] for i in range(len(data)))  # type: ignore[arg-type]
        batched = False
    else:
        raise TypeError(
            "`data` must be (x, y) tensors, a Dataset or a DataLoader yielding (x, y) or "
            f"{{'image', 'label'}} dicts; got {type(data).__name__}."
        )
    xs, ys = [], []
    for it in items:
        if isinstance(it, Mapping):
            x, y = it["image"], it["label"]
        else:
            x, y = it[0], it[1]
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        xs.append(x if batched else x[None])
        ys.append(y if batched else y.reshape(1, *y.shape))
    if not xs:
        raise ValueError("`data` is empty.")
    return torch.cat(xs), torch.cat(ys)


def _device_of(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.no_grad()
def predict(
    model: nn.Module,
    x: Tensor,
    *,
    transform: Transform | None = None,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Softmax probabilities of ``model`` on ``x`` (optionally corrupted by ``transform`` on device).

    The model's training flag is restored afterwards. With ``generator`` the transform's draws come
    from it alone, so results do not depend on any global or process state.

    Returns:
        ``(N, C, ...)`` float32 probabilities on the CPU.
    """
    dev = _device_of(model, device)
    was_training = model.training
    model.eval()
    out = []
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(dev, non_blocking=True)
            if transform is not None:
                xb = transform(xb, generator=generator)
            out.append(torch.softmax(model(xb).float(), dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def sample_scores(logits: Tensor, y: Tensor, task: str = "classification") -> Tensor:
    """Per-sample score: 1/0 correctness (classification) or foreground Dice (segmentation).

    Segmentation Dice is the mean over the foreground classes present in the prediction or the
    target; a sample where both are empty scores 1 (nothing to find, nothing found).

    Returns:
        ``(B,)`` float64 on the CPU.
    """
    pred = logits.argmax(1).cpu()
    y = y.cpu()
    if task == "classification":
        return (pred == y).double()
    c = int(logits.shape[1])
    out = torch.ones(len(y), dtype=torch.float64)
    for i in range(len(y)):
        d = dice_per_class(pred[i : i + 1], y[i : i + 1], c)[1:]
        d = d[~torch.isnan(d)]
        if len(d):
            out[i] = d.mean()
    return out


def _metric_name(task: str) -> str:
    return "accuracy" if task == "classification" else "dice"


def _artifact(spec: ArtifactSpec, severity: int, seed: int) -> Transform:
    if isinstance(spec, str):
        return create(spec, severity=severity, seed=seed)
    return spec(severity, seed)


def _name(spec: ArtifactSpec) -> str:
    return spec if isinstance(spec, str) else getattr(spec, "__name__", type(spec).__name__)


def _score_rows(
    probs_draws: list[Tensor],
    y: Tensor,
    task: str,
    metrics: Sequence[str],
    num_classes: int | None,
    base: Row,
    seed: int,
) -> list[Row]:
    """Mean over draws and bootstrap CI over samples for each metric."""
    rows = []
    n = len(y)
    if task == "classification":
        for m in metrics:
            fn = METRICS[m]
            vals = [fn(p, y) for p in probs_draws]

            def stat(idx: np.ndarray, fn=fn) -> float:
                it = torch.from_numpy(idx)
                return _nanmean([fn(p[it], y[it]) for p in probs_draws])

            lo, hi = bootstrap_ci(stat, n, seed=seed)
            rows.append({**base, "metric": m, "mean": _nanmean(vals), "ci_low": lo,
                         "ci_high": hi, "n": n, "draws": len(probs_draws)})
        return rows
    # segmentation: per-sample Dice per class, averaged over draws
    c = num_classes or int(probs_draws[0].shape[1])
    per = torch.stack([
        torch.stack([dice_per_class(p[i : i + 1].argmax(1), y[i : i + 1], c) for i in range(n)])
        for p in probs_draws
    ])  # (D, N, C)
    per = torch.nan_to_num(per, nan=1.0)  # a class absent from prediction and target: perfect
    per_sample = per.mean(dim=0)  # (N, C)
    for m in metrics:
        if m == "dice":
            score = per_sample[:, 1:].mean(dim=1) if c > 1 else per_sample[:, 0]
        elif m.startswith("dice_c"):
            score = per_sample[:, int(m.removeprefix("dice_c"))]
        else:
            raise ValueError(f"Unknown segmentation metric {m!r}; use 'dice' or 'dice_c<k>'.")
        s = score.numpy()
        lo, hi = bootstrap_ci(lambda idx, s=s: _nanmean(s[idx]), n, seed=seed)
        rows.append({**base, "metric": m, "mean": _nanmean(s), "ci_low": lo, "ci_high": hi,
                     "n": n, "draws": len(probs_draws)})
    return rows


def severity_sweep(
    model: nn.Module,
    data: Any,
    artifacts: Sequence[ArtifactSpec],
    severities: Iterable[int] = range(0, 6),
    metrics: Sequence[str] | None = None,
    *,
    draws: int = 3,
    seed: int = 0,
    task: str = "classification",
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 128,
    progress: bool = False,
    cache: str | os.PathLike | None = None,
    model_name: str = "model",
) -> list[Row]:
    """Evaluate ``model`` under every artifact at every severity, with several draws per sample.

    Args:
        model: Maps ``(B, C, *spatial)`` to logits ``(B, K)`` or ``(B, K, *spatial)``.
        data: Evaluation data (see :func:`as_tensors`).
        artifacts: Registered artifact names, or factories ``f(severity, seed) -> Transform``.
        severities: Levels to evaluate (0 = clean, computed once and shared).
        metrics: Classification: ``accuracy``, ``balanced_accuracy``, ``auroc``, ``ece``;
            segmentation: ``dice`` and ``dice_c<k>``. Defaults to all of the task's main metrics.
        draws: Independent artifact draws per sample (each a different seed).
        seed: Base seed; the draw seeds are derived from it, the artifact name and the severity.
        task: ``"classification"`` or ``"segmentation"``.
        num_classes: Number of classes (inferred from the model output if omitted).
        device: Device for the model and the artifacts (the model's device by default).
        batch_size: Evaluation batch size.
        progress: Show a tqdm progress bar.
        cache: JSON-lines results cache for resuming an interrupted sweep.
        model_name: Stored in each row (to compare models in one report).

    Returns:
        Rows with keys ``kind="severity"``, ``model``, ``artifact``, ``severity``, ``metric``,
        ``mean``, ``ci_low``, ``ci_high``, ``n``, ``draws``.
    """
    if task not in ("classification", "segmentation"):
        raise ValueError(f"`task` must be 'classification' or 'segmentation', got {task!r}.")
    metrics = list(metrics or (["accuracy", "balanced_accuracy", "auroc", "ece"]
                               if task == "classification" else ["dice"]))
    x, y = as_tensors(data)
    sev = [int(s) for s in severities]
    names = [_name(a) for a in artifacts]
    specs = dict(zip(names, artifacts))
    cells: list[tuple[str, int]] = [("clean", 0)] if 0 in sev else []
    cells += [(n, s) for n in names for s in sev if s > 0]
    bar = _bar(progress, len(cells), f"severity sweep ({model_name})")

    def fn(cell: Sequence[Any]) -> list[Row]:
        name, s = str(cell[0]), int(cell[1])
        if name == "clean":
            probs = [predict(model, x, batch_size=batch_size, device=device)]
        else:
            probs = []
            for d in range(draws):
                sd = mix_seeds(seed, zlib.crc32(name.encode()), s, d)
                t = _artifact(specs[name], s, sd)
                probs.append(predict(model, x, transform=t, batch_size=batch_size, device=device,
                                     generator=new_generator(sd)))
        base = {"kind": "severity", "model": model_name, "artifact": name, "severity": s}
        return _score_rows(probs, y, task, metrics, num_classes, base, seed)

    rows = run_cells(f"severity/{model_name}", cells, fn, cache=cache, progress=_upd(bar))
    _close(bar)
    # expand the shared clean cell to severity 0 of every artifact
    out: list[Row] = []
    clean = [r for r in rows if r["artifact"] == "clean"]
    for r in rows:
        if r["artifact"] != "clean":
            out.append(r)
    for n in names:
        out.extend({**r, "artifact": n} for r in clean)
    out.sort(key=lambda r: (names.index(r["artifact"]), r["severity"], metrics.index(r["metric"])))
    return out


def adversarial_sweep(
    model: nn.Module,
    data: Any,
    attacks: Sequence[str] = ("pgd",),
    budgets: Sequence[float] = (0.0, 0.01, 0.02, 0.05),
    *,
    norm: str = "Linf",
    steps: int = 10,
    data_range: tuple[float, float] | None = None,
    seed: int = 0,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    progress: bool = False,
    cache: str | os.PathLike | None = None,
    model_name: str = "model",
    task: str = "classification",
) -> list[Row]:
    """Accuracy (classification) or Dice (segmentation) under each attack at each budget.

    Args:
        model: Classifier.
        data: Evaluation data (see :func:`as_tensors`).
        attacks: Attack names understood by :func:`robustaug.adversarial.perturb` (``"pgd"``,
            ``"fgsm"``, ``"apgd_ce"``, ``"square"``...).
        budgets: Perturbation budgets ``eps`` in the units of ``data_range``; 0 is clean.
        norm: ``"Linf"``, ``"L2"`` or ``"L1"``.
        steps: Iterations of iterative attacks.
        data_range: Valid input range; the data's own min/max by default.
        seed: Attack seed (global RNG untouched).
        batch_size: Attack batch size.
        device: Device (the model's by default).
        progress: Show a progress bar.
        cache: Results cache for resume.
        model_name: Stored in each row.
        task: ``"classification"`` (per-sample correctness) or ``"segmentation"`` (per-sample
            foreground Dice; dense attack losses average over pixels).

    Returns:
        Rows with ``kind="adversarial"``, ``attack``, ``eps``, ``metric``, mean and CI.
    """
    from .. import adversarial as adv

    x, y = as_tensors(data)
    if data_range is None:
        data_range = (float(x.min()), float(x.max()))
    dev = _device_of(model, device)
    threat_cls = {"linf": adv.Linf, "l2": adv.L2, "l1": adv.L1}[norm.lower()]
    cells = [(a, float(e)) for a in attacks for e in budgets]
    bar = _bar(progress, len(cells), f"adversarial sweep ({model_name})")

    def fn(cell: Sequence[Any]) -> list[Row]:
        a, eps = str(cell[0]), float(cell[1])
        correct = []
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size].to(dev), y[i : i + batch_size].to(dev)
            if eps > 0:
                xb = adv.perturb(model, xb, yb, threat=threat_cls(eps=eps, steps=steps), attack=a,
                                 data_range=data_range, seed=mix_seeds(seed, i))
            with torch.no_grad():
                was = model.training
                model.eval()
                correct.append(sample_scores(model(xb), yb, task))
                model.train(was)
        c = torch.cat(correct).double().numpy()
        lo, hi = bootstrap_ci(lambda idx: float(c[idx].mean()), len(c), seed=seed)
        return [{"kind": "adversarial", "model": model_name, "attack": a, "norm": norm, "eps": eps,
                 "metric": _metric_name(task), "mean": float(c.mean()), "ci_low": lo, "ci_high": hi,
                 "n": len(c), "draws": 1}]

    rows = run_cells(f"adversarial/{model_name}", cells, fn, cache=cache, progress=_upd(bar))
    _close(bar)
    return rows


def worst_case_vs_average(
    model: nn.Module,
    data: Any,
    artifact: str,
    severity: int,
    *,
    draws: int = 3,
    steps: int = 10,
    seed: int = 0,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    data_range: tuple[float, float] | None = None,
    model_name: str = "model",
    task: str = "classification",
) -> list[Row]:
    """Random artifact at severity k versus the worst case over the same parameter set.

    Three accuracies are reported for the same samples:

    * ``average``: the random artifact at severity ``k`` (mean over ``draws``);
    * ``worst_case``: the physical attack that maximises the loss over exactly the parameter set
      the random artifact samples from at severity ``k`` (``robustaug.adversarial.physical``);
    * ``linf_matched``: an L-inf PGD attack whose budget equals the RMS image change the random
      artifact causes (the average per-pixel distance), i.e. a malicious change of the same size.

    With ``task="segmentation"`` the score is per-sample foreground Dice instead of accuracy.

    Returns:
        Rows with ``kind="worst_case"``, ``artifact``, ``severity``, ``case`` and the score.
    """
    from .. import adversarial as adv

    x, y = as_tensors(data)
    dev = _device_of(model, device)
    if data_range is None:
        data_range = (float(x.min()), float(x.max()))
    acc_avg, rms = [], []
    for d in range(draws):
        sd = mix_seeds(seed, zlib.crc32(artifact.encode()), severity, d)
        t, g = create(artifact, severity=severity, seed=sd), new_generator(sd)
        correct = []
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size].to(dev)
            xa = t(xb, generator=g)
            rms.append(((xa - xb).float().pow(2).flatten(1).mean(1)).sqrt().cpu())
            with torch.no_grad():
                was = model.training
                model.eval()
                correct.append(sample_scores(model(xa), y[i : i + batch_size], task))
                model.train(was)
        acc_avg.append(torch.cat(correct).double())
    c_avg = torch.stack(acc_avg).mean(0).numpy()
    eps = float(torch.cat(rms).mean())

    c_wc, c_linf = [], []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size].to(dev), y[i : i + batch_size].to(dev)
        xw = adv.perturb(model, xb, yb, threat=physical_threat(artifact, severity, steps=steps),
                         attack="pgd", data_range=None, seed=mix_seeds(seed, i))
        xl = adv.perturb(model, xb, yb, threat=adv.Linf(eps=max(eps, 1e-8), steps=steps), attack="pgd",
                         data_range=data_range, seed=mix_seeds(seed, i, 1))
        with torch.no_grad():
            was = model.training
            model.eval()
            c_wc.append(sample_scores(model(xw), yb, task))
            c_linf.append(sample_scores(model(xl), yb, task))
            model.train(was)
    rows = []
    for case, c in (("average", c_avg), ("worst_case", torch.cat(c_wc).numpy()),
                    ("linf_matched", torch.cat(c_linf).numpy())):
        lo, hi = bootstrap_ci(lambda idx, c=c: float(c[idx].mean()), len(c), seed=seed)
        rows.append({"kind": "worst_case", "model": model_name, "artifact": artifact,
                     "severity": severity, "case": case, "metric": _metric_name(task),
                     "mean": float(c.mean()), "ci_low": lo, "ci_high": hi, "n": len(c),
                     "eps_linf": eps, "draws": draws if case == "average" else 1})
    return rows


def physical_threat(artifact: str, severity: int, **overrides: Any) -> Any:
    """The physical threat whose feasible set is what ``artifact`` samples at ``severity``.

    Looks up the :class:`robustaug.adversarial.physical.PhysicalThreat` subclass whose ``artifact``
    is the given registered artifact name.

    Raises:
        ValueError: If no physical threat models that artifact.
    """
    from ..adversarial import physical as phys

    threats = {
        c.artifact: c for c in vars(phys).values()
        if isinstance(c, type) and hasattr(c, "from_severity") and getattr(c, "artifact", "")
    }
    found = [threats[artifact]] if artifact in threats else []
    if not found:
        have = sorted(threats)
        raise ValueError(f"No physical threat models artifact {artifact!r}; available: {have}.")
    return found[0].from_severity(severity, **overrides)


def label_noise_sweep(
    train_fn: Callable[..., nn.Module],
    data: Any,
    test_data: Any,
    noise_models: Mapping[str, Callable[..., Any]],
    rates: Sequence[float],
    losses: Sequence[str],
    seeds: Sequence[int] = (0,),
    *,
    detect_fn: Callable[..., Tensor] | None = None,
    progress: bool = False,
    cache: str | os.PathLike | None = None,
    task: str = "classification",
) -> list[Row]:
    """Clean test accuracy (or Dice) for every noise model x rate x loss x seed, plus detection.

    Args:
        train_fn: ``train_fn(x, y, loss=name, seed=s) -> model`` trains a fresh model on the noisy
            labels with the named loss (``"ce"`` or any :func:`robustaug.losses.robust_loss` name).
        data: Training data ``(x, y)`` with clean labels.
        test_data: Clean test data.
        noise_models: Name -> injector ``f(y, rate, seed) -> noisy labels`` (e.g. a
            :mod:`robustaug.labelnoise` function wrapped to that signature).
        rates: Noise rates.
        losses: Loss names.
        seeds: Seeds (each changes the noise draw and the training).
        detect_fn: Optional ``detect_fn(x, y_noisy, seed) -> bool mask of flagged samples``; if
            given, detection precision and recall against the true flips are reported.
        progress: Show a progress bar.
        cache: Results cache for resume.

    Returns:
        Rows with ``kind="label_noise"`` (accuracy per loss) and ``kind="detection"``.
    """
    x, y = as_tensors(data)
    xt, yt = as_tensors(test_data)
    cells = [(nm, float(r), s) for nm in noise_models for r in rates for s in seeds]
    bar = _bar(progress, len(cells), "label-noise sweep")

    def fn(cell: Sequence[Any]) -> list[Row]:
        nm, r, s = str(cell[0]), float(cell[1]), int(cell[2])
        y_noisy = noise_models[nm](y, r, s) if r > 0 else y.clone()
        y_noisy = torch.as_tensor(y_noisy)
        flipped = (y_noisy != y) if task == "classification" else (y_noisy != y).flatten(1).any(1)
        rows = []
        for loss in losses:
            model = train_fn(x, y_noisy, loss=loss, seed=s)
            score = float(sample_scores(predict(model, xt), yt, task).mean())
            rows.append({"kind": "label_noise", "noise": nm, "rate": r, "seed": s, "loss": loss,
                         "metric": _metric_name(task), "mean": score, "n": len(yt)})
        if detect_fn is not None and r > 0:
            flagged = torch.as_tensor(detect_fn(x, y_noisy, s)).bool()
            tp = int((flagged & flipped).sum())
            prec = tp / max(int(flagged.sum()), 1)
            rec = tp / max(int(flipped.sum()), 1)
            rows.append({"kind": "detection", "noise": nm, "rate": r, "seed": s,
                         "precision": prec, "recall": rec, "flagged": int(flagged.sum()),
                         "flipped": int(flipped.sum())})
        return rows

    rows = run_cells("label_noise", cells, fn, cache=cache, progress=_upd(bar))
    _close(bar)
    return rows


def _bar(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)


def _upd(bar: Any) -> Any:
    return None if bar is None else bar.update


def _close(bar: Any) -> None:
    if bar is not None:
        bar.close()
