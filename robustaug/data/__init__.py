"""Built-in, offline data: procedural phantoms and small generated datasets."""

from .phantoms import TISSUES, phantom, tissue_intensities

__all__ = ["TISSUES", "phantom", "tissue_intensities"]
