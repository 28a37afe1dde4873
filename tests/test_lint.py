"""The tree stays ruff- and mypy-clean (STYLE 15): a regression here fails the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_ruff_clean() -> None:
    result = run(str(BIN / "ruff"), "check", "cronkeeper", "tests", "handlers", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_clean() -> None:
    result = run(sys.executable, "-m", "mypy", "cronkeeper")
    assert result.returncode == 0, result.stdout + result.stderr
