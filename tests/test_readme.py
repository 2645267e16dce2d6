"""The README's promises: its quickstart runs, and CI calls its test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_quickstart_runs():
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", README, re.S).group(1)
    assert len(code.strip().splitlines()) <= 10, "the quickstart must stay within ten lines"
    exec(compile(code, "README quickstart", "exec"), {})


def test_ci_calls_the_readme_test_command():
    blocks = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    test_cmd = next(b for b in blocks if "pytest" in b).strip()
    assert test_cmd in (ROOT / ".ci" / "run").read_text()


def test_main_job_command_is_the_study():
    blocks = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    assert blocks[0].strip().endswith("robustaug study")
