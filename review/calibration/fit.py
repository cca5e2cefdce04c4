"""The calibrated score: a ridge regression from a reviewer's form to the mean human rating.

Features are the ensemble-mean sub-scores, confidence, integrity-checklist answers (yes +1, no -1) and
raw rating of one reviewer setup (a model and form); a file fitted before the checklist names only the
scores, and is read as it was fitted. A calibration records the reviewer model it was fitted for and is
only applied to that model's reviews (``shipped_for``; ``review.reviewer.apply_calibration``). ``fit_calibration`` standardises them, picks the ridge penalty by an inner k-fold
cross-validation and reports outer k-fold cross-validated predictions (nested, so the reported
figures are out of sample). The fitted model is saved as versioned JSON holding coefficients and
summary figures only, never the human ratings it was fitted on. Shipped models live in
``review/calibration/fitted/NAME.json`` and are named by ``reviewer.calibration``.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

CALIBRATION_FORMAT = "fars-review-calibration"
CALIBRATION_VERSION = 1
SHIPPED_DIR = Path(__file__).resolve().parent / "fitted"
ALPHAS = (0.01, 0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)
SCALE_MIN, SCALE_MAX = 1.0, 10.0
MIN_SPEARMAN = 0.2  # files without a recorded interval: the least cross-validated Spearman that counts as signal


def _num(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.2f}"


class CalibrationError(ValueError):
    """A calibration file that cannot be used; the message names it and what to do."""


class CalibrationModel(BaseModel):
    """A fitted calibration: standardisation, ridge coefficients, and how it was fitted."""

    format: Literal["fars-review-calibration"] = "fars-review-calibration"
    version: int = CALIBRATION_VERSION
    name: str
    form: str
    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    alpha: float
    target: str = "mean human rating"
    fitted_on: dict[str, Any] = Field(default_factory=dict)  # reviewer, data file, n papers, folds (no ratings)
    cv: dict[str, float | None] = Field(default_factory=dict)  # cross-validated figures
    created: str = ""

    @property
    def label(self) -> str:
        """``name@vVERSION``, recorded in every review it calibrates."""
        return f"{self.name}@v{self.version}"

    def signal(self) -> tuple[bool, str]:
        """Whether the model shows signal on its own cross-validation, and its validation figures.

        No signal: every coefficient zero (an intercept: one score for every paper), no cross-validated
        Spearman, a cross-validated Spearman whose 95% interval reaches 0 (when recorded; older files
        hold the point value only, which must then be at least ``MIN_SPEARMAN``), or a decision AUC
        not above 0.5. Such a model is not presented as a score.
        """
        cv = self.cv
        rho, low, auc = cv.get("spearman"), cv.get("spearman_low"), cv.get("decision_auc")
        n = self.fitted_on.get("n_papers")
        figures = (
            f"cross-validated Spearman {_num(rho)}"
            + (f" [{_num(low)}, {_num(cv.get('spearman_high'))}]" if low is not None else "")
            + f", decision AUC {_num(auc)}"
            + (f" on {n} papers" if n else "")
        )
        if not any(abs(c) > 1e-9 for c in self.coef):
            return False, f"an intercept only (every paper gets {self.intercept:.2f}); {figures}"
        if rho is None or (low is not None and low <= 0) or (low is None and rho < MIN_SPEARMAN):
            return False, figures
        if auc is not None and auc <= 0.5:
            return False, figures
        return True, figures

    def predict(self, features: dict[str, float]) -> float:
        """The calibrated rating for one review's features, clipped to the rating scale [1, 10]."""
        missing = [f for f in self.features if f not in features]
        if missing:
            raise CalibrationError(f"calibration {self.label} needs features {missing}, which the review lacks")
        x = np.array([features[f] for f in self.features], dtype=float)
        z = (x - np.array(self.mean)) / np.array(self.scale)
        return float(np.clip(self.intercept + z @ np.array(self.coef), SCALE_MIN, SCALE_MAX))

    def save(self, path: Path) -> Path:
        """Write the model as indented JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=1) + "\n", encoding="utf-8")
        return path


def shipped_for(form: str | None, model: str | None) -> Path | None:
    """The shipped calibration fitted for ``form`` and reviewer ``model`` (None: none is shipped for them).

    Without a model, the shipped ``default-FORM.json``. A calibration measures one judge: another model's
    is never chosen for ``model``.
    """
    if model is None:
        shipped = SHIPPED_DIR / f"default-{form}.json"
        return shipped if shipped.is_file() else None
    for path in sorted(SHIPPED_DIR.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        fitted = data.get("fitted_on") or {}
        fitted_model = fitted.get("model") or str(fitted.get("reviewer") or "").removeprefix("model:")
        if data.get("form") == form and fitted_model == model:
            return path
    return None


def load_calibration(
    name_or_path: str | None, form: str | None = None, reviewer_model: str | None = None
) -> CalibrationModel | None:
    """A shipped calibration by name, a JSON file by path, or None for null.

    ``default`` means the shipped calibration for ``form`` fitted for ``reviewer_model`` (``shipped_for``);
    where none is shipped for them, there is no calibration (reviews then say so, and how to fit one).
    """
    if name_or_path in (None, "", "null", "none"):
        return None
    assert name_or_path is not None
    if name_or_path == "default":
        shipped = shipped_for(form, reviewer_model)
        if shipped is None:
            return None
        name_or_path = str(shipped)
    path = Path(name_or_path).expanduser()
    if not path.suffix:
        path = SHIPPED_DIR / f"{name_or_path}.json"
    if not path.is_file():
        known = sorted(p.stem for p in SHIPPED_DIR.glob("*.json"))
        raise CalibrationError(
            f"reviewer.calibration={name_or_path}: no file {path}; use one of {known}, a path to a JSON written "
            "by `fars calibrate fit=true`, or null"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        model = CalibrationModel.model_validate(data)
    except (ValueError, TypeError) as exc:
        raise CalibrationError(
            f"{path}: not a calibration model ({exc}); refit it with `fars calibrate fit=true`"
        ) from exc
    if model.version > CALIBRATION_VERSION:
        raise CalibrationError(f"{path}: calibration version {model.version} is newer than this FARS; upgrade FARS")
    return model


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Ridge on standardised features (intercept not penalised): mean, scale, coefficients, intercept."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0  # a constant feature gets coefficient 0
    z = (x - mean) / scale
    intercept = float(y.mean())
    gram = z.T @ z + alpha * np.eye(z.shape[1])
    coef = np.linalg.solve(gram, z.T @ (y - intercept))
    return mean, scale, coef, intercept


def ridge_predict(x: np.ndarray, fitted: tuple[np.ndarray, np.ndarray, np.ndarray, float]) -> np.ndarray:
    """Predictions of a ``ridge_fit`` result, clipped to the rating scale."""
    mean, scale, coef, intercept = fitted
    return np.clip(intercept + ((x - mean) / scale) @ coef, SCALE_MIN, SCALE_MAX)


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    """A random fold index in ``range(folds)`` for each of ``n`` items, folds as equal as can be."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.arange(n) % folds)


def choose_alpha(x: np.ndarray, y: np.ndarray, folds: int, seed: int, alphas: tuple[float, ...] = ALPHAS) -> float:
    """The ridge penalty with the least k-fold cross-validated squared error."""
    ids = fold_ids(len(y), folds, seed)
    best, best_err = alphas[0], np.inf
    for alpha in alphas:
        err = 0.0
        for k in range(folds):
            train, test = ids != k, ids == k
            if not test.any() or train.sum() < 2:
                continue
            err += float(((ridge_predict(x[test], ridge_fit(x[train], y[train], alpha)) - y[test]) ** 2).sum())
        if err < best_err:
            best, best_err = alpha, err
    return best


def cross_validated_predictions(x: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Nested CV: each item predicted by a model (penalty chosen by inner CV) that never saw it."""
    ids = fold_ids(len(y), folds, seed)
    out = np.empty(len(y))
    for k in range(folds):
        train, test = ids != k, ids == k
        if not test.any():
            continue
        inner = max(2, min(folds, int(train.sum()) // 2))
        alpha = choose_alpha(x[train], y[train], inner, seed + 1 + k)
        out[test] = ridge_predict(x[test], ridge_fit(x[train], y[train], alpha))
    return out


def fit_calibration(
    features: list[dict[str, float]],
    targets: list[float],
    *,
    form: str,
    feature_names: list[str],
    name: str,
    folds: int = 5,
    seed: int = 0,
    fitted_on: dict[str, Any] | None = None,
) -> tuple[CalibrationModel, np.ndarray]:
    """Fit on all items (penalty by CV) and return the model with nested-CV predictions for each item."""
    if len(targets) < max(folds, 4):
        raise CalibrationError(f"calibration needs at least {max(folds, 4)} reviewed papers, got {len(targets)}")
    x = np.array([[f[name] for name in feature_names] for f in features], dtype=float)
    y = np.array(targets, dtype=float)
    cv_pred = cross_validated_predictions(x, y, folds, seed)
    alpha = choose_alpha(x, y, folds, seed)
    mean, scale, coef, intercept = ridge_fit(x, y, alpha)
    model = CalibrationModel(
        name=name,
        form=form,
        features=list(feature_names),
        mean=mean.tolist(),
        scale=scale.tolist(),
        coef=coef.tolist(),
        intercept=intercept,
        alpha=alpha,
        fitted_on={**(fitted_on or {}), "n_papers": len(y), "folds": folds, "seed": seed},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    return model, cv_pred
