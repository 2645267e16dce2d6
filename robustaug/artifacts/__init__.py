"""Artifact transforms, one module per modality; importing this package registers them all."""

from . import camera, ct, generic, histology, mri, mri_field, ultrasound, xray

__all__: list[str] = []
for _m in (generic, mri, mri_field, ct, xray, ultrasound, histology, camera):
    for _name in getattr(_m, "__all__", []):
        globals()[_name] = getattr(_m, _name)
        __all__.append(_name)
del _m
globals().pop("_name", None)
