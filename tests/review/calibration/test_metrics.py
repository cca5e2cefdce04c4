"""Metric code against values computed by hand on tiny inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from review.calibration.metrics import (
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


def test_partial_spearman_by_hand() -> None:
    from review.calibration.metrics import partial_spearman

    # ranks: x 1..5, y (2,1,4,3,5), z (1,3,2,5,4); sum d^2 = 4, 4, 14 over n(n^2-1) = 120:
    # r_xy = 1 - 6*4/120 = 0.8, r_xz = 0.8, r_yz = 1 - 6*14/120 = 0.3
    # partial = (0.8 - 0.8*0.3) / sqrt((1 - 0.64)(1 - 0.09)) = 0.56 / sqrt(0.3276) = 0.97840
    x, y, z = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5], [1, 3, 2, 5, 4]
    assert spearman(y, z) == pytest.approx(0.3)
    assert partial_spearman(x, y, z) == pytest.approx(0.56 / math.sqrt(0.3276))
    # a score that is a monotone function of the control has nothing left: undefined, not 1 or 0
    assert math.isnan(partial_spearman([10, 20, 30, 40, 50], y, x))
    # the same figure another way: correlate the residuals of x's and y's ranks regressed on z's ranks
    ranks = [np.argsort(np.argsort(v)).astype(float) for v in (x, y, z)]
    design = np.vstack([np.ones(5), ranks[2]]).T
    residuals = [r - design @ np.linalg.lstsq(design, r, rcond=None)[0] for r in ranks[:2]]
    assert partial_spearman(x, y, z) == pytest.approx(np.corrcoef(*residuals)[0, 1])


def test_a_length_only_reviewer_loses_its_correlation_once_length_is_controlled() -> None:
    from review.calibration.metrics import bootstrap_partial

    rng = np.random.default_rng(3)
    quality = rng.normal(size=200)
    length = quality + rng.normal(size=200)  # longer papers are better, on average
    target = quality + 0.5 * rng.normal(size=200)
    accepted = target > 0.3
    reads = quality + 0.3 * rng.normal(size=200)  # a reviewer that judges the content
    counts = length + 0.01 * rng.normal(size=200)  # a reviewer that counts pages
    assert spearman(counts, target) > 0.4  # looks useful on its own...
    left = bootstrap_partial(counts, target, length, accepted, draws=200)
    assert abs(left["all"]["value"]) < 0.15  # ...but has nothing beyond length
    kept = bootstrap_partial(reads, target, length, accepted, draws=200)
    assert kept["all"]["value"] > 0.6 and kept["all"]["low"] > 0.4
    assert set(kept) == {"all", "accepted", "rejected"}


def test_versus_is_a_paired_difference_of_spearman() -> None:
    from review.calibration.metrics import versus

    target = [1, 2, 3, 4, 5, 6, 7, 8]
    accepted = [False, False, False, False, True, True, True, True]
    better = [1, 2, 3, 4, 5, 6, 8, 7]
    worse = [2, 1, 4, 3, 6, 5, 8, 7]
    diff = versus(better, worse, target, accepted, draws=300)
    assert diff["all"]["value"] == pytest.approx(spearman(better, target) - spearman(worse, target))
    assert diff["all"]["value"] > 0 and diff["all"]["low"] is not None
