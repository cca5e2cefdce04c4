"""The project queue: keeps ``pipeline.projects`` projects in flight, each through the stages.

Every stage transition, model call and artifact goes to the ledger as it happens. A stage whose
output is already in the ledger is never run again, so a killed run resumes where it stopped. One
project's failure is recorded and the queue goes on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import traceback
from pathlib import Path
from typing import Any

from fars import offload
from fars.budget import Budget, BudgetExceeded
from fars.config import FarsConfig
from fars.latex import LatexError, engine_notice
from fars.ledger import Ledger, ProjectRow
from fars.llm.client import LLMClient, LLMError, call_context
from fars.records import ProjectStatus, RunRecord
from fars.sandbox import describe_isolation
from fars.stages import StageContext, StopProject, get_stage
from fars.status import StatusBoard
from fars.summary import build_run_record, run_progress, summarize_project, write_run_record
from fars.tracking import make_tracker

log = logging.getLogger(__name__)
LEDGER_FILE = "ledger.sqlite"
# statuses a resumed run picks up again; done and screened_out are final
_RESUMABLE = (
    ProjectStatus.queued,
    ProjectStatus.running,
    ProjectStatus.failed,
    ProjectStatus.budget_exhausted,
)


class Pipeline:
    """One run: its ledger, model client, stages, tracker and status board."""

    def __init__(self, cfg: FarsConfig, config_dict: dict[str, Any], run_dir: Path) -> None:
        self.cfg = cfg
        self.config_dict = config_dict
        self.run_dir = run_dir
        self.ledger = Ledger(run_dir / LEDGER_FILE)
        previous = self.ledger.get_meta("sessions")
        self.resumed = int(previous) if previous else 0
        self.ledger.set_meta("sessions", str(self.resumed + 1))
        started = self.ledger.get_meta("started_at")
        self.started_at = float(started) if started else time.time()
        if not started:
            self.ledger.set_meta("started_at", str(self.started_at))
        spent = self.ledger.total_usage()
        self.budget = Budget(cfg.budget, tokens=spent.total_tokens, dollars=spent.cost_usd)
        self.stages = {name: get_stage(name)(cfg) for name in cfg.pipeline.stages}
        self.tracker = make_tracker(cfg.tracker)
        self.board = StatusBoard(self.ledger, cfg.pipeline.status_interval_s, self.started_at)
        self._pending: list[ProjectRow] = []  # unfinished projects from an earlier session
        self._in_flight = 0
        self._stop = False
        self._record_written = -math.inf  # monotonic time run_record.json was last written
        offload.configure(cfg.pipeline.render_workers)

    def record(self, status: str) -> RunRecord:
        """The RunRecord as of now, written to the run folder."""
        record = build_run_record(self.ledger, self.run_dir, self.config_dict, status, self.started_at, self.resumed)
        write_run_record(record, self.run_dir)
        self._record_written = time.monotonic()
        return record

    def _claim(self) -> ProjectRow | None:
        """The next project to work on: an unfinished one first, else a new one while papers are short."""
        if self._pending:
            self._in_flight += 1
            return self._pending.pop(0)
        projects = self.ledger.projects()
        done = sum(1 for p in projects if p.status == ProjectStatus.done)
        cap = self.cfg.pipeline.max_projects or 2 * self.cfg.pipeline.papers
        if self._stop or done + self._in_flight >= self.cfg.pipeline.papers or len(projects) >= cap:
            return None
        idx = len(projects)
        self.ledger.add_project(f"p{idx:03d}", idx, self.cfg.area)
        self._in_flight += 1
        return self.ledger.projects()[idx]

    async def run(self) -> RunRecord:
        """Run (or resume) projects until ``pipeline.papers`` papers are done; return the final RunRecord."""
        self._pending = [p for p in self.ledger.projects() if p.status in _RESUMABLE]
        for p in self.ledger.projects():
            self.board.update(p.id, stage=p.stage or "queued", status=p.status.value, title=p.title)
        level, notice = engine_notice(self.cfg.paper.compile, self.cfg.paper.engine)
        log.log(level, notice)  # said at the start, not found out after an expensive run
        if level >= logging.ERROR:
            raise LatexError(notice)
        log.info("%s", describe_isolation(self.cfg.sandbox.backend))  # which isolation model-written code gets
        self.tracker.start(self.config_dict, self.run_dir, self.run_dir.name)
        llm = LLMClient(self.cfg.llm, self.ledger, self.budget)

        async def worker() -> None:
            while (project := self._claim()) is not None:
                try:
                    await self._run_project(project, llm)
                finally:
                    self._in_flight -= 1
                # only this project's rows and a few totals: a full RunRecord per project is O(projects^2)
                self.tracker.log_project(
                    summarize_project(self.ledger, project.id), run_progress(self.ledger, self.started_at)
                )
                if time.monotonic() - self._record_written >= self.cfg.pipeline.record_interval_s:
                    self.record("running")

        status = "interrupted"
        try:
            with self.board:
                ticker = asyncio.create_task(self._tick())
                try:
                    await asyncio.gather(*(worker() for _ in range(self.cfg.pipeline.projects)))
                finally:
                    ticker.cancel()
            status = "completed"
        finally:
            record = self.record(status)
            if status == "completed":
                self.tracker.finish(record)
            llm.close()
            self.ledger.close()
        return record

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.cfg.pipeline.status_interval_s))
            self.board.refresh()

    async def _run_project(self, project: ProjectRow, llm: LLMClient) -> None:
        pid = project.id
        self._restore_project_budget(pid)
        outputs: dict[str, dict[str, Any]] = {}
        self.ledger.update_project(pid, status=ProjectStatus.running)
        self.board.update(pid, status="running")
        for stage, run_stage in self.stages.items():
            earlier = self.ledger.stage_output(pid, stage)
            if earlier is not None:  # finished before a crash: never run it twice
                outputs[stage] = earlier
                continue
            self.ledger.update_project(pid, stage=stage)
            self.board.update(pid, stage=stage)
            self.ledger.stage_started(pid, stage)
            ctx = StageContext(
                cfg=self.cfg,
                project_id=pid,
                index=project.idx,
                area=project.area,
                run_dir=self.run_dir,
                llm=llm,
                ledger=self.ledger,
                outputs=dict(outputs),
                stage=stage,
            )
            try:
                with call_context(pid, stage):
                    outputs[stage] = await run_stage(ctx)
            except StopProject as stop:
                self.ledger.stage_finished(pid, stage, {**stop.output, "stopped": stop.reason})
                self._end(pid, stop.status, stop.reason)
                return
            except BudgetExceeded as exc:
                if exc.scope == "run":
                    self._stop = True  # no new project starts once a run budget is used up
                self.ledger.stage_failed(pid, stage, str(exc))
                self._end(pid, ProjectStatus.budget_exhausted, str(exc))
                return
            except Exception as exc:  # one project's failure never stops the queue
                detail = traceback.format_exc()
                (ctx.project_dir / "error.log").write_text(detail, encoding="utf-8")
                self.ledger.stage_failed(pid, stage, detail[-4000:])
                kind = "model" if isinstance(exc, LLMError) else type(exc).__name__
                self._end(pid, ProjectStatus.failed, f"{stage} failed ({kind}): {str(exc)[:300]}")
                return
            self.ledger.stage_finished(pid, stage, outputs[stage])
            if stage == "writing":
                self.board.update(pid, title=outputs[stage].get("title"))
        self.ledger.update_project(pid, stage="done")
        self.board.update(pid, stage="done")
        self._end(pid, ProjectStatus.done, None)

    def _restore_project_budget(self, pid: str) -> None:
        """Give the budget a project's spending so far and its start time (kept in the ledger for resume)."""
        key = f"project_started:{pid}"
        started = self.ledger.get_meta(key)
        if started is None:
            started = str(time.time())
            self.ledger.set_meta(key, started)
        spent = self.ledger.usage(project_id=pid).get("", None)
        tokens, dollars = (spent.total_tokens, spent.cost_usd) if spent else (0, 0.0)
        self.budget.project(pid, tokens=tokens, dollars=dollars, started=float(started))

    def _end(self, pid: str, status: ProjectStatus, reason: str | None) -> None:
        self.ledger.update_project(pid, status=status, error=reason)
        self.board.update(pid, status=status.value)
        if reason:
            log.warning("%s ended %s: %s", pid, status.value, reason)
