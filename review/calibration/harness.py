"""The calibration harness: review papers with human reviews, then measure agreement with the humans.

``review_all`` reviews papers concurrently and resumably: each finished review is written at once to
``OUT/reviews/ID.json`` and is never redone; a failed paper is written to ``OUT/failures/ID.txt`` and
tried again next time. ``build_report`` compares each score kind (raw ensemble mean, calibrated,
area chair) with the mean human rating, beside the human-human baseline and the trivial baselines
(text length, bag of words; fitted on the same cross-validation folds as the calibration) on the same
papers; it gives each score's Spearman controlling for text length, a verdict per baseline, and the
reviewer's test-retest reliability when its ensemble has two or more members.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, Field

from review.calibration.baselines import KINDS, cross_validated
from review.calibration.fit import CalibrationModel, fit_calibration
from review.calibration.humans import HumanReviewedPaper
from review.calibration.metrics import STRATA, bootstrap, bootstrap_partial, human_baseline, mean_excluding, versus
from review.calibration.noise import Reliability, reliability
from review.checklist import FEATURES as CHECKLIST_FEATURES
from review.forms import form_fields
from review.reviewer import PaperReview

log = logging.getLogger(__name__)
REPORT_VERSION = 2
ReviewFn = Callable[[HumanReviewedPaper], Awaitable[PaperReview]]


class _HasId(Protocol):
    id: str


_P = TypeVar("_P", bound=_HasId)


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
    length: float | None = None  # the length baseline's cross-validated prediction
    bow: float | None = None  # the bag-of-words baseline's cross-validated prediction
    text_chars: int | None = None
    tokens: int | None = None


class BaselineVerdict(BaseModel):
    """Whether one of the reviewer's scores beats one baseline, by Spearman with the mean human rating."""

    kind: str  # the reviewer's score kind (raw, calibrated, meta)
    baseline: str  # length, bow
    verdict: Literal["beats", "beaten", "indistinguishable", "undefined"]
    difference: dict[str, dict[str, float | None]]  # by stratum: reviewer minus baseline, paired 95% interval
    line: str


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
    baselines: list[ScoreMetrics] = Field(default_factory=list)
    partial_length: dict[str, dict[str, dict[str, float | None]]] = Field(default_factory=dict)  # kind -> stratum
    length_spearman: dict[str, dict[str, float | None]] = Field(default_factory=dict)  # text length itself, no fit
    verdicts: list[BaselineVerdict] = Field(default_factory=list)
    reliability: Reliability | None = None
    folds: int = 5
    notes: list[str] = Field(default_factory=list)  # what a reader must know to read the figures
    usage: dict[str, float | int | None]
    calibration: dict[str, Any]
    papers: list[PaperRow]


async def review_all(
    papers: Sequence[_P], review_fn: Callable[[_P], Awaitable[PaperReview]], out: Path, *, concurrency: int = 1
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

    async def one(paper: _P) -> None:
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
                len(reviews),
                len(papers),
                paper.id,
                result.raw_rating,
                result.wall_s,
            )

    log.info("%d paper(s) already reviewed in %s; %d to review", len(reviews), out, len(todo))
    await asyncio.gather(*(one(p) for p in todo))
    session = {"reviews": float(done_now), "wall_s": time.perf_counter() - started}
    return reviews, failures, session


def targets_for(papers: list[HumanReviewedPaper], reviews: dict[str, PaperReview]) -> np.ndarray:
    """Mean human rating per reviewed paper, leaving out the human an oracle returned."""
    return np.array([mean_excluding(p.human_ratings, reviews[p.id].excluded_human) for p in papers])


def _clean(values: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
    return {m: {k: (None if np.isnan(v) else float(v)) for k, v in values[m].items()} for m in values}


def _score_metrics(
    kind: str, description: str, pred: np.ndarray, target: np.ndarray, acc: np.ndarray, **kw: Any
) -> ScoreMetrics:
    intervals = bootstrap(pred, target, acc, kw["threshold"], draws=kw["draws"], seed=kw["seed"])
    return ScoreMetrics(kind=kind, description=description, n=len(pred), metrics=_clean(intervals))


def _fmt_diff(values: dict[str, float | None]) -> str:
    v, lo, hi = values.get("value"), values.get("low"), values.get("high")
    if v is None:
        return "undefined"
    return f"{v:+.2f}" + ("" if lo is None or hi is None else f" [{lo:+.2f}, {hi:+.2f}]")


def verdict_for(kind: str, baseline: str, difference: dict[str, dict[str, float | None]]) -> BaselineVerdict:
    """The verdict from the paired interval of the overall Spearman difference (within-group ones reported beside)."""
    overall = difference["all"]
    v, lo, hi = overall.get("value"), overall.get("low"), overall.get("high")
    if v is None:
        verdict: Literal["beats", "beaten", "indistinguishable", "undefined"] = "undefined"
        phrase = "cannot be compared with"
    elif lo is not None and lo > 0:
        verdict, phrase = "beats", "beats"
    elif hi is not None and hi < 0:
        verdict, phrase = "beaten", "is beaten by"
    else:
        verdict, phrase = "indistinguishable", "does not beat"
    why = " (its Spearman is undefined: constant scores)" if verdict == "undefined" else ""
    line = (
        f"{kind} {phrase} the {baseline} baseline{why}: Spearman difference {_fmt_diff(overall)} overall, "
        f"{_fmt_diff(difference['accepted'])} within accepted, {_fmt_diff(difference['rejected'])} within rejected"
    )
    return BaselineVerdict(kind=kind, baseline=baseline, verdict=verdict, difference=difference, line=line)


def member_reliability(reviews: list[PaperReview], seed: int, draws: int) -> Reliability | None:
    """Reliability from the ensemble members' ratings of each paper (None unless some paper has two or more)."""
    ratings = [[m.rating for m in r.reviews] for r in reviews if len(r.reviews) >= 2]
    if len(ratings) < 2:
        return None
    return reliability(
        ratings, unit="member", source="the ensemble members' ratings of each paper", seed=seed, draws=draws
    )


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
    folds: int = 5,
    baselines: tuple[str, ...] = KINDS,
    notes: list[str] | None = None,
) -> tuple[CalibrationReport, CalibrationModel | None]:
    """The report over the reviewed papers; with ``fit`` also a calibration model fitted on them."""
    done = [p for p in papers if p.id in reviews]
    if len(done) < 3:
        raise ValueError(f"only {len(done)} paper(s) reviewed; metrics need at least 3 (see failures: {failures})")
    folds = fit["folds"] if fit is not None else folds
    target = targets_for(done, reviews)
    acc = np.array([p.accepted for p in done])
    kw = {"threshold": threshold, "draws": draws, "seed": seed}
    raw = np.array([reviews[p.id].raw_rating for p in done])
    scores = [_score_metrics("raw", "mean overall rating of the reviewer ensemble", raw, target, acc, **kw)]
    calibrated: np.ndarray | None = None
    fitted: CalibrationModel | None = None
    calibration_info: dict[str, Any] = {}
    if fit is not None:
        # the form's scores and the integrity checklist's answers, weighed by a ridge fitted on the humans
        names = [*form_fields(form), *CHECKLIST_FEATURES]
        features = [reviews[p.id].features() for p in done]
        fitted, calibrated = fit_calibration(
            features,
            list(target),
            form=form,
            feature_names=names,
            name=fit["name"],
            folds=folds,
            seed=seed,
            fitted_on={"reviewer": reviewer, **fit.get("fitted_on", {})},
        )
        cv_metrics = _score_metrics("calibrated", "", calibrated, target, acc, **kw).metrics
        fitted.cv = {m: cv_metrics[m]["value"] for m in ("spearman", "mae", "bias", "decision_auc")}
        fitted.cv |= {"spearman_low": cv_metrics["spearman"]["low"], "spearman_high": cv_metrics["spearman"]["high"]}
        description = (
            f"fitted score: a ridge over the form's scores and the checklist, fitted here; {folds}-fold nested "
            "cross-validated predictions"
        )
        has_signal, figures = fitted.signal()
        calibration_info = {"fitted": fitted.model_dump(), "applied": None, "signal": has_signal, "figures": figures}
    else:
        values = [reviews[p.id].calibrated_rating for p in done]
        labels = {reviews[p.id].calibration for p in done}
        cal_notes = sorted({str(reviews[p.id].calibration_note) for p in done if reviews[p.id].calibration_note})
        statuses = sorted({str(reviews[p.id].calibration_status) for p in done if reviews[p.id].calibration_status})
        if all(v is not None for v in values):
            calibrated = np.array(values, dtype=float)
            marked = " [" + "; ".join(cal_notes) + "]" if "other_settings" in statuses else ""
            description = f"calibrated by {', '.join(sorted(str(x) for x in labels))} (fitted on other data){marked}"
        calibration_info = {
            "applied": sorted(str(x) for x in labels if x),
            "fitted": None,
            "status": statuses,
            "notes": cal_notes,
        }
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
        metrics=_clean(baseline),
    )
    lengths = np.array([len(p.text) for p in done], dtype=float)
    base_preds, base_seconds = cross_validated([p.text for p in done], target, folds, seed, baselines)
    descriptions = {
        "length": f"a + b log(text characters), least squares; {folds}-fold cross-validated on the same folds",
        "bow": f"TF-IDF bag of words, ridge (scikit-learn); {folds}-fold cross-validated on the same folds",
    }
    trivial = [_score_metrics(k, descriptions[k], v, target, acc, **kw) for k, v in base_preds.items()]
    by_length = bootstrap(lengths, target, acc, threshold, draws=draws, seed=seed)
    length_spearman = _clean(
        {s: by_length[m] for s, m in zip(STRATA, ("spearman", "spearman_accepted", "spearman_rejected"), strict=True)}
    )
    by_kind = {"raw": raw, "calibrated": calibrated, "meta": meta}
    partial = {
        kind: _clean(bootstrap_partial(values, target, lengths, acc, draws=draws, seed=seed))
        for kind, values in [*by_kind.items(), *base_preds.items()]
        if values is not None
    }
    verdicts = [
        verdict_for(kind, name, _clean(versus(values, pred, target, acc, draws=draws, seed=seed)))
        for kind, values in by_kind.items()
        if values is not None
        for name, pred in base_preds.items()
    ]
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
        **{f"baseline_{k}_s": v for k, v in base_seconds.items()},
    }

    def opt(values: np.ndarray | None, i: int) -> float | None:
        return None if values is None else float(values[i])

    rows = [
        PaperRow(
            id=p.id,
            title=p.title,
            decision=p.decision,
            human_mean=float(t),
            n_humans=len(p.human_ratings),
            raw=float(raw[i]),
            calibrated=opt(calibrated, i),
            meta=opt(meta, i),
            length=opt(base_preds.get("length"), i),
            bow=opt(base_preds.get("bow"), i),
            text_chars=len(p.text),
            tokens=tokens[i],
        )
        for i, (p, t) in enumerate(zip(done, target, strict=True))
    ]
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
        baselines=trivial,
        partial_length=partial,
        length_spearman=length_spearman,
        verdicts=verdicts,
        reliability=member_reliability([reviews[p.id] for p in done], seed, draws),
        folds=folds,
        notes=list(notes or []),
        usage=usage,
        calibration=calibration_info,
        papers=rows,
    )
    return report, fitted
