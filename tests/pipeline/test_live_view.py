"""The live table as a person sees it: `fars run` in a real terminal (tmux), read back from its screen.

A retry warning was printed into the table's last line and erased by the next redraw, so for 15
minutes the screen showed frozen counts and no word of the time-outs behind them. Here a planted
provider fault makes the first model call fail once; the warning must still be on the terminal
(screen or scrollback) when the run ends, the totals line must fit the terminal's width, and the
table must be drawn in place (not a copy per redraw piled up in the scrollback).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import FAST, fars_command

COLUMNS, ROWS = 160, 40


def _tmux() -> str:
    tmux = shutil.which("tmux")
    if tmux is None:
        if os.environ.get("FARS_REQUIRE_TMUX") == "1":
            pytest.fail("FARS_REQUIRE_TMUX=1 but tmux is not installed; apt-get install tmux (install.sh --system)")
        pytest.skip("tmux is not installed (apt-get install tmux)")
    return tmux


def _screen(tmux: str, socket: Path, session: str) -> list[str]:
    """Every line the terminal holds: its scrollback, then its screen."""
    shown = subprocess.run(
        [tmux, "-S", str(socket), "capture-pane", "-p", "-J", "-t", session, "-S", "-", "-E", "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.rstrip() for line in shown.stdout.splitlines()]


@pytest.mark.slow  # a scripted run: 30-60 s on 2 cores
def test_a_warning_stays_visible_above_the_live_table(tmp_path: Path) -> None:
    tmux = _tmux()
    socket, session = tmp_path / "tmux.sock", f"fars-{uuid.uuid4().hex[:8]}"
    run_dir, marker = tmp_path / "run", tmp_path / "exit_status"
    command = fars_command(
        [
            "run",
            f"hydra.run.dir={run_dir}",
            "llm.scripted.outputs=['!fault:503']",
            *FAST,
            "pipeline.papers=1",
            "pipeline.projects=1",
        ]
    )
    # a private tmux server: its panes get this process's environment
    script = f"cd {shlex.quote(str(tmp_path))} && {shlex.join(command)}; echo $? > {shlex.quote(str(marker))}"
    subprocess.run(
        [
            tmux,
            "-S",
            str(socket),
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            str(COLUMNS),
            "-y",
            str(ROWS),
            "bash",
            "--norc",
            "-c",
            f"{script}; sleep 600",
        ],
        check=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    try:
        subprocess.run([tmux, "-S", str(socket), "set-option", "-t", session, "history-limit", "50000"], check=True)
        deadline = time.time() + 600
        while not marker.exists() and time.time() < deadline:
            time.sleep(1)
        assert marker.exists(), "\n".join(_screen(tmux, socket, session)[-40:])
        lines = _screen(tmux, socket, session)
    finally:
        subprocess.run([tmux, "-S", str(socket), "kill-server"], check=False, capture_output=True)
    text = "\n".join(lines)
    assert marker.read_text().strip() == "0", text[-4000:]
    warnings = [line for line in lines if "WARNING" in line and "retry 1/" in line]
    assert len(warnings) == 1, f"the planted retry warning is not on the terminal:\n{text[-4000:]}"
    assert warnings[0].index("[") == 0, f"the warning shares a line with the table: {warnings[0]!r}"
    totals = [line for line in lines if "papers/h" in line and "| papers " in line]
    assert len(totals) == 1, f"the table was drawn {len(totals)} times into the scrollback:\n{text[-4000:]}"
    assert "tokens" in totals[0] and totals[0].endswith("papers/h"), f"the totals line does not fit: {totals[0]!r}"
    assert sum("done [done]" in line for line in lines) == 0
    finished = [line for line in lines if line.startswith("p000 ")]
    assert len(finished) == 1 and all("done" in line for line in finished), finished
