"""The MONAI adapter on real MONAI pipelines (Compose, Dataset, monai.data.DataLoader seeding)."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest
import torch

monai = pytest.importorskip("monai")

from monai.data import DataLoader, Dataset, MetaTensor  # noqa: E402
from monai.data.utils import set_rnd  # noqa: E402
from monai.transforms import Compose, ScaleIntensityd  # noqa: E402

from robustaug import GaussianBlur, GaussianNoise  # noqa: E402
from robustaug.data import phantom  # noqa: E402
from robustaug.integrations.monai import Dictionary  # noqa: E402


def _item(seed: int = 0, size: int = 24, dims: int = 2) -> dict:
    shape = (size, size) if dims == 2 else (size, size, size)
    ph = phantom(shape, seed=seed)
    return {"image": ph["image"] * 200.0 + 50.0, "label": ph["tissues"][None].clone(), "id": seed}


def _rng_state():
    return torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate()  # noqa: NPY002 (read-only check)


def _pipeline(seed=None) -> Compose:
    return Compose(
        [
            ScaleIntensityd(keys="image"),  # to [0, 1]
            Dictionary(GaussianNoise(std=0.05, seed=seed), keys=("image",)),
        ]
    )


def _clean(item: dict) -> torch.Tensor:
    x = item["image"]
    return (x - x.min()) / (x.max() - x.min())


def _run(pipeline: Compose, seed: int, num_workers: int = 2) -> list[dict]:
    ds = Dataset([_item(0) for _ in range(4)], transform=pipeline)
    loader = DataLoader(
        ds, batch_size=1, num_workers=num_workers, generator=torch.Generator().manual_seed(seed)
    )
    return list(loader)


@pytest.mark.parametrize("seed", [None, 5])
def test_monai_dataloader_two_workers(seed):
    before = _rng_state()
    batches = _run(_pipeline(seed), seed=0)
    clean = _clean(_item(0))
    noises = []
    for b in batches:
        assert isinstance(b["image"], MetaTensor)
        assert b["image"].shape == (1, *clean.shape)
        assert torch.equal(b["label"][0], _item(0)["label"])  # labels untouched
        noise = b["image"].as_tensor()[0] - clean
        assert 0.04 < float(noise.std()) < 0.06
        noises.append(noise)
    for i in range(len(noises)):  # every sample, in both workers, got its own draw
        for j in range(i + 1, len(noises)):
            assert not torch.allclose(noises[i], noises[j])
    again = _run(_pipeline(seed), seed=0)  # MONAI's loader seeding makes the run reproducible
    for a, b in zip(batches, again):
        assert torch.equal(a["image"].as_tensor(), b["image"].as_tensor())
    other = _run(_pipeline(seed), seed=1)
    assert not torch.equal(batches[0]["image"].as_tensor(), other[0]["image"].as_tensor())
    assert torch.equal(before[0], _rng_state()[0])


def test_set_rnd_reaches_the_robustaug_transform():
    pipeline = _pipeline(seed=None)
    adapter = pipeline.transforms[1]
    ds = Dataset([_item(0), _item(1)], transform=pipeline)
    before = _rng_state()
    set_rnd(ds, 123)
    assert adapter.transform.seed is not None  # Compose.set_random_state forwarded a seed
    run1 = [ds[i]["image"].clone() for i in range(2)]
    set_rnd(ds, 123)
    run2 = [ds[i]["image"].clone() for i in range(2)]
    set_rnd(ds, 124)
    run3 = [ds[i]["image"].clone() for i in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(run1, run2))
    assert not torch.equal(run1[0], run3[0])
    assert not torch.equal(run1[0] - _clean(_item(0)), run1[1] - _clean(_item(1)))
    # Seeded draws never touch the global RNGs.
    after = _rng_state()
    assert torch.equal(before[0], after[0])
    assert np.array_equal(before[1], after[1]) and before[2] == after[2]
    adapter.set_random_state(None)
    assert adapter.transform.seed is None


def test_monai_dataloader_num_workers_0_is_seeded_by_monai():
    pipeline = _pipeline(seed=None)
    ds = Dataset([_item(0)], transform=pipeline)
    DataLoader(ds, batch_size=1, num_workers=0, generator=torch.Generator().manual_seed(3))
    assert pipeline.transforms[1].transform.seed is not None


def test_metatensor_meta_kept_and_3d():
    item = _item(2, size=16, dims=3)
    affine = torch.diag(torch.tensor([2.0, 2.0, 3.0, 1.0]))
    img = MetaTensor(item["image"], affine=affine, meta={"filename_or_obj": "brain.nii.gz"})
    t = Dictionary(GaussianBlur(sigma=1.0), keys=("image",))
    out = t({"image": img, "label": item["label"]})
    assert isinstance(out["image"], MetaTensor)
    assert out["image"].shape == img.shape and out["image"].dtype == img.dtype
    assert torch.equal(out["image"].affine, affine)
    assert out["image"].meta["filename_or_obj"] == "brain.nii.gz"
    assert not torch.equal(out["image"].as_tensor(), img.as_tensor())
    assert out["label"] is item["label"]
    assert torch.equal(img.as_tensor(), item["image"])  # input not modified
    json.dumps(t.last_params)


def test_numpy_in_numpy_out():
    x = _item(0)["image"].numpy().astype(np.float64)
    out = Dictionary(GaussianNoise(std=0.1, seed=0), keys="image")({"image": x})
    assert isinstance(out["image"], np.ndarray)
    assert out["image"].dtype == np.float64 and out["image"].shape == x.shape
    assert 0.08 < float(np.std(out["image"] - x)) < 0.12


def test_shared_params_and_missing_keys():
    x = _item(0)["image"]
    data = {"t1": x.clone(), "t2": x.clone()}
    out = Dictionary(GaussianNoise(std=0.1, seed=0), keys=("t1", "t2"))(data)
    assert torch.equal(out["t1"], out["t2"])
    out = Dictionary(GaussianNoise(std=0.1, seed=0), keys=("t1", "t2"), shared_params=False)(data)
    assert not torch.equal(out["t1"], out["t2"])
    with pytest.raises(KeyError):
        Dictionary(GaussianNoise(std=0.1), keys=("t1", "t3"))(data)
    out = Dictionary(GaussianNoise(std=0.1), keys=("t1", "t3"), allow_missing_keys=True)(data)
    assert set(out) == {"t1", "t2"}


def test_reverse_spatial_matches_torchio_layout():
    from robustaug import Downsample

    n = 16
    along_k = (torch.arange(n) % 2).float().reshape(1, 1, 1, n).expand(1, n, n, n).contiguous()
    # Degrading robustaug's D axis (axis 0) hits the array's last axis K once reversed.
    t = Dictionary(Downsample(factor=2.0, axes=(0,)), keys="image", reverse_spatial=True)
    assert (t({"image": along_k})["image"] - along_k).abs().max() > 0.2


def test_pickle_and_errors():
    t = Dictionary(GaussianNoise(std=0.1, seed=1), keys="image")
    t2 = pickle.loads(pickle.dumps(t))
    x = _item(0)["image"]
    assert torch.equal(t({"image": x})["image"], t2({"image": x})["image"])
    with pytest.raises(TypeError, match="robustaug Transform"):
        Dictionary(ScaleIntensityd(keys="image"))
    with pytest.raises(ValueError, match="channel-first"):
        t({"image": torch.zeros(8, 8)})
    with pytest.raises(TypeError, match="MetaTensor"):
        t({"image": [1.0, 2.0]})
