"""Live status for a person watching a long unattended run.

On a terminal: a table redrawn in place with each project's stage and time in it, and the totals
(tokens, cost, papers, papers per hour). Elsewhere (CI, a log file): one status line every
``pipeline.status_interval_s`` seconds and one line per project event.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from fars.ledger import Ledger

log = logging.getLogger("fars.status")


@dataclass
class ProjectView:
    """What the display shows of one project."""

    stage: str = "queued"
    since: float = field(default_factory=time.time)
    title: str = ""
    status: str = "queued"


class StatusBoard:
    """Tracks project states and renders them live (tty) or as periodic log lines."""

    def __init__(self, ledger: Ledger, interval_s: float, started: float, interactive: bool | None = None) -> None:
        self.ledger = ledger
        self.interval_s = interval_s
        self.started = started
        self.projects: dict[str, ProjectView] = {}
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self._live: Live | None = None
        self._last_line = 0.0

    def __enter__(self) -> StatusBoard:
        if self.interactive:
            self._live = Live(self._table(), console=Console(stderr=True), refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(*exc)

    def update(
        self,
        project_id: str,
        *,
        stage: str | None = None,
        status: str | None = None,
        title: str | None = None,
    ) -> None:
        """Record a project's new stage or status and refresh the display."""
        view = self.projects.setdefault(project_id, ProjectView())
        before = (view.stage, view.status)
        if stage is not None and stage != view.stage:
            view.stage, view.since = stage, time.time()
        if status is not None:
            view.status = status
        if title:
            view.title = title
        if not self.interactive and (view.stage, view.status) != before:
            log.info("%s: %s%s", project_id, view.stage, "" if view.status == "running" else f" [{view.status}]")
        self.refresh()

    def refresh(self) -> None:
        """Redraw (tty) or print a status line when the interval has passed."""
        if self._live is not None:
            self._live.update(self._table())
        elif time.time() - self._last_line >= self.interval_s:
            self._last_line = time.time()
            log.info(self.totals_line())

    def totals_line(self) -> str:
        """One line with the run's totals."""
        usage = self.ledger.total_usage()
        done = sum(1 for v in self.projects.values() if v.status == "done")
        active = sum(1 for v in self.projects.values() if v.status == "running")
        elapsed = time.time() - self.started
        rate = done / elapsed * 3600 if elapsed > 0 else 0.0
        return (
            f"{elapsed:7.0f}s | papers {done} | in flight {active} | tokens {usage.total_tokens:,} "
            f"({usage.calls} calls, {usage.cache_hits} cached) | ${usage.cost_usd:.4f} | {rate:.1f} papers/h"
        )

    def _table(self) -> Table:
        table = Table(title=self.totals_line(), title_justify="left", expand=False)
        for column in ("project", "stage", "time in stage", "status", "title"):
            table.add_column(column)
        now = time.time()
        for pid, view in sorted(self.projects.items()):
            table.add_row(pid, view.stage, f"{now - view.since:.0f}s", view.status, view.title[:60])
        return table
