"""Run a robustaug transform inside a TorchIO pipeline (``tio.Compose`` on ``tio.Subject``).

Layout mapping. TorchIO stores each image as ``(C, W, H, D)`` (voxel order I, J, K; usually
L-R, P-A, I-S after ``tio.ToCanonical``); robustaug reads volumes as ``(C, D, H, W)``. The adapter
reverses the spatial axes on the way in and back on the way out:

| TorchIO axis | robustaug axis |
|---|---|
| 1 (W, I) | -1 (W) |
| 2 (H, J) | -2 (H) |
| 3 (D, K) | -3 (D, the slice axis) |

A TorchIO image with ``D == 1`` is a 2D image: it is passed to robustaug as ``(1, C, H, W)`` and
transformed in 2D. Everything else is passed as one volume ``(1, C, D, H, W)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from ..core.transform import Transform, params_to_json

try:
    import torchio as tio
except ImportError as err:  # pragma: no cover - torchio is a core dependency
    raise ImportError(
        "robustaug.integrations.torchio needs TorchIO. Install it with: pip install torchio"
    ) from err

__all__ = ["TorchIOTransform", "as_torchio", "from_torchio_layout", "to_torchio_layout"]


def from_torchio_layout(data: Tensor) -> tuple[Tensor, bool]:
    """Map one TorchIO image tensor ``(C, W, H, D)`` to a robustaug batch of one.

    Args:
        data: A 4D TorchIO tensor ``(C, W, H, D)``.

    Returns:
        ``(x, is_2d)``: ``x`` is ``(1, C, H, W)`` when ``D == 1`` (``is_2d=True``), otherwise
        ``(1, C, D, H, W)``. The result is a view of ``data`` (never written to).
    """
    if data.ndim != 4:
        raise ValueError(
            f"A TorchIO image tensor must be 4D (C, W, H, D), got shape {tuple(data.shape)}."
        )
    if data.shape[-1] == 1:
        return data[..., 0].permute(0, 2, 1).unsqueeze(0), True
    return data.permute(0, 3, 2, 1).unsqueeze(0), False


def to_torchio_layout(x: Tensor, is_2d: bool) -> Tensor:
    """Inverse of :func:`from_torchio_layout`: a robustaug batch of one back to ``(C, W, H, D)``."""
    if is_2d:
        return x[0].permute(0, 2, 1).unsqueeze(-1).contiguous()
    return x[0].permute(0, 3, 2, 1).contiguous()


class TorchIOTransform(tio.IntensityTransform):
    """A TorchIO intensity transform that applies a robustaug :class:`~robustaug.Transform`.

    Only intensity images (``tio.ScalarImage``) are changed; label maps pass through untouched.
    ``include``/``exclude`` select images by name as for any TorchIO transform. The parameters
    actually used are recorded, JSON-serialisable, in the subject's history
    (``subject.applied_transforms``), so ``subject.get_composed_history()`` rebuilds a transform that
    replays the same corruption exactly.

    Args:
        transform: The robustaug transform to apply (an artifact or a robustaug ``Compose``).
        params: ``None`` samples new parameters on each call. A mapping ``{image_name: params}`` (as
            recorded in the history) replays them; this is how TorchIO rebuilds the transform from
            the history.
        shared: If ``True`` (TorchIO's convention), parameters are drawn once per subject on the
            first selected image and replayed on the others (same blur, same noise seed). If
            ``False`` each image gets its own draw.
        **kwargs: TorchIO ``Transform`` arguments: ``p``, ``include``, ``exclude``, ``copy``,
            ``keep``, ``label_keys``.

    Convention:
        See the module docstring for the axis mapping; a TorchIO image with ``D == 1`` is 2D. The
        image's dtype is kept (robustaug computes half/integer data in float32 and casts back).
        The recorded entry is ``("TorchIOTransform", {"transform": ..., "params": {name: params},
        "shared": ..., "include": ..., "exclude": ..., "copy": ...})`` where ``params`` holds
        lists of numbers only.

    Examples:
        >>> import torch, torchio as tio
        >>> from robustaug import GaussianNoise
        >>> subject = tio.Subject(t1=tio.ScalarImage(tensor=torch.zeros(1, 8, 8, 8)),
        ...                       seg=tio.LabelMap(tensor=torch.ones(1, 8, 8, 8, dtype=torch.uint8)))
        >>> out = tio.Compose([as_torchio(GaussianNoise(std=0.1, seed=0))])(subject)
        >>> bool(out.t1.data.std() > 0), bool((out.seg.data == 1).all())
        (True, True)
        >>> out.applied_transforms[-1][0]
        'TorchIOTransform'
    """

    def __init__(
        self,
        transform: Transform,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        shared: bool = True,
        **kwargs: Any,
    ) -> None:
        if not isinstance(transform, Transform):
            raise TypeError(
                "`transform` must be a robustaug Transform (an artifact or a robustaug Compose), "
                f"got {type(transform).__name__}."
            )
        if params is not None and not isinstance(params, Mapping):
            raise TypeError(
                "`params` must be None or a mapping {image_name: params} as recorded in the "
                f"subject history, got {type(params).__name__}."
            )
        super().__init__(**kwargs)
        self.transform = transform
        self.params = None if params is None else {str(k): dict(v) for k, v in params.items()}
        self.shared = bool(shared)
        self.args_names = ["transform", "params", "shared"]
        self._record: dict[str, Any] | None = None

    def _to_robustaug(self, name: str, image: tio.ScalarImage) -> tuple[Tensor, bool]:
        x, is_2d = from_torchio_layout(image.data)
        t = self.transform
        nd = 2 if is_2d else 3
        if nd not in t.dims:
            raise ValueError(
                f"{type(t).__name__} supports {t.dims}D inputs, but TorchIO image {name!r} is {nd}D "
                f"(shape {tuple(image.data.shape)}). Tip: a TorchIO image with D == 1 is 2D."
            )
        if is_2d and t.spatial_dims == 3:
            raise ValueError(
                f"TorchIO image {name!r} is 2D (D == 1) but {type(t).__name__} was built with "
                "spatial_dims=3. Tip: build it with spatial_dims=None to use it on 2D images."
            )
        return x, is_2d

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        """Apply the robustaug transform to every selected intensity image of ``subject``."""
        used: dict[str, dict[str, Any]] = {}
        first: dict[str, Any] | None = None
        for name, image in self.get_images_dict(subject).items():
            x, is_2d = self._to_robustaug(name, image)
            if self.params is not None:
                if name not in self.params:
                    raise KeyError(
                        f"No recorded params for image {name!r}; recorded: {sorted(self.params)}."
                    )
                given: Mapping[str, Any] | None = self.params[name]
            else:
                given = first if self.shared else None
            y, rec = self.transform(x, params=given, return_params=True)
            rec_json = params_to_json(rec)
            if first is None:
                first = rec_json
            used[name] = rec_json
            image.set_data(to_torchio_layout(y, is_2d))
        self._record = {
            "include": self.include,
            "exclude": self.exclude,
            "copy": self.copy,
            "transform": self.transform,
            "params": used,
            "shared": self.shared,
        }
        return subject

    def _add_transform_to_subject_history(self, subject: tio.Subject) -> None:
        # Record the params actually used in the last call (not the constructor's ``params=None``).
        record = self._record if self._record is not None else self._get_reproducing_arguments()
        self._record = None
        subject.add_transform(self, record)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_record"] = None
        return state


def as_torchio(
    transform: Transform,
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    shared: bool = True,
    p: float = 1.0,
    copy: bool = True,
) -> TorchIOTransform:
    """Wrap a robustaug transform as a TorchIO ``IntensityTransform``.

    Args:
        transform: The robustaug transform (its own ``p`` and ``seed`` still apply).
        include: Names of the only images to transform (TorchIO semantics).
        exclude: Names of images to leave untouched (TorchIO semantics).
        shared: Draw one set of parameters per subject for all images (``True``) or one per image.
        p: TorchIO's probability of calling the transform at all (drawn from the global RNG by
            TorchIO); prefer the robustaug transform's own per-sample ``p``.
        copy: TorchIO's ``copy``: deep-copy the subject before transforming.

    Returns:
        A :class:`TorchIOTransform`, usable in ``tio.Compose`` and picklable.

    Examples:
        >>> import torch, torchio as tio
        >>> from robustaug import GaussianBlur
        >>> t = as_torchio(GaussianBlur(sigma=1.0))
        >>> img = tio.ScalarImage(tensor=torch.rand(1, 16, 16, 1))   # a 2D TorchIO image
        >>> t(tio.Subject(img=img)).img.shape
        (1, 16, 16, 1)
    """
    return TorchIOTransform(
        transform, shared=shared, include=include, exclude=exclude, p=p, copy=copy
    )

