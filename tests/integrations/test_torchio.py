"""The TorchIO adapter on real TorchIO pipelines (Compose, SubjectsDataset, DataLoader workers)."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest
import torch

tio = pytest.importorskip("torchio")

from robustaug import Downsample, GaussianBlur, GaussianNoise  # noqa: E402
from robustaug.data import phantom  # noqa: E402
from robustaug.integrations.torchio import (  # noqa: E402
    TorchIOTransform,
    as_torchio,
    from_torchio_layout,
    to_torchio_layout,
)


def _subject(seed: int = 0, size: int = 20) -> tio.Subject:
    ph = phantom((size, size + 2, size + 4), seed=seed)  # robustaug (D, H, W)
    img = ph["image"].permute(0, 3, 2, 1).contiguous()  # -> TorchIO (C, W, H, D)
    seg = ph["tissues"][None].permute(0, 3, 2, 1).contiguous()
    return tio.Subject(
        t1=tio.ScalarImage(tensor=img),
        t2=tio.ScalarImage(tensor=img.clone()),
        seg=tio.LabelMap(tensor=seg),
        index=seed,
    )


def keep_subjects(batch):
    """Collate that keeps the Subjects (and so their history) as a list."""
    return batch


def _rng_state():
    return torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate()  # noqa: NPY002 (read-only check)


def test_layout_mapping_is_axis_reversal():
    data = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)  # (C, W, H, D)
    x, is_2d = from_torchio_layout(data)
    assert not is_2d
    assert x.shape == (1, 2, 5, 4, 3)  # (1, C, D, H, W)
    for c, i, j, k in [(0, 0, 0, 0), (1, 2, 3, 4), (0, 1, 2, 3)]:
        assert x[0, c, k, j, i] == data[c, i, j, k]
    assert torch.equal(to_torchio_layout(x, is_2d), data)
    img2d = data[..., :1]  # (C, W, H, 1) is a 2D TorchIO image
    x2, is_2d = from_torchio_layout(img2d)
    assert is_2d and x2.shape == (1, 2, 4, 3)  # (1, C, H, W)
    assert x2[0, 1, 3, 2] == img2d[1, 2, 3, 0]
    assert torch.equal(to_torchio_layout(x2, True), img2d)


def _stripes(is_2d: bool):
    n = 16
    stripes = (torch.arange(n) % 2).float()
    if is_2d:
        along_w = stripes.reshape(1, n, 1, 1).expand(1, n, n, 1).contiguous()  # varies along I
        along_h = stripes.reshape(1, 1, n, 1).expand(1, n, n, 1).contiguous()  # varies along J
        return along_w, along_h, 1, 0  # robustaug spatial axes of (H, W): W = 1, H = 0
    along_w = stripes.reshape(1, n, 1, 1).expand(1, n, n, n).contiguous()  # varies along I
    along_d = stripes.reshape(1, 1, 1, n).expand(1, n, n, n).contiguous()  # varies along K (= D)
    return along_w, along_d, 2, 0  # robustaug spatial axes of (D, H, W): W = 2, D = 0


def _degrade(data, axes):
    return as_torchio(Downsample(factor=2.0, axes=axes))(tio.Subject(a=tio.ScalarImage(tensor=data))).a.data


@pytest.mark.parametrize("is_2d", [False, True])
def test_axis_semantics_degraded_axis(is_2d):
    """robustaug's W axis is TorchIO's axis 1 (I); D is TorchIO's axis 3 (K); H is axis 2 (J)."""
    along_w, along_other, w_axis, other_axis = _stripes(is_2d)
    for axes, data in [((w_axis,), along_w), ((other_axis,), along_other)]:
        out = _degrade(data, axes)
        assert out.shape == data.shape
        assert (out - data).abs().max() > 0.2  # stripes along the degraded axis are smoothed


@pytest.mark.parametrize("is_2d", [False, True])
def test_axis_semantics_other_axes_untouched(is_2d):
    along_w, along_other, w_axis, other_axis = _stripes(is_2d)
    for axes, data in [((w_axis,), along_other), ((other_axis,), along_w)]:
        out = _degrade(data, axes)  # the image is constant along the degraded axis
        torch.testing.assert_close(out, data, atol=1e-5, rtol=0)


def test_compose_labels_untouched_history_and_replay():
    subject = _subject(1)
    pipeline = tio.Compose(
        [
            tio.RandomFlip(axes=(0,), flip_probability=1.0),
            as_torchio(GaussianNoise(std=0.05, seed=3)),
        ]
    )
    out = pipeline(subject)
    flipped = tio.Flip(axes=(0,))(subject)
    assert torch.equal(flipped.t1.data, subject.t1.data.flip(1))
    # Label map: only the flip, not the noise.
    assert torch.equal(out.seg.data, flipped.seg.data)
    assert out.t1.data.shape == subject.t1.data.shape and out.t1.data.dtype == torch.float32
    noise = out.t1.data - flipped.t1.data
    assert 0.04 < float(noise.std()) < 0.06
    # The input subject was not modified (TorchIO copy=True).
    assert torch.equal(subject.t1.data, _subject(1).t1.data)
    # History: the flip and our entry, with JSON-able params per image.
    names = [name for name, _ in out.applied_transforms]
    assert names == ["Flip", "TorchIOTransform"]
    args = out.applied_transforms[-1][1]
    assert set(args["params"]) == {"t1", "t2"}  # label map not included
    json.dumps(args["params"])
    assert args["params"]["t1"]["std"] == [0.05]
    # Shared params: t1 and t2 had the same data and got the same draw.
    assert torch.equal(out.t1.data, out.t2.data)
    # The composed history rebuilds a transform that replays the corruption exactly.
    replay = out.get_composed_history()
    again = replay(subject)
    assert torch.equal(again.t1.data, out.t1.data)
    assert torch.equal(again.seg.data, out.seg.data)


def test_include_exclude_and_unshared():
    subject = _subject(2)
    out = as_torchio(GaussianNoise(std=0.1), include=["t1"])(subject)
    assert not torch.equal(out.t1.data, subject.t1.data)
    assert torch.equal(out.t2.data, subject.t2.data)
    out = as_torchio(GaussianNoise(std=0.1), exclude=["t1"])(subject)
    assert torch.equal(out.t1.data, subject.t1.data)
    assert not torch.equal(out.t2.data, subject.t2.data)
    out = as_torchio(GaussianNoise(std=0.1, seed=0), shared=False)(subject)
    assert not torch.equal(out.t1.data, out.t2.data)
    p = out.applied_transforms[-1][1]["params"]
    assert p["t1"]["seed"] != p["t2"]["seed"]


def test_2d_image_and_dtype_kept():
    img = tio.ScalarImage(tensor=(torch.rand(1, 24, 20, 1) * 1000).to(torch.int16))
    out = as_torchio(GaussianBlur(sigma=1.5))(tio.Subject(img=img))
    assert out.img.data.shape == (1, 24, 20, 1)
    assert out.img.data.dtype == torch.int16
    assert not torch.equal(out.img.data, img.data)


def test_pickles_and_same_seed_same_output():
    t = as_torchio(GaussianNoise(std=0.1, seed=7))
    t2 = pickle.loads(pickle.dumps(t))
    assert isinstance(t2, TorchIOTransform)
    s = _subject(0)
    assert torch.equal(t(s).t1.data, t2(s).t1.data)


def test_errors():
    with pytest.raises(TypeError, match="robustaug Transform"):
        as_torchio(tio.RandomNoise())
    img2d = tio.ScalarImage(tensor=torch.rand(1, 16, 16, 1))
    with pytest.raises(ValueError, match="spatial_dims=3"):
        as_torchio(GaussianNoise(std=0.1, spatial_dims=3))(tio.Subject(img=img2d))
    with pytest.raises(TypeError, match="params"):
        TorchIOTransform(GaussianNoise(), params=[1, 2])


def _run_loader(transform, seed: int, num_workers: int = 2):
    ds = tio.SubjectsDataset([_subject(0, 16) for _ in range(4)], transform=transform)
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=1,
        num_workers=num_workers,
        collate_fn=keep_subjects,
        generator=torch.Generator().manual_seed(seed),
    )
    return [b[0] for b in loader]


@pytest.mark.parametrize("seed", [None, 11])
def test_subjects_dataset_dataloader_two_workers(seed):
    pipeline = tio.Compose(
        [tio.RandomFlip(axes=(0,), flip_probability=1.0), as_torchio(GaussianNoise(std=0.05, seed=seed))]
    )
    before = _rng_state()
    subjects = _run_loader(pipeline, seed=0)
    ref = _subject(0, 16)
    clean_t1, clean_seg = ref.t1.data.flip(1), ref.seg.data.flip(1)  # RandomFlip on axis 0 (I)
    noises = []
    for s in subjects:
        assert s.t1.data.shape == clean_t1.shape
        assert torch.equal(s.seg.data, clean_seg)
        assert [n for n, _ in s.applied_transforms][-1] == "TorchIOTransform"
        noises.append(s.t1.data - clean_t1)
    # Every sample (two per worker) got its own draw.
    for i in range(len(noises)):
        for j in range(i + 1, len(noises)):
            assert not torch.equal(noises[i], noises[j])
    # Same loader seed -> same run; different loader seed -> different run.
    again = _run_loader(pipeline, seed=0)
    for a, b in zip(subjects, again):
        assert torch.equal(a.t1.data, b.t1.data)
    other = _run_loader(pipeline, seed=1)
    assert not torch.equal(subjects[0].t1.data, other[0].t1.data)
    after = _rng_state()
    assert torch.equal(before[0], after[0])  # the main process's global RNG is untouched
