"""The status board's totals line: it shows the model calls waiting their turn when the run's client says."""

from __future__ import annotations

import time
from pathlib import Path

from fars.pipeline.board import StatusBoard
from fars.run.ledger import Ledger
from fars.run.summary import RunClock


def test_the_totals_line_shows_waiting_model_calls(tmp_path: Path) -> None:
    board = StatusBoard(Ledger(tmp_path / "ledger.sqlite"), 1.0, RunClock(time.time()), interactive=False)
    assert "waiting" not in board.totals_line()  # no client yet (a board built before the services)
    waiting = [0]
    board.calls_waiting = lambda: waiting[0]
    waiting[0] = 3
    assert "| 3 calls waiting |" in board.totals_line()
