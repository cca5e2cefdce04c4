"""Build the RunRecord from the ledger, so its totals always equal the ledger's sums."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fars.ledger import Ledger
from fars.records import Funnel, ProjectStatus, ProjectSummary, RunRecord, Totals, Usage

RUN_RECORD_FILE = "run_record.json"


def funnel_from(ledger: Ledger) -> Funnel:
    """Funnel counts from the finished stages' outputs."""
    funnel = Funnel()
    for project in ledger.projects():
        idea = ledger.stage_output(project.id, "ideation")
        if idea is not None:
            funnel.hypotheses += len(idea.get("hypotheses", []))
            funnel.screened += int(idea.get("screened", 0))
            funnel.novel += int(idea.get("novel", idea.get("screened", 0)))
        for stage, attr in (
            ("planning", "planned"),
            ("experiment", "experimented"),
            ("writing", "written"),
            ("review", "reviewed"),
        ):
            if ledger.stage_output(project.id, stage) is not None:
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


def build_run_record(
    ledger: Ledger, run_dir: Path, config: dict[str, Any], status: str, started_at: float, resumed: int
) -> RunRecord:
    """The RunRecord of a run as the ledger has it now."""
    usage_by_project = ledger.usage(by="project_id")
    times = ledger.project_times()
    projects = []
    scores = []
    grounding_counts: list[dict[str, Any]] = []
    for row in ledger.projects():
        review = ledger.stage_output(row.id, "review")
        idea = ledger.stage_output(row.id, "ideation") or {}
        written = ledger.stage_output(row.id, "writing") or {}
        grounding = written.get("grounding") or {}
        if grounding:
            grounding_counts.append(grounding["after"])
        rating = float(review["rating"]) if review else None
        if rating is not None:
            scores.append(rating)
        projects.append(
            ProjectSummary(
                id=row.id,
                status=row.status,
                stage=row.stage,
                title=row.title,
                hypothesis=(idea.get("chosen") or {}).get("statement"),
                error=row.error,
                stage_seconds=ledger.stage_seconds(row.id),
                usage=usage_by_project.get(row.id, Usage()),
                artifacts=ledger.artifacts(row.id),
                rating=rating,
                review=review.get("review") if review else None,
                started_at=times[row.id][0] if row.id in times else None,
                finished_at=times[row.id][1] if row.id in times else None,
                grounded_number_rate=written.get("grounded_number_rate"),
                verified_citation_rate=written.get("verified_citation_rate"),
                grounding_flagged=grounding.get("flagged") if grounding else None,
            )
        )
    finished = time.time() if status != "running" else None
    wall = (finished or time.time()) - started_at
    papers = sum(1 for p in projects if p.status == ProjectStatus.done)
    return RunRecord(
        run_dir=str(run_dir),
        status=status,
        started_at=started_at,
        finished_at=finished,
        wall_s=wall,
        resumed=resumed,
        config=config,
        funnel=funnel_from(ledger),
        totals=Totals(
            overall=ledger.total_usage(),
            by_stage=ledger.usage(by="stage"),
            by_model=ledger.usage(by="model"),
        ),
        papers_per_hour=papers / wall * 3600 if wall > 0 else 0.0,
        scores=scores,
        mean_score=sum(scores) / len(scores) if scores else None,
        **grounding_rates(grounding_counts),
        projects=projects,
    )


def write_run_record(record: RunRecord, run_dir: Path) -> Path:
    """Write the RunRecord atomically (a reader never sees half a file)."""
    path = run_dir / RUN_RECORD_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record.model_dump(mode="json"), indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


def read_run_record(run_dir: Path) -> RunRecord:
    """Load a run folder's RunRecord."""
    return RunRecord.model_validate_json((run_dir / RUN_RECORD_FILE).read_text(encoding="utf-8"))
