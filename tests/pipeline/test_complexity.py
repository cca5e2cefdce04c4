"""The queue's recurring work does not grow with the projects already finished.

Work is counted, not timed: SQLite's virtual-machine steps (``set_progress_handler`` called at every step) of a
status refresh and of a project's end, in a ledger of a few finished projects and in one of a thousand. Work
that re-read every project or call (O(n) each time, O(n^2) over a run) would grow with them; what the queue does
per status interval and per project end must not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fars.pipeline.board import StatusBoard
from fars.run.contracts import StageOutput
from fars.run.ledger import CallRow, Ledger
from fars.run.records import ProjectStatus
from fars.run.summary import LiveTotals, RunClock, run_progress


def _ledger(tmp_path: Path, finished: int) -> Ledger:
    """A ledger of ``finished`` projects that went through two stages with three model calls each, plus two
    projects still running."""
    ledger = Ledger(tmp_path / f"ledger-{finished}.sqlite")
    for i in range(finished + 2):
        pid = f"p{i:04d}"
        ledger.add_project(pid, i, "area")
        for stage in ("ideation", "planning"):
            ledger.stage_started(pid, stage)
            for n in range(3):
                ledger.record_call(CallRow(pid, stage, "scripted/m", f"h{n}", n, 100, 10, 0.001, 0.5, False, "{}"))
            if i < finished:
                ledger.stage_finished(pid, stage, StageOutput())
        status = ProjectStatus.done if i < finished else ProjectStatus.running
        ledger.update_project(pid, stage="done" if i < finished else "planning", status=status)
    return ledger


def _steps(ledger: Ledger, work: Callable[[], object]) -> int:
    """SQLite virtual-machine steps ``work`` makes on the ledger's connection."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0  # 0: go on

    ledger._db.set_progress_handler(count, 1)
    try:
        work()
    finally:
        ledger._db.set_progress_handler(None, 1)
    return steps[0]


def _one_change(ledger: Ledger, live: LiveTotals, pid: str) -> None:
    """What the queue does as a project moves on: a stage event, a call, the change reported."""
    ledger.stage_started(pid, "experiment")
    ledger.record_call(CallRow(pid, "experiment", "scripted/m", "hx", 0, 100, 10, 0.001, 0.5, False, "{}"))
    ledger.update_project(pid, stage="experiment")
    live.changed(pid)


def _refresh_steps(tmp_path: Path, finished: int, interactive: bool) -> int:
    """Steps of one status interval after one project changed, in a run with ``finished`` projects done."""
    ledger = _ledger(tmp_path, finished)
    live = LiveTotals(ledger)
    board = StatusBoard(ledger, 0.0, RunClock(time.time()), interactive=False, live=live)
    board._rows = {r.id: r for r in ledger.board()} if interactive else None  # the table's first read
    board.refresh()  # the board has seen the run as it stands
    _one_change(ledger, live, f"p{finished:04d}")

    def interval() -> None:
        if interactive:
            board._all_rows()  # the table's rows; drawing them is the terminal's business
            board.totals_line()
        else:
            board.refresh()  # interval 0: the change's line and the totals line, every time

    try:
        return _steps(ledger, interval)
    finally:
        ledger.close()


def _project_end_steps(tmp_path: Path, finished: int) -> int:
    """Steps of what the queue reads as a project ends (its W&B progress), with ``finished`` projects done."""
    ledger = _ledger(tmp_path, finished)
    live = LiveTotals(ledger)
    started = time.time()
    pid = f"p{finished:04d}"
    _one_change(ledger, live, pid)
    ledger.update_project(pid, status=ProjectStatus.done)

    def project_end() -> None:
        live.changed(pid, ProjectStatus.done)
        live.progress(started)

    try:
        return _steps(ledger, project_end)
    finally:
        ledger.close()


@pytest.mark.parametrize("interactive", [False, True])
def test_a_status_refresh_reads_only_what_changed(tmp_path: Path, interactive: bool) -> None:
    small, large = (_refresh_steps(tmp_path, n, interactive) for n in (5, 1000))
    assert large <= small + 20, (small, large)  # a B-tree seek is one step: equal up to a few, not x200


def test_a_project_end_costs_the_same_late_in_a_run(tmp_path: Path) -> None:
    small, large = (_project_end_steps(tmp_path, n) for n in (5, 1000))
    assert large <= small + 20, (small, large)


def test_the_running_totals_agree_with_the_ledger(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, 7)
    live = LiveTotals(ledger)
    started = time.time() - 60
    for pid, status in (("p0007", ProjectStatus.done), ("p0008", ProjectStatus.failed)):
        _one_change(ledger, live, pid)
        ledger.update_project(pid, status=status)
        live.changed(pid, status)
    now = time.time()
    ours, theirs = live.progress(started, now), run_progress(ledger, started, now)
    assert (ours.finished, ours.papers, ours.papers_per_hour) == (
        theirs.finished,
        theirs.papers,
        theirs.papers_per_hour,
    )
    assert ours.usage.calls == theirs.usage.calls == 9 * 6 + 2
    assert ours.usage.input_tokens == theirs.usage.input_tokens
    assert ours.usage.cost_usd == pytest.approx(theirs.usage.cost_usd)
    board = StatusBoard(ledger, 1.0, RunClock(started), interactive=False, live=live)
    line = board.totals_line()
    assert "papers 8 | in flight 0 | failed 1 |" in line and "(56 calls, 0 cached)" in line
    # the table built from changed rows equals a whole read of the ledger
    board._rows = {r.id: r for r in ledger.board()}
    ledger.update_project("p0000", stage="review", status=ProjectStatus.running)
    live.changed("p0000", ProjectStatus.running)
    assert board._all_rows() == ledger.board()
