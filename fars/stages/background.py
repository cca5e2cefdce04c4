"""Work a stage starts and leaves running while its project goes on: figures drawn while the paper is written.

Drawing an experiment's figures costs about a third of a second of CPU in a worker process, and the pool has
one worker on a 2-core machine. When hundreds of projects reach the end of their Experiment stage together,
each waited for every figure queued before its own: in the harness benchmark at 256 projects that was about
a minute per project, the whole gap between its throughput and the bound. So the stage lists its figures
(files and captions need no drawing), starts the drawing here and returns; the Writing stage treats the
listed files as there (``pending``), waits for them only before compiling LaTeX, and the queue waits for
every project's work before calling the project done (``settle``). Work that fails is tried once more (a
worker that died is replaced by a fresh pool); what still fails is reported, and the paper goes on without
those files, as it does without any figure that is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass
class _Work:
    task: asyncio.Future[None]
    files: frozenset[str]  # what it writes, relative to the project folder
    again: Callable[[], Awaitable[None]]  # the same work, started anew


class Background:
    """The work each project has running (see the module docstring)."""

    def __init__(self) -> None:
        self._work: dict[str, list[_Work]] = {}

    def start(self, project_id: str, make: Callable[[], Awaitable[None]], files: Iterable[str]) -> None:
        """Start ``make()`` now for ``project_id``; ``files`` count as present until it is settled."""
        task = asyncio.ensure_future(make())
        self._work.setdefault(project_id, []).append(_Work(task, frozenset(files), make))

    def pending(self, project_id: str) -> frozenset[str]:
        """The files the project's unsettled work will write."""
        return frozenset(f for w in self._work.get(project_id, []) for f in w.files)

    async def settle(self, project_id: str) -> list[str]:
        """Wait for the project's work; what failed twice, one line each (empty: all done)."""
        problems = []
        for work in self._work.pop(project_id, []):
            try:
                await work.task
            except Exception as first:  # any failure of the work is retried once, then reported
                log.warning("%s: background work failed (%s); trying once more", project_id, first)
                try:
                    await work.again()
                except Exception as exc:  # reported to the caller, which decides what it means
                    problems.append(f"{', '.join(sorted(work.files))} not written: {exc}")
        return problems

    def cancel(self, project_id: str) -> None:
        """Stop the project's work (the project was interrupted)."""
        for work in self._work.pop(project_id, []):
            work.task.cancel()

    async def close(self) -> None:
        """Stop every project's work and wait for it to end."""
        tasks = [w.task for ws in self._work.values() for w in ws]
        self._work.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
