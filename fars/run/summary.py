"""Build the RunRecord from the ledger, so its totals always equal the ledger's sums.

The one definition of a paper (``is_paper``), of papers per hour (``papers_per_hour``) and of the run's
clock (``RunClock``: wall time and active time, named apart) lives here; the queue, the status board, W&B
and the report use these, never their own arithmetic. Stage outputs are read
back through their contracts (``fars.run.contracts``), by type: the funnel counts whatever stage
produced an ``IdeationOutput`` and so on, so a pipeline with stages of its own is summarised too.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from fars.run.contracts import (
    CapabilityCheck,
    ExperimentOutput,
    IdeationOutput,
    PlanningOutput,
    ReviewOutput,
    StageOutput,
    WritingOutput,
)
from fars.run.ledger import Ledger, ProjectRow, StoredOutput, load_stored
from fars.run.records import Artifact, Funnel, ProjectStatus, ProjectSummary, RunRecord, Totals, Usage
from fars.safe_files import read_file, write_atomic

RUN_RECORD_FILE = "run_record.json"
RUN_RECORD_MAX_BYTES = 512 * 1024 * 1024  # about 6 kB a project: far more projects than any run has
OutputT = TypeVar("OutputT", bound=StageOutput)
_typed_cache: dict[tuple[str, int], StageOutput | None] = {}  # (ledger, event id) -> its typed output


def is_paper(status: ProjectStatus) -> bool:
    """Whether a project counts as a paper: it went through every configured stage (or was written and kept,
    unreviewed, when its review failed for good)."""
    return status == ProjectStatus.done


def papers_per_hour(papers: int, wall_s: float) -> float:
    """Papers per hour of wall time (0 before any time has passed)."""
    return papers / wall_s * 3600 if wall_s > 0 else 0.0


@dataclass
class RunClock:
    """The run's two times, both spanning its sessions and kept in the ledger's meta.

    Wall time runs from the start of the run's first session, the gaps between sessions included: the
    RunRecord's ``started_at`` and ``wall_s``, papers per hour, the board's elapsed time. Active time counts
    only the seconds its sessions were running, every session's together: what ``budget.max_wall_s`` limits.
    """

    started_at: float  # epoch seconds the run's first session started (wall time counts from here)
    active_before_s: float = 0.0  # seconds the earlier sessions were running
    session_started: float = field(default_factory=time.monotonic)  # this session's start (monotonic clock)

    @classmethod
    def open(cls, ledger: Ledger) -> RunClock:
        """The clock of the run in ``ledger`` as a session starts: its start recorded on the first session."""
        started = ledger.get_meta("started_at")
        started_at = float(started) if started else time.time()
        if not started:
            ledger.set_meta("started_at", str(started_at))
        try:
            active_before = max(0.0, float(ledger.get_meta("active_s") or 0.0))
        except ValueError:
            active_before = 0.0
        return cls(started_at, active_before)

    def wall_s(self, now: float | None = None) -> float:
        """Wall seconds since the run's first session started."""
        return (now or time.time()) - self.started_at

    def active_s(self) -> float:
        """Seconds the run's sessions have been running, this one's so far included."""
        return self.active_before_s + time.monotonic() - self.session_started

    def note_active(self, ledger: Ledger) -> None:
        """Record the active time so far, so a killed session's still counts, to the last second."""
        ledger.set_meta("active_s", f"{self.active_s():.1f}")


class ProjectOutputs:
    """One project's finished stage outputs, typed, looked up by contract."""

    def __init__(self, outputs: list[StageOutput]) -> None:
        self._outputs = outputs

    def get(self, contract: type[OutputT]) -> OutputT | None:
        """The output of the stage that produced ``contract``, or None."""
        return next((o for o in self._outputs if isinstance(o, contract)), None)


def typed_outputs(ledger: Ledger, stored: dict[tuple[str, str], StoredOutput]) -> dict[str, ProjectOutputs]:
    """Every project's stored outputs as contracts (validated once per ledger event, then remembered)."""
    per_project: dict[str, list[StageOutput]] = {}
    for (project, _stage), item in stored.items():
        key = (str(ledger.path), item.event_id)
        if key not in _typed_cache:
            _typed_cache[key] = load_stored(item)
        typed = _typed_cache[key]
        if typed is not None:
            per_project.setdefault(project, []).append(typed)
    return {project: ProjectOutputs(outputs) for project, outputs in per_project.items()}


def funnel_from(projects: list[ProjectRow], outputs: dict[str, ProjectOutputs]) -> Funnel:
    """Funnel counts from the finished stages' outputs."""
    funnel = Funnel()
    for project in projects:
        found = outputs.get(project.id)
        if found is None:
            continue
        idea = found.get(IdeationOutput)
        if idea is not None:
            funnel.hypotheses += len(idea.hypotheses)
            funnel.screened += idea.screened
            funnel.novel += idea.novel
        for contract, attr in (
            (PlanningOutput, "planned"),
            (ExperimentOutput, "experimented"),
            (WritingOutput, "written"),
            (ReviewOutput, "reviewed"),
        ):
            if found.get(contract) is not None:
                setattr(funnel, attr, getattr(funnel, attr) + 1)
    return funnel


def grounding_rates(written: list[WritingOutput]) -> dict[str, Any]:
    """Run-level grounding: rates pooled over every written paper's numbers, citations and claims."""
    if not written:
        return {}
    counts = [w.grounding.after for w in written]
    checked = sum(c.numbers_checked for c in counts)
    cites = sum(c.citations for c in counts)
    claims = sum(w.claims.checked for w in written)
    before = sum(w.claims_before.checked for w in written)
    return {
        "grounded_number_rate": 1.0 if not checked else 1 - sum(c.numbers_ungrounded for c in counts) / checked,
        "verified_citation_rate": 1.0 if not cites else 1 - sum(c.citations_unverified for c in counts) / cites,
        "claim_grounding_rate": 1.0 if not claims else sum(w.claims.supported for w in written) / claims,
        "claims_before_rate": 1.0 if not before else sum(w.claims_before.supported for w in written) / before,
        "papers_flagged": sum(1 for w in written if w.grounding.flagged),
    }


def degenerate_counts(outputs: ProjectOutputs) -> tuple[int, int]:
    """(degenerate, checked) model-written text fields of one project's ideation and writing."""
    found = [o for o in (outputs.get(IdeationOutput), outputs.get(WritingOutput)) if o is not None]
    return sum(o.degenerate_fields for o in found), sum(o.fields_checked for o in found)


def project_summary(
    row: ProjectRow,
    outputs: ProjectOutputs,
    seconds: dict[str, float],
    usage: Usage,
    artifacts: list[Artifact],
    times: tuple[float, float] | None,
) -> ProjectSummary:
    """One project's summary from what the ledger holds about it."""
    review = outputs.get(ReviewOutput)
    idea = outputs.get(IdeationOutput)
    written = outputs.get(WritingOutput)
    degenerate, checked = degenerate_counts(outputs)
    return ProjectSummary(
        id=row.id,
        status=row.status,
        stage=row.stage,
        title=row.title,
        hypothesis=idea.chosen.statement if idea is not None and idea.chosen is not None else None,
        error=row.error,
        stage_seconds=seconds,
        usage=usage,
        artifacts=artifacts,
        rating=review.rating if review is not None else None,
        review=review.review if review is not None else None,
        started_at=times[0] if times else None,
        finished_at=times[1] if times else None,
        grounded_number_rate=written.grounded_number_rate if written is not None else None,
        verified_citation_rate=written.verified_citation_rate if written is not None else None,
        grounding_flagged=written.grounding.flagged if written is not None else None,
        claim_grounding_rate=written.claim_grounding_rate if written is not None else None,
        degenerate_fields=degenerate,
        fields_checked=checked,
        research=idea.research if idea is not None else None,
        capability=capability_line(idea.capability) if idea is not None and idea.capability else None,
    )


def capability_line(check: CapabilityCheck) -> str:
    """The capability check as one line: the model, passed or failed, and why."""
    return f"{check.model}: {'passed' if check.passed else 'failed'} ({check.reason})"[:300]


def summarize_project(ledger: Ledger, project_id: str) -> ProjectSummary:
    """One project's summary, reading only that project's rows (cheap at any run size)."""
    row = ledger.project(project_id)
    outputs = typed_outputs(ledger, ledger.finished_outputs(project_id)).get(project_id, ProjectOutputs([]))
    return project_summary(
        row,
        outputs,
        ledger.stage_seconds(project_id),
        ledger.usage(project_id=project_id).get("", Usage()),
        ledger.artifacts(project_id),
        ledger.project_times(project_id).get(project_id),
    )


@dataclass(frozen=True)
class Progress:
    """Running totals of a run, as W&B logs them when a project ends."""

    finished: int  # projects no longer queued or running
    papers: int  # projects that count as papers (``is_paper``)
    usage: Usage
    papers_per_hour: float

    @classmethod
    def from_record(cls, record: RunRecord) -> Progress:
        """The same totals read off a RunRecord."""
        finished = sum(1 for p in record.projects if p.status.final)
        return cls(finished, record.papers, record.totals.overall, record.papers_per_hour)


class LiveTotals:
    """A run's running totals (project statuses, usage), kept current from what changed since the last look.

    The queue reports every project change (``changed``); usage is summed from the calls recorded since the last
    read (by call id). So a status line or a project's end costs the same in a run of ten projects or of
    thousands, where re-reading the ledger would cost O(projects + calls) each time (O(n^2) over the run).
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.statuses = {p.id: p.status for p in ledger.projects()}
        self.counts: Counter[ProjectStatus] = Counter(self.statuses.values())
        self._last_call, self._usage = ledger.usage_since(0)
        self._dirty: dict[str, None] = {}  # changed projects not yet taken by ``take_changed`` (in order)

    def changed(self, project_id: str, status: ProjectStatus | None = None) -> None:
        """Note that a project changed (its stage, or its status when given)."""
        if status is not None:
            old = self.statuses.get(project_id)
            if old is not None:
                self.counts[old] -= 1
            self.statuses[project_id] = status
            self.counts[status] += 1
        self._dirty[project_id] = None

    def take_changed(self) -> list[str]:
        """The projects changed since the last call, in the order they first changed."""
        changed, self._dirty = list(self._dirty), {}
        return changed

    def usage(self) -> Usage:
        """Usage of every call of the run so far (only the calls new since the last look are read)."""
        self._last_call, new = self.ledger.usage_since(self._last_call)
        if new.calls:
            self._usage = Usage(**{k: getattr(self._usage, k) + getattr(new, k) for k in Usage.model_fields})
        return self._usage

    def progress(self, started_at: float, now: float | None = None) -> Progress:
        """The same totals as ``run_progress``, from the running counts."""
        papers = sum(n for status, n in self.counts.items() if is_paper(status))
        return Progress(
            finished=sum(n for status, n in self.counts.items() if status.final),
            papers=papers,
            usage=self.usage(),
            papers_per_hour=papers_per_hour(papers, (now or time.time()) - started_at),
        )


def run_progress(ledger: Ledger, started_at: float, now: float | None = None) -> Progress:
    """Running totals in a few aggregate queries, without building the whole RunRecord."""
    statuses = [p.status for p in ledger.projects()]
    papers = sum(1 for s in statuses if is_paper(s))
    return Progress(
        finished=sum(1 for s in statuses if s.final),
        papers=papers,
        usage=ledger.total_usage(),
        papers_per_hour=papers_per_hour(papers, (now or time.time()) - started_at),
    )


def build_run_record(
    ledger: Ledger,
    run_dir: Path,
    config: dict[str, Any],
    status: str,
    started_at: float,
    resumed: int,
    error: str | None = None,
) -> RunRecord:
    """The RunRecord of a run as the ledger has it now (a fixed number of queries, whatever the run's size)."""
    usage_by_project = ledger.usage(by="project_id")
    times = ledger.project_times()
    outputs = typed_outputs(ledger, ledger.finished_outputs())
    seconds = ledger.all_stage_seconds()
    artifacts = ledger.all_artifacts()
    rows = ledger.projects()
    empty = ProjectOutputs([])
    projects = [
        project_summary(
            row,
            outputs.get(row.id, empty),
            seconds.get(row.id, {}),
            usage_by_project.get(row.id, Usage()),
            artifacts.get(row.id, []),
            times.get(row.id),
        )
        for row in rows
    ]
    scores = [p.rating for p in projects if p.rating is not None]
    written = [w for p in rows if (w := outputs.get(p.id, empty).get(WritingOutput)) is not None]
    finished = time.time() if status != "running" else None
    wall = (finished or time.time()) - started_at
    papers = sum(1 for p in projects if is_paper(p.status))
    fields = sum(p.fields_checked for p in projects)
    return RunRecord(
        run_dir=str(run_dir),
        status=status,
        error=error,
        started_at=started_at,
        finished_at=finished,
        wall_s=wall,
        resumed=resumed,
        config=config,
        funnel=funnel_from(rows, outputs),
        totals=Totals(
            overall=ledger.total_usage(),
            by_stage=ledger.usage(by="stage"),
            by_model=ledger.usage(by="model"),
        ),
        papers=papers,
        papers_per_hour=papers_per_hour(papers, wall),
        scores=scores,
        mean_score=sum(scores) / len(scores) if scores else None,
        **grounding_rates(written),
        degenerate_rate=sum(p.degenerate_fields for p in projects) / fields if fields else None,
        research=dict(Counter(p.research for p in projects if p.research)),
        projects=projects,
    )


def write_run_record(record: RunRecord, run_dir: Path) -> Path:
    """Write the RunRecord atomically (a reader never sees half a file)."""
    # pydantic's encoder (~10x json's); written as a new file renamed over the old, never through a link
    return write_atomic(run_dir, RUN_RECORD_FILE, record.model_dump_json(indent=1))


def read_run_record(run_dir: Path) -> RunRecord:
    """Load a run folder's RunRecord."""
    data = read_file(run_dir, RUN_RECORD_FILE, max_bytes=RUN_RECORD_MAX_BYTES, allow_hard_links=True)
    return RunRecord.model_validate_json(data)
