"""Tracking: W&B offline writes a run that `wandb sync` can upload; a failing tracker never stops a run."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fars.config import TrackerConfig
from fars.records import Funnel, ProjectStatus, ProjectSummary, RunRecord, Totals
from fars.tracking import WandbTracker


def record(run_dir: Path) -> RunRecord:
    project = ProjectSummary(
        id="p000", status=ProjectStatus.done, stage="done", title="T", rating=5.0, review={"soundness": 2}
    )
    return RunRecord(
        run_dir=str(run_dir), status="completed", started_at=0.0, config={}, funnel=Funnel(hypotheses=3, screened=2),
        totals=Totals(), scores=[5.0], mean_score=5.0, projects=[project],
    )  # fmt: skip


def test_offline_run_is_written_in_the_run_folder(tmp_path: Path) -> None:
    tracker = WandbTracker(TrackerConfig(mode="offline", project="fars-test"))
    tracker.start({"area": "x"}, tmp_path, "test")
    rec = record(tmp_path)
    tracker.log_project(rec.projects[0], rec)
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
        tracker.log_project(rec.projects[0], rec)
        tracker.finish(rec)
    assert tracker.broken
    assert "wandb service unreachable" in caplog.text and "run goes on" in caplog.text
