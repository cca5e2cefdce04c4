"""Tracking: W&B offline writes a run that `wandb sync` can upload; a failing tracker never stops a run."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fars.config import TrackerConfig
from fars.pipeline.tracking import WandbTracker
from fars.run.contracts import ReviewSummary
from fars.run.records import Funnel, ProjectStatus, ProjectSummary, RunRecord, Totals
from fars.run.summary import Progress


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
    from fars.pipeline.tracking import summary_metrics
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


def test_each_project_logs_its_ratings_curves_figures_and_paper(tmp_path: Path) -> None:
    """What the dashboards draw: every rating, the training curves, the figures and the paper itself."""
    import json
    import subprocess
    import sys

    from experiments.simulated.train import main as simulate
    from fars.run.records import Artifact

    run = tmp_path / "run"
    for seed in (0, 1):
        simulate(
            ["--out_dir", str(run / "projects/p000/runs" / f"baseline-seed{seed}"), "--seed", str(seed), "--steps", "8"]
        )
    figure = run / "projects/p000/figures/curve.png"
    figure.parent.mkdir(parents=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.plot([0, 1], [0, 1])
    plt.savefig(figure)
    (run / "projects/p000/paper.md").write_text("# T\n\nA paper.")
    arts = [Artifact(kind="results", path=f"projects/p000/runs/baseline-seed{s}/metrics.json", sha256="-", stage="experiment")
            for s in (0, 1)]  # fmt: skip
    arts += [Artifact(kind="figure", path="projects/p000/figures/curve.png", sha256="-", stage="experiment"),
             Artifact(kind="paper", path="projects/p000/paper.md", sha256="-", stage="writing")]  # fmt: skip
    rec = record(run)
    project = rec.projects[0].model_copy(update={"artifacts": arts})
    project.review = ReviewSummary(
        rating=6.0, raw_rating=5.0, calibrated_rating=4.5, meta_rating=6.0, decision="accept"
    )
    tracker = WandbTracker(TrackerConfig(mode="offline", project="fars-test"))
    tracker.start({"area": "x"}, run, "test")
    tracker.log_project(project, Progress.from_record(rec))
    tracker.finish(rec)
    assert not tracker.broken
    (offline,) = (run / "wandb").glob("offline-run-*")
    shown = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(offline)],
                           capture_output=True, text=True, timeout=120, check=True).stdout  # fmt: skip
    history = [json.loads(line) for line in shown.splitlines() if '"type":"history"' in line]
    keys = {k.split(".")[0] for h in history for k in json.dumps(h).split('"') if "/" in k and " " not in k}
    assert {"score/last_raw", "score/last_calibrated", "score/last_area_chair", "curves/p000"} <= keys, keys
    assert any(k.startswith("figures/p000/curve") for k in keys), keys
    assert '"paper-p000"' in shown or "paper-p000" in shown  # the paper went up as an artifact
