"""A whole `fars run` trains under DDP on two CPU ranks and leaves figures and aggregated results in its paper."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fars.run.ledger import Ledger
from tests.conftest import run_fars


@pytest.mark.slow
def test_ddp_run_puts_learning_curves_and_statistics_in_the_paper(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["llm=scripted", "tracker=disabled", "experiment=ddp_cpu", "experiment.steps=20", "experiment.seeds=2"]
    args += ["experiment.max_variants=1", "pipeline.papers=1", "pipeline.projects=1", f"hydra.run.dir={run_dir}"]
    args += ["experiment.ablations=false", "experiment.code.enabled=false"]  # DDP is the subject: 2 conditions
    done = run_fars(["run", *args], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    project = run_dir / "projects" / "p000"
    results = json.loads((project / "results.json").read_text())
    assert results["engine"]["name"] == "ddp" and results["engine"]["world_size"] == 2
    roles = [c["role"] for c in results["conditions"].values()]
    assert "baseline" in results["conditions"] and roles.count("baseline") == 1 and roles.count("method") >= 1
    variant = next(c for c in results["conditions"].values() if c["p_vs_baseline"] is not None)
    assert 0 <= variant["p_vs_baseline"] <= 1 and variant["metric"]["n"] == 2 and variant["p_adjusted"] is not None
    assert json.loads((project / "ds_config.json").read_text())["zero_optimization"]["stage"] == 0
    assert len(results["figures"]) == 3  # the conditions' final metric, its learning curves, the losses
    for figure in results["figures"]:
        assert (project / figure["png"]).is_file() and (project / figure["pdf"]).is_file() and figure["caption"]
    kinds = {a.kind for a in Ledger(run_dir / "ledger.sqlite").artifacts("p000")}
    assert {"figure", "results"} <= kinds
    paper = (project / "paper.md").read_text()
    assert "| baseline |" in paper and results["figures"][0]["png"] in paper  # the writing stage shows them
