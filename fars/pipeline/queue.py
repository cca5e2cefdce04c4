"""The project queue: keeps ``pipeline.projects`` projects in flight, each through the stages.

Every stage transition, model call and artifact goes to the ledger as it happens. A stage whose
output is already in the ledger is never run again, so a killed run resumes where it stopped; the
outputs it reads back are validated against their contracts first, so a hand-edited or foreign run
folder is refused before anything runs. One project's failure is recorded and the queue goes on;
a failure of the run itself still writes a RunRecord (status ``failed``) and closes the tracker.
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
from fars.paper.latex import LatexError, engine_notice
from fars.pipeline.board import StatusBoard
from fars.pipeline.tracking import make_tracker
from fars.run.contracts import ContractError, StageOutput, WritingOutput
from fars.run.folder import (
    RunFolderError,
    active_seconds,
    fresh_run_problems,
    hold_run_folder,
    note_active,
    open_session,
    release_run_folder,
    resume_problems,
    tracker_run_id,
)
from fars.run.ledger import Ledger, ProjectRow, load_stored
from fars.run.records import ProjectStatus, RunRecord
from fars.run.summary import build_run_record, is_paper, run_progress, summarize_project, write_run_record
from fars.sandbox import describe_isolation
from fars.stages.base import StageContext, StageFn, StageSpec, StopProject
from fars.stages.registry import resolve_stages
from fars.stages.services import Services, build_services

log = logging.getLogger(__name__)
LEDGER_FILE = "ledger.sqlite"
# statuses a resumed run picks up again; done and screened_out are final
_RESUMABLE = (
    ProjectStatus.queued,
    ProjectStatus.running,
    ProjectStatus.failed,
    ProjectStatus.budget_exhausted,
)


def stored_output_problems(ledger: Ledger, specs: list[StageSpec]) -> list[str]:
    """Every stored output of these stages that does not validate against its stage's contract."""
    by_stage = {s.name: s for s in specs}
    problems = []
    for (_project, stage), stored in sorted(ledger.finished_outputs().items()):
        spec = by_stage.get(stage)
        if spec is None:
            continue
        try:
            load_stored(stored, spec.produces)
        except ContractError as exc:
            problems.append(f"{ledger.path}: {exc}")
    return problems


class Pipeline:
    """One run: its ledger, shared services, stages, tracker and status board."""

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
        """Open the ledger (refusing a folder that cannot be continued) and restore what spans sessions."""
        problems = resume_problems(run_dir, cfg) if cfg.resume else fresh_run_problems(run_dir)
        if problems:
            raise RunFolderError("; ".join(problems))
        self.ledger = Ledger(run_dir / LEDGER_FILE)
        forced = open_session(self.ledger, cfg)
        if forced:
            log.warning("resumed with resume_force=true despite: %s (recorded in the ledger)", "; ".join(forced))
        previous = self.ledger.get_meta("sessions")
        self.resumed = int(previous) if previous else 0
        self.ledger.set_meta("sessions", str(self.resumed + 1))
        started = self.ledger.get_meta("started_at")
        self.started_at = float(started) if started else time.time()
        if not started:
            self.ledger.set_meta("started_at", str(self.started_at))
        spent = self.ledger.total_usage()
        self._active_before = active_seconds(self.ledger)  # the wall budget counts every earlier session
        self._session_start = time.monotonic()
        self.budget = Budget(
            cfg.budget, tokens=spent.total_tokens, dollars=spent.cost_usd, started=time.time() - self._active_before
        )
        self.tracker = make_tracker(cfg.tracker)
        self.board = StatusBoard(self.ledger, cfg.pipeline.status_interval_s, self.started_at)
        self.services: Services | None = None
        self.stages: list[tuple[StageSpec, StageFn]] = []
        self._pending: list[ProjectRow] = []  # unfinished projects from an earlier session
        self._in_flight = 0
        self._stop = False
        self._record_written = -math.inf  # monotonic time run_record.json was last written
        offload.configure(cfg.pipeline.render_workers)

    def record(self, status: str, error: str | None = None) -> RunRecord:
        """The RunRecord as of now, written to the run folder."""
        record = build_run_record(
            self.ledger, self.run_dir, self.config_dict, status, self.started_at, self.resumed, error
        )
        write_run_record(record, self.run_dir)
        self._record_written = time.monotonic()
        return record

    def _claim(self) -> ProjectRow | None:
        """The next project to work on: an unfinished one first, else a new one while papers are short."""
        if self._pending:
            self._in_flight += 1
            return self._pending.pop(0)
        projects = self.ledger.projects()
        done = sum(1 for p in projects if is_paper(p.status))
        cap = self.cfg.pipeline.max_projects or 2 * self.cfg.pipeline.papers
        if self._stop or done + self._in_flight >= self.cfg.pipeline.papers or len(projects) >= cap:
            return None
        idx = len(projects)
        self.ledger.add_project(f"p{idx:03d}", idx, self.cfg.area)
        self._in_flight += 1
        return self.ledger.projects()[idx]

    def _start(self) -> None:
        """Everything that can refuse the run before any project starts: stages, stored outputs, services."""
        specs = resolve_stages(list(self.cfg.pipeline.stages))
        problems = stored_output_problems(self.ledger, specs)
        if problems:
            raise RunFolderError(
                "this run folder cannot be resumed as it is:\n  - " + "\n  - ".join(problems) + "\n"
                "restore the ledger from a backup, or start a new run (without resume=)"
            )
        level, notice = engine_notice(self.cfg.paper.compile, self.cfg.paper.engine)
        log.log(level, notice)  # said at the start, not found out after an expensive run
        if level >= logging.ERROR:
            raise LatexError(notice)
        log.info("%s", describe_isolation(self.cfg.sandbox.backend))  # which isolation model-written code gets
        self.services = build_services(self.cfg, self.ledger, self.run_dir, self.budget)
        self.board.calls_waiting = self.services.llm.calls_waiting  # the board shows the model queue
        self.stages = [(spec, spec.build(self.cfg, self.services)) for spec in specs]

    async def run(self) -> RunRecord:
        """Run (or resume) projects until ``pipeline.papers`` papers are done; return the final RunRecord."""
        status, error = "interrupted", None
        try:
            # started first, so W&B sees a failed start too; every session continues the run's own W&B run
            self.tracker.start(self.config_dict, self.run_dir, self.run_dir.name, run_id=tracker_run_id(self.ledger))
            self._start()
            self._pending = [p for p in self.ledger.projects() if p.status in _RESUMABLE]
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
            self._note_active()
            record = self.record(status, error)
            self.tracker.finish(record)
            if self.services is not None:
                self.services.close()
            self.ledger.close()
            release_run_folder(self._hold)
        return record

    def _note_active(self) -> None:
        note_active(self.ledger, self._active_before + time.monotonic() - self._session_start)

    async def _worker(self) -> None:
        while (project := self._claim()) is not None:
            try:
                await self._run_project(project)
            finally:
                self._in_flight -= 1
            # only this project's rows and a few totals: a full RunRecord per project is O(projects^2)
            self.tracker.log_project(
                summarize_project(self.ledger, project.id), run_progress(self.ledger, self.started_at)
            )
            if time.monotonic() - self._record_written >= self.cfg.pipeline.record_interval_s:
                self.record("running")

    async def _tick(self) -> None:
        while True:
            self.board.refresh()
            self._note_active()  # a killed session's wall time still counts, to the last second
            await asyncio.sleep(min(1.0, self.cfg.pipeline.status_interval_s))

    async def _run_project(self, project: ProjectRow) -> None:
        pid = project.id
        self._restore_project_budget(pid)
        inputs: dict[type[StageOutput], StageOutput] = {}
        self.ledger.update_project(pid, status=ProjectStatus.running)
        for spec, run_stage in self.stages:
            stage = spec.name
            earlier = self.ledger.stage_output(pid, stage)
            if earlier is not None:  # finished before a crash: never run it twice (validated at start)
                loaded = load_stored(earlier, spec.produces)
                assert loaded is not None
                inputs[spec.produces] = loaded
                continue
            self.ledger.update_project(pid, stage=stage)
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
                    output = await self._attempt(run_stage, ctx, stage, WritingOutput in inputs)
                if not isinstance(output, spec.produces):
                    raise TypeError(
                        f"stage {stage!r} returned {type(output).__name__}, not the {spec.produces.__name__} "
                        "it declares (register_stage(produces=...))"
                    )
            except StopProject as stop:
                if stop.output is not None:
                    self.ledger.stage_finished(pid, stage, stop.output.model_copy(update={"stopped": stop.reason}))
                else:
                    self.ledger.stage_failed(pid, stage, f"stopped: {stop.reason}")
                self._end(pid, stop.status, stop.reason)
                return
            except BudgetExceeded as exc:
                if exc.scope == "run":
                    self._stop = True  # no new project starts once a run budget is used up
                self.ledger.stage_failed(pid, stage, str(exc))
                if stage == "review" and WritingOutput in inputs:
                    self._keep_unreviewed(pid, f"the budget ran out in its review: {str(exc)[:300]}")
                    return
                self._end(pid, ProjectStatus.budget_exhausted, str(exc))
                return
            except Exception as exc:  # one project's failure never stops the queue
                detail = traceback.format_exc()
                (ctx.project_dir / "error.log").write_text(detail, encoding="utf-8")
                self.ledger.stage_failed(pid, stage, detail[-4000:])
                kind = "model" if isinstance(exc, LLMError) else type(exc).__name__
                if stage == "review" and WritingOutput in inputs:
                    self._keep_unreviewed(pid, f"the review failed ({kind}): {str(exc)[:300]}")
                    return
                self._end(pid, ProjectStatus.failed, f"{stage} failed ({kind}): {str(exc)[:300]}")
                return
            self.ledger.stage_finished(pid, stage, output)
            inputs[spec.produces] = output
        self.ledger.update_project(pid, stage="done")
        self._end(pid, ProjectStatus.done, None)

    def _keep_unreviewed(self, pid: str, why: str) -> None:
        """A written paper whose review could not be had is kept as a paper without a rating, never discarded."""
        self.ledger.update_project(pid, stage="done")
        self._end(pid, ProjectStatus.done, f"unreviewed: {why}")

    async def _attempt(self, run_stage: StageFn, ctx: StageContext, stage: str, written: bool) -> StageOutput:
        """Run one stage; a review of a written paper that fails is tried again ``pipeline.review_retries`` times."""
        tries = 1 + (self.cfg.pipeline.review_retries if stage == "review" and written else 0)
        for attempt in range(1, tries + 1):
            try:
                return await run_stage(ctx)
            except (StopProject, BudgetExceeded):
                raise
            except Exception as exc:
                if attempt == tries:
                    raise
                log.warning("%s: the review failed (%s: %s); reviewing again (%d of %d)", ctx.project_id,
                            type(exc).__name__, str(exc)[:200], attempt + 1, tries)  # fmt: skip
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

    def _end(self, pid: str, status: ProjectStatus, reason: str | None) -> None:
        self.ledger.update_project(pid, status=status, error=reason)
        self.board.refresh()
        if reason:
            log.warning("%s ended %s: %s", pid, status.value, reason)
