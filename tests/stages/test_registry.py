"""The open stage registry: names, contracts, run order from what each stage consumes, plug-ins."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from fars.config import DEFAULT_STAGES
from fars.run.contracts import IdeationOutput, PlanningOutput
from fars.stages import get_stage, resolve_stages
from fars.stages.base import StageConfigError
from tests.conftest import FAST, compose, run_fars, services_for

PLUGIN_SITE = Path(__file__).resolve().parent / "plugin_site"


def test_every_default_stage_is_registered_and_builds(tmp_path: Path) -> None:
    cfg = compose("llm=scripted")
    services = services_for(cfg, tmp_path, runner=True)
    try:
        for name in DEFAULT_STAGES:
            assert callable(get_stage(name).build(cfg, services))
    finally:
        services.close()


def test_a_typo_suggests_the_nearest_stage() -> None:
    with pytest.raises(KeyError, match=r"did you mean planning"):
        get_stage("planing")


def test_run_order_follows_what_each_stage_consumes() -> None:
    shuffled = ["review", "writing", "planning", "experiment", "ideation"]
    assert [s.name for s in resolve_stages(shuffled)] == list(DEFAULT_STAGES)
    assert get_stage("planning").consumes == (IdeationOutput,) and get_stage("planning").produces is PlanningOutput


def test_missing_producers_and_unknown_names_are_all_named() -> None:
    with pytest.raises(StageConfigError) as err:
        resolve_stages(["planning", "reveiw", "planning"])
    text = str(err.value)
    assert "'planning' consumes IdeationOutput, which no listed stage produces; add ideation" in text
    assert "no stage named 'reveiw'; did you mean review" in text
    assert "listed twice" in text


def test_a_leading_part_of_the_pipeline_still_runs_alone() -> None:
    assert [s.name for s in resolve_stages(["ideation", "planning"])] == ["ideation", "planning"]


def test_a_stage_from_another_package_runs_inside_fars_run(tmp_path: Path) -> None:
    """The plug-in is found through its own entry point (a dist-info on the path), placed by what it consumes."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGIN_SITE), os.environ.get("PYTHONPATH", "")]))
    stages = "pipeline.stages=[wordcount,review,writing,experiment,planning,ideation]"  # order from consumes
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", env["PYTHONPATH"])
        done = run_fars(["run", *FAST, stages, "pipeline.papers=1", "pipeline.projects=1",
                         "+pipeline.stage_options.wordcount.minimum=50", f"hydra.run.dir={tmp_path}"], tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    db = sqlite3.connect(tmp_path / "ledger.sqlite")
    order = [r[0] for r in db.execute("SELECT stage FROM stage_events WHERE event='finish' ORDER BY id")]
    assert order == ["ideation", "planning", "experiment", "writing", "wordcount", "review"]
    row = db.execute(
        "SELECT output, contract, contract_version FROM stage_events WHERE stage='wordcount' AND event='finish'"
    ).fetchone()
    output = json.loads(row[0])
    assert row[1:] == ("wordcount", 1) and output["minimum"] == 50 and output["words"] > 50 and output["long_enough"]
    assert (tmp_path / "projects" / "p000" / "wordcount.txt").read_text().strip() == str(output["words"])
    record = json.loads((tmp_path / "run_record.json").read_text())
    assert "wordcount" in record["projects"][0]["stage_seconds"] and record["papers"] == 1


def test_an_unknown_stage_in_pipeline_stages_exits_2_before_anything_runs(tmp_path: Path) -> None:
    done = run_fars(["run", "llm=scripted", "pipeline.stages=[ideation,planing]"], tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "no stage named 'planing'; did you mean planning" in done.stderr
    assert not (tmp_path / "outputs").exists()
