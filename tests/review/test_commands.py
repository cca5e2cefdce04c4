"""`fars review` and `fars calibrate` end to end on the scripted model, and the oracle on the dev data."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from fars.cli import main
from review.calibration.harness import CalibrationReport
from review.calibration.humans import dump_jsonl
from review.calibration.metrics import METRICS
from review.reviewer import PaperReview
from tests.conftest import REPO
from tests.evaluation.wandb_inspect import inspect_offline_run
from tests.review.ingest.test_reading import make_pdf

DEV = REPO.parent / "shared" / "data" / "iclr2022" / "dev.jsonl"
FAST = ["llm=scripted", "tracker=disabled"]  # fars calibrate
SCRIPTED = ["llm=scripted"]  # fars review (no tracker)


def small_data(path: Path, n: int = 12) -> Path:
    """n synthetic papers with 3 human ratings each, half accepted."""
    rows = []
    for i in range(n):
        accepted = i % 2 == 0
        base = [6, 8, 6] if accepted else [3, 5, 3]
        rows.append(
            {
                "id": f"paper{i}",
                "title": f"Paper number {i} on topic {i % 3}",
                "text": f"# Paper number {i}\n\n## Abstract\n\nWe study topic {i % 3} with method {i}.\n\n## Results\n\nIt works.",
                "human_ratings": [float(r + (i % 3 == 0)) for r in base],
                "human_subscores": {"confidence": [3, 4, 3], "correctness": [3, 3, None]},
                "decision": "accept" if accepted else "reject",
            }
        )
    dump_jsonl(rows, path)
    return path


def test_review_of_a_markdown_paper_writes_json_and_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paper = tmp_path / "paper.md"
    paper.write_text("# Grokking\n\n## Abstract\n\nWe study grokking.\n\n## Results\n\n" + "Accuracy rises. " * 800)
    out = tmp_path / "out"
    limits = ["reviewer.limits=fixed", "reviewer.max_paper_chars=3000"]  # the scripted model has a 1M context
    assert main(["review", str(paper), *SCRIPTED, f"out={out}", *limits]) == 0
    result = PaperReview.model_validate_json((out / "review.json").read_text())
    assert len(result.reviews) == 2 and result.meta_review is not None
    assert result.reading is not None and result.reading.mode == "excerpts" and result.reading.chars_read <= 3000
    assert result.usage is not None and result.usage["calls"] >= 4
    markdown = (out / "review.md").read_text()
    assert "## Meta-review" in markdown and "## What was read" in markdown
    assert "review.json" in capsys.readouterr().out


def test_review_of_a_pdf_and_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pdf = make_pdf(
        tmp_path / "p.pdf", ["A small study", "1 Introduction", "We train a model.", "2 Results", "It works."]
    )
    out = tmp_path / "pdf-review"
    assert main(["review", str(pdf), *SCRIPTED, f"out={out}", "reviewer=iclr2022"]) == 0
    result = PaperReview.model_validate_json((out / "review.json").read_text())
    assert result.form == "iclr2022" and result.title == "A small study" and result.reading.complete  # type: ignore[union-attr]
    capsys.readouterr()
    assert main(["review", str(tmp_path / "missing.pdf"), *SCRIPTED]) == 2
    assert "missing.pdf" in capsys.readouterr().err
    assert main(["review", str(pdf), "reviewer.ensemble=0", "reviewer.nope=1", "reviewer=iclr1999"]) == 2
    err = capsys.readouterr().err
    assert "reviewer.ensemble" in err and "reviewer.nope" in err and "iclr1999" in err and "3 problem(s)" in err


@pytest.mark.slow  # about 35 s on 2 busy cores
def test_calibrate_reports_every_metric_fits_and_resumes(tmp_path: Path) -> None:
    data = small_data(tmp_path / "data.jsonl")
    out = tmp_path / "cal"
    args = ["calibrate", "llm=scripted", "tracker=wandb_offline", f"data={data}", "limit=null", "bootstrap=100",
            f"out={out}", "fit=true", "folds=3"]  # fmt: skip
    assert main(args) == 0
    report = CalibrationReport.model_validate_json((out / "calibration.json").read_text())
    assert report.reviewed == 12 and report.valid_form_rate == 1.0
    seen = inspect_offline_run(out)  # what W&B got: every group's figures, the papers table, the scatter plot
    assert seen["run"]["job_type"] == "calibrate" and seen["summary"]["reviewed"] == 12
    raw = next(s for s in report.scores if s.kind == "raw")
    assert seen["summary"]["raw/spearman/value"] == pytest.approx(raw.metrics["spearman"]["value"])
    assert seen["summary"]["papers"]["_type"] == "table-file" and seen["summary"]["scatter"]["_type"] == "image-file"
    kinds = [s.kind for s in report.scores]
    assert kinds == ["raw", "calibrated", "meta"]
    for group in [*report.scores, report.human_baseline]:
        assert set(group.metrics) == set(METRICS)
        assert set(group.metrics["mae"]) == {"value", "low", "high"}
    assert report.usage["tokens_per_review"] and report.usage["tokens_per_review"] > 0
    model = json.loads((out / "calibration_model.json").read_text())
    assert model["format"] == "fars-review-calibration" and model["fitted_on"]["n_papers"] == 12
    assert (out / "scatter.png").stat().st_size > 1000 and "![metrics](metrics.png)" in (
        out / "calibration.md"
    ).read_text()
    with sqlite3.connect(out / "ledger.sqlite") as db:
        calls = db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    assert main(args) == 0  # resumed: every paper already reviewed, no new model call
    with sqlite3.connect(out / "ledger.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM calls").fetchone()[0] == calls
    again = CalibrationReport.model_validate_json((out / "calibration.json").read_text())
    assert again.scores[0].metrics == report.scores[0].metrics


def test_calibrate_rejects_bad_data_with_the_file_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x"}\n')
    assert main(["calibrate", *FAST, f"data={bad}"]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
    assert main(["calibrate", *FAST, f"data={tmp_path / 'none.jsonl'}"]) == 2


@pytest.mark.slow  # about 35 s: 459 papers, 200 bootstrap draws and 200 human-baseline draws
@pytest.mark.skipif(not DEV.is_file(), reason="the ICLR 2022 dev data is not beside the repository")
def test_oracle_reproduces_the_human_human_agreement(tmp_path: Path) -> None:
    out = tmp_path / "oracle"
    assert (
        main(
            [
                "calibrate",
                "reviewer=oracle",
                "tracker=disabled",
                f"data={DEV}",
                "limit=null",
                "bootstrap=200",
                f"out={out}",
            ]
        )
        == 0
    )
    report = CalibrationReport.model_validate_json((out / "calibration.json").read_text())
    assert report.reviewed == 459 and report.valid_form_rate == 1.0
    oracle = report.scores[0].metrics["spearman"]
    human = report.human_baseline.metrics["spearman"]
    assert human["value"] == pytest.approx(0.43, abs=0.02)  # the data's README: 0.430
    assert oracle["low"] <= 0.43 <= oracle["high"]  # type: ignore[operator]
    assert abs(report.scores[0].metrics["bias"]["value"]) < 0.3  # type: ignore[arg-type]
