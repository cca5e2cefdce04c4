"""`fars compare`: flags a planted regression with exit 1, passes equal runs with exit 0, errors with 2."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from fars.commands.compare import main as compare
from fars.contracts import ReviewSummary
from fars.records import Funnel, ProjectStatus, ProjectSummary, RunRecord, Totals, Usage
from fars.summary import write_run_record

RATINGS = [1.0, 3.0, 5.0, 6.0, 8.0, 10.0]


def make_run(
    folder: Path, scores: list[float], *, seed: int = 0, hypotheses: list[str] | None = None, wall_s: float = 3600.0
) -> Path:
    """A run folder holding a RunRecord with one done, rated project per score."""
    hypotheses = hypotheses or [f"hypothesis {i}" for i in range(len(scores))]
    projects = [
        ProjectSummary(
            id=f"p{i:03d}", status=ProjectStatus.done, stage="done", title=f"Paper {i}", hypothesis=h, rating=s,
            usage=Usage(calls=10, input_tokens=1000, output_tokens=200, cost_usd=0.01),
            stage_seconds={"ideation": 2.0, "review": 1.0},
        )
        for i, (s, h) in enumerate(zip(scores, hypotheses, strict=True))
    ]  # fmt: skip
    record = RunRecord(
        run_dir=str(folder), status="completed", started_at=0.0, wall_s=wall_s, config={"seed": seed},
        funnel=Funnel(hypotheses=3 * len(scores), screened=2 * len(scores), planned=len(scores),
                      experimented=len(scores), written=len(scores), reviewed=len(scores)),
        totals=Totals(overall=Usage(calls=10 * len(scores), input_tokens=1000 * len(scores),
                                    output_tokens=200 * len(scores), cost_usd=0.01 * len(scores))),
        papers_per_hour=len(scores) / wall_s * 3600, scores=scores,
        mean_score=sum(scores) / len(scores) if scores else None, projects=projects,
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    write_run_record(record, folder)
    return folder


def baseline_scores(n: int = 16, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [rng.choice(RATINGS[1:5]) for _ in range(n)]


def test_planted_regression_exits_1_paired(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = baseline_scores()
    a = make_run(tmp_path / "a", base)
    b = make_run(tmp_path / "b", [max(1.0, s - 2.0) for s in base])
    assert compare([str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "paired on 16 shared hypotheses" in out and "exit 1" in out


def test_planted_regression_exits_1_unpaired(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path / "a", baseline_scores(seed=1), seed=0)
    b = make_run(tmp_path / "b", [s - 1.5 for s in baseline_scores(seed=2)], seed=1)  # other seed: no pairing
    result = tmp_path / "result.json"
    assert compare([str(a), str(b), "--json", str(result)]) == 1
    data = json.loads(result.read_text())
    comp = data["comparisons"]["1"]
    assert comp["verdict"] == "regression" and comp["paired"] is False
    assert comp["difference"]["upper"] < -0.25
    assert comp["cliffs_delta"] < -0.3 and comp["regression_p"] < 0.05


def test_equal_runs_pass_with_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = baseline_scores()
    a = make_run(tmp_path / "a", base)
    b = make_run(tmp_path / "b", list(base))
    assert compare([str(a), str(b)]) == 0
    assert "VERDICT: no regression" in capsys.readouterr().out


def test_a_drop_within_the_margin_or_noise_passes(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", baseline_scores(seed=1), seed=0)
    b = make_run(tmp_path / "b", baseline_scores(seed=2), seed=1)  # same distribution, other draws
    assert compare([str(a), str(b)]) == 0
    # a real but small drop does not fail a wide margin, and fails a tight one
    c = make_run(tmp_path / "c", [s - 0.5 for s in baseline_scores(seed=1)], seed=0)
    assert compare([str(a), str(c), "--margin", "1.0"]) == 0
    assert compare([str(a), str(c), "--margin", "0.1"]) == 1


def test_an_improvement_is_not_a_regression(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = baseline_scores()
    a = make_run(tmp_path / "a", base)
    b = make_run(tmp_path / "b", [s + 2 for s in base])
    assert compare([str(a), str(b)]) == 0
    assert "IMPROVEMENT" in capsys.readouterr().out


def test_a_candidate_without_papers_is_a_regression(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", baseline_scores())
    b = make_run(tmp_path / "b", [])
    assert compare([str(a), str(b)]) == 1


def test_errors_exit_2_and_say_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path / "a", [5.0])
    b = make_run(tmp_path / "b", [5.0, 6.0])
    assert compare([str(a), str(b)]) == 2
    assert "lower --min-papers" in capsys.readouterr().err
    assert compare([str(tmp_path / "missing"), str(b)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert compare([str(tmp_path / "empty")]) == 2
    assert "no run_record.json" in capsys.readouterr().err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run_record.json").write_text("{")
    assert compare([str(tmp_path / "broken"), str(b)]) == 2
    assert compare([str(b), str(b), "--confidence", "1.5"]) == 2
    assert "confidence" in capsys.readouterr().err
    assert compare([str(b), str(b), "--metric", "calibrated"]) == 2


def test_calibrated_scores_are_used_when_every_paper_has_one(tmp_path: Path) -> None:
    base = baseline_scores()
    a = make_run(tmp_path / "a", base)
    b = make_run(tmp_path / "b", list(base))
    for folder, shift in ((a, 0.0), (b, -2.0)):  # raw equal, calibrated shifted down
        record = RunRecord.model_validate_json((folder / "run_record.json").read_text())
        for p in record.projects:
            p.review = ReviewSummary(
                rating=p.rating or 0,
                raw_rating=p.rating or 0,
                decision="reject",
                calibrated_rating=(p.rating or 0) + shift,
            )
        write_run_record(record, folder)
    assert compare([str(a), str(b)]) == 1
    assert compare([str(a), str(b), "--metric", "raw"]) == 0


def test_a_sweep_folder_gives_one_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "multirun" / "2026-01-01" / "12-00-00"
    base = baseline_scores()
    for job, shift in enumerate([0.0, 0.0, -2.0]):
        folder = make_run(sweep / str(job), [s + shift for s in base])
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "overrides.yaml").write_text(f"- pipeline.projects={job + 1}\n")
    (sweep / "10").mkdir()  # numeric order: job 10 after job 2, and a job without a record is skipped
    assert compare([str(sweep)]) == 1
    out = capsys.readouterr().out
    table = out.split("\n\n")[0].splitlines()
    assert len(table) == 2 + 3
    assert "pipeline.projects=1" in table[2] and "baseline" in table[2]
    assert "no regression" in table[3] and "regression (paired)" in table[4]
    assert compare([str(sweep), "--baseline", "2"]) == 0  # against the worst job, the others improve


# -- records a comparison must not trust ------------------------------------------------------------


def _edit(folder: Path, change: Any) -> None:
    """Rewrite a run folder's record as raw JSON (NaN and all), the way a damaged or edited file would be."""
    path = folder / "run_record.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_a_record_of_an_unknown_future_version_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path / "a", baseline_scores())
    b = make_run(tmp_path / "b", baseline_scores())
    _edit(b, lambda d: d.update(version=99, new_field_of_the_future={"x": 1}))
    assert compare([str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert "RunRecord version 99" in err and "reads versions 1 to" in err


@pytest.mark.parametrize("poison", [1e308, -1e308, math.nan, math.inf])
def test_ratings_beyond_any_scale_fail_closed(
    poison: float, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path / "a", baseline_scores())
    scores = baseline_scores()
    b = make_run(tmp_path / "b", scores)

    def plant(d: dict[str, Any]) -> None:
        d["scores"][0] = poison
        d["projects"][0]["rating"] = poison
        d["mean_score"] = sum(d["scores"]) / len(d["scores"])

    _edit(b, plant)
    assert compare([str(a), str(b)]) == 2, "a poisoned record passed the gate"
    assert "VERDICT: no regression" not in capsys.readouterr().out


def test_scores_that_disagree_with_the_projects_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_run(tmp_path / "a", baseline_scores())
    b = make_run(tmp_path / "b", [max(1.0, s - 2.0) for s in baseline_scores()])  # a real regression
    _edit(b, lambda d: d.update(scores=[10.0] * len(d["scores"])))  # ...painted over in the score list
    assert compare([str(a), str(b)]) == 2
    assert "disagree with its projects' ratings" in capsys.readouterr().err


def test_means_are_recomputed_not_taken_from_the_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    base = baseline_scores()
    a = make_run(tmp_path / "a", base)
    b = make_run(tmp_path / "b", list(base))
    _edit(b, lambda d: d.update(mean_score=9.99))
    result = tmp_path / "result.json"
    assert compare([str(a), str(b), "--json", str(result)]) == 0
    rows = json.loads(result.read_text())["runs"]
    assert rows[1]["mean_score"] == pytest.approx(sum(base) / len(base))
    assert "9.99" not in capsys.readouterr().out and "is not the mean of its scores" in caplog.text
