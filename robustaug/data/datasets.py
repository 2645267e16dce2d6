"""Built-in datasets and loaders for users' own data (folders, MedMNIST ``.npz``, factories).

Everything here is offline: the built-in dataset is generated from phantoms, and the loaders read
local files only.
"""

from __future__ import annotations

import csv
import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .phantoms import phantom

__all__ = ["load_folder", "load_npz", "load_object", "phantom_slices"]


def phantom_slices(
    n: int,
    *,
    size: int = 64,
    seed: int = 0,
    lesion_fraction: float = 0.5,
    contrast: str = "t1",
    lesion_radius: tuple[float, float] = (0.07, 0.12),
) -> dict[str, Tensor]:
    """A 2D MRI classification/segmentation dataset: phantom slices with and without lesions.

    Each sample is an axial slice of a distinct phantom anatomy (seeded); a fraction of them carry
    1-3 white-matter lesions. The task is "lesion present?" (label 1) with the lesion mask for
    segmentation.

    Args:
        n: Number of samples.
        size: Edge length in pixels.
        seed: Dataset seed (sample i uses anatomy seed ``seed * 100003 + i``).
        lesion_fraction: Fraction of samples with lesions (exactly ``round(n * fraction)``).
        contrast: Phantom contrast (``"t1"``, ``"t2"`` or ``"pd"``).
        lesion_radius: Lesion radius range as a fraction of the half field of view.

    Returns:
        ``{"image": (n, 1, size, size) float32, "label": (n,) int64, "mask": (n, size, size) int64}``.

    Examples:
        >>> d = phantom_slices(4, size=32, seed=0)
        >>> d["image"].shape, d["label"].tolist()
        (torch.Size([4, 1, 32, 32]), [1, 0, 1, 0])
    """
    if n < 0 or size < 16:
        raise ValueError(f"`n` must be >= 0 and `size` >= 16, got n={n}, size={size}.")
    rng = np.random.default_rng(seed)
    n_pos = round(n * lesion_fraction)
    labels = np.zeros(n, dtype=np.int64)
    labels[(np.arange(n_pos) * n) // max(n_pos, 1)] = 1  # spread evenly: every other sample at 50 %
    imgs, masks = [], []
    for i in range(n):
        k = int(rng.integers(1, 4)) if labels[i] else 0
        out = phantom((size, size), seed=seed * 100003 + i, contrast=contrast, lesions=k,
                      lesion_radius=lesion_radius)
        if labels[i] and not bool(out["lesion_mask"].any()):
            labels[i] = 0  # could not place a lesion: keep the label honest
        imgs.append(out["image"])
        masks.append(out["lesion_mask"].long())
    return {
        "image": torch.stack(imgs) if imgs else torch.zeros(0, 1, size, size),
        "label": torch.from_numpy(labels),
        "mask": torch.stack(masks) if masks else torch.zeros(0, size, size, dtype=torch.long),
    }


def load_object(spec: str) -> Any:
    """Import ``"package.module:attribute"`` (a model factory or a dataset function)."""
    if ":" not in spec:
        raise ValueError(f"Expected 'module:function', got {spec!r}.")
    mod, attr = spec.split(":", 1)
    try:
        obj = importlib.import_module(mod)
    except ImportError as e:
        raise ImportError(f"Cannot import module {mod!r} from {spec!r}: {e}") from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise AttributeError(f"{mod!r} has no attribute {attr!r} (from {spec!r}).")
        obj = getattr(obj, part)
    return obj


def _to_chw(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        return a[None]
    if a.ndim == 3 and a.shape[-1] in (3, 4) and a.shape[0] not in (1, 3, 4):
        return np.moveaxis(a[..., :3], -1, 0)
    return a


def _normalise(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    return x.astype(np.float32)


def load_npz(path: str | Path, split: str = "test") -> tuple[Tensor, Tensor]:
    """Load a MedMNIST-format ``.npz`` split: ``<split>_images`` and ``<split>_labels``.

    uint8 images are scaled to [0, 1]; grayscale becomes ``(N, 1, H, W)``, RGB ``(N, 3, H, W)``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"npz file not found: {path}")
    with np.load(path) as z:
        ki, kl = f"{split}_images", f"{split}_labels"
        if ki not in z or kl not in z:
            raise KeyError(f"{path} has no {ki!r}/{kl!r} arrays (keys: {sorted(z.files)}).")
        imgs, labels = z[ki], z[kl]
    x = _normalise(imgs)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3):
        x = np.moveaxis(x, -1, 1)
    y = np.asarray(labels).reshape(len(labels), -1)[:, 0].astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)


def _read_image(p: Path) -> np.ndarray:
    suf = "".join(p.suffixes).lower()
    if suf.endswith(".npy"):
        return _normalise(_to_chw(np.load(p)))
    if suf.endswith(".nii") or suf.endswith(".nii.gz"):
        try:
            import nibabel as nib
        except ImportError as e:  # pragma: no cover
            raise ImportError("Reading NIfTI needs nibabel: pip install nibabel") from e
        a = np.asarray(nib.load(str(p)).dataobj, dtype=np.float32)
        if a.ndim == 3 and a.shape[-1] == 1:
            a = a[..., 0]
        return _to_chw(a)
    if suf.endswith(".png") or suf.endswith(".jpg") or suf.endswith(".jpeg"):
        from PIL import Image

        with Image.open(p) as im:
            return _normalise(_to_chw(np.asarray(im)))
    raise ValueError(f"Unsupported image file {p.name}: use .npy, .png, .jpg, .nii or .nii.gz.")


def load_folder(
    path: str | Path, labels_csv: str = "labels.csv", split: str | None = None, target: str = "label"
) -> tuple[Tensor, Tensor]:
    """Load a folder of images with a labels CSV (columns ``filename,label[,mask][,split]``).

    Args:
        path: The folder.
        labels_csv: CSV file name inside the folder (or an absolute path).
        split: If given and the CSV has a ``split`` column, keep only those rows.
        target: ``"label"`` (an integer class per image) or ``"mask"`` (a label-map file per
            image in the ``mask`` column, same spatial shape as the image, read as int64).

    Returns:
        ``(x, y)``: images stacked to ``(N, C, *spatial)`` float32 and int64 labels ``(N,)`` or
        masks ``(N, *spatial)``.
    """
    if target not in ("label", "mask"):
        raise ValueError(f"`target` must be 'label' or 'mask', got {target!r}.")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    csv_path = Path(labels_csv) if Path(labels_csv).is_absolute() else root / labels_csv
    if not csv_path.exists():
        raise FileNotFoundError(f"labels CSV not found: {csv_path}")
    xs, ys = [], []
    with csv_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"filename", target} <= set(reader.fieldnames):
            raise ValueError(f"{csv_path} must have 'filename' and '{target}' columns, got {reader.fieldnames}.")
        for row in reader:
            if split is not None and "split" in row and row["split"] != split:
                continue
            f = root / row["filename"]
            if not f.exists():
                raise FileNotFoundError(f"{csv_path} lists {row['filename']!r}, which does not exist in {root}.")
            xs.append(torch.from_numpy(np.ascontiguousarray(_read_image(f))))
            if target == "label":
                ys.append(int(row["label"]))
                continue
            mf = root / row["mask"]
            if not mf.exists():
                raise FileNotFoundError(f"{csv_path} lists mask {row['mask']!r}, which does not exist in {root}.")
            m = _read_image(mf)
            m = m[0] if m.ndim == xs[-1].ndim else m
            scale = 255.0 if mf.suffix.lower() in (".png", ".jpg", ".jpeg") else 1.0
            ys.append(torch.from_numpy(np.rint(np.asarray(m) * scale).astype(np.int64)))
    if not xs:
        raise ValueError(f"no samples found in {csv_path}" + (f" for split {split!r}" if split else ""))
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) > 1:
        raise ValueError(f"images in {root} differ in shape {sorted(shapes)[:3]}; resample them to one shape.")
    if target == "mask":
        if {tuple(m.shape) for m in ys} != {tuple(xs[0].shape[1:])}:
            raise ValueError(f"masks in {root} must have the images' spatial shape {tuple(xs[0].shape[1:])}.")
        return torch.stack(xs), torch.stack(ys)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)
