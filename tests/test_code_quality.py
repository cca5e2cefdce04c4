"""Lint, format and type checks run with the tests, so `pytest` alone is the whole gate."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def check(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"


def test_ruff_lint() -> None:
    check("ruff", "check", ".")


def test_ruff_format() -> None:
    check("ruff", "format", "--check", ".")


def test_mypy() -> None:
    check("mypy")
