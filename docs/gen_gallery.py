"""Render the severity grid of every registered artifact into ``docs/img/gallery/<Name>.png``.

Usage::

    python docs/gen_gallery.py                    # all registered artifacts
    python docs/gen_gallery.py GaussianBlur Gamma # only these
    python docs/gen_gallery.py --modality mri

Each grid shows severities 0 (clean) to 5 in columns and three random draws in rows, on the
artifact's ``example_input`` (2D when the artifact supports it, otherwise the central slice of a
volume). The base seed is derived from the artifact's name (CRC32), so the images only change when
the artifact does. Needs matplotlib (``pip install 'robustaug[plot]'``).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
import zlib
from pathlib import Path

from robustaug import get_artifact, list_artifacts
from robustaug.gallery import save_severity_grid

OUT_DIR = Path(__file__).resolve().parent / "img" / "gallery"


def name_seed(name: str) -> int:
    """A stable seed per artifact name."""
    return zlib.crc32(name.encode()) % 10_000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="artifact names (default: all registered)")
    ap.add_argument("--modality", help="only artifacts of this modality")
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR, help=f"default {OUT_DIR}")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--dpi", type=int, default=80)
    args = ap.parse_args(argv)
    names = args.names or list_artifacts(modality=args.modality)
    failed = []
    for name in names:
        cls = get_artifact(name)
        dims = 2 if 2 in cls.dims else 3
        t0 = time.perf_counter()
        try:
            path = save_severity_grid(
                cls, args.out_dir / f"{cls.__name__}.png", draws=args.draws, dims=dims,
                seed=name_seed(cls.__name__), dpi=args.dpi,
            )
        except Exception:  # keep going: report every failing artifact at the end
            traceback.print_exc()
            failed.append(name)
            continue
        print(f"{path}  ({time.perf_counter() - t0:.1f} s)", flush=True)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
