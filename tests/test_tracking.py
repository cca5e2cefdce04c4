"""Tracking: W&B offline writes a run that `wandb sync` can upload; a failing tracker never stops a run."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fars.config import TrackerConfig
from fars.contracts import ReviewSummary
from fars.records import Funnel, ProjectStatus, ProjectSummary, RunRecord, Totals
from fars.summary import Progress
from fars.tracking import WandbTracker


def record(run_dir: Path) -> RunRecord:
    project = ProjectSummary(
        id="p000", status=ProjectStatus.done, stage="done", title="T", rating=5.0,
        review=ReviewSummary(rating=5.0, raw_rating=5.0, decision="reject", subscores={"soundness": 2}),
    )  # fmt: skip
    return RunRecord(
        run_dir=str(run_dir), status="completed", started_at=0.0, config={}, funnel=Funnel(hypotheses=3, screened=2),
        totals=Totals(), papers=1, scores=[5.0], mean_score=5.0, projects=[project],
    )  # fmt: skip


def test_offline_run_is_written_in_the_run_folder(tmp_path: Path) -> None:
    tracker = WandbTracker(TrackerConfig(mode="offline", project="fars-test"))
    tracker.start({"area": "x"}, tmp_path, "test")
    rec = record(tmp_path)
    tracker.log_project(rec.projects[0], Progress.from_record(rec))
    tracker.finish(rec)
    assert not tracker.broken
    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0


def test_a_failing_tracker_warns_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import wandb

    def broken_init(**_: object) -> None:
        raise ConnectionError("wandb service unreachable")

    monkeypatch.setattr(wandb, "init", broken_init)
    tracker = WandbTracker(TrackerConfig())
    with caplog.at_level(logging.WARNING):
        tracker.start({}, tmp_path, "test")
        rec = record(tmp_path)
        tracker.log_project(rec.projects[0], Progress.from_record(rec))
        tracker.finish(rec)
    assert tracker.broken
    assert "wandb service unreachable" in caplog.text and "run goes on" in caplog.text


def test_summary_config_and_sweep_name_match_the_run_record(tmp_path: Path) -> None:
    from fars.tracking import summary_metrics
    from tests.evaluation.wandb_inspect import inspect_offline_run

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- pipeline.projects=2\n- hydra.job.num=1\n")
    config = {"llm": {"model": "scripted/default"}, "pipeline": {"projects": 2}}
    tracker = WandbTracker(TrackerConfig(mode="offline", group="12-00-00"))
    tracker.start(config, tmp_path, "1")
    rec = record(tmp_path)
    tracker.finish(rec)
    seen = inspect_offline_run(tmp_path)
    assert seen["run"]["run_group"] == "12-00-00" and seen["run"]["job_type"] == "sweep-job"
    assert seen["name"] == "1: pipeline.projects=2"
    assert {k: v for k, v in seen["config"].items() if k != "_wandb"} == config
    expected = summary_metrics(rec)
    assert {k: seen["summary"][k] for k in expected} == expected
    assert expected["score/mean"] == rec.mean_score and expected["papers"] == 1
    assert seen["summary"]["papers_table"]["nrows"] == len(rec.projects)
