"""The calibration harness: review papers with human reviews, then measure agreement with the humans.

``review_all`` reviews papers concurrently and resumably: each finished review is written at once to
``OUT/reviews/ID.json`` and is never redone; a failed paper is written to ``OUT/failures/ID.txt`` and
tried again next time. ``build_report`` compares each score kind (raw ensemble mean, calibrated,
area chair) with the mean human rating, beside the human-human baseline on the same papers.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from review.calibration import CalibrationModel, fit_calibration
from review.forms import form_fields
from review.humans import HumanReviewedPaper
from review.metrics import METRICS, bootstrap, human_baseline, mean_excluding
from review.reviewer import PaperReview

log = logging.getLogger(__name__)
REPORT_VERSION = 1
ReviewFn = Callable[[HumanReviewedPaper], Awaitable[PaperReview]]


class ScoreMetrics(BaseModel):
    """One score kind's agreement with the humans: each metric's value and 95% interval."""

    kind: str
    description: str
    n: int
    metrics: dict[str, dict[str, float | None]]


class PaperRow(BaseModel):
    """One paper's line in the report."""

    id: str
    title: str
    decision: str
    human_mean: float
    n_humans: int
    raw: float | None = None
    calibrated: float | None = None
    meta: float | None = None
    tokens: int | None = None


class CalibrationReport(BaseModel):
    """What ``fars calibrate`` reports (written as calibration.json)."""

    version: int = REPORT_VERSION
    created: str
    reviewer: str
    form: str
    data: dict[str, Any]
    selected: int
    reviewed: int
    failed: int
    valid_form_rate: float
    failures: dict[str, str] = Field(default_factory=dict)
    accepted: int
    rejected: int
    threshold: float
    bootstrap_draws: int
    scores: list[ScoreMetrics]
    human_baseline: ScoreMetrics
    usage: dict[str, float | int | None]
    calibration: dict[str, Any]
    papers: list[PaperRow]


async def review_all(
    papers: list[HumanReviewedPaper], review_fn: ReviewFn, out: Path, *, concurrency: int = 1
) -> tuple[dict[str, PaperReview], dict[str, str], dict[str, float]]:
    """Review every paper not yet reviewed in ``out``; returns reviews, failures and session figures."""
    reviews_dir, failures_dir = out / "reviews", out / "failures"
    reviews_dir.mkdir(parents=True, exist_ok=True)
    failures_dir.mkdir(parents=True, exist_ok=True)
    reviews: dict[str, PaperReview] = {}
    for paper in papers:
        path = reviews_dir / f"{paper.id}.json"
        if path.is_file():
            reviews[paper.id] = PaperReview.model_validate_json(path.read_text(encoding="utf-8"))
    todo = [p for p in papers if p.id not in reviews]
    failures: dict[str, str] = {}
    gate = asyncio.Semaphore(concurrency)
    started = time.perf_counter()
    done_now = 0

    async def one(paper: HumanReviewedPaper) -> None:
        nonlocal done_now
        async with gate:
            try:
                result = await review_fn(paper)
            except Exception as exc:  # one paper's failure is recorded; the others go on
                failures[paper.id] = f"{type(exc).__name__}: {exc}"[:1000]
                (failures_dir / f"{paper.id}.txt").write_text(failures[paper.id], encoding="utf-8")
                log.warning("paper %s failed: %s", paper.id, failures[paper.id][:200])
                return
            tmp = reviews_dir / f"{paper.id}.json.tmp"
            tmp.write_text(result.model_dump_json(indent=1), encoding="utf-8")
            tmp.replace(reviews_dir / f"{paper.id}.json")
            (failures_dir / f"{paper.id}.txt").unlink(missing_ok=True)
            reviews[paper.id] = result
            done_now += 1
            log.info(
                "reviewed %d/%d: %s rating %.2f (%.0fs)",
                len(reviews), len(papers), paper.id, result.raw_rating, result.wall_s,
            )  # fmt: skip

    log.info("%d paper(s) already reviewed in %s; %d to review", len(reviews), out, len(todo))
    await asyncio.gather(*(one(p) for p in todo))
    session = {"reviews": float(done_now), "wall_s": time.perf_counter() - started}
    return reviews, failures, session


def targets_for(papers: list[HumanReviewedPaper], reviews: dict[str, PaperReview]) -> np.ndarray:
    """Mean human rating per reviewed paper, leaving out the human an oracle returned."""
    return np.array([mean_excluding(p.human_ratings, reviews[p.id].excluded_human) for p in papers])


def _score_metrics(
    kind: str, description: str, pred: np.ndarray, target: np.ndarray, acc: np.ndarray, **kw: Any
) -> ScoreMetrics:
    intervals = bootstrap(pred, target, acc, kw["threshold"], draws=kw["draws"], seed=kw["seed"])
    clean = {m: {k: (None if np.isnan(v) else v) for k, v in intervals[m].items()} for m in METRICS}
    return ScoreMetrics(kind=kind, description=description, n=len(pred), metrics=clean)


def build_report(
    papers: list[HumanReviewedPaper],
    reviews: dict[str, PaperReview],
    failures: dict[str, str],
    *,
    reviewer: str,
    form: str,
    data: dict[str, Any],
    threshold: float,
    draws: int,
    seed: int,
    fit: dict[str, Any] | None = None,
    session: dict[str, float] | None = None,
) -> tuple[CalibrationReport, CalibrationModel | None]:
    """The report over the reviewed papers; with ``fit`` also a calibration model fitted on them."""
    done = [p for p in papers if p.id in reviews]
    if len(done) < 3:
        raise ValueError(f"only {len(done)} paper(s) reviewed; metrics need at least 3 (see failures: {failures})")
    target = targets_for(done, reviews)
    acc = np.array([p.accepted for p in done])
    kw = {"threshold": threshold, "draws": draws, "seed": seed}
    raw = np.array([reviews[p.id].raw_rating for p in done])
    scores = [_score_metrics("raw", "mean overall rating of the reviewer ensemble", raw, target, acc, **kw)]
    calibrated: np.ndarray | None = None
    fitted: CalibrationModel | None = None
    calibration_info: dict[str, Any] = {}
    if fit is not None:
        names = form_fields(form)
        features = [reviews[p.id].features() for p in done]
        fitted, calibrated = fit_calibration(
            features, list(target), form=form, feature_names=names, name=fit["name"], folds=fit["folds"], seed=seed,
            fitted_on={"reviewer": reviewer, **fit.get("fitted_on", {})},
        )  # fmt: skip
        cv_metrics = _score_metrics("calibrated", "", calibrated, target, acc, **kw).metrics
        fitted.cv = {m: cv_metrics[m]["value"] for m in ("spearman", "mae", "bias", "decision_auc")}
        description = f"calibrated by a ridge model fitted here; {fit['folds']}-fold nested cross-validated predictions"
        calibration_info = {"fitted": fitted.model_dump(), "applied": None}
    else:
        values = [reviews[p.id].calibrated_rating for p in done]
        labels = {reviews[p.id].calibration for p in done}
        if all(v is not None for v in values):
            calibrated = np.array(values, dtype=float)
            description = f"calibrated by {', '.join(sorted(str(x) for x in labels))} (fitted on other data)"
        calibration_info = {"applied": sorted(str(x) for x in labels if x), "fitted": None}
    if calibrated is not None:
        scores.append(_score_metrics("calibrated", description, calibrated, target, acc, **kw))
    meta_values = [reviews[p.id].meta_rating for p in done]
    meta: np.ndarray | None = None
    if all(v is not None for v in meta_values):
        meta = np.array(meta_values, dtype=float)
        scores.append(_score_metrics("meta", "the area chair's rating", meta, target, acc, **kw))
    baseline = human_baseline([p.human_ratings for p in done], acc, threshold, draws=draws, seed=seed)
    human = ScoreMetrics(
        kind="human",
        description="one human held out at random against the mean of the others (same papers)",
        n=len(done),
        metrics={m: {k: (None if np.isnan(v) else v) for k, v in baseline[m].items()} for m in METRICS},
    )
    tokens = [int((reviews[p.id].usage or {}).get("total_tokens", 0)) for p in done]
    walls = [reviews[p.id].wall_s for p in done]
    session = session or {}
    usage: dict[str, float | int | None] = {
        "tokens_total": sum(tokens),
        "tokens_per_review": sum(tokens) / len(done),
        "review_wall_s_mean": float(np.mean(walls)),
        "reviews_per_hour": 3600 / float(np.mean(walls)) if np.mean(walls) > 0 else None,
        "session_reviews": session.get("reviews"),
        "session_wall_s": session.get("wall_s"),
    }
    rows = [
        PaperRow(
            id=p.id, title=p.title, decision=p.decision, human_mean=float(t), n_humans=len(p.human_ratings),
            raw=float(raw[i]), calibrated=None if calibrated is None else float(calibrated[i]),
            meta=None if meta is None else float(meta[i]), tokens=tokens[i],
        )
        for i, (p, t) in enumerate(zip(done, target, strict=True))
    ]  # fmt: skip
    attempted = len(done) + len(failures)
    report = CalibrationReport(
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        reviewer=reviewer,
        form=form,
        data=data,
        selected=len(papers),
        reviewed=len(done),
        failed=len(failures),
        valid_form_rate=len(done) / attempted if attempted else 0.0,
        failures=failures,
        accepted=int(acc.sum()),
        rejected=int((~acc).sum()),
        threshold=threshold,
        bootstrap_draws=draws,
        scores=scores,
        human_baseline=human,
        usage=usage,
        calibration=calibration_info,
        papers=rows,
    )
    return report, fitted
