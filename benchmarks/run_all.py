"""Run every ``benchmarks/bench_*.py``, each in its own subprocess, with one command.

Usage::

    python benchmarks/run_all.py              # all benchmarks, full settings
    python benchmarks/run_all.py --quick      # pass --quick to the scripts that accept it
    python benchmarks/run_all.py --only generic losses
    python benchmarks/run_all.py -- --threads 1   # extra arguments for every script

Each script writes its own JSON under ``benchmarks/results/`` and its own Markdown page. The exit
status is non-zero if any script failed; a summary with the duration of each is printed at the end.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def find_benchmarks(only: list[str] | None = None) -> list[Path]:
    """``bench_*.py`` scripts in this folder, sorted; ``only`` keeps names containing a pattern."""
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if only:
        scripts = [s for s in scripts if any(o in s.stem for o in only)]
    return scripts


def accepts_quick(script: Path) -> bool:
    """Whether a script declares a ``--quick`` option (read from its source, not by running it)."""
    return '"--quick"' in script.read_text()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(description="Run every benchmarks/bench_*.py in a subprocess.")
    ap.add_argument("--quick", action="store_true", help="pass --quick to scripts that accept it")
    ap.add_argument("--only", nargs="+", help="run only scripts whose name contains one of these")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per script (default 3600)")
    ap.add_argument("--list", action="store_true", help="list the scripts and exit")
    args = ap.parse_args(argv)
    scripts = find_benchmarks(args.only)
    if not scripts:
        print("No benchmark script matches.", file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(s.name for s in scripts))
        return 0
    summary = []
    for script in scripts:
        cmd = [sys.executable, str(script), *extra]
        if args.quick and accepts_quick(script):
            cmd.append("--quick")
        print(f"=== {script.name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        try:
            rc = subprocess.run(cmd, cwd=BENCH_DIR.parent, timeout=args.timeout).returncode
        except subprocess.TimeoutExpired:
            rc = 124
        summary.append((script.name, rc, time.perf_counter() - t0))
    print("\n=== summary")
    for name, rc, dt in summary:
        status = "ok" if rc == 0 else f"FAILED (exit {rc})"
        print(f"{name:32s} {status:18s} {dt:8.1f} s")
    return 0 if all(rc == 0 for _, rc, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
