"""k-space helpers: centred and unshifted FFTs, frequency grids, axis handling, magnitude.

robustaug's MRI kernels work in *unshifted* frequency coordinates (no ``fftshift``/``ifftshift``
pairs, which alone double the cost of a 3D FFT): frequency index ``m`` of an ``N``-point axis is the
integer ``torch.fft.fftfreq(N) * N`` (``0, 1, ..., -2, -1``), in cycles per field of view. The
centred transforms (:func:`fftc`, :func:`ifftc`) are provided for users and tests who want the
conventional picture with the k-space centre in the middle.

Spatial axes are given as in the artifact classes: a negative int counts from the last spatial axis
(``-1`` = last, readout by default), a non-negative int indexes the spatial axes (``0`` = first).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "TINY",
    "fftc",
    "freq_index",
    "ifftc",
    "magnitude",
    "magnitude_complex",
    "spatial_dim",
    "spatial_dims",
]

#: Added under the square root of every magnitude so that ``|z|`` is differentiable at 0; its square
#: root is subtracted again, so the bias is below 1e-10 and the magnitude of 0 is exactly 0.
TINY = 1e-20


def spatial_dim(x: Tensor, axis: int, name: str = "axis") -> int:
    """Tensor dimension of spatial ``axis`` for a batch ``x`` ``(B, C, *spatial)``.

    Args:
        x: The batch.
        axis: Negative counts from the last spatial axis; non-negative indexes the spatial axes.
        name: Argument name for the error message.

    Raises:
        ValueError: If the axis does not exist for this input.
    """
    nd = x.ndim - 2
    if isinstance(axis, bool) or not isinstance(axis, int) or not -nd <= axis < nd:
        raise ValueError(
            f"`{name}` must be a spatial axis in [{-nd}, {nd - 1}] for a {nd}D input "
            f"(negative counts from the last spatial axis), got {axis!r}."
        )
    return x.ndim + axis if axis < 0 else 2 + axis


def spatial_dims(x: Tensor, axes: Sequence[int] | None, name: str = "axes") -> tuple[int, ...]:
    """Tensor dimensions of several spatial axes (``None`` = all spatial axes), sorted, unique."""
    if axes is None:
        return tuple(range(2, x.ndim))
    dims = sorted({spatial_dim(x, a, name) for a in axes})
    return tuple(dims)


def freq_index(
    n: int, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Tensor:
    """Integer frequency indices of an ``n``-point FFT in unshifted order (cycles per FOV).

    Examples:
        >>> freq_index(4).tolist()
        [0.0, 1.0, -2.0, -1.0]
    """
    i = torch.arange(n, device=device)
    return torch.where(i < (n + 1) // 2, i, i - n).to(dtype)


def fftc(x: Tensor, dims: Sequence[int]) -> Tensor:
    """Centred orthonormal FFT (k-space centre in the middle) over tensor ``dims``."""
    dims = tuple(dims)
    return torch.fft.fftshift(
        torch.fft.fftn(torch.fft.ifftshift(x, dim=dims), dim=dims, norm="ortho"), dim=dims
    )


def ifftc(k: Tensor, dims: Sequence[int]) -> Tensor:
    """Inverse of :func:`fftc`."""
    dims = tuple(dims)
    return torch.fft.fftshift(
        torch.fft.ifftn(torch.fft.ifftshift(k, dim=dims), dim=dims, norm="ortho"), dim=dims
    )


def magnitude(re: Tensor, im: Tensor) -> Tensor:
    """Differentiable magnitude ``sqrt(re^2 + im^2)`` of a complex image given as two real parts.

    ``sqrt(s + tiny) - sqrt(tiny)`` with ``s = re^2 + im^2``, evaluated without cancellation as
    ``s / (sqrt(s + tiny) + sqrt(tiny))``: never negative, exactly 0 at 0, and its gradient is finite
    (0) where the complex value vanishes, unlike ``torch.abs`` of a complex tensor.
    """
    s = torch.addcmul(re * re, im, im)
    if torch.is_grad_enabled() and (re.requires_grad or im.requires_grad):
        return s / ((s + TINY).sqrt() + TINY**0.5)
    return s / s.add(TINY).sqrt_().add_(TINY**0.5)


def magnitude_complex(z: Tensor) -> Tensor:
    """:func:`magnitude` of a complex tensor."""
    return magnitude(z.real, z.imag)
