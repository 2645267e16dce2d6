"""Metrics, aggregates, sweeps, the report and the study pipeline."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

import robustaug as ra
from robustaug.evaluate import (
    RobustnessReport,
    accuracy,
    area_under_severity_curve,
    auroc,
    balanced_accuracy,
    corruption_errors,
    dice_per_class,
    expected_calibration_error,
    failure_point,
    hausdorff95,
    severity_sweep,
)
from robustaug.evaluate.runner import run_cells
from robustaug.evaluate.study import ConfigError, load_config, main, run_study

# ----------------------------------------------------------------------------- metrics


def test_accuracy_and_balanced_accuracy():
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    y = torch.tensor([0, 1, 1, 0])
    assert accuracy(p, y) == 0.75
    assert balanced_accuracy(p, y) == pytest.approx((1.0 + 0.5) / 2)


def test_auroc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (200,), generator=g)
    s = torch.rand(200, generator=g) + 0.3 * y
    s[::7] = 0.5  # ties
    p = torch.stack([1 - s, s], 1)
    assert auroc(p, y) == pytest.approx(roc_auc_score(y.numpy(), s.numpy()), abs=1e-12)
    y3 = torch.randint(0, 3, (200,), generator=g)
    p3 = torch.softmax(torch.randn(200, 3, generator=g) + torch.nn.functional.one_hot(y3, 3), 1)
    ref = roc_auc_score(y3.numpy(), p3.numpy(), multi_class="ovr", average="macro")
    assert auroc(p3, y3) == pytest.approx(ref, abs=1e-12)


def test_ece_perfectly_calibrated_and_overconfident():
    y = torch.tensor([0] * 8 + [1] * 2)
    p = torch.tensor([[0.8, 0.2]] * 10, dtype=torch.float64)  # confidence 0.8, accuracy 0.8
    assert expected_calibration_error(p, y) == pytest.approx(0.0, abs=1e-12)
    p2 = torch.tensor([[1.0, 0.0]] * 10)
    assert expected_calibration_error(p2, y) == pytest.approx(0.2)


def test_dice_and_hausdorff():
    a = torch.zeros(1, 20, 20, dtype=torch.long)
    b = torch.zeros(1, 20, 20, dtype=torch.long)
    a[0, 5:10, 5:10] = 1
    b[0, 5:10, 7:12] = 1
    d = dice_per_class(a, b, 2)
    assert float(d[1]) == pytest.approx(2 * 15 / 50)
    assert hausdorff95(a[0] == 1, b[0] == 1) == pytest.approx(2.0)
    assert math.isnan(hausdorff95(a[0] == 5, b[0] == 1))


def test_aggregates():
    def rows(model, accs):
        return [{"kind": "severity", "model": model, "artifact": "A", "severity": s, "metric": "accuracy",
                 "mean": v, "ci_low": v, "ci_high": v} for s, v in enumerate(accs)]

    r = rows("base", [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]) + rows("new", [0.9, 0.85, 0.8, 0.75, 0.7, 0.65])
    ce = corruption_errors(r, "new", "base")
    assert ce["A"]["CE"] == pytest.approx((0.15 + 0.2 + 0.25 + 0.3 + 0.35) / (0.2 + 0.3 + 0.4 + 0.5 + 0.6))
    assert ce["A"]["relative_CE"] == pytest.approx((0.05 + 0.1 + 0.15 + 0.2 + 0.25) / (0.1 + 0.2 + 0.3 + 0.4 + 0.5))
    assert area_under_severity_curve({0: 1.0, 5: 0.0}) == pytest.approx(0.5)
    assert failure_point({0: 0.9, 1: 0.85, 2: 0.7}, 0.8) == 2
    assert failure_point({0: 0.9}, 0.5) is None


def test_run_cells_resume(tmp_path):
    calls = []

    def fn(cell):
        calls.append(cell)
        return [{"cell": list(cell)}]

    cache = tmp_path / "c.jsonl"
    a = run_cells("k", [(1,), (2,)], fn, cache=cache)
    b = run_cells("k", [(1,), (2,), (3,)], fn, cache=cache)
    assert calls == [(1,), (2,), (3,)]
    assert [r["cell"] for r in b] == [[1], [2], [3]] and a == b[:2]


# ----------------------------------------------------------------------------- sweeps


class _Brightness(nn.Module):
    """Classifies by mean intensity: any artifact that changes the mean changes its output."""

    def forward(self, x):
        m = x.flatten(1).mean(1, keepdim=True)
        return torch.cat([-(m - 0.2) * 50, (m - 0.2) * 50], 1)


def test_severity_sweep_rows_and_monotone_degradation():
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.full((20, 1, 16, 16), 0.1), torch.full((20, 1, 16, 16), 0.3)])
    y = torch.cat([torch.zeros(20), torch.ones(20)]).long()
    del g
    rows = severity_sweep(_Brightness(), (x, y), ["Contrast", "GaussianNoise"], severities=[0, 1, 5],
                          metrics=["accuracy"], draws=2)
    assert {(r["artifact"], r["severity"]) for r in rows} == {
        (a, s) for a in ("Contrast", "GaussianNoise") for s in (0, 1, 5)
    }
    for r in rows:
        assert r["ci_low"] <= r["mean"] <= r["ci_high"] and r["n"] == 40
    clean = [r for r in rows if r["severity"] == 0]
    assert all(r["mean"] == 1.0 for r in clean)


def test_severity_sweep_is_reproducible():
    x = torch.rand(16, 1, 16, 16)
    y = (x.flatten(1).mean(1) > 0.5).long()
    a = severity_sweep(_Brightness(), (x, y), ["GaussianNoise"], [0, 3], ["accuracy"], seed=3)
    b = severity_sweep(_Brightness(), (x, y), ["GaussianNoise"], [0, 3], ["accuracy"], seed=3)
    assert a == b


def test_report_renders(tmp_path):
    rows = [{"kind": "severity", "model": m, "artifact": a, "severity": s, "metric": "accuracy",
             "mean": 0.9 - 0.1 * s * (1 if m == "baseline" else 0.5), "ci_low": 0.0, "ci_high": 1.0, "n": 10,
             "draws": 1}
            for m in ("baseline", "augment") for a in ("A", "B") for s in range(6)]
    rep = RobustnessReport(rows, baseline="baseline", meta={"dataset": "toy"})
    f = rep.findings()
    assert any("augment improves" in s for s in f)
    assert any("falls from severity 0 to 5 for 2 of 2" in s for s in f)
    d = json.loads(rep.to_json())
    assert d["aggregates"]["augment"]["mCE"] < 1.0
    assert "<table>" in rep.to_html()
    files = rep.plot(tmp_path)
    assert {"severity_curves.png", "heatmap.png"} <= set(files)
    assert all((tmp_path / f).stat().st_size > 1000 for f in files)


# ----------------------------------------------------------------------------- study config

TINY = {
    "data": {"n_train": 48, "n_test": 24, "size": 32},
    "train": {"epochs": 1, "batch_size": 16},
    "artifacts": ["GaussianNoise", "GaussianBlur"],
    "augment_artifacts": ["GaussianBlur"],
    "severities": [0, 2, 5],
    "draws": 1,
    "adversarial": {"budgets": [0.0, 0.02], "steps": 2, "train_steps": 1},
    "worst_case": [["Gamma", 3]],
    "label_noise": {"rates": [0.4], "losses": ["ce", "gce"], "epochs": 1, "n_train": 48, "detect": True},
}


def _write(tmp_path, text, name="study.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_config_bad_key_names_it(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'epochz'"):
        load_config(_write(tmp_path, "epochz: 3\n"))


def test_config_missing_file_names_key(tmp_path):
    cfg = _write(tmp_path, "data:\n  type: npz\n  path: nowhere.npz\n")
    with pytest.raises(ConfigError, match="`data.path` does not exist"):
        load_config(cfg)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_config_unknown_artifact_names_key(tmp_path):
    with pytest.raises(ConfigError, match="`artifacts`: Unknown artifact 'Blurr'"):
        load_config(_write(tmp_path, "artifacts: [Blurr]\n"))


def test_config_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="`severities`"):
        load_config(_write(tmp_path, "severities: [0, 9]\n"))
    with pytest.raises(ConfigError, match="`label_noise.losses`"):
        load_config(_write(tmp_path, "label_noise:\n  losses: [nonsense]\n"))
    with pytest.raises(ConfigError, match="`model.checkpoint` does not exist"):
        load_config(_write(tmp_path, "model:\n  factory: 'torch.nn:Linear'\n  checkpoint: w.pt\n"))


def test_cli_fails_fast_on_bad_config(tmp_path, capsys):
    code = main(["--config", str(_write(tmp_path, "artifacts: [Nope]\n")), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "`artifacts`" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing was trained or written


# ----------------------------------------------------------------------------- the study


def _finite_numbers(obj, path="") -> list[str]:
    bad = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            bad += _finite_numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            bad += _finite_numbers(v, f"{path}[{i}]")
    elif isinstance(obj, float) and not math.isfinite(obj):
        bad.append(path)
    return bad


def test_tiny_study_end_to_end_and_resume(tmp_path):
    cfg = load_config(overrides=TINY)
    out = tmp_path / "study"
    rep = run_study(cfg, out, progress=False)
    data = json.loads((out / "results.json").read_text())
    for section in ("severity", "adversarial", "worst_case", "label_noise", "detection", "aggregates", "findings"):
        assert data[section], f"section {section} is empty"
    for section in ("severity", "adversarial", "worst_case", "label_noise"):
        for r in data[section]:
            assert isinstance(r["mean"], float) and math.isfinite(r["mean"]), (section, r)
    assert {"baseline", "augment", "adversarial"} <= set(data["models"])
    assert (out / "report.html").exists() and (out / "report.md").exists()
    assert (out / "severity_curves.png").exists()
    # resume: a second run reuses every cached cell and model and gives the same numbers
    rep2 = run_study(cfg, out, progress=False)
    assert rep2.rows == rep.rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_distributed_two_gloo_ranks_match_single_process(tmp_path):
    """Both runs in fresh processes (same thread count), so only the split across ranks differs."""
    cfg_path = tmp_path / "tiny.json"
    tiny = {**TINY, "label_noise": {}, "worst_case": [], "severities": [0, 5],
            "adversarial": {"budgets": [0.02], "steps": 2, "train_steps": 1}}
    cfg_path.write_text(json.dumps(tiny))

    def launch(out, rank=None, port=None):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop("WORLD_SIZE", None)
        if rank is not None:
            env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                       LOCAL_RANK=str(rank), ROBUSTAUG_BACKEND="gloo")
        code = (
            "import sys, torch; torch.set_num_threads(1); from robustaug.evaluate.study import main; "
            f"sys.exit(main(['--config', {str(cfg_path)!r}, '--out', {str(out)!r}, '--no-progress']))"
        )
        return subprocess.Popen([sys.executable, "-c", code], env=env)

    single, dist = tmp_path / "single", tmp_path / "dist"
    assert launch(single).wait(timeout=900) == 0
    port = _free_port()
    procs = [launch(dist, r, port) for r in range(2)]
    assert [p.wait(timeout=900) for p in procs] == [0, 0]
    a = json.loads((single / "results.json").read_text())
    b = json.loads((dist / "results.json").read_text())
    assert a["meta"]["world size"] == 1 and b["meta"]["world size"] == 2
    for section in ("severity", "adversarial"):
        assert a[section] == b[section]
    # each rank computed part of the grid and appended it to its own cache file
    assert (dist / "cache" / "cells.jsonl.rank0").exists() and (dist / "cache" / "cells.jsonl.rank1").exists()


@pytest.mark.slow
def test_quick_study_cli(tmp_path):
    out = tmp_path / "q"
    assert main(["--quick", "--out", str(out), "--no-progress"]) == 0
    data = json.loads((out / "results.json").read_text())
    for section in ("severity", "adversarial", "worst_case", "label_noise", "detection", "aggregates", "findings"):
        assert data[section], f"section {section} is empty"
    assert not _finite_numbers({k: data[k] for k in ("severity", "adversarial", "worst_case", "label_noise")})


def test_builtin_dataset_is_deterministic():
    a = ra.data.datasets.phantom_slices(6, size=32, seed=1)
    b = ra.data.datasets.phantom_slices(6, size=32, seed=1)
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert (a["mask"].flatten(1).any(1).long() == a["label"]).all()
    assert np.isclose(float(a["label"].float().mean()), 0.5)


def test_severity_sweep_independent_of_global_seed():
    x = torch.rand(16, 1, 16, 16)
    y = (x.flatten(1).mean(1) > 0.5).long()
    torch.manual_seed(1)
    a = severity_sweep(_Brightness(), (x, y), ["GaussianNoise"], [3], ["accuracy"], seed=3)
    torch.manual_seed(2)
    b = severity_sweep(_Brightness(), (x, y), ["GaussianNoise"], [3], ["accuracy"], seed=3)
    assert a == b


def test_empty_section_disables_it(tmp_path):
    cfg = load_config(_write(tmp_path, "label_noise: {}\nworst_case: []\n"))
    assert cfg["label_noise"] == {} and cfg["worst_case"] == []
    cfg = load_config(_write(tmp_path, "label_noise:\n  rates: [0.2]\n"))
    assert cfg["label_noise"]["rates"] == [0.2] and cfg["label_noise"]["losses"]  # merged over defaults


def test_tiny_segmentation_study(tmp_path):
    cfg = load_config(overrides={**TINY, "task": "segmentation",
                                 "label_noise": {"rates": [0.0, 0.5], "epochs": 1, "n_train": 48}})
    assert cfg["label_noise"]["noise"] == ["drop_components"]  # segmentation noise by default
    out = tmp_path / "seg"
    rep = run_study(cfg, out, progress=False)
    data = json.loads((out / "results.json").read_text())
    assert data["metric"] == "dice" and data["meta"]["task"] == "segmentation"
    for section in ("severity", "adversarial", "worst_case", "label_noise"):
        assert data[section], section
        assert all(r["metric"] == "dice" and 0.0 <= r["mean"] <= 1.0 for r in data[section]), section
    assert any("Dice" in f for f in rep.findings())


def test_segmentation_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="has no masks"):
        npz = tmp_path / "d.npz"
        np.savez(npz, train_images=np.zeros((2, 8, 8)), train_labels=np.zeros(2))
        load_config(_write(tmp_path, f"task: segmentation\ndata:\n  type: npz\n  path: {npz}\n"))
    with pytest.raises(ConfigError, match="`label_noise.noise`"):
        load_config(_write(tmp_path, "task: segmentation\nlabel_noise:\n  noise: [symmetric]\n"))


def test_sample_scores_dice_convention():
    from robustaug.evaluate.sweeps import sample_scores

    y = torch.zeros(2, 4, 4, dtype=torch.long)
    y[1, :2, :2] = 1
    logits = torch.zeros(2, 2, 4, 4)
    logits[:, 0] = 1.0  # predicts background everywhere
    s = sample_scores(logits, y, "segmentation")
    assert s.tolist() == [1.0, 0.0]  # empty/empty is perfect; a missed lesion scores 0


def test_load_folder_with_masks(tmp_path):
    from robustaug.data.datasets import load_folder

    rows = ["filename,label,mask,split"]
    for i in range(3):
        np.save(tmp_path / f"im{i}.npy", np.full((8, 8), i, dtype=np.float32))
        m = np.zeros((8, 8), dtype=np.int64)
        m[:i, :i] = 1
        np.save(tmp_path / f"m{i}.npy", m)
        rows.append(f"im{i}.npy,0,m{i}.npy,train")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    x, y = load_folder(tmp_path, split="train", target="mask")
    assert x.shape == (3, 1, 8, 8) and y.shape == (3, 8, 8) and y.dtype == torch.long
    assert int(y[2].sum()) == 4
