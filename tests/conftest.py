"""Shared fixtures: an isolated response cache, and a helper that runs the real `fars` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FAST = [
    "llm=scripted",
    "tracker=disabled",
    "experiment.steps=30",
    "experiment.seeds=2",
    "experiment.max_variants=1",
    "pipeline.status_interval_s=1",
]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own response cache, so nothing is served from an earlier run."""
    path = tmp_path_factory.mktemp("fars-cache")
    monkeypatch.setenv("FARS_CACHE_DIR", str(path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return path


def fars_command(args: list[str]) -> list[str]:
    """The argv that runs `fars` with this interpreter."""
    return [sys.executable, "-m", "fars.cli", *args]


def run_fars(args: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `fars ARGS` in ``cwd`` and return the finished process (output captured)."""
    return subprocess.run(
        fars_command(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ)
    )
