"""Paths of this checkout, and the environment a test's child process imports it from."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
TESTS = ROOT / "tests"


def checkout_env(*extra: Path) -> dict[str, str]:
    """os.environ with this checkout's src/ (then `extra`) first on PYTHONPATH: a child process
    imports the code under test, not whatever gradprobe the venv has installed."""
    paths = [str(SRC), *map(str, extra), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
