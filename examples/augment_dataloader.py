"""A robustaug transform inside a plain PyTorch DataLoader: before and after.

Runs on CPU in a few seconds::

    python examples/augment_dataloader.py

The dataset yields built-in brain phantoms (1, 64, 64) in [0, 1]. "Before" is the usual loader;
"after" adds one line, a robustaug composition applied per sample in the workers. Each worker and
each epoch gets its own draws, and the whole run is reproducible from the loader's generator.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

import robustaug as ra
from robustaug.data import phantom
from robustaug.functional.metrics import ssim


class Phantoms(Dataset):
    """``n`` phantom slices with a label (lesion present or not); ``transform`` is optional."""

    def __init__(self, n: int = 16, transform: ra.Transform | None = None) -> None:
        self.items = [phantom((64, 64), seed=i) for i in range(n)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.items[i]["image"]  # (1, 64, 64), float32
        label = int(self.items[i]["lesion_mask"].any())
        if self.transform is not None:
            x = self.transform(x)  # same shape and dtype; labels are untouched
        return x, label


def mean_ssim(loader: DataLoader, clean: Phantoms) -> float:
    scores = []
    for b, (x, _) in enumerate(loader):
        ref = torch.stack([clean[b * loader.batch_size + j][0] for j in range(len(x))])
        scores.append(ssim(x, ref, data_range=1.0).mean())
    return float(torch.stack(scores).mean())


def main() -> None:
    clean = Phantoms()
    # Before: a plain loader.
    before = DataLoader(clean, batch_size=4, num_workers=2)

    # After: the same loader with per-sample physics-based corruptions.
    aug = ra.Compose(
        [
            ra.OneOf([ra.GaussianNoise(std=(0.01, 0.05)), ra.PoissonNoise(photons=(100.0, 1000.0))]),
            ra.GaussianBlur(sigma=(0.3, 1.2), p=0.5),
            ra.Gamma(log_gamma=(-0.3, 0.3), p=0.5),
        ],
        seed=0,  # worker- and epoch-aware: distinct, reproducible streams; global RNG untouched
    )

    def make_loader(seed: int) -> DataLoader:
        return DataLoader(
            Phantoms(transform=aug),
            batch_size=4,
            num_workers=2,
            generator=torch.Generator().manual_seed(seed),
        )

    after = make_loader(0)
    epoch0 = torch.cat([x for x, _ in after])  # first pass over the data
    epoch1 = torch.cat([x for x, _ in after])  # second pass: new draws

    x0, y0 = next(iter(before))
    x1, y1 = next(iter(make_loader(0)))
    assert x1.shape == x0.shape and x1.dtype == x0.dtype and torch.equal(y0, y1)
    print(f"batch shape {tuple(x1.shape)}, dtype {x1.dtype}, labels {y1.tolist()}")
    print(f"mean SSIM to clean: before {mean_ssim(before, clean):.3f}, "
          f"after {mean_ssim(make_loader(0), clean):.3f}")
    print(f"epochs differ: {not torch.equal(epoch0, epoch1)}")
    rerun = torch.cat([x for x, _ in make_loader(0)])
    print(f"same loader seed reproduces epoch 0: {torch.equal(epoch0, rerun)}")

if __name__ == "__main__":
    main()
