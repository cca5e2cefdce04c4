"""Build the RunRecord from the ledger, so its totals always equal the ledger's sums."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fars.ledger import Ledger, ProjectRow
from fars.records import Artifact, Funnel, ProjectStatus, ProjectSummary, RunRecord, Totals, Usage

RUN_RECORD_FILE = "run_record.json"
Outputs = dict[tuple[str, str], dict[str, Any]]  # (project, stage) -> the stage's latest output
_OPEN = (ProjectStatus.queued, ProjectStatus.running)  # a project in these has not finished


def funnel_from(ledger: Ledger, outputs: Outputs | None = None) -> Funnel:
    """Funnel counts from the finished stages' outputs (``outputs``: ``ledger.finished_outputs()``)."""
    outputs = ledger.finished_outputs() if outputs is None else outputs
    funnel = Funnel()
    for project in ledger.projects():
        idea = outputs.get((project.id, "ideation"))
        if idea is not None:
            funnel.hypotheses += len(idea.get("hypotheses", []))
            funnel.screened += int(idea.get("screened", 0))
            funnel.novel += int(idea.get("novel", idea.get("screened")) or 0)
        for stage, attr in (
            ("planning", "planned"),
            ("experiment", "experimented"),
            ("writing", "written"),
            ("review", "reviewed"),
        ):
            if (project.id, stage) in outputs:
                setattr(funnel, attr, getattr(funnel, attr) + 1)
    return funnel


def grounding_rates(counts: list[dict[str, Any]]) -> dict[str, Any]:
    """Run-level grounding: rates pooled over every written paper's numbers and citations, papers flagged."""
    if not counts:
        return {}
    checked = sum(c["numbers_checked"] for c in counts)
    cites = sum(c["citations"] for c in counts)
    return {
        "grounded_number_rate": 1.0 if not checked else 1 - sum(c["numbers_ungrounded"] for c in counts) / checked,
        "verified_citation_rate": 1.0 if not cites else 1 - sum(c["citations_unverified"] for c in counts) / cites,
        "papers_flagged": sum(1 for c in counts if c["numbers_ungrounded"] or c["citations_unverified"]),
    }


def project_summary(
    row: ProjectRow,
    outputs: Outputs,
    seconds: dict[str, float],
    usage: Usage,
    artifacts: list[Artifact],
    times: tuple[float, float] | None,
) -> ProjectSummary:
    """One project's summary from what the ledger holds about it."""
    review = outputs.get((row.id, "review"))
    idea = outputs.get((row.id, "ideation")) or {}
    written = outputs.get((row.id, "writing")) or {}
    grounding = written.get("grounding") or {}
    return ProjectSummary(
        id=row.id,
        status=row.status,
        stage=row.stage,
        title=row.title,
        hypothesis=(idea.get("chosen") or {}).get("statement"),
        error=row.error,
        stage_seconds=seconds,
        usage=usage,
        artifacts=artifacts,
        rating=float(review["rating"]) if review else None,
        review=review.get("review") if review else None,
        started_at=times[0] if times else None,
        finished_at=times[1] if times else None,
        grounded_number_rate=written.get("grounded_number_rate"),
        verified_citation_rate=written.get("verified_citation_rate"),
        grounding_flagged=grounding.get("flagged") if grounding else None,
    )


def summarize_project(ledger: Ledger, project_id: str) -> ProjectSummary:
    """One project's summary, reading only that project's rows (cheap at any run size)."""
    row = ledger.project(project_id)
    return project_summary(
        row,
        ledger.finished_outputs(project_id),
        ledger.stage_seconds(project_id),
        ledger.usage(project_id=project_id).get("", Usage()),
        ledger.artifacts(project_id),
        ledger.project_times(project_id).get(project_id),
    )


@dataclass(frozen=True)
class Progress:
    """Running totals of a run, as W&B logs them when a project ends."""

    finished: int  # projects no longer queued or running
    papers: int  # projects with a review (the RunRecord's ``scores``)
    usage: Usage
    papers_per_hour: float

    @classmethod
    def from_record(cls, record: RunRecord) -> Progress:
        """The same totals read off a RunRecord."""
        finished = sum(1 for p in record.projects if p.status not in _OPEN)
        return cls(finished, len(record.scores), record.totals.overall, record.papers_per_hour)


def run_progress(ledger: Ledger, started_at: float) -> Progress:
    """Running totals in a few aggregate queries, without building the whole RunRecord."""
    statuses = [p.status for p in ledger.projects()]
    return Progress(
        finished=sum(1 for s in statuses if s not in _OPEN),
        papers=ledger.count_finished("review"),
        usage=ledger.total_usage(),
        papers_per_hour=_per_hour(statuses.count(ProjectStatus.done), time.time() - started_at),
    )


def _per_hour(papers: int, wall_s: float) -> float:
    return papers / wall_s * 3600 if wall_s > 0 else 0.0


def build_run_record(
    ledger: Ledger, run_dir: Path, config: dict[str, Any], status: str, started_at: float, resumed: int
) -> RunRecord:
    """The RunRecord of a run as the ledger has it now (a fixed number of queries, whatever the run's size)."""
    usage_by_project = ledger.usage(by="project_id")
    times = ledger.project_times()
    outputs = ledger.finished_outputs()
    seconds = ledger.all_stage_seconds()
    artifacts = ledger.all_artifacts()
    projects = [
        project_summary(
            row,
            outputs,
            seconds.get(row.id, {}),
            usage_by_project.get(row.id, Usage()),
            artifacts.get(row.id, []),
            times.get(row.id),
        )
        for row in ledger.projects()
    ]
    scores = [p.rating for p in projects if p.rating is not None]
    grounding_counts = [
        grounding["after"] for p in projects if (grounding := (outputs.get((p.id, "writing")) or {}).get("grounding"))
    ]
    finished = time.time() if status != "running" else None
    wall = (finished or time.time()) - started_at
    return RunRecord(
        run_dir=str(run_dir),
        status=status,
        started_at=started_at,
        finished_at=finished,
        wall_s=wall,
        resumed=resumed,
        config=config,
        funnel=funnel_from(ledger, outputs),
        totals=Totals(
            overall=ledger.total_usage(),
            by_stage=ledger.usage(by="stage"),
            by_model=ledger.usage(by="model"),
        ),
        papers_per_hour=_per_hour(sum(1 for p in projects if p.status == ProjectStatus.done), wall),
        scores=scores,
        mean_score=sum(scores) / len(scores) if scores else None,
        **grounding_rates(grounding_counts),
        projects=projects,
    )


def write_run_record(record: RunRecord, run_dir: Path) -> Path:
    """Write the RunRecord atomically (a reader never sees half a file)."""
    path = run_dir / RUN_RECORD_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(record.model_dump_json(indent=1), encoding="utf-8")  # pydantic's encoder: ~10x json's
    tmp.replace(path)
    return path


def read_run_record(run_dir: Path) -> RunRecord:
    """Load a run folder's RunRecord."""
    return RunRecord.model_validate_json((run_dir / RUN_RECORD_FILE).read_text(encoding="utf-8"))
