"""Label noise end to end: inject, detect, clean (classification) and simulate raters (segmentation).

Runs on CPU; ``--quick`` finishes in well under 2 minutes::

    python examples/label_noise.py --quick
"""

from __future__ import annotations

import argparse
import functools

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from robustaug.labelnoise import (
    NoisyLabels,
    Rater,
    RaterPanel,
    dice,
    dilate,
    drop_components,
    estimate_noise_rate,
    find_label_issues,
    find_segmentation_issues,
    make_train_fn,
    out_of_fold_probs,
    prune,
    single_run_signals,
    staple,
    symmetric,
)


def classification(quick: bool) -> None:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = ((X / 16.0 - (X / 16.0).mean(0)) / ((X / 16.0).std(0) + 1e-6)).astype(np.float32)
    clean = TensorDataset(torch.from_numpy(X), torch.from_numpy(y))

    # 1. inject 40 % symmetric noise, reproducibly; the wrapper keeps the truth
    noisy = NoisyLabels(clean, functools.partial(symmetric, rate=0.4, num_classes=10), seed=0)
    print(f"injected noise rate: {noisy.noise_mask.float().mean():.3f}")
    print("realised T diagonal:", np.round(noisy.transition.diag().numpy(), 2))

    # 2. out-of-fold probabilities from a small torch model
    def model() -> nn.Module:
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    train = make_train_fn(epochs=10 if quick else 30, lr=1e-3)
    P = out_of_fold_probs(model, noisy, k=5, train_fn=train, labels=noisy.noisy_labels, seed=0)

    # 3. find issues (cleanlab under the hood) and estimate the noise rate
    issues = find_label_issues(noisy.noisy_labels, P)
    flips = noisy.noise_mask
    tp = int((issues.mask & flips).sum())
    print(f"flagged {int(issues.mask.sum())}: precision {tp / max(int(issues.mask.sum()), 1):.3f}, "
          f"recall {tp / int(flips.sum()):.3f}")
    print(f"estimated noise rate: {estimate_noise_rate(noisy.noisy_labels, P):.3f}")
    top = issues.indices[:3]
    print("top issues (index, given, suggested, true):",
          [(int(i), int(noisy.noisy_labels[i]), int(issues.suggested[i]), int(y[i])) for i in top])

    # 4. cheap single-run signals (no K-fold): area under the margin
    torch.manual_seed(0)
    sig = single_run_signals(model(), noisy, epochs=5 if quick else 15, lr=1e-3)
    from sklearn.metrics import roc_auc_score

    print(f"AUM AUROC: {roc_auc_score(flips.numpy(), -sig.aum().numpy()):.3f}")

    # 5. prune the flagged samples -> a cleaner training set
    kept = Subset(noisy, prune(issues).tolist())
    print(f"kept {len(kept)} / {len(noisy)} samples")


def segmentation() -> None:
    # a 3D "lesion" volume with anisotropic voxels (3 mm slices, 1 mm in-plane)
    spacing = (3.0, 1.0, 1.0)
    zz, yy, xx = np.mgrid[:16, :64, :64]
    mask = ((((zz - 8) * 3) ** 2 + (yy - 32) ** 2 + (xx - 32) ** 2) <= 15**2).astype(np.int64)
    mask[((zz - 8) * 3) ** 2 + (yy - 10) ** 2 + (xx - 10) ** 2 <= 4**2] = 1  # a small lesion

    over = dilate(mask, 2.0, spacing)
    missed = drop_components(mask, 0.5, size_dependent=True, seed=1)
    print(f"dilate 2 mm: Dice {dice(over.labels, mask):.3f}; drop_components changed "
          f"{int(missed.mask.sum())} voxels")

    panel = RaterPanel([Rater(bias_mm=2.0), Rater(bias_mm=-2.0), Rater(jitter_mm=1.5),
                        Rater(p_miss=0.5), Rater()], seed=0)
    raters = panel.sample(mask, spacing)
    st = staple(raters)
    print("rater Dice:", [round(dice(r, mask), 3) for r in raters])
    print(f"majority Dice {dice(panel.consensus(raters, 'majority'), mask):.3f}, "
          f"STAPLE Dice {dice(st.labels, mask):.3f}")

    # voxel-level detection on 3D volumes (cleanlab.segmentation is 2D only)
    labels = torch.from_numpy(np.stack([over.labels, mask]))
    logit = torch.from_numpy(np.stack([mask, mask]).astype(np.float32)) * 6 - 3
    P = torch.stack([torch.sigmoid(-logit), torch.sigmoid(logit)], 1)
    flagged = find_segmentation_issues(labels, P)
    print(f"3D detection: {int(flagged.sum())} voxels flagged, "
          f"{int((flagged[0] & torch.from_numpy(over.mask)).sum())} of {int(over.mask.sum())} "
          "dilated voxels found")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer epochs (CPU, < 2 min)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    classification(args.quick)
    segmentation()


if __name__ == "__main__":
    main()
