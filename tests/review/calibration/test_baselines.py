"""The trivial baselines: fitted on the calibration's folds, saved without ratings, usable as reviewers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from fars.cli import main
from review.calibration.baselines import (
    BaselineReviewer,
    WordCounts,
    cross_validated,
    fit_all,
    fit_length,
    load_baseline,
    save_baseline,
)
from review.calibration.fit import CalibrationError, fold_ids
from review.calibration.harness import CalibrationReport
from review.calibration.humans import load_papers
from review.calibration.metrics import spearman
from review.reviewer import PaperReview
from tests.review.test_commands import DEV, small_data

WORDS = [f"term{chr(97 + i)}{chr(97 + j)}" for i in range(10) for j in range(10)]


def corpus(n: int = 60, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Texts whose rating rises with the word 'rigorous' and falls with 'sloppy' (each in some papers only)."""
    rng = np.random.default_rng(seed)
    texts, ratings = [], []
    for _ in range(n):
        quality = rng.uniform(0, 1)
        words = list(rng.choice(WORDS, 40))
        words += ["rigorous"] * int(20 * max(quality - 0.4, 0)) + ["sloppy"] * int(20 * max(0.6 - quality, 0))
        rng.shuffle(words)
        texts.append(" ".join(words))
        ratings.append(2 + 6 * quality)
    return texts, np.array(ratings)


def test_length_fit_recovers_the_slope_and_round_trips(tmp_path: Path) -> None:
    texts = ["x" * n for n in (1000, 2000, 4000, 8000)]
    targets = -8.0 + 1.5 * np.log([1000, 2000, 4000, 8000])  # 2.4 ... 5.5
    model = fit_length(texts, targets, {"data": "t"})
    assert model.slope == pytest.approx(1.5) and model.intercept == pytest.approx(-8.0)
    path = save_baseline(model, tmp_path / "length.json")
    again = load_baseline("length", str(path))
    assert again.predict(["x" * 3000])[0] == pytest.approx(model.predict(["x" * 3000])[0])


def test_bag_of_words_learns_words_and_cross_validates_out_of_fold(tmp_path: Path) -> None:
    texts, ratings = corpus()
    preds, seconds = cross_validated(texts, ratings, folds=5, seed=0)
    assert set(preds) == {"length", "bow"} and set(seconds) == {"length", "bow"}
    assert spearman(preds["bow"], ratings) > 0.8  # the planted word is found out of fold
    model = fit_all(texts, ratings, kinds=("bow",))["bow"]
    path = save_baseline(model, tmp_path / "bow.json")
    loaded = load_baseline("bow", str(path))
    assert "rigorous" in loaded.vocabulary  # type: ignore[union-attr]
    filler = " ".join(WORDS[:40])
    good, bad = loaded.predict([filler + " rigorous" * 10, filler + " sloppy" * 10])
    assert good > bad + 1
    stored = path.read_text()
    assert all(f"{r:.6f}" not in stored for r in ratings[:10])  # coefficients and vocabulary only


def test_out_of_fold_predictions_cannot_memorise_a_paper() -> None:
    """Each text carries only a word of its own: in sample a ridge could memorise it, out of fold it cannot."""
    rng = np.random.default_rng(1)
    texts = [f"common words here uniq{chr(97 + i // 26)}{chr(97 + i % 26)}word " * 5 for i in range(40)]
    ratings = rng.uniform(1, 9, 40)
    counts = WordCounts(texts)
    ids = fold_ids(40, 5, 0)
    for k in range(5):
        model = counts.fit(np.flatnonzero(ids != k), ratings[ids != k])
        pred = counts.predict(model, np.flatnonzero(ids == k))
        assert np.ptp(pred) < 1e-9  # a held-out paper shares only the common words: one prediction for the fold
    everything = counts.fit(np.arange(40), ratings)
    assert spearman(counts.predict(everything, np.arange(40)), ratings) > 0.9  # in sample it would memorise


def test_baseline_reviewer_and_bad_files(tmp_path: Path) -> None:
    reviewer = BaselineReviewer(load_baseline("length"), "iclr2025")
    short = asyncio.run(reviewer.review("# A\n\n" + "word " * 200))
    long = asyncio.run(reviewer.review("# A\n\n" + "word " * 20000))
    assert long.raw_rating > short.raw_rating and short.reviewer == "baseline:length"
    assert short.decision in ("accept", "reject") and short.reading is not None and short.reading.complete
    with pytest.raises(CalibrationError, match="no file"):
        load_baseline("length", str(tmp_path / "none.json"))
    (tmp_path / "x.json").write_text(json.dumps(load_baseline("length").model_dump()))
    with pytest.raises(CalibrationError, match="not bow"):
        load_baseline("bow", str(tmp_path / "x.json"))
    with pytest.raises(CalibrationError, match="unknown baseline"):
        load_baseline("pages")


def test_baselines_are_reviewers_by_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paper = tmp_path / "paper.md"
    paper.write_text("# Grokking\n\n## Abstract\n\nWe study grokking.\n\n## Results\n\n" + "Accuracy rises. " * 800)
    for kind in ("length", "bow"):
        out = tmp_path / kind
        assert main(["review", str(paper), "llm=scripted", f"reviewer={kind}", f"out={out}"]) == 0
        result = PaperReview.model_validate_json((out / "review.json").read_text())
        assert result.reviewer == f"baseline:{kind}" and result.usage is not None and result.usage["calls"] == 0
    data = small_data(tmp_path / "data.jsonl")
    out = tmp_path / "cal"
    args = ["calibrate", "tracker=disabled", "reviewer=bow", f"data={data}", "limit=null", "bootstrap=60", f"out={out}"]
    assert main([*args, "folds=3"]) == 0
    report = CalibrationReport.model_validate_json((out / "calibration.json").read_text())
    assert report.reviewer == "baseline:bow" and [b.kind for b in report.baselines] == ["length", "bow"]
    capsys.readouterr()
    assert main([*args, "fit=true"]) == 2
    assert "fitted baseline" in capsys.readouterr().err


@pytest.mark.skipif(not DEV.is_file(), reason="the ICLR 2022 dev data is not beside the repository")
def test_text_length_alone_reaches_the_published_figure_on_the_dev_data() -> None:
    papers = load_papers(DEV)
    target = np.array([p.mean_rating for p in papers])
    preds, _ = cross_validated([p.text for p in papers], target, folds=5, seed=0, kinds=("length",))
    assert spearman(preds["length"], target) == pytest.approx(0.35, abs=0.02)  # DESIGN.md: 0.35
    rejected = np.array([not p.accepted for p in papers])
    assert spearman(preds["length"][rejected], target[rejected]) == pytest.approx(0.34, abs=0.03)
