"""Test-retest reliability against a one-way ANOVA worked by hand."""

from __future__ import annotations

import math

import pytest

from review.calibration.noise import reliability


def test_icc_by_hand() -> None:
    # papers [1,3], [4,6], [7,9]: means 2, 5, 8, grand mean 5
    # SS between = 2 * (9 + 0 + 9) = 36, MS between = 36 / 2 = 18; SS within = 6, MS within = 6 / 3 = 2
    # ICC(1) = (18 - 2) / (18 + (2 - 1) * 2) = 0.8; ICC of the mean of 2 = (18 - 2) / 18
    rel = reliability([[1, 3], [4, 6], [7, 9]], unit="review", source="hand", draws=100)
    assert rel is not None
    assert rel.icc == pytest.approx(0.8) and rel.icc_mean == pytest.approx(16 / 18)
    assert rel.within_sd == pytest.approx(math.sqrt(2)) and rel.between_sd == pytest.approx(math.sqrt(8))
    assert rel.noise_of_score() == pytest.approx(math.sqrt(2))
    member = reliability([[1, 3], [4, 6], [7, 9]], unit="member", source="hand", draws=100)
    assert member is not None and member.noise_of_score(members=2) == pytest.approx(1.0)  # sqrt(2) / sqrt(2)


def test_constant_ratings_have_no_defined_icc_and_too_few_papers_none() -> None:
    rel = reliability([[1, 1], [1, 1, 1], [1, 1]], unit="member", source="embedded model", draws=50)
    assert rel is not None and rel.icc is None and rel.within_sd == 0.0
    assert reliability([[1, 3]], unit="review", source="x") is None
    assert reliability([[1], [2], [3]], unit="review", source="x") is None  # one rating a paper: nothing to compare
