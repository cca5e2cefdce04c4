"""The W&B dashboard definition: built offline, plotting exactly the metrics the tracker logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fars.evaluation import dashboard
from fars.pipeline.tracking import summary_metrics
from tests.pipeline.test_tracking import record

pytest.importorskip("wandb_workspaces")


def test_workspace_builds_offline_with_sweep_grouping() -> None:
    workspace = dashboard.sweep_workspace("me", "fars", group="12-00-00-000000")
    names = [s.name for s in workspace.sections]
    assert names == ["Scores", "Throughput", "Tokens and cost", "Funnel", "Sweep"]
    spec = json.loads(workspace._to_model().model_dump_json())
    text = json.dumps(spec)
    assert spec["entity"] == "me" and spec["project"] == "fars"
    assert "12-00-00-000000" in text  # filtered to the sweep's W&B group
    assert "papers_table" in text


def test_every_plotted_summary_metric_is_logged(tmp_path: Path) -> None:
    logged = set(summary_metrics(record(tmp_path)))
    plotted = {
        *dashboard.SCORE_METRICS,
        *dashboard.THROUGHPUT_METRICS,
        *dashboard.TOKEN_METRICS,
        *dashboard.FUNNEL_METRICS,
    }
    assert plotted <= logged, plotted - logged


def test_dry_run_prints_the_spec(capsys: pytest.CaptureFixture[str]) -> None:
    assert dashboard.main(["--entity", "me", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["display_name"] == "FARS sweeps"
