"""Render docs/img/adversarial_physical.png: random artifacts beside physical worst cases.

For each artifact at severity 3, the first column is the clean phantom slice, the second a random
draw of the artifact, and the third the physical attack (PGD over exactly the parameter set the
random artifact samples from at that severity) against a small CNN trained on the built-in data.
Titles give the model's probability of the true class.

Usage: python docs/gen_adversarial_figure.py
"""

from __future__ import annotations

from pathlib import Path

import torch

from robustaug import adversarial as adv
from robustaug import create
from robustaug.data.datasets import phantom_slices
from robustaug.evaluate.study import SmallCNN, train_classifier
from robustaug.evaluate.sweeps import physical_threat

OUT = Path(__file__).resolve().parent / "img" / "adversarial_physical.png"
ARTIFACTS = ["BiasField", "Motion", "Ghosting", "Gamma", "RicianNoise"]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = phantom_slices(300, size=48, seed=1)
    te = phantom_slices(8, size=48, seed=2)
    model = train_classifier(lambda: SmallCNN(1, 2), tr["image"], tr["label"], epochs=4, batch_size=16, seed=0)
    x, y = te["image"][:1], te["label"][:1]

    def prob(img: torch.Tensor) -> float:
        with torch.no_grad():
            return float(torch.softmax(model(img), 1)[0, int(y)])

    fig, axes = plt.subplots(len(ARTIFACTS), 3, figsize=(6.6, 2.2 * len(ARTIFACTS)))
    for row, name in zip(axes, ARTIFACTS):
        rnd = create(name, severity=3, seed=0)(x, generator=torch.Generator().manual_seed(0))
        worst = adv.perturb(model, x, y, threat=physical_threat(name, 3, steps=20), attack="pgd",
                            data_range=None, seed=0)
        for ax, img, title in zip(row, (x, rnd, worst), ("clean", f"random {name} s3", "worst case s3")):
            ax.imshow(img[0, 0].detach().numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{title}\np(true) = {prob(img):.2f}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=80)
    print(OUT)


if __name__ == "__main__":
    main()
