"""The calibration model: ridge with nested CV, versioned JSON without the ratings, loading errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from review.calibration.fit import (
    SHIPPED_DIR,
    CalibrationError,
    CalibrationModel,
    cross_validated_predictions,
    fit_calibration,
    fold_ids,
    load_calibration,
    ridge_fit,
    ridge_predict,
)
from review.forms import form_fields


def synthetic(n: int = 80, seed: int = 0) -> tuple[list[dict[str, float]], list[float]]:
    rng = np.random.default_rng(seed)
    features, targets = [], []
    for _ in range(n):
        row = {name: float(rng.integers(1, 5)) for name in form_fields("iclr2025")}
        row["rating"] = float(rng.choice([1, 3, 5, 6, 8, 10]))
        features.append(row)
        targets.append(2.0 + 0.3 * row["rating"] + 0.5 * row["soundness"] + rng.normal(0, 0.2))
    return features, targets


def test_ridge_recovers_a_linear_relation() -> None:
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    y = 1.0 + 2.0 * x[:, 0]
    fitted = ridge_fit(x, y, alpha=1e-9)
    assert ridge_predict(np.array([[2.5]]), fitted)[0] == pytest.approx(6.0)
    assert ridge_predict(np.array([[100.0]]), fitted)[0] == pytest.approx(10.0)  # clipped to the scale


def test_folds_are_balanced_and_seeded() -> None:
    ids = fold_ids(11, 5, seed=2)
    assert sorted(np.bincount(ids).tolist()) == [2, 2, 2, 2, 3]
    assert (ids == fold_ids(11, 5, seed=2)).all()


def test_nested_cv_predicts_out_of_sample() -> None:
    features, targets = synthetic()
    x = np.array([[f[n] for n in form_fields("iclr2025")] for f in features])
    pred = cross_validated_predictions(x, np.array(targets), folds=5, seed=0)
    assert np.abs(pred - np.array(targets)).mean() < 0.4
    # a target the features cannot explain is not fitted out of sample
    noise = np.random.default_rng(9).normal(5, 1, len(targets))
    shuffled = cross_validated_predictions(x, noise, folds=5, seed=0)
    assert np.corrcoef(shuffled, noise)[0, 1] < 0.5


def test_fit_save_load_round_trip_holds_no_ratings(tmp_path: Path) -> None:
    features, targets = synthetic()
    model, cv = fit_calibration(
        features, targets, form="iclr2025", feature_names=form_fields("iclr2025"), name="t", fitted_on={"reviewer": "x"}
    )
    assert len(cv) == len(targets)
    path = model.save(tmp_path / "t.json")
    loaded = load_calibration(str(path))
    assert loaded is not None and loaded.label == "t@v1" and loaded.fitted_on["n_papers"] == 80
    assert loaded.predict(features[0]) == pytest.approx(model.predict(features[0]))
    text = path.read_text()
    assert all(f"{t:.6f}"[:8] not in text for t in targets[:20])  # coefficients only, no targets
    assert max(len(v) for v in json.loads(text).values() if isinstance(v, list)) == len(form_fields("iclr2025"))


def test_too_few_papers_and_bad_files_give_clear_errors(tmp_path: Path) -> None:
    features, targets = synthetic(3)
    with pytest.raises(CalibrationError, match="at least"):
        fit_calibration(features, targets, form="iclr2025", feature_names=form_fields("iclr2025"), name="t")
    with pytest.raises(CalibrationError, match="no file"):
        load_calibration("does-not-exist")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something else"}')
    with pytest.raises(CalibrationError, match=r"bad\.json"):
        load_calibration(str(bad))
    assert load_calibration(None) is None and load_calibration("null") is None
    assert load_calibration("default", form="no-such-form") is None


def test_missing_feature_is_named() -> None:
    model = CalibrationModel(
        name="m", form="iclr2025", features=["rating"], mean=[5], scale=[1], coef=[1], intercept=5, alpha=1
    )
    assert model.predict({"rating": 6}) == pytest.approx(6.0)
    with pytest.raises(CalibrationError, match="rating"):
        model.predict({"soundness": 3})


def test_shipped_calibrations_load() -> None:
    for path in SHIPPED_DIR.glob("*.json"):
        model = load_calibration(str(path))
        assert model is not None and model.features == form_fields(model.form)
