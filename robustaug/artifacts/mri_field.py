"""mri_field artifacts (see the issue tracker)."""

__all__: list[str] = []
