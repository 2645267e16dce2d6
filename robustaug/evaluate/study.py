"""``robustaug study``: the end-to-end robustness study, on built-in data or on a user's config.

The built-in study answers, on 2D phantom MRI slices with and without lesions:

1. how much a small CNN loses under realistic acquisition artifacts, severity by severity;
2. how the random artifact compares with the worst case over the same physical parameters, and with
   an L-inf attack of the same image distance;
3. what restores performance: artifact-augmentation training, adversarial training, and noise-robust
   losses under 40 % label noise (with label-issue detection).

It writes ``report.html``, ``report.md``, ``results.json`` and PNG plots to the output folder. Finished
grid cells and trained models are cached there, so an interrupted study resumes where it stopped.
Under ``torchrun`` the sweep grid is split across ranks (gloo or nccl) and gathered on rank 0.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..core.registry import create, get_artifact, list_artifacts
from ..core.rng import mix_seeds, new_generator, seeded_global_rng
from .report import RobustnessReport
from .runner import dist_info
from .sweeps import adversarial_sweep, label_noise_sweep, severity_sweep, worst_case_vs_average

__all__ = ["DEFAULT_CONFIG", "SmallCNN", "SmallUNet", "load_config", "main", "run_study", "train_classifier"]

# Artifacts the built-in study sweeps (those registered are used; the rest are skipped with a note).
_DEFAULT_ARTIFACTS = [
    "RicianNoise", "BiasField", "Motion", "Ghosting", "Spike", "Gibbs", "Undersampling",
    "GaussianBlur", "GaussianNoise", "Downsample", "Gamma", "Contrast",
]
# Artifact-augmentation training uses a subset, so the others measure generalisation to unseen ones.
_DEFAULT_AUGMENT = ["RicianNoise", "BiasField", "Motion", "GaussianBlur", "Downsample", "Gamma"]

DEFAULT_CONFIG: dict[str, Any] = {
    "task": "classification",
    "seed": 0,
    "device": "cpu",
    "data": {"type": "builtin", "n_train": 600, "n_test": 160, "size": 64},
    "model": {"type": "builtin", "width": 16},
    "train": {"epochs": 6, "batch_size": 16, "lr": 3e-3},
    "methods": ["baseline", "augment", "adversarial"],
    "artifacts": _DEFAULT_ARTIFACTS,
    "augment_artifacts": _DEFAULT_AUGMENT,
    "augment_p": 0.8,
    "severities": [0, 1, 2, 3, 4, 5],
    "draws": 2,
    "adversarial": {"attack": "pgd", "budgets": [0.0, 0.01, 0.02, 0.04], "steps": 10,
                    "train_eps": 0.02, "train_steps": 5, "n_eval": 100},
    "worst_case": [["BiasField", 3], ["Motion", 3], ["Gamma", 3]],
    "label_noise": {"noise": ["symmetric"], "rates": [0.0, 0.4], "losses": ["ce", "gce", "nce+rce"],
                    "seeds": [0], "detect": True, "epochs": 12, "n_train": 500},
}

_QUICK: dict[str, Any] = {
    "data": {"n_train": 300, "n_test": 120, "size": 48},
    "train": {"epochs": 4},
    "artifacts": ["RicianNoise", "BiasField", "Motion", "GaussianBlur", "GaussianNoise", "Downsample"],
    "augment_artifacts": ["RicianNoise", "BiasField", "GaussianBlur"],
    "severities": [0, 1, 3, 5],
    "draws": 1,
    "adversarial": {"budgets": [0.0, 0.02], "steps": 5, "train_steps": 5, "n_eval": 60},
    "worst_case": [["BiasField", 3]],
    "label_noise": {"rates": [0.4], "losses": ["ce", "gce"], "detect": True, "epochs": 6, "n_train": 200},
}

_KNOWN_KEYS = set(DEFAULT_CONFIG) | {"out", "quick"}


# ----------------------------------------------------------------------------- config
def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and v and isinstance(out.get(k), dict):  # {} or null disables a section
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


class ConfigError(ValueError):
    """A study configuration problem; the message names the key."""


def load_config(path: str | os.PathLike | None = None, *, quick: bool = False,
                overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML/JSON study config, merge it over the defaults and validate it.

    Validation runs before any training: unknown keys, missing files, unknown artifacts, losses or
    attacks, and malformed values raise :class:`ConfigError` naming the key.
    """
    user: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file not found: {p}")
        text = p.read_text()
        if p.suffix.lower() == ".json":
            user = json.loads(text)
        else:
            import yaml

            user = yaml.safe_load(text) or {}
        if not isinstance(user, dict):
            raise ConfigError(f"{p}: the config must be a mapping of keys to values.")
        base_dir = p.parent
    else:
        base_dir = Path.cwd()
    cfg = copy.deepcopy(DEFAULT_CONFIG)
    if user.get("data", {}).get("type", "builtin") != "builtin":
        cfg["data"] = {}
    if "model" in user:
        cfg["model"] = {}
    if quick or user.get("quick"):
        cfg = _merge(cfg, _QUICK)
    cfg = _merge(cfg, user)
    if overrides:
        cfg = _merge(cfg, overrides)
    if cfg["task"] == "segmentation" and cfg.get("label_noise"):
        given = {**user.get("label_noise", {}), **(overrides or {}).get("label_noise", {})}
        seg_defaults = {"noise": ["drop_components"], "rates": [0.0, 0.5], "losses": ["ce", "gce"],
                        "detect": False}
        for k, v in seg_defaults.items():
            if k not in given:
                cfg["label_noise"][k] = v
    strict = {k for k in ("artifacts", "augment_artifacts") if k in user or k in (overrides or {})}
    _validate(cfg, base_dir, strict)
    return cfg


def _validate(cfg: dict[str, Any], base_dir: Path, strict_artifacts: set[str] = frozenset()) -> None:
    for k in cfg:
        if k not in _KNOWN_KEYS:
            raise ConfigError(f"unknown config key {k!r}; known keys: {sorted(_KNOWN_KEYS)}.")
    if cfg["task"] not in ("classification", "segmentation"):
        raise ConfigError(f"`task` must be 'classification' or 'segmentation', got {cfg['task']!r}.")
    seg = cfg["task"] == "segmentation"
    d = cfg["data"]
    dtype = d.get("type", "builtin")
    if dtype == "builtin":
        for k in ("n_train", "n_test", "size"):
            if not isinstance(d.get(k), int) or d[k] <= 0:
                raise ConfigError(f"`data.{k}` must be a positive int, got {d.get(k)!r}.")
    elif dtype in ("folder", "npz"):
        if seg and dtype == "npz":
            raise ConfigError("`data.type: npz` (MedMNIST format) has no masks; for `task: segmentation` "
                              "use data.type folder (a 'mask' column in the CSV) or function.")
        if "path" not in d:
            raise ConfigError(f"`data.path` is required for data.type={dtype!r}.")
        p = Path(d["path"])
        p = p if p.is_absolute() else base_dir / p
        if not p.exists():
            raise ConfigError(f"`data.path` does not exist: {p}")
        d["path"] = str(p)
        if dtype == "folder":
            csv_name = d.get("labels", "labels.csv")
            if not (p / csv_name).exists():
                raise ConfigError(f"`data.labels` file not found: {p / csv_name}")
    elif dtype == "function":
        if ":" not in str(d.get("function", "")):
            raise ConfigError("`data.function` must be 'module:function' returning the dataset.")
    else:
        raise ConfigError(f"`data.type` must be builtin, folder, npz or function, got {dtype!r}.")
    m = cfg["model"]
    mtype = m.get("type", "factory" if "factory" in m else ("checkpoint" if "checkpoint" in m else "builtin"))
    m["type"] = mtype
    if mtype == "builtin":
        pass
    elif mtype in ("factory", "checkpoint"):
        if mtype == "factory" and ":" not in str(m.get("factory", "")):
            raise ConfigError("`model.factory` must be 'module:function' returning an nn.Module.")
        if "checkpoint" in m:
            cp = Path(m["checkpoint"])
            cp = cp if cp.is_absolute() else base_dir / cp
            if not cp.exists():
                raise ConfigError(f"`model.checkpoint` does not exist: {cp}")
            m["checkpoint"] = str(cp)
            fmt = m.get("format", "state_dict")
            if fmt not in ("state_dict", "torchscript"):
                raise ConfigError(f"`model.format` must be 'state_dict' or 'torchscript', got {fmt!r}.")
            if fmt == "state_dict" and "factory" not in m:
                raise ConfigError("`model.factory` is required to load a state-dict checkpoint.")
    else:
        raise ConfigError(f"`model.type` must be builtin, factory or checkpoint, got {mtype!r}.")
    if not isinstance(cfg["artifacts"], list) or not cfg["artifacts"]:
        raise ConfigError("`artifacts` must be a non-empty list of artifact names.")
    registered = set(list_artifacts())
    for key in ("artifacts", "augment_artifacts"):
        for a in cfg[key]:
            if a not in registered and key in strict_artifacts:
                try:
                    get_artifact(a)
                except KeyError as e:
                    raise ConfigError(f"`{key}`: {e.args[0]}") from None
    sev = cfg["severities"]
    if not isinstance(sev, list) or not all(isinstance(s, int) and 0 <= s <= 5 for s in sev):
        raise ConfigError(f"`severities` must be a list of ints in 0..5, got {sev!r}.")
    for k in ("draws", "seed"):
        if not isinstance(cfg[k], int) or cfg[k] < 0:
            raise ConfigError(f"`{k}` must be a non-negative int, got {cfg[k]!r}.")
    for k in ("epochs", "batch_size"):
        if not isinstance(cfg["train"].get(k), int) or cfg["train"][k] <= 0:
            raise ConfigError(f"`train.{k}` must be a positive int, got {cfg['train'].get(k)!r}.")
    unknown_methods = set(cfg["methods"]) - {"baseline", "augment", "adversarial"}
    if unknown_methods or "baseline" not in cfg["methods"]:
        raise ConfigError(f"`methods` must include 'baseline' and only baseline/augment/adversarial, "
                          f"got {cfg['methods']!r}.")
    adv = cfg["adversarial"]
    if adv.get("attack") not in ("pgd", "fgsm", "apgd_ce", "apgd_dlr", "square"):
        raise ConfigError(f"`adversarial.attack` must be pgd, fgsm, apgd_ce, apgd_dlr or square, "
                          f"got {adv.get('attack')!r}.")
    if not all(isinstance(b, (int, float)) and b >= 0 for b in adv.get("budgets", [])):
        raise ConfigError(f"`adversarial.budgets` must be non-negative numbers, got {adv.get('budgets')!r}.")
    for item in cfg["worst_case"]:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], int)
                and 1 <= item[1] <= 5):
            raise ConfigError(f"`worst_case` entries must be [artifact, severity 1..5], got {item!r}.")
    ln = cfg["label_noise"]
    if ln:
        from .. import losses as L

        for loss in ln.get("losses", []):
            if loss != "ce":
                try:
                    L.robust_loss(loss)
                except KeyError as e:
                    raise ConfigError(f"`label_noise.losses`: {e.args[0]}") from None
        allowed = ("drop_components", "erode", "dilate") if seg else ("symmetric", "pairflip")
        for nz in ln.get("noise", []):
            if nz not in allowed:
                raise ConfigError(f"`label_noise.noise` entries must be one of {allowed} for "
                                  f"task {cfg['task']}, got {nz!r}.")
        top = 100 if seg else 1  # erode/dilate rates are radii in pixels
        if not all(isinstance(r, (int, float)) and 0 <= r < top for r in ln.get("rates", [])):
            raise ConfigError(f"`label_noise.rates` must be in [0, {top}), got {ln.get('rates')!r}.")


# ----------------------------------------------------------------------------- data and models
class SmallCNN(nn.Module):
    """A small CNN classifier (three conv-BN-ReLU blocks, global pooling, a linear head)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),
            nn.AdaptiveMaxPool2d(1),
        )
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).flatten(1))


class SmallUNet(nn.Module):
    """A small two-level U-Net for 2D segmentation (conv-BN-ReLU blocks, max-pool down, upsample up)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 16) -> None:
        super().__init__()
        w = width

        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())

        self.enc1, self.enc2, self.mid = block(in_channels, w), block(w, 2 * w), block(2 * w, 4 * w)
        self.dec2, self.dec1 = block(6 * w, 2 * w), block(3 * w, w)
        self.head = nn.Conv2d(w, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        import torch.nn.functional as F

        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(m, size=e2.shape[-2:], mode="nearest"), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[-2:], mode="nearest"), e1], 1))
        return self.head(d1)


def _load_data(cfg: dict[str, Any]) -> dict[str, tuple[Tensor, Tensor]]:
    from ..data.datasets import load_folder, load_npz, load_object, phantom_slices

    d = cfg["data"]
    t = d.get("type", "builtin")
    if t == "builtin":
        tr = phantom_slices(d["n_train"], size=d["size"], seed=mix_seeds(cfg["seed"], 1))
        te = phantom_slices(d["n_test"], size=d["size"], seed=mix_seeds(cfg["seed"], 2))
        key = "mask" if cfg["task"] == "segmentation" else "label"
        return {"train": (tr["image"], tr[key]), "test": (te["image"], te[key])}
    if t == "npz":
        return {"train": load_npz(d["path"], "train"), "test": load_npz(d["path"], d.get("split", "test"))}
    if t == "folder":
        lab = d.get("labels", "labels.csv")
        target = "mask" if cfg["task"] == "segmentation" else "label"
        return {"train": load_folder(d["path"], lab, split="train", target=target),
                "test": load_folder(d["path"], lab, split=d.get("split", "test"), target=target)}
    out = load_object(d["function"])()
    from .sweeps import as_tensors

    if isinstance(out, dict):
        return {k: as_tensors(v) for k, v in out.items()}
    raise ConfigError("`data.function` must return {'train': ..., 'test': ...} datasets or (x, y) pairs.")


def _model_factory(cfg: dict[str, Any], in_channels: int, num_classes: int) -> Callable[[], nn.Module]:
    m = cfg["model"]
    if m["type"] == "builtin":
        width = int(m.get("width", 16))
        if cfg["task"] == "segmentation":
            return lambda: SmallUNet(in_channels, num_classes, width)
        return lambda: SmallCNN(in_channels, num_classes, width)
    from ..data.datasets import load_object

    fac = load_object(m["factory"]) if "factory" in m else None

    def build() -> nn.Module:
        if m.get("format") == "torchscript":
            return torch.jit.load(m["checkpoint"], map_location="cpu")
        model = fac()  # type: ignore[misc]
        if "checkpoint" in m:
            state = torch.load(m["checkpoint"], map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            model.load_state_dict(state)
        return model

    return build


def train_classifier(
    factory: Callable[[], nn.Module],
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    loss: str = "ce",
    augment: Any = None,
    adversarial: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Train a classifier with Adam; the global RNG state is left unchanged.

    Args:
        factory: Builds a fresh model (its init runs under ``seeded_global_rng(seed)``, which
            restores the global RNG and ``torch.initial_seed()`` afterwards).
        x: Training images.
        y: Training labels.
        epochs: Epochs.
        batch_size: Batch size.
        lr: Adam learning rate (cosine-annealed to 0).
        seed: Seed of the init, the shuffling and any augmentation/attack.
        loss: ``"ce"`` or a :func:`robustaug.losses.robust_loss` name.
        augment: A robustaug Transform applied to each training batch (artifact augmentation).
        adversarial: ``{"eps", "steps"[, "method", "warmup"]}``: adversarial training with
            :class:`robustaug.adversarial.RobustLoss` (default ``"pgd_at"``, Madry et al., ICLR 2018:
            the loss on the batch's L-inf PGD examples, generated with BatchNorm in eval mode), with
            eps ramped up linearly over the first ``warmup`` fraction of the steps (default 0.5;
            without it the small CNN collapsed to chance at 64 px).
        device: Training device.

    Returns:
        The trained model in eval mode.
    """
    from .. import adversarial as adv
    from .. import losses as L

    dev = torch.device(device)
    with seeded_global_rng(seed):
        model = factory().to(dev)
    crit: nn.Module = nn.CrossEntropyLoss() if loss == "ce" else L.robust_loss(loss)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_total = epochs * ((len(x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + torch.cos(torch.tensor(torch.pi * i / max(steps_total, 1)))).item()
    )
    g = torch.Generator().manual_seed(seed)
    g_aug = new_generator(mix_seeds(seed, 17))
    lo, hi = float(x.min()), float(x.max())
    robust = None
    if adversarial is not None:
        robust = adv.RobustLoss(model, crit, method=adversarial.get("method", "pgd_at"),
                                threat=adv.Linf(eps=adversarial["eps"], steps=adversarial["steps"]),
                                data_range=(lo, hi), seed=seed,
                                eps_warmup=round(float(adversarial.get("warmup", 0.5)) * steps_total))
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            xb, yb = x[idx].to(dev), y[idx].to(dev)
            if augment is not None:
                xb = augment(xb, generator=g_aug)
            out = robust(xb.clamp(lo, hi), yb) if robust is not None else crit(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            out.backward()
            opt.step()
            sched.step()
    model.eval()
    return model


# ----------------------------------------------------------------------------- the study
def _log(msg: str) -> None:
    if dist_info()[0] == 0:
        print(msg, file=sys.stderr, flush=True)


def run_study(cfg: dict[str, Any], out: str | os.PathLike, *, progress: bool = True) -> RobustnessReport:
    """Run the study described by ``cfg`` (see :func:`load_config`) and write the report to ``out``."""
    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = out / "cache"
    cache_dir.mkdir(exist_ok=True)
    seed, dev = int(cfg["seed"]), cfg.get("device", "cpu")
    tr_cfg = cfg["train"]
    rank, world = dist_info()
    notes: list[str] = []
    timings: dict[str, float] = {}

    _log("[1/5] data")
    data = _load_data(cfg)
    (x_tr, y_tr), (x_te, y_te) = data["train"], data["test"]
    task = cfg["task"]
    metric = "accuracy" if task == "classification" else "dice"
    num_classes = max(2, int(max(int(y_tr.max()), int(y_te.max())) + 1))
    factory = _model_factory(cfg, x_tr.shape[1], num_classes)
    lo, hi = float(x_tr.min()), float(x_tr.max())
    registered = set(list_artifacts())
    arts = [a for a in cfg["artifacts"] if a in registered]
    skipped = [a for a in cfg["artifacts"] if a not in registered]
    if skipped:
        notes.append(f"Artifacts not available in this build and skipped: {', '.join(skipped)}.")
    aug_names = [a for a in cfg["augment_artifacts"] if a in registered]
    timings["data"] = time.time() - t0

    def cached_model(name: str, **kw: Any) -> nn.Module:
        path = cache_dir / f"model_{name}.pt"
        if cfg["model"]["type"] != "builtin" and name == "baseline" and "checkpoint" in cfg["model"]:
            return factory().eval()  # a user's trained model is evaluated as given
        if path.exists():
            m = factory()
            m.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return m.to(dev).eval()
        m = train_classifier(factory, x_tr, y_tr, epochs=tr_cfg["epochs"], batch_size=tr_cfg["batch_size"],
                             lr=tr_cfg.get("lr", 3e-3), seed=seed, device=dev, **kw)
        if rank == 0:  # every rank trains the same model (same seed); rank 0 caches it atomically
            tmp = path.with_suffix(".tmp")
            torch.save(m.state_dict(), tmp)
            os.replace(tmp, path)
        return m

    _log("[2/5] training baseline" + (", augmentation" if "augment" in cfg["methods"] else "")
         + (", adversarial" if "adversarial" in cfg["methods"] else ""))
    t1 = time.time()
    models: dict[str, nn.Module] = {"baseline": cached_model("baseline")}
    if "augment" in cfg["methods"] and aug_names:
        from ..core.compose import OneOf

        cands = [create(a, severity=s) for a in aug_names for s in (1, 2, 3, 4)]
        aug = OneOf(cands, p=float(cfg.get("augment_p", 0.8)), seed=mix_seeds(seed, 7))
        models["augment"] = cached_model("augment", augment=aug)
        unseen = [a for a in arts if a not in aug_names]
        notes.append(f"The augmentation model was trained with {', '.join(aug_names)} (severities 1-4); "
                     f"{', '.join(unseen) if unseen else 'no artifact'} stayed unseen in training.")
    adv_cfg = cfg["adversarial"]
    if "adversarial" in cfg["methods"]:
        models["adversarial"] = cached_model(
            "adversarial", adversarial={"eps": adv_cfg["train_eps"], "steps": adv_cfg["train_steps"]})
    timings["training"] = time.time() - t1
    if world > 1:
        torch.distributed.barrier()

    _log("[3/5] severity sweeps")
    t2 = time.time()
    rows: list[dict[str, Any]] = []
    for name, m in models.items():
        rows += severity_sweep(m, (x_te, y_te), arts, cfg["severities"],
                               None if task == "classification" else ["dice"], draws=cfg["draws"],
                               seed=seed, task=task, num_classes=num_classes, device=dev,
                               progress=progress and rank == 0, cache=cache_dir / "cells.jsonl",
                               model_name=name)
    timings["severity_sweeps"] = time.time() - t2

    _log("[4/5] adversarial and worst-case sweeps")
    t3 = time.time()
    n_eval = int(adv_cfg.get("n_eval", len(x_te)))
    x_ev, y_ev = x_te[:n_eval], y_te[:n_eval]  # attacks are costly: a fixed subset of the test set
    for name, m in models.items():
        rows += adversarial_sweep(m, (x_ev, y_ev), [adv_cfg["attack"]], adv_cfg["budgets"],
                                  steps=adv_cfg["steps"], data_range=(lo, hi), seed=seed, device=dev,
                                  cache=cache_dir / "cells.jsonl", model_name=name, task=task)
    for art, sev in cfg["worst_case"]:
        if art not in registered:
            notes.append(f"Worst-case comparison for {art} skipped: artifact not registered.")
            continue
        for name in [n for n in ("baseline", "augment") if n in models]:
            key = cache_dir / f"worst_{name}_{art}_{sev}.json"
            if key.exists():
                rows += json.loads(key.read_text())
                continue
            try:
                r = worst_case_vs_average(models[name], (x_ev, y_ev), art, sev, draws=max(cfg["draws"], 1),
                                          steps=adv_cfg["steps"], seed=seed, device=dev,
                                          data_range=(lo, hi), model_name=name, task=task)
            except ValueError as e:
                notes.append(f"Worst-case comparison for {art} skipped: {e}")
                break
            if rank == 0:
                tmp = key.with_suffix(".tmp")
                tmp.write_text(json.dumps(r))
                os.replace(tmp, key)
            rows += r
    timings["adversarial"] = time.time() - t3

    ln = cfg["label_noise"]
    if ln and ln.get("rates"):
        _log("[5/5] label-noise sweep")
        t4 = time.time()
        rows += _label_noise(cfg, factory, x_tr, y_tr, x_te, y_te, num_classes, cache_dir, progress and rank == 0)
        timings["label_noise"] = time.time() - t4
    timings["total"] = time.time() - t0

    meta = {
        "dataset": _describe_data(cfg, x_tr, x_te),
        "task": task,
        "model": (("SmallCNN (3 conv blocks)" if task == "classification" else "SmallUNet (2 levels)")
                  if cfg["model"]["type"] == "builtin" else str(cfg["model"])),
        "training": f"Adam, lr {tr_cfg.get('lr', 3e-3)}, {tr_cfg['epochs']} epochs, batch {tr_cfg['batch_size']}",
        "artifacts": ", ".join(arts),
        "severities": cfg["severities"],
        "draws per sample": cfg["draws"],
        "adversarial": f"{adv_cfg['attack'].upper()} L-inf, {adv_cfg['steps']} steps, budgets "
                       f"{adv_cfg['budgets']} on {n_eval} test images; adversarial training eps "
                       f"{adv_cfg['train_eps']}, {adv_cfg['train_steps']} steps",
        "seed": seed,
        "world size": world,
        "torch": torch.__version__,
        "timings (s)": {k: round(v, 1) for k, v in timings.items()},
    }
    report = RobustnessReport(rows, baseline="baseline", metric=metric, meta=meta, notes=notes)
    if rank == 0:
        images: list[str] = []
        try:
            images = report.plot(out)
        except ImportError as e:
            notes.append(str(e))
        report.to_json(out / "results.json")
        report.to_markdown(out / "report.md", images=images)
        report.to_html(out / "report.html", images=images)
    return report


def _describe_data(cfg: dict[str, Any], x_tr: Tensor, x_te: Tensor) -> str:
    d = cfg["data"]
    if d.get("type", "builtin") == "builtin":
        return (f"built-in phantom MRI slices {d['size']}x{d['size']}, lesion present vs absent; "
                f"{len(x_tr)} train / {len(x_te)} test")
    return f"{d.get('type')} data: {len(x_tr)} train / {len(x_te)} test, image shape {tuple(x_tr.shape[1:])}"


def _label_noise(cfg, factory, x_tr, y_tr, x_te, y_te, num_classes, cache_dir, progress):
    from .. import labelnoise as LN

    ln = cfg["label_noise"]
    tr = cfg["train"]
    epochs = int(ln.get("epochs", tr["epochs"]))
    n_sub = int(ln.get("n_train", len(x_tr)))
    x_tr, y_tr = x_tr[:n_sub], y_tr[:n_sub]

    def inject(name: str) -> Callable[[Tensor, float, int], Tensor]:
        def f(y: Tensor, rate: float, s: int) -> Tensor:
            if name == "symmetric":
                return torch.as_tensor(LN.symmetric(y, rate, num_classes, mode="exact", seed=s).labels)
            if name == "pairflip":
                return torch.as_tensor(LN.pairflip(y, rate, num_classes, seed=s).labels)
            # segmentation: one 2D mask at a time (a batch is not a volume); rate = probability of
            # missing a lesion (drop_components) or a radius in pixels (erode/dilate)
            out = []
            for i in range(len(y)):
                si = mix_seeds(s, i)
                if name == "drop_components":
                    r = LN.drop_components(y[i], rate, seed=si)
                elif name == "erode":
                    r = LN.erode(y[i], rate, spacing=1.0, seed=si)
                else:
                    r = LN.dilate(y[i], rate, spacing=1.0, seed=si)
                out.append(torch.as_tensor(r.labels))
            return torch.stack(out)
        f.__name__ = name
        return f

    def train_fn(x: Tensor, y: Tensor, *, loss: str, seed: int) -> nn.Module:
        return train_classifier(factory, x, y, epochs=epochs, batch_size=tr["batch_size"],
                                lr=tr.get("lr", 3e-3), seed=seed, loss=loss, device=cfg.get("device", "cpu"))

    def detect(x: Tensor, y_noisy: Tensor, s: int) -> Tensor:
        # Out-of-fold probabilities from 3-fold cross-validation, then cleanlab's confident learning.
        k = 3
        folds = torch.randperm(len(x), generator=torch.Generator().manual_seed(mix_seeds(s, 99))) % k
        probs = torch.zeros(len(x), num_classes)
        for f in range(k):
            tr_idx, te_idx = (folds != f).nonzero().squeeze(1), (folds == f).nonzero().squeeze(1)
            m = train_fn(x[tr_idx], y_noisy[tr_idx], loss="ce", seed=mix_seeds(s, f))
            with torch.no_grad():
                probs[te_idx] = torch.softmax(m(x[te_idx]).float(), 1)
        issues = LN.find_label_issues(y_noisy, probs)
        return torch.as_tensor(issues.mask).bool()

    return label_noise_sweep(
        train_fn, (x_tr, y_tr), (x_te, y_te),
        {n: inject(n) for n in ln.get("noise", ["symmetric"])},
        [float(r) for r in ln["rates"]], list(ln["losses"]), list(ln.get("seeds", [0])),
        detect_fn=detect if ln.get("detect") and cfg["task"] == "classification" else None,
        progress=progress, cache=cache_dir / "cells.jsonl", task=cfg["task"],
    )


# ----------------------------------------------------------------------------- CLI
def _init_distributed() -> bool:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("ROBUSTAUG_BACKEND") != "gloo" else "gloo"
        torch.distributed.init_process_group(backend=backend)
        return True
    return False


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="robustaug study",
        description="Run a robustness study: train models (baseline, artifact augmentation, adversarial, "
                    "noise-robust losses), sweep artifacts x severities, attacks and label noise, and "
                    "write report.html, report.md, results.json and PNG plots.",
    )
    p.add_argument("--config", help="YAML/JSON config for your own data and model (default: built-in study)")
    p.add_argument("--out", default="robustaug-study", help="output folder (default: robustaug-study)")
    p.add_argument("--quick", action="store_true", help="a small study that finishes in about a minute")
    p.add_argument("--device", default=None, help="cpu or cuda (default: the config's, else cpu)")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``robustaug study``; returns the exit code."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    over: dict[str, Any] = {}
    if args.device:
        if args.device.startswith("cuda") and not torch.cuda.is_available():
            print("error: --device cuda requested but CUDA is not available", file=sys.stderr)
            return 2
        over["device"] = args.device
    if args.seed is not None:
        over["seed"] = args.seed
    try:
        cfg = load_config(args.config, quick=args.quick, overrides=over)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads < 1:
            print("error: --threads must be >= 1", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    started = _init_distributed()
    rank = dist_info()[0]
    ok = False
    try:
        report = run_study(cfg, args.out, progress=not args.no_progress)
        ok = True
    finally:
        if started:
            if ok:
                # Every rank reaches the end before teardown: a rank that destroys its gloo group and
                # exits while a peer is still writing the report can abort the peer's transport threads.
                torch.distributed.barrier()
            torch.distributed.destroy_process_group()
    if rank == 0:
        print("\n".join(["", "Findings:", *[f"- {f}" for f in report.findings()], "",
                         f"Report written to {Path(args.out) / 'report.html'}"]))
    return 0

