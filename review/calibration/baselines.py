"""Trivial baseline reviewers fitted on human ratings: text length, and a bag-of-words ridge.

A reviewer is worth its cost only if it beats what needs no reading: on the ICLR 2022 dev data the
length of a paper's text alone has Spearman 0.35 with the mean human rating. ``fars calibrate``
fits both baselines on the same cross-validation folds as the reviewer's calibration and reports
them beside it; as reviewers (``reviewer=length``, ``reviewer=bow``) they score any paper with a
model fitted on human ratings and shipped as JSON (``review/calibration/fitted/baselines/KIND.json``,
coefficients and vocabulary only, never a rating).

* ``length``: rating = a + b * log(characters of text), least squares.
* ``bow``: TF-IDF over the words of the text (sublinear term frequency, English stop words dropped,
  terms in at least 2 and at most 90% of the papers, the ``max_features`` most frequent), then
  ridge regression with the penalty chosen by generalised cross-validation (scikit-learn).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, TypeAdapter

from review.calibration.fit import SCALE_MAX, SCALE_MIN, SHIPPED_DIR, CalibrationError, fold_ids
from review.forms import decision_for
from review.ingest.paper import PaperText, paper_from_text
from review.reading import PartRead, Reading
from review.reviewer import MemberReview, PaperReview

BASELINE_DIR = SHIPPED_DIR / "baselines"
BASELINE_FORMAT = "fars-review-baseline"
KINDS = ("length", "bow")
TOKEN_PATTERN = r"(?u)\b[a-zA-Z][a-zA-Z]+\b"
ALPHAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
MAX_FEATURES = 3000


class LengthModel(BaseModel):
    """rating = intercept + slope * log(characters of text), clipped to [1, 10]."""

    format: Literal["fars-review-baseline"] = "fars-review-baseline"
    kind: Literal["length"] = "length"
    version: int = 1
    slope: float
    intercept: float
    fitted_on: dict[str, Any] = Field(default_factory=dict)
    created: str = ""

    def predict(self, texts: list[str]) -> np.ndarray:
        """Predicted mean human ratings of ``texts``."""
        x = np.log(np.maximum([len(t) for t in texts], 1.0))
        return np.clip(self.intercept + self.slope * x, SCALE_MIN, SCALE_MAX)


class BowModel(BaseModel):
    """Ridge regression over TF-IDF word features (vocabulary, idf weights and coefficients)."""

    format: Literal["fars-review-baseline"] = "fars-review-baseline"
    kind: Literal["bow"] = "bow"
    version: int = 1
    vocabulary: list[str]
    idf: list[float]
    coef: list[float]
    intercept: float
    alpha: float
    fitted_on: dict[str, Any] = Field(default_factory=dict)
    created: str = ""

    def predict(self, texts: list[str]) -> np.ndarray:
        """Predicted mean human ratings of ``texts``."""
        from sklearn.feature_extraction.text import CountVectorizer

        if not self.vocabulary:
            return np.full(len(texts), float(np.clip(self.intercept, SCALE_MIN, SCALE_MAX)))
        counts = CountVectorizer(vocabulary=self.vocabulary, token_pattern=TOKEN_PATTERN).transform(texts)
        x = _tfidf(counts, np.asarray(self.idf))
        return np.clip(x @ np.asarray(self.coef) + self.intercept, SCALE_MIN, SCALE_MAX)


BaselineModel = Annotated[LengthModel | BowModel, Field(discriminator="kind")]
_ADAPTER: TypeAdapter[LengthModel | BowModel] = TypeAdapter(BaselineModel)


def _tfidf(counts: Any, idf: np.ndarray) -> Any:
    """Sublinear term frequency times idf, rows scaled to unit length (scikit-learn's TF-IDF)."""
    from sklearn.preprocessing import normalize

    x = counts.astype(np.float64).tocsr()
    x.data = 1.0 + np.log(x.data)
    x = x.multiply(idf.reshape(1, -1)).tocsr()
    return normalize(x)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def fit_length(texts: list[str], targets: np.ndarray, fitted_on: dict[str, Any] | None = None) -> LengthModel:
    """Least squares of the targets on log text length."""
    x = np.log(np.maximum([len(t) for t in texts], 1.0))
    if len(x) < 2 or np.ptp(x) == 0:
        return LengthModel(slope=0.0, intercept=float(np.mean(targets)), fitted_on=fitted_on or {}, created=_now())
    slope, intercept = np.polyfit(x, np.asarray(targets, float), 1)
    return LengthModel(slope=float(slope), intercept=float(intercept), fitted_on=fitted_on or {}, created=_now())


class WordCounts:
    """Word counts of a set of texts, computed once and shared by every fold's bag-of-words fit."""

    def __init__(self, texts: list[str]) -> None:
        from sklearn.feature_extraction.text import CountVectorizer

        vectorizer = CountVectorizer(token_pattern=TOKEN_PATTERN, stop_words="english", dtype=np.int32)
        self.counts = vectorizer.fit_transform(texts).tocsr()
        self.terms = vectorizer.get_feature_names_out()

    def fit(
        self,
        rows: np.ndarray,
        targets: np.ndarray,
        max_features: int | None = None,
        fitted_on: dict[str, Any] | None = None,
    ) -> BowModel:
        """A bag-of-words model fitted on the texts at ``rows`` only (vocabulary and idf included)."""
        from sklearn.linear_model import RidgeCV

        train = self.counts[rows]
        n = train.shape[0]
        df = np.asarray((train > 0).sum(axis=0)).ravel()
        usable = np.flatnonzero((df >= 2) & (df <= 0.9 * n))
        if usable.size == 0:  # a tiny or uniform corpus: every word it has, rather than none
            usable = np.flatnonzero(df >= 1)
        if usable.size == 0:  # no words at all: the mean rating for every paper
            return BowModel(
                vocabulary=[],
                idf=[],
                coef=[],
                intercept=float(np.mean(targets)),
                alpha=0.0,
                fitted_on=fitted_on or {},
                created=_now(),
            )
        totals = np.asarray(train[:, usable].sum(axis=0)).ravel()
        columns = usable[np.argsort(-totals, kind="stable")[: max_features or MAX_FEATURES]]
        columns.sort()
        idf = np.log((1 + n) / (1 + df[columns])) + 1.0
        x = _tfidf(train[:, columns], idf)
        ridge = RidgeCV(alphas=ALPHAS).fit(x, np.asarray(targets, float))
        return BowModel(
            vocabulary=[str(t) for t in self.terms[columns]],
            idf=idf.tolist(),
            coef=ridge.coef_.tolist(),
            intercept=float(ridge.intercept_),
            alpha=float(ridge.alpha_),
            fitted_on=fitted_on or {},
            created=_now(),
        )

    def predict(self, model: BowModel, rows: np.ndarray) -> np.ndarray:
        """``model``'s predictions for the texts at ``rows`` (their counts reused, not recounted)."""
        index = {t: i for i, t in enumerate(self.terms)}
        columns = np.array([index.get(t, -1) for t in model.vocabulary])
        known = columns >= 0
        if not known.any():
            return np.full(len(rows), float(np.clip(model.intercept, SCALE_MIN, SCALE_MAX)))
        counts = self.counts[rows][:, columns[known]]
        x = _tfidf(counts, np.asarray(model.idf)[known])
        return np.clip(x @ np.asarray(model.coef)[known] + model.intercept, SCALE_MIN, SCALE_MAX)


def cross_validated(
    texts: list[str], targets: np.ndarray, folds: int, seed: int, kinds: tuple[str, ...] = KINDS
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Each baseline's out-of-fold predictions on the folds ``fold_ids(n, folds, seed)`` (the calibration's
    folds), and the seconds each took."""
    y = np.asarray(targets, float)
    ids = fold_ids(len(y), folds, seed)
    out: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    if "length" in kinds:
        started = time.perf_counter()
        pred = np.empty(len(y))
        for k in range(folds):
            test = ids == k
            if test.any():
                model = fit_length([t for t, keep in zip(texts, ~test, strict=True) if keep], y[~test])
                pred[test] = model.predict([t for t, keep in zip(texts, test, strict=True) if keep])
        out["length"], seconds["length"] = pred, time.perf_counter() - started
    if "bow" in kinds:
        started = time.perf_counter()
        counts = WordCounts(texts)
        pred = np.empty(len(y))
        for k in range(folds):
            test = ids == k
            if test.any():
                bow = counts.fit(np.flatnonzero(~test), y[~test])
                pred[test] = counts.predict(bow, np.flatnonzero(test))
        out["bow"], seconds["bow"] = pred, time.perf_counter() - started
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; known: {list(KINDS)}")
    return out, seconds


def fit_all(
    texts: list[str], targets: np.ndarray, kinds: tuple[str, ...] = KINDS, fitted_on: dict[str, Any] | None = None
) -> dict[str, LengthModel | BowModel]:
    """Each baseline fitted on every text (the models ``reviewer=length|bow`` ship)."""
    y = np.asarray(targets, float)
    info = {**(fitted_on or {}), "n_papers": len(y)}
    models: dict[str, LengthModel | BowModel] = {}
    if "length" in kinds:
        models["length"] = fit_length(texts, y, info)
    if "bow" in kinds:
        models["bow"] = WordCounts(texts).fit(np.arange(len(y)), y, fitted_on=info)
    return models


def save_baseline(model: LengthModel | BowModel, path: Path) -> Path:
    """Write a baseline model as JSON (compact: a bag-of-words model holds its vocabulary)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model.model_dump_json() + "\n", encoding="utf-8")
    return path


def load_baseline(kind: str, name_or_path: str = "default") -> LengthModel | BowModel:
    """The shipped baseline of ``kind`` (``default``), another shipped name, or a JSON file by path."""
    if kind not in KINDS:
        raise CalibrationError(f"unknown baseline {kind!r}; known: {list(KINDS)}")
    path = BASELINE_DIR / f"{kind}.json" if name_or_path == "default" else Path(name_or_path).expanduser()
    if not path.suffix:
        path = BASELINE_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise CalibrationError(
            f"reviewer.baseline={name_or_path}: no file {path}; use default, or a baseline-{kind}.json written by "
            "`fars calibrate fit=true`"
        )
    try:
        model = _ADAPTER.validate_python(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise CalibrationError(
            f"{path}: not a baseline model ({str(exc)[:200]}); refit with `fars calibrate fit=true`"
        ) from exc
    if model.kind != kind:
        raise CalibrationError(f"{path}: a {model.kind} baseline, not {kind}; set reviewer.baseline to a {kind} model")
    return model


class BaselineReviewer:
    """A baseline as a reviewer: the same ``review(paper, paper_id=None) -> PaperReview`` as the agentic one.

    It reads the whole text and needs no model; its rating is the baseline's prediction of the mean
    human rating (continuous, not on the form's scale), and its decision follows by the one rule.
    """

    def __init__(self, model: LengthModel | BowModel, form: str = "iclr2025") -> None:
        self.model = model
        self.form = form
        self.name = f"baseline:{model.kind}"

    async def review(self, paper: PaperText | str, *, paper_id: str | None = None) -> PaperReview:
        """Score one paper from its text alone."""
        started = time.perf_counter()
        if isinstance(paper, str):
            paper = paper_from_text(paper)
        rating = float(self.model.predict([paper.text])[0])
        if not math.isfinite(rating):
            raise ValueError(f"{paper.source}: the {self.model.kind} baseline gave no rating")
        detail: dict[str, Any] = {"text_chars": paper.chars, "predicted_mean_human_rating": rating}
        member = MemberReview(
            persona=self.model.kind, review=detail, rating=rating, subscores={}, decision=decision_for(rating)
        )
        reading = Reading(
            mode="whole",
            chars_total=paper.chars,
            chars_read=paper.chars,
            budget_chars=paper.chars,
            complete=True,
            parts=[
                PartRead(heading=s.heading, chars_total=len(s.text), chars_read=len(s.text)) for s in paper.sections
            ],
        )
        return PaperReview(
            reviewer=self.name,
            form=self.form,
            title=paper.title,
            source=paper.source,
            reading=reading,
            reviews=[member],
            raw_rating=rating,
            decision=decision_for(rating),
            calibration_status="none",
            calibration_note="a baseline's rating is already a prediction of the mean human rating",
            wall_s=time.perf_counter() - started,
        )
