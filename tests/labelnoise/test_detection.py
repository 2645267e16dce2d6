"""Detection and cleaning: cleanlab parity, segmentation 2D parity + 3D, signals, OOF, actions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from cleanlab.filter import find_label_issues as cl_find
from cleanlab.segmentation.filter import find_label_issues as cl_seg_find
from cleanlab.segmentation.rank import get_label_quality_scores as cl_seg_scores
from torch import nn
from torch.utils.data import TensorDataset

from robustaug.labelnoise import (
    LabelIssues,
    LabelNoiseWarning,
    TrainingSignals,
    estimate_noise_rate,
    find_label_issues,
    find_segmentation_issues,
    lesion_scores,
    make_train_fn,
    out_of_fold_probs,
    prune,
    relabel,
    reweight,
    segmentation_quality_scores,
    single_run_signals,
    stratified_folds,
    symmetric,
)

from .conftest import GlobalRNGGuard

FILTERS = [
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_normalized_margin",
    "low_self_confidence",
]


def noisy_probs(n=400, C=5, rate=0.3, seed=0):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, C, n)
    logits = rng.normal(size=(n, C))
    logits[np.arange(n), y_true] += 2.5
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = symmetric(y_true, rate, C, seed=seed + 1).labels
    return y, P, y_true


@pytest.mark.parametrize("filter_by", FILTERS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_find_label_issues_exact_parity(filter_by, seed):
    y, P, _ = noisy_probs(seed=seed, C=3 + seed)
    ref = cl_find(y, P, filter_by=filter_by, n_jobs=1)
    res = find_label_issues(torch.from_numpy(y), torch.from_numpy(P), filter_by=filter_by)
    assert isinstance(res, LabelIssues) and res.mask.dtype == torch.bool
    assert np.array_equal(res.mask.numpy(), ref)
    if filter_by in ("prune_by_noise_rate", "prune_by_class", "both"):  # kwargs pass through
        res_np = find_label_issues(y, P, filter_by=filter_by, frac_noise=0.7)
        ref_np = cl_find(y, P, filter_by=filter_by, frac_noise=0.7, n_jobs=1)
        assert np.array_equal(res_np.mask, ref_np)


def test_find_label_issues_outputs():
    y, P, y_true = noisy_probs(n=1000, C=6)
    res = find_label_issues(y, P)
    flagged = np.flatnonzero(res.mask)
    assert set(res.indices.tolist()) == set(flagged.tolist())
    assert np.all(np.diff(res.quality[res.indices]) >= 0)  # most severe first
    assert np.array_equal(res.suggested, P.argmax(1))
    assert np.all((res.quality >= 0) & (res.quality <= 1))
    # the suggestion is mostly the true class on flagged, really-flipped samples
    real = res.mask & (y != y_true)
    assert np.mean(res.suggested[real] == y_true[real]) > 0.8
    # soft labels are argmaxed
    soft = np.eye(6)[y] * 0.9 + 0.1 / 6
    assert np.array_equal(find_label_issues(soft, P).mask, res.mask)


def test_guardrails():
    y, P, _ = noisy_probs(n=300)
    with pytest.warns(LabelNoiseWarning, match="one-hot"):
        find_label_issues(y, np.eye(5)[y])
    in_sample = np.eye(5)[y] * 0.9 + 0.02
    with pytest.warns(LabelNoiseWarning, match="in-sample"):
        find_label_issues(y, in_sample)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LabelNoiseWarning)
        find_label_issues(y, P)


def seg_data(N=6, K=3, shape=(16, 20), seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, (N, *shape))
    logits = rng.normal(size=(N, K, *shape))
    logits += 2.0 * np.moveaxis(np.eye(K)[y], -1, 1)
    P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    flip = rng.random(y.shape) < 0.15
    yn = np.where(flip, (y + 1) % K, y)
    return yn, P.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
def test_segmentation_2d_parity_with_cleanlab(seed):
    y, P = seg_data(seed=seed)
    ref = cl_seg_find(y, P, n_jobs=1, verbose=False)
    ours = find_segmentation_issues(y, P)
    assert ref.any()
    assert np.array_equal(ours, ref)
    ours_t = find_segmentation_issues(torch.from_numpy(y), torch.from_numpy(P), batch_size=1)
    assert torch.equal(ours_t, torch.from_numpy(ref))
    img, pix = segmentation_quality_scores(y, P)
    rimg, rpix = cl_seg_scores(y, P, n_jobs=1, verbose=False)
    np.testing.assert_allclose(img, rimg, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pix, rpix, rtol=0, atol=0)


def test_segmentation_3d_native_matches_flattened_reference():
    y, P = seg_data(N=3, K=4, shape=(5, 8, 12), seed=3)
    ours = find_segmentation_issues(torch.from_numpy(y), torch.from_numpy(P), batch_size=2)
    assert ours.shape == y.shape
    # cleanlab rejects 3D; the voxel order of (N, D*H, W) equals that of (N, D, H, W)
    ref = cl_seg_find(y.reshape(3, 40, 12), P.reshape(3, 4, 40, 12), n_jobs=1, verbose=False)
    assert np.array_equal(ours.numpy().reshape(3, 40, 12), ref)
    img, pix = segmentation_quality_scores(y, P)
    assert img.shape == (3,) and pix.shape == y.shape


def test_segmentation_ignore_index():
    y, P = seg_data(seed=4)
    y = y.copy()
    y[:, :3] = 255
    m = find_segmentation_issues(y, P, ignore_index=255)
    assert not m[:, :3].any() and m.any()
    img, pix = segmentation_quality_scores(y, P, ignore_index=255)
    assert np.isnan(pix[:, :3]).all() and np.isfinite(img).all()


def test_lesion_scores_find_spurious_and_missed():
    y = np.zeros((1, 32, 32), np.int64)
    P = np.zeros((1, 2, 32, 32))
    P[:, 0] = 0.95
    y[0, 4:10, 4:10] = 1  # true lesion, model agrees
    P[0, 1, 4:10, 4:10] = 0.9
    y[0, 20:24, 20:24] = 1  # spurious label, model disagrees
    P[0, 1, 20:24, 20:24] = 0.05
    P[0, 1, 12:16, 25:29] = 0.97  # lesion the label missed
    P[:, 0] = 1 - P[:, 1]
    rows = lesion_scores(y, P)
    kinds = [(r["kind"], r["centroid"]) for r in rows[:2]]
    assert {k for k, _ in kinds} == {"labelled", "missed"}
    assert rows[0]["score"] < 0.1 and rows[1]["score"] < 0.1
    good = [r for r in rows if r["kind"] == "labelled" and r["centroid"][0] < 10]
    assert good and good[0]["score"] > 0.8


def test_actions_and_noise_rate():
    y, P, y_true = noisy_probs(n=2000, C=5, rate=0.3)
    res = find_label_issues(y, P)
    keep = prune(res)
    assert np.array_equal(keep, np.flatnonzero(~res.mask))
    assert torch.equal(prune(torch.from_numpy(res.mask)), torch.from_numpy(keep))
    new, changed = relabel(y, P, threshold=0.6, issues=res)
    assert np.all(changed <= res.mask)
    assert np.all(new[changed] == P.argmax(1)[changed]) and np.all(new[~changed] == y[~changed])
    assert np.mean(new == y_true) > np.mean(y == y_true)
    w = reweight(res, power=2.0)
    assert w.mean() == pytest.approx(1.0)
    assert w[y != y_true].mean() < w[y == y_true].mean()
    est = estimate_noise_rate(y, P)
    assert abs(est - np.mean(y != y_true)) < 0.1


def test_training_signals_definitions():
    sig = TrainingSignals(4)
    logits = torch.tensor([[3.0, 0.0, 1.0], [0.0, 2.0, 0.0], [1.0, 1.0, 4.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 0, 2, 1])
    sig.update(torch.arange(4), logits, y)
    sig.end_epoch()
    sig.update(torch.arange(4), logits * 2, y)
    aum = sig.aum()
    expect = torch.tensor([(2.0 + 4.0) / 2, (-2.0 - 4.0) / 2, (3.0 + 6.0) / 2, 0.0], dtype=torch.float64)
    assert torch.allclose(aum, expect)
    ce = torch.nn.functional.cross_entropy
    l0 = (ce(logits, y, reduction="none") + ce(2 * logits, y, reduction="none")).double() / 2
    assert torch.allclose(sig.mean_loss(), l0)
    assert torch.argmax(sig.small_loss_rank()) == 1 and sig.small_loss_rank().max() == 1.0


def _toy(n=150, C=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % C
    x = torch.randn(n, 2, generator=g) * 0.5 + torch.stack([torch.cos(y * 2.1), torch.sin(y * 2.1)], 1) * 2
    return x, y


def test_out_of_fold_probs_and_single_run_signals():
    x, y_true = _toy()
    res = symmetric(y_true, 0.25, 3, seed=0)
    ds = TensorDataset(x, res.labels)

    def factory():
        return nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))

    with GlobalRNGGuard():
        P = out_of_fold_probs(factory, ds, k=3, train_fn=make_train_fn(epochs=10, lr=1e-2), seed=0)
        P2 = out_of_fold_probs(factory, ds, k=3, train_fn=make_train_fn(epochs=10, lr=1e-2), seed=0)
    assert P.shape == (150, 3) and torch.allclose(P.sum(1), torch.ones(150))
    assert torch.equal(P, P2)
    assert (P.argmax(1) == y_true).float().mean() > 0.85  # out-of-fold predicts the *true* class
    issues = find_label_issues(res.labels, P)
    flipped = res.mask
    prec = (issues.mask & flipped).sum() / max(int(issues.mask.sum()), 1)
    assert prec > 0.7
    folds = stratified_folds(res.labels, 3, seed=0)
    assert np.all(np.bincount(folds) == 50)
    torch.manual_seed(0)
    sig = single_run_signals(factory(), ds, epochs=8, lr=1e-2, seed=0)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(flipped.numpy(), sig.small_loss_rank().numpy()) > 0.9
    assert roc_auc_score(flipped.numpy(), -sig.aum().numpy()) > 0.9
