"""The ``robustaug`` command line: list, gallery, study dispatch, help and errors."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from robustaug import cli

GENERIC = ["Contrast", "Downsample", "Gamma", "GaussianBlur", "GaussianNoise", "MotionBlur", "PoissonNoise"]


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_prints_generic_artifacts(capsys):
    code, out, _ = _run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["name", "modality", "dims", "differentiable"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    for name in GENERIC:
        assert name in rows
    assert rows["GaussianBlur"][1:] == ["any", "2D,3D", "yes"]
    assert rows["PoissonNoise"][3] == "no"


def test_list_filters(capsys):
    import robustaug as ra

    code, out, _ = _run(capsys, "list", "--modality", "any", "--dims", "3")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()[2:]]
    assert names == ra.list_artifacts(modality="any", dims=3)
    assert set(GENERIC) <= set(names)
    code, out, _ = _run(capsys, "list", "--modality", "mri")
    names = [line.split()[0] for line in out.splitlines()[2:]]
    assert names == ra.list_artifacts(modality="mri")
    assert not set(GENERIC) & set(names)


def test_list_bad_option(capsys):
    code, _, err = _run(capsys, "list", "--modality", "pet")
    assert code == 2
    assert "invalid choice" in err


def test_help_texts(capsys):
    code, out, _ = _run(capsys, "--help")
    assert code == 0
    for word in ("list", "gallery", "study"):
        assert word in out
    code, out, _ = _run(capsys, "gallery", "--help")
    assert code == 0 and "--draws" in out and "--out" in out and "severities 0" in out
    code, out, _ = _run(capsys, "list", "--help")
    assert code == 0 and "--modality" in out and "--dims" in out


def _read_png(path):
    import matplotlib.image as mpimg

    return mpimg.imread(path)


@pytest.mark.parametrize(("dims", "size"), [(2, 32), (3, 20)])
def test_gallery_writes_a_readable_png(capsys, tmp_path, dims, size):
    before = (torch.get_rng_state().clone(), random.getstate())
    out = tmp_path / "sub" / "g.png"
    code, stdout, err = _run(
        capsys, "gallery", "GaussianBlur", "--out", str(out), "--draws", "2", "--dims", str(dims),
        "--size", str(size), "--seed", "1",
    )
    assert code == 0, err
    assert str(out) in stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = _read_png(out)
    assert img.shape[0] > 300 and img.shape[1] > 800  # 6 columns x 2 rows at 100 dpi
    gray = img[..., :3].mean(-1)
    assert float(gray.std()) > 0.05  # not blank
    assert len(np.unique(np.round(gray, 2))) > 20
    assert torch.equal(before[0], torch.get_rng_state()) and before[1] == random.getstate()


def test_gallery_same_seed_same_png(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for p in (a, b):
        assert cli.main(["gallery", "GaussianNoise", "--out", str(p), "--draws", "1", "--size", "32"]) == 0
    assert np.array_equal(_read_png(a), _read_png(b))


def test_gallery_bad_name(capsys, tmp_path):
    out = tmp_path / "x.png"
    code, _, err = _run(capsys, "gallery", "GaussianBlurr", "--out", str(out))
    assert code == 2
    assert "Unknown artifact 'GaussianBlurr'" in err and "GaussianBlur" in err
    assert not out.exists()


def test_gallery_bad_values(capsys, tmp_path):
    code, _, err = _run(capsys, "gallery", "GaussianBlur", "--out", str(tmp_path / "x.png"), "--draws", "0")
    assert code == 2 and "--draws" in err
    code, _, err = _run(capsys, "gallery", "GaussianBlur")
    assert code == 2 and "--out" in err


def test_gallery_without_matplotlib(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    code, _, err = _run(capsys, "gallery", "GaussianBlur", "--out", str(tmp_path / "x.png"))
    assert code == 2
    assert "pip install 'robustaug[plot]'" in err


def test_study_missing_module_gives_clean_error(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "robustaug.evaluate.study", None)
    code, out, err = _run(capsys, "study", "--quick")
    assert code == 2
    assert "robustaug.evaluate.study is missing" in err
    assert "Traceback" not in err and out == ""


def test_study_dispatches_arguments(capsys, monkeypatch):
    seen = {}

    def fake_main(argv):
        seen["argv"] = argv
        return 3

    monkeypatch.setitem(sys.modules, "robustaug.evaluate.study", types.SimpleNamespace(main=fake_main))
    code, _, _ = _run(capsys, "study", "--config", "cfg.yaml", "--quick")
    assert code == 3
    assert seen["argv"] == ["--config", "cfg.yaml", "--quick"]


def test_study_systemexit_becomes_exit_code(capsys, monkeypatch):
    def fake_main(argv):
        raise SystemExit(0)

    monkeypatch.setitem(sys.modules, "robustaug.evaluate.study", types.SimpleNamespace(main=fake_main))
    assert cli.main(["study", "--help"]) == 0


def test_no_command_prints_help(capsys):
    code, out, _ = _run(capsys)
    assert code == 0 and "usage: robustaug" in out


def test_console_script_entry_point():
    exe = shutil.which("robustaug")
    assert exe is not None, "the robustaug console script is not installed (pip install -e .)"
    res = subprocess.run([exe, "list", "--modality", "any"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "GaussianNoise" in res.stdout
