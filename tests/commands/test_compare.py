"""`fars compare`: flags a planted regression with exit 1, passes equal runs with exit 0, errors with 2."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any

import pytest

from fars.commands.compare import main as compare
from fars.run.contracts import ReviewSummary
from fars.run.records import Funnel, ProjectStatus, ProjectSummary, RunRecord, Totals, Usage
from fars.run.summary import write_run_record

RATINGS = [1.0, 3.0, 5.0, 6.0, 8.0, 10.0]


def make_run(
    folder: Path,
    scores: list[float],
    *,
    seed: int = 0,
    hypotheses: list[str] | None = None,
    wall_s: float = 3600.0,
    config: dict[str, Any] | None = None,
) -> Path:
    """A run folder holding a RunRecord with one done, rated project per score (``config``: its config beside the seed)."""
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
        run_dir=str(folder), status="completed", started_at=0.0, wall_s=wall_s, config={"seed": seed, **(config or {})},
        funnel=Funnel(hypotheses=3 * len(scores), screened=2 * len(scores), planned=len(scores),
                      experimented=len(scores), written=len(scores), reviewed=len(scores)),
        totals=Totals(overall=Usage(calls=10 * len(scores), input_tokens=1000 * len(scores),
                                    output_tokens=200 * len(scores), cost_usd=0.01 * len(scores))),
        papers=len(scores), papers_per_hour=len(scores) / wall_s * 3600, scores=scores,
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


def test_papers_on_one_hypothesis_pair_in_order_rated_or_not(tmp_path: Path) -> None:
    """Two projects of a run on one hypothesis (the scripted model on a small template) pair k-th with k-th; only
    the first was paired, so a 2-paper run had 1 pair and could not be compared paired at all."""
    from fars.evaluation.compare import paired_scores
    from fars.run.summary import read_run_record

    same = ["weight decay helps", "weight decay helps", "warmup helps"]
    a = read_run_record(make_run(tmp_path / "a", [3.0, 5.0, 6.0], hypotheses=same))
    b = read_run_record(make_run(tmp_path / "b", [1.0, 8.0, 6.0], hypotheses=same))
    assert sorted(paired_scores(a, b, "rating")) == [(3.0, 1.0), (5.0, 8.0), (6.0, 6.0)]
    a.projects[0].rating = None  # an unrated first paper leaves the second paired with the second, not the first
    assert sorted(paired_scores(a, b, "rating")) == [(5.0, 8.0), (6.0, 6.0)]


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


def test_two_equal_embedded_model_runs_are_inconclusive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The embedded model rates every paper 1: a gate over such runs cannot fail, and must say so."""
    a = make_run(tmp_path / "a", [1.0] * 16)
    b = make_run(tmp_path / "b", [1.0] * 16, seed=1)
    assert compare([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "inconclusive" in out and "no variance" in out and "VERDICT: no regression" not in out
    assert "require_power=true makes this exit 3" in out
    assert compare([str(a), str(b), "compare.require_power=true"]) == 3
    assert compare([str(a), str(b), "--require-power"]) == 3
    result = tmp_path / "r.json"
    assert compare([str(a), str(b), "--json", str(result)]) == 0
    assert json.loads(result.read_text())["inconclusive"] == [1]


def test_too_few_papers_for_the_margin_is_inconclusive_and_prints_the_effect_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = make_run(tmp_path / "a", [3.0, 6.0, 5.0, 8.0], seed=0)
    b = make_run(tmp_path / "b", [5.0, 3.0, 8.0, 6.0], seed=1)
    assert compare([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "INCONCLUSIVE" in out and "minimum detectable effect" in out
    mde = float(re.search(r"minimum detectable effect ([\d.]+) rating points", out).group(1))  # type: ignore[union-attr]
    assert mde > 2.0  # four papers a run: only a drop of several rating points could show
    assert compare([str(a), str(b), "require_power=true", "margin=5.0"]) == 0  # a margin this wide is detectable
    assert compare([str(a), str(b), "compare.nope=1"]) == 2
    assert "unknown compare setting" in capsys.readouterr().err


def test_the_reviewers_noise_widens_the_detectable_effect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = baseline_scores()
    a = make_run(tmp_path / "a", base)
    b = make_run(tmp_path / "b", list(base))  # paired, every difference 0: detectable without noise
    assert compare([str(a), str(b)]) == 0
    assert "no regression (paired)" in capsys.readouterr().out
    reliability = tmp_path / "calibration.json"
    reliability.write_text(json.dumps({"reliability": {"unit": "review", "within_sd": 1.5, "source": "retest"}}))
    assert compare([str(a), str(b), f"--noise={reliability}", "--require-power"]) == 3
    out = capsys.readouterr().out
    assert "inconclusive (paired)" in out and "noise 1.50" in out
    assert compare([str(a), str(b), "noise=0.1"]) == 0  # a steady reviewer: 16 pairs detect 0.25
    (tmp_path / "bad.json").write_text("{}")
    assert compare([str(a), str(b), f"--noise={tmp_path / 'bad.json'}"]) == 2


def scripted_reviews(papers: list[str]) -> list[Any]:
    """The scripted model's reviews of ``papers`` (an ensemble of two, through the real client)."""
    import asyncio

    from fars.config import LLMConfig
    from fars.llm.client import LLMClient
    from review.reviewer import AgenticReviewer
    from review.settings import ReviewerConfig

    client = LLMClient(LLMConfig(model="scripted/default", cache=False))
    reviewer = AgenticReviewer(client, ReviewerConfig(ensemble=2, meta_review=False, related_works=0))
    try:
        return [asyncio.run(reviewer.review(text)) for text in papers]
    finally:
        client.close()


def scripted_run(folder: Path, reviews: list[Any], shift: float = 0.0) -> Path:
    """A run folder rated by ``reviews`` (shifted by ``shift``), each review.json kept as the pipeline keeps it."""
    from fars.run.records import Artifact
    from review.forms import decision_for

    make_run(folder, [max(1.0, r.final_rating + shift) for r in reviews])
    record = RunRecord.model_validate_json((folder / "run_record.json").read_text())
    for project, review in zip(record.projects, reviews, strict=True):
        path = folder / "projects" / project.id / "review.json"
        path.parent.mkdir(parents=True)
        path.write_text(review.model_dump_json())
        project.artifacts = [Artifact(kind="review", path=str(path.relative_to(folder)), sha256="-", stage="review")]
        rating = float(project.rating or 1.0)
        project.review = ReviewSummary(
            rating=rating, raw_rating=rating, decision=decision_for(rating), ensemble=len(review.reviews)
        )
    write_run_record(record, folder)
    return folder


def test_a_planted_regression_on_the_scripted_model_still_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    papers = [
        f"# Paper {i}\n\n## Abstract\n\nWe study problem {i} with method {i * 7}.\n\n## Results\n\nIt works."
        for i in range(8)
    ]
    reviews = scripted_reviews(papers)
    a = scripted_run(tmp_path / "a", reviews)
    same = scripted_run(tmp_path / "same", reviews)
    planted = scripted_run(tmp_path / "planted", reviews, shift=-4.0)
    assert compare([str(a), str(planted)]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    assert compare([str(a), str(same), "--require-power"]) == 3  # the members disagree: 8 papers cannot show 0.25
    out = capsys.readouterr().out
    assert "inconclusive (paired)" in out and "ensemble members' ratings" in out


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


def test_papers_are_the_records_own_count_and_a_version_1_record_gets_it_from_its_projects(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", baseline_scores(8))
    b = make_run(tmp_path / "b", baseline_scores(8))

    def old_record(d: dict[str, Any]) -> None:  # version 1 stored no ``papers``; one of its projects failed
        d.update(version=1)
        del d["papers"]
        d["projects"][0]["status"] = "failed"

    _edit(b, old_record)
    result = tmp_path / "result.json"
    compare([str(a), str(b), "--json", str(result)])
    rows = json.loads(result.read_text())["runs"]
    assert [r["papers"] for r in rows] == [8, 7]


def _judged(writer: str, judge: str | None) -> dict[str, Any]:
    return {"llm": {"model": writer}, "reviewer": {"model": judge, "form": "iclr2025", "calibration": "default"}}


def test_runs_scored_by_different_judges_get_no_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The embedded model judging one run and a frontier model the other: the difference is named, exit 2."""
    base = baseline_scores()
    a = make_run(tmp_path / "a", base, config=_judged("local/smollm2-135m", None))
    b = make_run(tmp_path / "b", [max(1.0, s - 2.0) for s in base], config=_judged("openai/frontier", None))
    assert compare([str(a), str(b)]) == 2
    captured = capsys.readouterr()
    assert "different judges" in captured.err and "VERDICT" not in captured.out
    assert "reviewer model: local/smollm2-135m (baseline) vs openai/frontier (candidate)" in captured.err
    # told otherwise, it compares, and says the judges differ
    assert compare([str(a), str(b), "compare.other_judges=true"]) == 1
    assert "different judges (other_judges=true): reviewer model" in capsys.readouterr().out


def test_a_sweep_over_writers_with_one_fixed_judge_compares_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = baseline_scores()
    a = make_run(tmp_path / "a", base, config=_judged("local/smollm2-135m", "openai/judge"))
    b = make_run(tmp_path / "b", list(base), config=_judged("openai/frontier", "openai/judge"))
    assert compare([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "VERDICT: no regression" in out and "different judges" not in out


def test_another_form_or_calibration_is_another_judge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = baseline_scores()
    other_form = _judged("w", "j") | {"reviewer": {"model": "j", "form": "iclr2022", "calibration": "default"}}
    a = make_run(tmp_path / "a", base, config=_judged("w", "j"))
    b = make_run(tmp_path / "b", list(base), config=other_form)
    assert compare([str(a), str(b)]) == 2
    assert "form: iclr2025 (baseline) vs iclr2022 (candidate)" in capsys.readouterr().err
