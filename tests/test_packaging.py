"""The built wheel is all a user needs: installed in a fresh venv elsewhere it runs `fars run` to a paper."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO


def tracked_copy(dest: Path) -> Path:
    """The repository's tracked and new (not ignored) files, copied to ``dest`` (the build writes there, not here)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    for name in listed.stdout.splitlines():
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.mark.slow
def test_a_built_wheel_runs_fars_in_a_fresh_venv(tmp_path: Path) -> None:
    source = tracked_copy(tmp_path / "source")
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(source)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = next(dist.glob("fars-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    # the dependencies (torch, litellm, ...) come from this environment's site-packages through a .pth
    # line: a path there adds no .pth of its own, so this checkout's editable install stays out
    new_site = next((venv / "lib").glob("python*/site-packages"))
    (new_site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import fars, fars.commands.configured as c; print(fars.__file__, c.CONF_DIR)"],
        cwd=elsewhere, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert where.returncode == 0 and str(new_site) in where.stdout and str(REPO) not in where.stdout, where.stdout
    run = subprocess.run(
        [str(venv / "bin" / "fars"), "run", "llm=scripted", "tracker=disabled", "experiment.steps=20",
         "experiment.max_variants=1", "experiment.ablations=false", "pipeline.papers=1", "pipeline.projects=1",
         "paper.compile=never", "hydra.run.dir=out"],  # a real template (its package data) trains, ablations aside
        cwd=elsewhere, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert (elsewhere / "out" / "projects" / "p000" / "paper.md").is_file()
    assert (elsewhere / "out" / "run_record.json").is_file()
