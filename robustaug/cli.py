"""The ``robustaug`` command line: ``list``, ``gallery`` and ``study``.

Examples::

    robustaug list --modality mri --dims 3
    robustaug gallery GaussianBlur --out g.png --draws 3
    robustaug study --help
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

_MODALITIES = ("any", "mri", "ct", "xray", "ultrasound", "histology", "camera")
_STUDY_MODULE = "robustaug.evaluate.study"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="robustaug",
        description=(
            "robustaug: physics-based imaging artifacts, label noise, robust losses and "
            "adversarial training for medical-imaging deep learning."
        ),
        epilog="Run 'robustaug <command> --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"robustaug {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")

    p_list = sub.add_parser(
        "list",
        help="list the registered artifacts",
        description=(
            "Print the registered artifacts with their modality, supported spatial dims and "
            "whether apply() is differentiable."
        ),
    )
    p_list.add_argument(
        "--modality", choices=_MODALITIES, help="only artifacts of this modality ('any' = generic)"
    )
    p_list.add_argument(
        "--dims", type=int, choices=(2, 3), help="only artifacts that support 2D or 3D inputs"
    )

    p_gal = sub.add_parser(
        "gallery",
        help="render a severity grid of one artifact as a PNG",
        description=(
            "Render NAME at severities 0 (clean) to 5 (columns) over several random draws (rows) "
            "on the artifact's example input (the built-in phantom unless the artifact provides "
            "its own). Column titles give the severity and its parameters; each cell lists the "
            "parameters drawn. 3D artifacts show the central slice. Needs matplotlib "
            "(pip install 'robustaug[plot]')."
        ),
    )
    p_gal.add_argument("name", help="artifact name, as printed by 'robustaug list'")
    p_gal.add_argument("--out", required=True, help="output PNG path, e.g. gallery.png")
    p_gal.add_argument("--draws", type=int, default=3, help="number of random draws (rows); default 3")
    p_gal.add_argument(
        "--dims", type=int, choices=(2, 3), help="2 or 3; default 2 when the artifact supports it"
    )
    p_gal.add_argument("--seed", type=int, default=0, help="base seed of the draws; default 0")
    p_gal.add_argument(
        "--size", type=int, help="edge of the example input in pixels (default 128 in 2D, 48 in 3D)"
    )
    p_gal.add_argument("--dpi", type=int, default=100, help="PNG resolution; default 100")

    sub.add_parser(
        "study",
        help="run the robustness study (arguments are passed on; see 'robustaug study --help')",
        description="Run the robustness study; every argument is passed to robustaug.evaluate.study.",
        add_help=False,
    )
    return parser


def _err(msg: str) -> int:
    print(f"robustaug: error: {msg}", file=sys.stderr)
    return 2


def _cmd_list(modality: str | None, dims: int | None) -> int:
    from .core.registry import get_artifact, list_artifacts

    names = list_artifacts(modality=modality, dims=dims)
    if not names:
        print("No registered artifact matches these filters.", file=sys.stderr)
        return 0
    rows = [("name", "modality", "dims", "differentiable")]
    for n in names:
        cls = get_artifact(n)
        dims_s = ",".join(f"{d}D" for d in cls.dims)
        rows.append((n, cls.modality, dims_s, "yes" if cls.differentiable else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, r in enumerate(rows):
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


def _cmd_gallery(args: argparse.Namespace) -> int:
    from .core.registry import get_artifact

    try:
        get_artifact(args.name)
    except KeyError as e:
        return _err(str(e.args[0]) if e.args else str(e))
    if args.draws < 1:
        return _err(f"--draws must be >= 1, got {args.draws}.")
    if args.size is not None and args.size < 16:
        return _err(f"--size must be >= 16, got {args.size}.")
    try:
        from .gallery import save_severity_grid

        path = save_severity_grid(
            args.name, args.out, draws=args.draws, dims=args.dims, seed=args.seed, size=args.size,
            dpi=args.dpi,
        )
    except (ImportError, ValueError) as e:
        return _err(str(e))
    print(f"wrote {path}")
    return 0


def _cmd_study(argv: list[str]) -> int:
    try:
        module = importlib.import_module(_STUDY_MODULE)
    except ModuleNotFoundError as e:
        if e.name not in (_STUDY_MODULE, "robustaug.evaluate"):
            raise
        return _err(
            "'robustaug study' is not available in this installation: the module "
            f"{_STUDY_MODULE} is missing. Tip: update robustaug; meanwhile 'robustaug gallery' "
            "and the Python API (robustaug.evaluate) work."
        )
    try:
        return int(module.main(argv) or 0)
    except SystemExit as e:  # the study's own argparse (--help, usage errors)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``robustaug`` command.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status (0 on success, 2 on a usage error).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "study":
        return _cmd_study(args_list[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as e:  # --help, --version or a usage error
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if args.command == "list":
        return _cmd_list(args.modality, args.dims)
    if args.command == "gallery":
        return _cmd_gallery(args)
    parser.print_help()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
