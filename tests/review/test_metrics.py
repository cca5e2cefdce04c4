"""Metric code against values computed by hand on tiny inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from review.metrics import (
    METRICS,
    auc,
    balanced_accuracy,
    bootstrap,
    human_baseline,
    kendall,
    mean_excluding,
    metric_suite,
    pairwise_accuracy,
    spearman,
)


def test_spearman_by_hand() -> None:
    # ranks differ by d = 0, 1, 1, 0: rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_kendall_tau_b_by_hand() -> None:
    # 5 concordant, 1 discordant pair of 6: (5 - 1) / 6
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # one tie in x: 5 concordant, 0 discordant; tau-b = 5 / sqrt((6 - 1) * 6)
    assert kendall([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30))


def test_correlations_of_constant_scores_are_undefined() -> None:
    assert math.isnan(spearman([5, 5, 5, 5], [1, 2, 3, 4]))
    assert math.isnan(kendall([1, 2, 3, 4], [6, 6, 6, 6]))
    assert math.isnan(spearman([1, 2], [1, 2]))  # too few papers


def test_pairwise_accuracy_by_hand() -> None:
    # pairs with different targets: (0,1) (0,2) (0,3) (1,2) (1,3); pred ties on (1,2) -> 4.5 / 5
    assert pairwise_accuracy([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.9)
    assert pairwise_accuracy([3, 2, 1], [1, 2, 3]) == pytest.approx(0.0)
    assert math.isnan(pairwise_accuracy([1, 2], [4, 4]))


def test_auc_by_hand() -> None:
    # positives 0.35, 0.8 against negatives 0.1, 0.4: 3 of 4 pairs ordered right
    assert auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == pytest.approx(0.75)
    assert auc([1, 1], [True, False]) == pytest.approx(0.5)  # a tie counts one half
    assert math.isnan(auc([1, 2], [True, True]))


def test_balanced_accuracy_by_hand() -> None:
    # predicted accept: F T T F; recall of accepts 2/3, of rejects 1/1
    assert balanced_accuracy([3, 6, 8, 5], [False, True, True, True], 6) == pytest.approx((2 / 3 + 1) / 2)


def test_suite_mae_bias_and_groups() -> None:
    pred = [5, 6, 3, 8, 4, 7]
    target = [4, 8, 3, 7, 5, 6]
    accepted = [False, True, False, True, False, True]
    m = metric_suite(pred, target, accepted, threshold=5.5)
    assert set(m) == set(METRICS)
    assert m["mae"] == pytest.approx(np.mean([1, 2, 0, 1, 1, 1]))
    assert m["bias"] == pytest.approx(np.mean([1, -2, 0, 1, -1, 1]))
    # within rejected: pred 5,3,4 vs target 4,3,5 -> ranks (3,1,2) vs (2,1,3): d = 1,0,1 -> 1 - 12/24 = 0.5
    assert m["spearman_rejected"] == pytest.approx(0.5)
    # within accepted: pred 6,8,7 vs target 8,7,6 -> ranks (1,3,2) vs (3,2,1): d=2,1,1 -> 1 - 36/24 = -0.5
    assert m["spearman_accepted"] == pytest.approx(-0.5)
    assert m["balanced_accuracy"] == pytest.approx(1.0)  # 6,8,7 >= 5.5; 5,3,4 below
    assert m["decision_auc"] == pytest.approx(1.0)


def test_bootstrap_intervals_bracket_the_value_and_are_reproducible() -> None:
    rng = np.random.default_rng(1)
    target = rng.uniform(1, 10, 60)
    pred = target + rng.normal(0, 2, 60)
    accepted = target > 5.5
    first = bootstrap(pred, target, accepted, 5.5, draws=300, seed=3)
    again = bootstrap(pred, target, accepted, 5.5, draws=300, seed=3)
    assert first == again
    for name in METRICS:
        v = first[name]
        assert v["low"] <= v["value"] <= v["high"], name
    assert first["spearman"]["value"] > 0.5


def test_mean_excluding() -> None:
    assert mean_excluding([3, 5, 8], 2) == pytest.approx(4.0)
    assert mean_excluding([3, 5, 8], None) == pytest.approx(16 / 3)


def test_human_baseline_of_unanimous_humans_is_perfect() -> None:
    ratings = [[1, 1, 1], [3, 3], [5, 5, 5], [8, 8, 8, 8]]
    accepted = [False, False, True, True]
    base = human_baseline(ratings, accepted, 5.5, draws=50, seed=0)
    assert base["spearman"]["value"] == pytest.approx(1.0)
    assert base["mae"]["value"] == pytest.approx(0.0)
    assert base["decision_auc"]["value"] == pytest.approx(1.0)
