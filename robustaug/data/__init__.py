"""Built-in, offline data: procedural phantoms and small generated datasets, and loaders for your own.

- MRI: :func:`phantom` (brain-like, 2D/3D, T1/T2/PD, tissue labels, fat and lesion masks) and
  :func:`~robustaug.data.datasets.phantom_slices` (a lesion classification/segmentation dataset).
- CT/X-ray: :func:`ct_phantom` (HU, 2D/3D, organs, bone, lung, lesions, optional metal) and
  :func:`drr` (a radiograph by line integrals).
- Ultrasound: :func:`ultrasound_phantom`; histology: :func:`he_tile`; fundus: :func:`fundus_image`.
- Loaders: :func:`~robustaug.data.datasets.load_npz` (MedMNIST format),
  :func:`~robustaug.data.datasets.load_folder` (images + labels CSV).
"""

from . import datasets
from .ct import CT_TISSUES, MU_WATER, ct_phantom, drr
from .datasets import load_folder, load_npz, phantom_slices
from .fundus import fundus_image
from .histology import RUIFROK_HED, he_tile
from .phantoms import TISSUES, phantom, tissue_intensities
from .ultrasound import ultrasound_phantom

__all__ = [
    "CT_TISSUES",
    "MU_WATER",
    "RUIFROK_HED",
    "TISSUES",
    "ct_phantom",
    "datasets",
    "drr",
    "fundus_image",
    "he_tile",
    "load_folder",
    "load_npz",
    "phantom",
    "phantom_slices",
    "tissue_intensities",
    "ultrasound_phantom",
]
