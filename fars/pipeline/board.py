"""Live status for a person watching a long unattended run, read from the run's ledger.

The board reads only what changed: the queue reports each project it changes (``LiveTotals``), and a
refresh reads those projects' rows and the calls recorded since the last one, so its work does not grow
with the projects already finished (a run of thousands refreshes as cheaply as one of ten). On a terminal it redraws a table in place, with log records (retries,
time-outs, projects that ended badly) printed above it so they stay visible; elsewhere (CI, a log
file) it writes one line per project change and a totals line every ``pipeline.status_interval_s``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from fars.run.ledger import BoardRow, Ledger
from fars.run.records import ProjectStatus
from fars.run.summary import LiveTotals, RunClock, is_paper, papers_per_hour

log = logging.getLogger("fars.status")


class _ConsoleHandler(logging.Handler):
    """Prints log records through the live display's console, so they appear above the table."""

    def __init__(self, console: Console, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.console = console
        self.setFormatter(formatter or logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            style = (
                "bold red"
                if record.levelno >= logging.ERROR
                else "yellow"
                if record.levelno >= logging.WARNING
                else None
            )
            self.console.print(Text(self.format(record), style=style or ""), soft_wrap=True)
        except Exception:  # a display problem must never break the run
            self.handleError(record)


class StatusBoard:
    """Renders the ledger's project states live (tty) or as log lines; see the module docstring."""

    def __init__(
        self,
        ledger: Ledger,
        interval_s: float,
        clock: RunClock,
        interactive: bool | None = None,
        live: LiveTotals | None = None,
    ) -> None:
        self.ledger = ledger
        self.live = live or LiveTotals(ledger)  # the queue's running totals: what changed, counts, usage
        self.interval_s = interval_s
        self.clock = clock  # the board shows wall time: since the run's first session started
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.console = Console(stderr=True)
        self._live: Live | None = None
        self._last_line = 0.0
        self._seen: dict[str, tuple[str | None, ProjectStatus]] = {}
        self._rows: dict[str, BoardRow] | None = None  # the table's rows (tty), read whole once, then as they change
        self._swapped: list[tuple[logging.Handler, logging.Handler]] = []
        # model calls waiting their turn now (``LLMClient.calls_waiting``), set once the run's client exists
        self.calls_waiting: Callable[[], int] | None = None

    def __enter__(self) -> StatusBoard:
        if self.interactive:
            # before Live starts: it swaps sys.stdout/sys.stderr for proxies, and the logging handlers
            # still holding the real streams would then write into the table's last line
            self._route_logs_through_console()
            self._live = Live(self._render(self._all_rows()), console=self.console, auto_refresh=False, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render(self._all_rows()), refresh=True)
            self._live.__exit__(*exc)
            self._live = None
        for mine, theirs in self._swapped:
            root = logging.getLogger()
            root.removeHandler(mine)
            root.addHandler(theirs)
        self._swapped.clear()

    def _route_logs_through_console(self) -> None:
        """Swap the root logger's terminal handlers for one that prints above the live table."""
        root = logging.getLogger()
        for handler in list(root.handlers):
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and stream in (
                sys.stderr,
                sys.stdout,
                sys.__stderr__,
                sys.__stdout__,
            ):
                mine = _ConsoleHandler(self.console, handler.formatter)
                mine.setLevel(handler.level)
                root.removeHandler(handler)
                root.addHandler(mine)
                self._swapped.append((mine, handler))

    def _all_rows(self) -> list[BoardRow]:
        """Every project's row for the table: read whole the first time, then only the changed ones."""
        changed = self.ledger.board(self.live.take_changed())
        if self._rows is None:
            self._rows = {row.id: row for row in self.ledger.board()}
        self._rows.update((row.id, row) for row in changed)
        return list(self._rows.values())

    def refresh(self) -> None:
        """Redraw (tty), or log what changed since the last refresh and, each interval, the totals."""
        if self._live is not None:
            self._live.update(self._render(self._all_rows()), refresh=True)
            return
        changes = self._changes(self.ledger.board(self.live.take_changed()))
        for row in changes:
            where = row.stage or "queued"
            if row.status == ProjectStatus.running:
                log.info("%s: %s", row.id, where)
            elif row.status == ProjectStatus.done:
                log.info("%s: done", row.id)
            elif row.status.final:
                log.info("%s: %s in %s", row.id, row.status.value, where)
        if time.time() - self._last_line >= self.interval_s:
            self._last_line = time.time()
            log.info(self.totals_line())

    def _changes(self, rows: list[BoardRow]) -> list[BoardRow]:
        changed = []
        for row in rows:
            state = (row.stage, row.status)
            if self._seen.get(row.id) != state:
                self._seen[row.id] = state
                if row.status != ProjectStatus.queued:
                    changed.append(row)
        return changed

    def totals_line(self) -> str:
        """One line with the run's totals (from the running counts: no pass over the projects or calls)."""
        usage = self.live.usage()
        counts = self.live.counts
        papers = sum(n for status, n in counts.items() if is_paper(status))
        active = counts[ProjectStatus.running]
        failed = counts[ProjectStatus.failed]
        elapsed = self.clock.wall_s()
        waiting = f" | {self.calls_waiting()} calls waiting" if self.calls_waiting is not None else ""
        return (
            f"{elapsed:5.0f}s | papers {papers} | in flight {active} | failed {failed} | tokens "
            f"{usage.total_tokens:,} ({usage.calls} calls, {usage.cache_hits} cached){waiting} | ${usage.cost_usd:.4f} | "
            f"{papers_per_hour(papers, elapsed):.1f} papers/h"
        )

    def _render(self, rows: list[BoardRow]) -> Group:
        table = Table(expand=True, show_edge=False, pad_edge=False)
        table.add_column("project", no_wrap=True)
        table.add_column("stage", no_wrap=True)
        table.add_column("time in stage", justify="right", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("error", ratio=2, overflow="ellipsis", no_wrap=True)
        table.add_column("title", ratio=3, overflow="ellipsis", no_wrap=True)
        now = time.time()
        for row in rows:
            if row.stage_started is None:
                held = ""
            else:  # the timer stops when the project ends
                end = now if row.status == ProjectStatus.running else (row.last_event or now)
                held = f"{max(0.0, end - row.stage_started):.0f}s"
            style = {"failed": "red", "done": "green", "budget_exhausted": "yellow"}.get(row.status.value, "")
            table.add_row(
                row.id,
                row.stage or "queued",
                held,
                Text(row.status.value, style=style),
                (row.error or "").replace("\n", " "),
                row.title or "",
            )
        return Group(Text(self.totals_line(), overflow="ellipsis", no_wrap=True), table)
