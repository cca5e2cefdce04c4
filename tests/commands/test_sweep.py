"""A `-m` sweep on the scripted model: one W&B group for its jobs and one comparison table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fars.commands.compare import main as compare
from fars.records import RunRecord
from fars.summary import write_run_record
from tests.conftest import run_fars
from tests.evaluation.wandb_inspect import inspect_offline_run


@pytest.mark.slow
def test_a_sweep_gives_grouped_wandb_runs_and_one_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = run_fars(["run", "-m", "+sweep=smoke", "tracker=wandb_offline", "pipeline.status_interval_s=1"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    sweeps = list((tmp_path / "multirun").glob("*/*"))
    assert len(sweeps) == 1
    sweep = sweeps[0]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1"]
    runs = [inspect_offline_run(job) for job in jobs]
    assert {r["run"]["run_group"] for r in runs} == {sweep.name}
    assert [r["name"] for r in runs] == ["0: pipeline.projects=1", "1: pipeline.projects=3"]
    assert [r["config"]["pipeline"]["projects"] for r in runs] == [1, 3]
    for job, seen in zip(jobs, runs, strict=True):  # W&B's summary equals the RunRecord's figures
        record = RunRecord.model_validate_json((job / "run_record.json").read_text())
        assert seen["summary"]["score/mean"] == pytest.approx(record.mean_score)
        assert seen["summary"]["tokens/total"] == record.totals.overall.total_tokens

    capsys.readouterr()
    assert compare([str(sweep)]) == 0  # same seed and scripted model: same hypotheses, same scores
    table = capsys.readouterr().out.split("\n\n")[0].splitlines()
    # the scripted reviewers disagree with each other, and two papers a run cannot show a drop of 0.25
    assert len(table) == 4 and "baseline" in table[2] and "inconclusive (paired)" in table[3]
    assert compare([str(sweep), "compare.require_power=true"]) == 3

    planted = tmp_path / "planted"  # the candidate's scores shifted down: a regression, exit 1
    shutil.copytree(jobs[1], planted)
    record = RunRecord.model_validate_json((planted / "run_record.json").read_text())
    record.scores = [s - 3 for s in record.scores]
    for p in record.projects:
        p.rating = None if p.rating is None else p.rating - 3
        if p.review and p.review.get("calibrated_rating") is not None:  # compare prefers calibrated scores
            p.review["calibrated_rating"] -= 3
    write_run_record(record, planted)
    assert compare([str(jobs[0]), str(planted)]) == 1
