"""The project queue: keeps ``pipeline.projects`` projects in flight, each through the stages.

Every stage transition, model call and artifact goes to the ledger as it happens. A stage whose
output is already in the ledger is never run again, so a killed run resumes where it stopped; the
run's checks (``fars.pipeline.preflight.check_run``, those of ``fars run``) refuse a folder that cannot
be used, stored outputs that break their contracts included, before anything runs. One project's
failure is recorded and the queue goes on; what a stage's failure does to its project, and how often
the stage is tried again, the stage registers (``fars.stages.base.StageSpec``), so the queue names no
stage. A failure of the run itself still writes a RunRecord (status ``failed``) and closes the tracker.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import traceback
from pathlib import Path

from fars import offload
from fars.config import FarsConfig, config_dict
from fars.context import call_context
from fars.llm.budget import Budget, BudgetExceeded
from fars.llm.client import LLMError
from fars.paper.latex import engine_notice
from fars.pipeline.board import StatusBoard
from fars.pipeline.preflight import check_run
from fars.pipeline.tracking import make_tracker
from fars.run.contracts import StageOutput
from fars.run.folder import hold_run_folder, open_session, release_run_folder, tracker_run_id
from fars.run.ledger import LEDGER_FILE, Ledger, ProjectRow, load_stored
from fars.run.records import ProjectStatus, RunRecord
from fars.run.summary import (
    LiveTotals,
    RunClock,
    build_run_record,
    is_paper,
    summarize_project,
    write_run_record,
)
from fars.sandbox import describe_isolation
from fars.stages.base import StageContext, StageFn, StageSpec, StopProject
from fars.stages.services import Services, build_services

log = logging.getLogger(__name__)
__all__ = ["LEDGER_FILE", "Pipeline"]  # LEDGER_FILE: where fars run looks for a run to resume


class Pipeline:
    """One run: its ledger, clock, shared services, stages, tracker and status board."""

    def __init__(self, cfg: FarsConfig, run_dir: Path) -> None:
        self.cfg = cfg
        self.config_dict = config_dict(cfg)  # the validated config, as the RunRecord and W&B record it
        self.run_dir = run_dir
        self._hold = hold_run_folder(run_dir)  # one session per run folder, held until run() ends
        try:
            self._open(cfg, run_dir)
        except BaseException:
            release_run_folder(self._hold)
            raise

    def _open(self, cfg: FarsConfig, run_dir: Path) -> None:
        """Refuse a run that cannot start here (``check_run``), open the ledger and restore what spans sessions."""
        self.specs = check_run(cfg, run_dir)
        self.ledger = Ledger(run_dir / LEDGER_FILE)
        forced = open_session(self.ledger, cfg)
        if forced:
            log.warning("resumed with resume_force=true despite: %s (recorded in the ledger)", "; ".join(forced))
        previous = self.ledger.get_meta("sessions")
        self.resumed = int(previous) if previous else 0
        self.ledger.set_meta("sessions", str(self.resumed + 1))
        self.clock = RunClock.open(self.ledger)
        spent = self.ledger.total_usage()
        # the wall budget counts active time: every earlier session's, then this one's
        started = time.time() - self.clock.active_before_s
        self.budget = Budget(cfg.budget, tokens=spent.total_tokens, dollars=spent.cost_usd, started=started)
        self.tracker = make_tracker(cfg.tracker)
        # running totals the queue keeps current as it changes projects: the board, the claims and W&B read
        # them, so none of them re-reads every project or call (O(n^2) over a large run)
        self.live = LiveTotals(self.ledger)
        self.board = StatusBoard(self.ledger, cfg.pipeline.status_interval_s, self.clock, live=self.live)
        self.services: Services | None = None
        self.stages: list[tuple[StageSpec, StageFn]] = []
        self._pending: list[ProjectRow] = []  # unfinished projects from an earlier session
        self._in_flight = 0
        self._stop = False
        self._record_written = -math.inf  # monotonic time run_record.json was last written
        self._record_cost_s = 0.0  # CPU seconds the last running RunRecord took (spaces the next one out)
        offload.configure(cfg.pipeline.render_workers)

    def record(self, status: str, error: str | None = None) -> RunRecord:
        """The RunRecord as of now, written to the run folder."""
        record = build_run_record(
            self.ledger, self.run_dir, self.config_dict, status, self.clock.started_at, self.resumed, error
        )
        write_run_record(record, self.run_dir)
        self._record_written = time.monotonic()
        return record

    def _record_due(self) -> bool:
        """Whether the running RunRecord is due again: every ``record_interval_s``, but never more than 2% of
        the time (it is rebuilt whole, O(projects), so a large run writes it less often instead of stalling)."""
        spacing = max(self.cfg.pipeline.record_interval_s, 50 * self._record_cost_s)
        return time.monotonic() - self._record_written >= spacing

    def _claim(self) -> ProjectRow | None:
        """The next project to work on: an unfinished one first, else a new one while papers are short."""
        if self._pending:
            self._in_flight += 1
            return self._pending.pop(0)
        known = len(self.live.statuses)  # counted as they change, not re-read per claim (O(projects) each)
        done = sum(n for status, n in self.live.counts.items() if is_paper(status))
        cap = self.cfg.pipeline.max_projects or 2 * self.cfg.pipeline.papers
        if self._stop or done + self._in_flight >= self.cfg.pipeline.papers or known >= cap:
            return None
        pid = f"p{known:03d}"
        self.ledger.add_project(pid, known, self.cfg.area)
        self.live.changed(pid, ProjectStatus.queued)
        self._in_flight += 1
        return self.ledger.project(pid)

    def _start(self) -> None:
        """Build what the projects share: the services and each stage's ``run`` (the checks passed at open)."""
        level, notice = engine_notice(self.cfg.paper.compile, self.cfg.paper.engine)
        log.log(level, notice)  # said at the start, not found out after an expensive run
        log.info("%s", describe_isolation(self.cfg.sandbox.backend))  # which isolation model-written code gets
        self.services = build_services(self.cfg, self.ledger, self.run_dir, self.budget)
        self.board.calls_waiting = self.services.llm.calls_waiting  # the board shows the model queue
        self.stages = [(spec, spec.build(self.cfg, self.services)) for spec in self.specs]

    async def run(self) -> RunRecord:
        """Run (or resume) projects until ``pipeline.papers`` papers are done; return the final RunRecord."""
        status, error = "interrupted", None
        try:
            # started first, so W&B sees a failed start too; every session continues the run's own W&B run
            self.tracker.start(self.config_dict, self.run_dir, self.run_dir.name, run_id=tracker_run_id(self.ledger))
            self._start()
            self._pending = [p for p in self.ledger.projects() if p.status.resumable]
            with self.board:
                ticker = asyncio.create_task(self._tick())
                try:
                    await asyncio.gather(*(self._worker() for _ in range(self.cfg.pipeline.projects)))
                finally:
                    ticker.cancel()
            status = "completed"
        except Exception as exc:  # the run itself failed: still record it and close the tracker
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.clock.note_active(self.ledger)
            record = self.record(status, error)
            self.tracker.finish(record)
            if self.services is not None:
                self.services.close()
            self.ledger.close()
            release_run_folder(self._hold)
        return record

    async def _worker(self) -> None:
        while (project := self._claim()) is not None:
            try:
                await self._run_project(project)
            finally:
                self._in_flight -= 1
            # only this project's rows and a few totals: a full RunRecord per project is O(projects^2)
            self.tracker.log_project(
                summarize_project(self.ledger, project.id), self.live.progress(self.clock.started_at)
            )
            if self._record_due():
                cpu = time.process_time()
                self.record("running")
                self._record_cost_s = time.process_time() - cpu

    async def _tick(self) -> None:
        while True:
            self.board.refresh()
            self.clock.note_active(self.ledger)  # a killed session's active time still counts, to the last second
            await asyncio.sleep(min(1.0, self.cfg.pipeline.status_interval_s))

    async def _run_project(self, project: ProjectRow) -> None:
        """Take one project through every stage it has not finished; it ends done, or where a stage ends it."""
        pid = project.id
        self._restore_project_budget(pid)
        try:
            await self._run_stages(project)
        except BaseException:
            if self.services is not None:
                self.services.background.cancel(pid)
            raise

    async def _run_stages(self, project: ProjectRow) -> None:
        """The stages of ``run_project``; the project is done once its background work (figures) is settled."""
        pid = project.id
        inputs: dict[type[StageOutput], StageOutput] = {}
        self._update(pid, status=ProjectStatus.running)
        for spec, run_stage in self.stages:
            earlier = self.ledger.stage_output(pid, spec.name)
            if earlier is not None:  # finished before a crash: never run it twice (validated by the checks)
                loaded = load_stored(earlier, spec.produces)
                assert loaded is not None
                inputs[spec.produces] = loaded
                continue
            output = await self._run_stage(project, spec, run_stage, inputs)
            if output is None:
                if self.services is not None:  # what it left drawing is still written (a later resume uses it)
                    await self.services.background.settle(pid)
                return  # the stage ended the project
            self.ledger.stage_finished(pid, spec.name, output)
            inputs[spec.produces] = output
        if self.services is not None:
            for problem in await self.services.background.settle(pid):
                log.warning("%s: %s", pid, problem)
        self._update(pid, stage="done")
        self._end(pid, ProjectStatus.done, None)

    async def _run_stage(
        self, project: ProjectRow, spec: StageSpec, run_stage: StageFn, inputs: dict[type[StageOutput], StageOutput]
    ) -> StageOutput | None:
        """One stage of one project: its output, checked against its contract; or None when the stage ended the
        project (a stop, a budget used up, a failure), recorded in the ledger."""
        pid, stage = project.id, spec.name
        self._update(pid, stage=stage)
        self.ledger.stage_started(pid, stage)
        ctx = StageContext(
            project_id=pid,
            index=project.idx,
            area=project.area,
            run_dir=self.run_dir,
            ledger=self.ledger,
            stage=stage,
            inputs={c: inputs[c] for c in spec.consumes},
        )
        try:
            with call_context(pid, stage):
                output = await self._attempt(spec, run_stage, ctx)
            if not isinstance(output, spec.produces):
                raise TypeError(
                    f"stage {stage!r} returned {type(output).__name__}, not the {spec.produces.__name__} "
                    "it declares (register_stage(produces=...))"
                )
            return output
        except StopProject as stop:
            if stop.output is not None:
                self.ledger.stage_finished(pid, stage, stop.output.model_copy(update={"stopped": stop.reason}))
            else:
                self.ledger.stage_failed(pid, stage, f"stopped: {stop.reason}")
            self._end(pid, stop.status, stop.reason)
        except BudgetExceeded as exc:
            if exc.scope == "run":
                self._stop = True  # no new project starts once a run budget is used up
            self.ledger.stage_failed(pid, stage, str(exc))
            kept = f"the budget ran out in its {stage}: {str(exc)[:300]}"
            self._failed(spec, pid, ProjectStatus.budget_exhausted, str(exc), kept)
        except Exception as exc:  # one project's failure never stops the queue
            detail = traceback.format_exc()
            (ctx.project_dir / "error.log").write_text(detail, encoding="utf-8")
            self.ledger.stage_failed(pid, stage, detail[-4000:])
            kind = "model" if isinstance(exc, LLMError) else type(exc).__name__
            reason = f"{stage} failed ({kind}): {str(exc)[:300]}"
            self._failed(spec, pid, ProjectStatus.failed, reason, f"the {reason}")
        return None

    def _failed(self, spec: StageSpec, pid: str, status: ProjectStatus, reason: str, kept: str) -> None:
        """End a project whose stage failed for good with ``status``; but a stage registered with
        ``on_failure="keep_paper_unreviewed"`` (the review) keeps its written paper, a paper without a rating."""
        if spec.on_failure == "keep_paper_unreviewed":
            self._update(pid, stage="done")
            self._end(pid, ProjectStatus.done, f"unreviewed: {kept}")
        else:
            self._end(pid, status, reason)

    async def _attempt(self, spec: StageSpec, run_stage: StageFn, ctx: StageContext) -> StageOutput:
        """Run one stage, tried again after a failure as often as it registered (``retries``)."""
        tries = 1 + (spec.retries(self.cfg) if spec.retries else 0)
        doing = spec.doing or f"running {spec.name}"
        for attempt in range(1, tries + 1):
            try:
                return await run_stage(ctx)
            except (StopProject, BudgetExceeded):
                raise
            except Exception as exc:
                if attempt == tries:
                    raise
                log.warning(
                    "%s: the %s failed (%s: %s); %s again (%d of %d)",
                    ctx.project_id,
                    spec.name,
                    type(exc).__name__,
                    str(exc)[:200],
                    doing,
                    attempt + 1,
                    tries,
                )
        raise AssertionError("unreachable")

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

    def _update(
        self, pid: str, *, stage: str | None = None, status: ProjectStatus | None = None, error: str | None = None
    ) -> None:
        """Change a project in the ledger and tell the running totals (the board reads only what changed)."""
        self.ledger.update_project(pid, stage=stage, status=status, error=error)
        self.live.changed(pid, status)

    def _end(self, pid: str, status: ProjectStatus, reason: str | None) -> None:
        self._update(pid, status=status, error=reason)
        self.board.refresh()
        if reason:
            log.warning("%s ended %s: %s", pid, status.value, reason)
