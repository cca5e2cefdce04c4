"""The fitted score: a ridge over the form's scores and the integrity checklist, cross-validated on the dev set."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from review.calibration.baselines import cross_validated
from review.calibration.fit import fit_calibration
from review.calibration.humans import load_papers, select_papers
from review.checklist import FEATURES as CHECKLIST_FEATURES
from review.checklist import ITEMS, CheckedAnswer
from review.forms import form_fields
from review.reviewer import MemberReview, PaperReview

DEV = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "iclr2022" / "dev.jsonl"


def _review(paper_id: str, human_mean: float, rng: random.Random) -> PaperReview:
    """A reviewer whose rating is noise but whose checklist sees what the humans saw (one answer in ten wrong)."""
    sound = human_mean >= 5.0 if rng.random() < 0.9 else human_mean < 5.0
    checklist = {item: CheckedAnswer(answer="yes", evidence="Section 4") for item in ITEMS}
    checklist["claims_supported"] = CheckedAnswer(answer="yes" if sound else "no", evidence="the abstract's claim")
    rating = float(rng.choice([3, 5, 6]))
    member = MemberReview(
        persona="balanced", review={}, rating=rating, checklist=checklist,
        subscores={"correctness": float(rng.randint(2, 3)), "technical_novelty_and_significance": 2.0,
                   "empirical_novelty_and_significance": 2.0, "confidence": 3.0},
    )  # fmt: skip
    return PaperReview(
        reviewer="model:judge", form="iclr2022", title=paper_id, source=paper_id, reviews=[member], raw_rating=rating,
        subscores=dict(member.subscores), decision="reject",
    )  # fmt: skip


@pytest.mark.skipif(not DEV.is_file(), reason="the shared dev set is not on this machine")
def test_the_fitted_score_learns_the_checklist_cross_validated_on_dev() -> None:
    papers = select_papers(load_papers(DEV), 120, seed=0)
    rng = random.Random(0)
    reviews = [_review(p.id, p.mean_rating, rng) for p in papers]
    targets = [p.mean_rating for p in papers]
    names = [*form_fields("iclr2022"), *CHECKLIST_FEATURES]
    fitted, cv_pred = fit_calibration(
        [r.features() for r in reviews], targets, form="iclr2022", feature_names=names, name="judge-iclr2022",
        fitted_on={"model": "judge", "data": DEV.name},
    )  # fmt: skip
    assert fitted.fitted_on["model"] == "judge" and fitted.fitted_on["folds"] == 5  # names the judge it measures
    weights = dict(zip(fitted.features, fitted.coef, strict=True))
    assert weights["check_claims_supported"] > 0 and abs(weights["check_claims_supported"]) == max(
        map(abs, fitted.coef)
    )
    fitted_rho = spearmanr(
        cv_pred, targets
    ).statistic  # nested 5-fold: each paper predicted by a model that never saw it
    raw_rho = spearmanr([r.raw_rating for r in reviews], targets).statistic
    length = cross_validated([p.text for p in papers], np.array(targets), 5, 0, ("length",))[0]["length"]
    length_rho = spearmanr(length, targets).statistic  # the trivial baseline, same papers and folds
    assert fitted_rho > 0.4 and abs(raw_rho) < 0.25 and fitted_rho > length_rho
    one = reviews[0].features()
    assert fitted.predict(one) == pytest.approx(float(fitted.predict(one)))  # a review's own features suffice
