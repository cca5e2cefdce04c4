"""Whole runs of `fars run` on the scripted model: record, ledger, papers, sweeps, failures, resume."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from fars.paper.latex import find_tex_engine
from fars.run.ledger import Ledger
from fars.run.records import ProjectStatus
from fars.run.summary import read_run_record, run_progress, summarize_project
from tests.conftest import FAST, compose, finished_stages, run_fars, start_fars


def assert_record_matches_ledger(run_dir: Path) -> None:
    """The RunRecord's totals are the ledger's sums, overall and by stage."""
    record = read_run_record(run_dir)
    ledger = Ledger(run_dir / "ledger.sqlite")
    assert record.totals.overall == ledger.total_usage()
    assert record.totals.by_stage == ledger.usage(by="stage")
    with sqlite3.connect(run_dir / "ledger.sqlite") as db:
        tokens = db.execute("SELECT SUM(input_tokens + output_tokens) FROM calls").fetchone()[0]
    assert record.totals.overall.total_tokens == tokens
    # what W&B gets as each project ends (one project's rows, a few totals) agrees with the full record
    for project in record.projects:
        assert summarize_project(ledger, project.id) == project
    progress = run_progress(ledger, record.started_at)
    assert (progress.finished, progress.papers, progress.usage) == (
        sum(1 for p in record.projects if p.status not in (ProjectStatus.queued, ProjectStatus.running)),
        record.papers,
        record.totals.overall,
    )


def test_scripted_run_writes_papers_reviews_and_a_consistent_record(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = run_fars(["run", *FAST, "pipeline.papers=2", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = read_run_record(run_dir)
    assert record.status == "completed" and record.version == 2 and record.papers == 2
    assert [p.status for p in record.projects] == [ProjectStatus.done, ProjectStatus.done]
    assert record.funnel.reviewed == 2 and record.funnel.written == 2
    assert record.funnel.hypotheses >= record.funnel.screened >= 2
    assert len(record.scores) == 2 and all(s in (1, 3, 5, 6, 8, 10) for s in record.scores)
    # scripted replies bill exactly 7 output tokens each
    assert record.totals.overall.output_tokens == 7 * record.totals.overall.calls
    for project in record.projects:
        kinds = Counter(a.kind for a in project.artifacts)
        # paper.md, paper.tex, and paper.pdf where a TeX engine is installed
        assert kinds["paper"] == (3 if find_tex_engine() else 2) and kinds["review"] == 1 and kinds["results"] >= 4
        assert project.grounded_number_rate == 1.0 and project.verified_citation_rate == 1.0
        paper = (run_dir / "projects" / project.id / "paper.md").read_text()
        assert "| baseline |" in paper  # the results table, filled from metrics.json
        tex = (run_dir / "projects" / project.id / "paper.tex").read_text()
        assert tex.startswith("\\documentclass") and "\\begin{tabular}" in tex
        assert set(project.stage_seconds) == {"ideation", "planning", "experiment", "writing", "review"}
    assert record.grounded_number_rate == 1.0 and record.verified_citation_rate == 1.0 and record.papers_flagged == 0
    assert record.funnel.screened >= record.funnel.novel >= 2
    assert_record_matches_ledger(run_dir)


def test_sweep_runs_each_job_with_its_own_record(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    done = run_fars(
        ["run", *FAST, "pipeline.papers=1", f"hydra.sweep.dir={sweep}", "-m", "pipeline.projects=1,2"], cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    records = sorted(sweep.glob("*/run_record.json"))
    assert len(records) == 2
    assert [read_run_record(r.parent).config["pipeline"]["projects"] for r in records] == [1, 2]


def test_a_failing_project_does_not_stop_the_queue(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # a time limit no training job can meet: every experiment fails, each project is marked failed
    args = ["run", *FAST, "experiment.timeout_s=0.05", "pipeline.max_projects=3", f"hydra.run.dir={run_dir}"]
    done = run_fars(args, cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]  # no paper
    record = read_run_record(run_dir)
    assert record.status == "completed"
    # failed projects are replaced until max_projects have been tried
    assert [p.status for p in record.projects] == [ProjectStatus.failed] * 3
    assert all("experiment failed" in (p.error or "") for p in record.projects)
    assert (run_dir / "projects" / "p000" / "error.log").is_file()


def test_screened_out_projects_are_replaced_until_the_cap(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # a threshold of 5 passes only hypotheses scored 5 on every axis: (almost) everything is dropped
    args = ["run", *FAST, "pipeline.papers=1", "pipeline.max_projects=3", "pipeline.screen_threshold=5"]
    done = run_fars([*args, "pipeline.stages=[ideation]", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    record = read_run_record(run_dir)
    assert done.returncode == 1
    assert len(record.projects) == 3
    assert all(p.status == ProjectStatus.screened_out for p in record.projects)
    assert record.funnel.hypotheses == 9 and record.funnel.screened == 0 and record.funnel.planned == 0
    assert "screening threshold 5" in (record.projects[0].error or "")


def test_token_budget_ends_projects_cleanly(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    done = run_fars(["run", *FAST, "budget.max_tokens=1500", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    record = read_run_record(run_dir)
    assert done.returncode in (0, 1)
    assert ProjectStatus.budget_exhausted in [p.status for p in record.projects]
    # overshoot bound: at most one call's worth (its max_tokens plus prompt) past the limit
    assert record.totals.overall.total_tokens <= 1500


def test_sigkill_half_way_then_resume_repeats_nothing_and_pays_nothing_twice(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = [
        "run",
        *FAST,
        "pipeline.papers=3",
        "pipeline.projects=2",
        "llm.scripted.latency_s=0.4",
        f"hydra.run.dir={run_dir}",
    ]
    proc = start_fars(args, tmp_path)
    ledger_path = run_dir / "ledger.sqlite"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if finished_stages(ledger_path) >= 6:  # well into the run, not at its end (15 stages in all)
            break
    assert proc.poll() is None, "the run ended before it could be killed; slow it down"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "run_record.json").exists() or read_run_record(run_dir).status != "completed"

    done = run_fars(["run", f"resume={run_dir}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = read_run_record(run_dir)
    assert record.status == "completed" and record.resumed == 1
    assert [p.status for p in record.projects] == [ProjectStatus.done] * 3
    ledger = Ledger(ledger_path)
    finishes = Counter((p, s) for p, s, e in ledger.stage_events() if e == "finish")
    assert finishes and max(finishes.values()) == 1, "a finished stage ran twice"
    with sqlite3.connect(ledger_path) as db:
        paid = db.execute(
            "SELECT project_id, stage, request_hash, ordinal, COUNT(*) FROM calls WHERE cache_hit=0 "
            "AND error IS NULL GROUP BY 1, 2, 3, 4 HAVING COUNT(*) > 1"
        ).fetchall()
    assert paid == [], f"calls paid twice: {paid}"
    assert_record_matches_ledger(run_dir)


@pytest.mark.parametrize("scope", ["project", "run"])
def test_a_paper_whose_review_runs_out_of_budget_is_kept_unreviewed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scope: str
) -> None:
    """A budget used up in the review of a written paper ends that review, not the paper: it is kept as a
    paper without a rating (a run budget still stops new projects)."""
    import asyncio
    import dataclasses

    from fars.llm.budget import BudgetExceeded
    from fars.pipeline.queue import Pipeline
    from fars.stages import base

    def out_of_budget(settings: object, services: object) -> object:
        async def run(ctx: object) -> None:
            raise BudgetExceeded(f"the {scope} token budget is used up", scope=scope)

        return run

    review = base._REGISTRY["review"]
    monkeypatch.setitem(base._REGISTRY, "review", dataclasses.replace(review, factory=out_of_budget))
    cfg = compose(*FAST, "pipeline.papers=1", "pipeline.projects=1", "paper.compile=never")
    record = asyncio.run(Pipeline(cfg, tmp_path).run())
    (project,) = record.projects  # no project started in its place
    assert project.status == ProjectStatus.done and record.papers == 1 and project.rating is None
    assert (project.error or "").startswith(f"unreviewed: the budget ran out in its review: the {scope} token")
    assert (tmp_path / "projects" / project.id / "paper.md").is_file()
    assert record.funnel.written == 1 and record.funnel.reviewed == 0


def test_a_paper_whose_review_fails_for_good_is_kept_unreviewed_not_discarded(tmp_path: Path) -> None:
    """Every review call fails (a dead provider under load): the review is tried again, then the written
    paper is kept as a paper without a rating; no new project is started in its place."""
    import json

    transcript = tmp_path / "dead-reviewer.json"
    transcript.write_text(json.dumps({"Paper (you see": ["!fault:500"] * 200}))
    run_dir = tmp_path / "run"
    args = ["run", *FAST, "pipeline.papers=1", "pipeline.projects=1", "llm.backoff_s=0",
            f"llm.scripted.routes_file={transcript}", f"hydra.run.dir={run_dir}"]  # fmt: skip
    done = run_fars(args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    record = read_run_record(run_dir)
    assert [p.status for p in record.projects] == [ProjectStatus.done] and record.papers == 1
    (project,) = record.projects
    assert project.rating is None and (project.error or "").startswith("unreviewed: the review failed (model)")
    assert (run_dir / "projects" / project.id / "paper.md").is_file()
    assert "reviewing again (2 of 2)" in (run_dir / "cli.log").read_text()
    failures = [e for p, s, e in Ledger(run_dir / "ledger.sqlite").stage_events() if s == "review" and e == "fail"]
    assert failures == ["fail"]  # one failure recorded, after the retry inside the stage's attempt
