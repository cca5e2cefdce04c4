"""Shell completion through the `fars` entry point, in a real bash."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path


def test_bash_completion_through_the_fars_command(tmp_path: Path) -> None:
    """`eval "$(fars run -sc install=bash)"`, then TAB after `fars run ...` completes Hydra's overrides."""
    shim = tmp_path / "bin" / "fars"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m fars.cli "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}"}

    def complete(line: str) -> list[str]:
        words = line.split()
        cword = len(words) - (0 if line.endswith(" ") else 1)
        script = (
            'eval "$(fars run -sc install=bash)"\n'
            f"COMP_LINE={line!r}; COMP_POINT={len(line)}; COMP_WORDS=({line}); COMP_CWORD={cword}\n"
            'hydra_bash_completion; printf "%s\\n" "${COMPREPLY[@]}"\n'
        )
        done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert complete("fars run reviewer=iclr") == ["reviewer=iclr2022", "reviewer=iclr2025"]
    assert "llm=scripted" in complete("fars run llm=")
    assert "pipeline.papers=" in complete("fars run pipeline.pa")
    assert complete("fars re") == ["report", "review"]
    installed = subprocess.run(["fars", "-sc", "install=bash"], capture_output=True, text=True, env=env, timeout=120)
    assert "complete -o nospace -o default -F hydra_bash_completion fars" in installed.stdout
