"""mri artifacts (see the issue tracker)."""

__all__: list[str] = []
