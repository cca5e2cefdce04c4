"""A `-m` sweep on the scripted model: one W&B group for its jobs and one comparison table."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fars.commands.compare import main as compare
from fars.run.records import RunRecord
from fars.run.summary import write_run_record
from tests.conftest import FAST, run_fars
from tests.evaluation.wandb_inspect import inspect_offline_run


@pytest.mark.slow
def test_a_sweep_gives_grouped_wandb_runs_and_one_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the smoke sweep as users run it, on the `simulated` template: training is not what this test is about
    args = [
        "run",
        "-m",
        "+sweep=smoke",
        "tracker=wandb_offline",
        "pipeline.status_interval_s=1",
        "experiment.templates=[simulated]",
    ]
    done = run_fars(args, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    sweeps = list((tmp_path / "multirun").glob("*/*"))
    assert len(sweeps) == 1
    sweep = sweeps[0]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1"]
    runs = [inspect_offline_run(job) for job in jobs]
    assert {r["run"]["run_group"] for r in runs} == {sweep.name}
    assert [r["name"] for r in runs] == ["0: pipeline.projects=1", "1: pipeline.projects=2"]
    assert [r["config"]["pipeline"]["projects"] for r in runs] == [1, 2]
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
        if p.review is not None and p.review.calibrated_rating is not None:  # compare prefers calibrated scores
            p.review.calibrated_rating -= 3
    write_run_record(record, planted)
    assert compare([str(jobs[0]), str(planted)]) == 1


@pytest.mark.parametrize("launcher", ["basic", "slurm_local"])
def test_a_sweep_with_a_job_that_makes_no_paper_exits_1(launcher: str, tmp_path: Path) -> None:
    """The exit status comes from the jobs' RunRecords, whichever launcher ran them (submitit: other processes)."""
    common = ["run", "-m", *FAST, "pipeline.papers=1", "pipeline.max_projects=1", "pipeline.stages=[ideation]"]
    if launcher != "basic":
        common.append(f"hydra/launcher={launcher}")
    sweep = tmp_path / "sweep"
    # job 1's threshold of 5 screens every hypothesis out: it makes no paper
    done = run_fars([*common, "pipeline.screen_threshold=1.5,5", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert f"{sweep / '1'}: no paper was produced" in done.stderr
    records = [RunRecord.model_validate_json((sweep / j / "run_record.json").read_text()) for j in ("0", "1")]
    assert [r.papers for r in records] == [1, 0]
    ok = run_fars([*common, "seed=0,1", f"hydra.sweep.dir={tmp_path / 'ok'}"], tmp_path)
    assert ok.returncode == 0, ok.stderr[-3000:]
