"""RaterPanel, majority vote, STAPLE and the NoisyLabels wrapper."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from robustaug.labelnoise import (
    NoisyLabels,
    Rater,
    RaterPanel,
    dice,
    dilate,
    majority_vote,
    staple,
    symmetric,
)

from .conftest import GlobalRNGGuard


def square(n=48):
    m = np.zeros((n, n), np.int64)
    m[12:36, 10:38] = 1
    return m


def test_identical_raters_consensus_is_the_rater():
    m = square()
    masks = np.stack([m] * 4)
    assert np.array_equal(majority_vote(masks), m)
    res = staple(masks)
    assert np.array_equal(res.labels, m)
    assert np.allclose(res.confusion[:, 1, 1], 1.0, atol=1e-6)


def test_staple_ranks_raters_and_beats_majority():
    rng = np.random.default_rng(0)
    truth = (rng.random((64, 64)) < 0.4).astype(np.int64)
    errs = [0.05, 0.30, 0.35, 0.40, 0.45]  # one good rater, four poor ones
    masks = np.stack([np.where(rng.random(truth.shape) < e, 1 - truth, truth) for e in errs])
    res = staple(masks)
    sens = res.confusion[:, 1, 1]
    spec = res.confusion[:, 0, 0]
    assert np.argmax(sens + spec) == 0
    acc_staple = np.mean(res.labels == truth)
    acc_major = np.mean(majority_vote(masks) == truth)
    assert acc_staple > acc_major
    # estimated error rates close to the true ones
    assert np.allclose(1 - (sens + spec) / 2, errs, atol=0.05)


def test_staple_multiclass_and_torch():
    m = square()
    m[20:28, 20:28] = 2
    masks = torch.from_numpy(np.stack([m, m, dilate(m, 2).labels]))
    res = staple(masks)
    assert isinstance(res.labels, torch.Tensor) and res.labels.shape == m.shape
    assert res.confusion.shape == (3, 3, 3)
    assert np.allclose(res.confusion.sum(2), 1.0)
    assert res.posterior.shape == (3, *m.shape)


def test_rater_panel_reproducible_and_biased():
    m = square()
    panel = RaterPanel([Rater(bias_mm=2.0), Rater(bias_mm=-2.0), Rater(jitter_mm=1.0, p_miss=0.0),
                        Rater(fp_rate=3.0)], seed=0)
    with GlobalRNGGuard():
        a = panel.sample(m, spacing=(1.0, 1.0))
        b = panel.sample(m, spacing=(1.0, 1.0))
        c = panel.sample(m, spacing=(1.0, 1.0), seed=1)
    assert a.shape == (4, *m.shape)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a[0].sum() > m.sum() > a[1].sum()
    cons = panel.consensus(a, method="majority")
    assert dice(cons, m) > dice(a[1], m)
    assert panel.consensus(a, method="staple").shape == m.shape
    with pytest.raises(ValueError, match="method"):
        panel.consensus(a, method="mean")


def test_noisy_labels_tuple_dataset():
    y = torch.arange(500) % 5
    ds = TensorDataset(torch.randn(500, 3, generator=torch.Generator().manual_seed(0)), y)
    nl = NoisyLabels(ds, functools.partial(symmetric, rate=0.3, num_classes=5, mode="exact"), seed=1)
    assert len(nl) == 500
    assert torch.equal(nl.true_labels, y)
    assert int(nl.noise_mask.sum()) == 150
    ys = torch.stack([nl[i][1] for i in range(500)])
    assert torch.equal(ys != y, nl.noise_mask)
    assert torch.equal(nl[3][0], ds[3][0])
    nl2 = NoisyLabels(ds, functools.partial(symmetric, rate=0.3, num_classes=5, mode="exact"), seed=1)
    assert torch.equal(nl2.noisy_labels, nl.noisy_labels)


class DictDS(Dataset):
    def __init__(self):
        self.m = np.zeros((6, 32, 32), np.int64)
        self.m[:, 8:24, 8:24] = 1

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return {"image": np.full((1, 32, 32), float(i)), "label": self.m[i]}


def test_noisy_labels_dict_per_sample_segmentation():
    ds = DictDS()
    nl = NoisyLabels(ds, functools.partial(dilate, radius_mm=2.0), seed=0, per_sample=True)
    item = nl[2]
    assert item["image"][0, 0, 0] == 2.0
    assert item["label"].sum() > ds[2]["label"].sum()
    assert np.array_equal(nl.noise_mask_of(2), item["label"] != ds[2]["label"])
    assert np.array_equal(nl.true_label_of(2), ds[2]["label"])
    # int labels in dict items (classification)
    class Cls(Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, i):
            return {"x": i, "label": i % 4}

    nc = NoisyLabels(Cls(), functools.partial(symmetric, rate=0.5, num_classes=4), seed=3)
    assert isinstance(nc[0]["label"], int)
    assert sum(nc[i]["label"] != i % 4 for i in range(40)) == int(nc.noise_mask.sum())
