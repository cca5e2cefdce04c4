"""The design statistics against values computed by hand, SciPy's own results, and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from fars.evaluation import design


def test_the_t_interval_at_small_n_is_students_not_a_bootstrap_of_two_points() -> None:
    interval = design.t_interval([0.50, 0.54])
    half = stats.t.ppf(0.975, 1) * np.std([0.50, 0.54], ddof=1) / math.sqrt(2)  # 12.706 * 0.02828 / 1.414
    assert interval.mean == pytest.approx(0.52) and interval.high - interval.mean == pytest.approx(half)
    assert interval.high - interval.low == pytest.approx(0.508, abs=1e-3)  # wide: two seeds say little
    single = design.t_interval([0.7])
    assert (single.low, single.high, single.n) == (None, None, 1)


def test_welch_difference_agrees_with_scipy() -> None:
    a, b = [1.0, 1.2, 0.9, 1.1], [1.5, 1.4, 1.8]
    ours = design.welch_difference(a, b)
    assert ours is not None
    theirs = stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert (ours.low, ours.high) == pytest.approx((theirs.low, theirs.high))
    assert design.welch_difference([1.0], b) is None


def test_tost_finds_equivalence_within_the_margin_and_not_beyond_it() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 0.01, 10), rng.normal(0.002, 0.01, 10)
    assert design.tost(a, b, margin=0.02) < 0.05  # within 0.02: equivalent
    assert design.tost(a, b + 0.05, margin=0.02) > 0.5  # 0.05 apart: not equivalent
    assert design.tost(a, b, margin=0.001) > 0.05  # a margin narrower than the noise: not shown
    with pytest.raises(ValueError, match="positive"):
        design.tost(a, b, margin=0)


def test_power_by_formula_matches_simulation() -> None:
    rng = np.random.default_rng(1)
    effect, sd, seeds, alpha = 1.0, 1.0, 8, 0.05
    hits = 0
    for _ in range(2000):
        a, b = rng.normal(0, sd, seeds), rng.normal(effect, sd, seeds)
        hits += stats.ttest_ind(b, a, equal_var=False, alternative="greater").pvalue < alpha
    assert design.power_of(effect, sd, seeds, alpha) == pytest.approx(hits / 2000, abs=0.04)


def test_expected_power_averages_over_the_spread_a_small_pilot_leaves_possible() -> None:
    """Seeds sized on a 3-seed pilot's sd as if it were the truth come true less often than planned; the power
    expected over the sd's chi-square uncertainty is what such studies realise, on average."""
    rng = np.random.default_rng(3)
    effect, sd, alpha, seeds = 1.0, 1.0, 0.05, 10
    planned, plugged, hits = [], [], 0
    for _ in range(1500):
        s = float(rng.normal(0, sd, 3).std(ddof=1))
        planned.append(design.expected_power(effect, s, seeds, alpha, pilot_n=3))
        plugged.append(design.power_of(effect, s, seeds, alpha))
        a, b = rng.normal(0, sd, seeds), rng.normal(effect, sd, seeds)
        hits += stats.ttest_ind(b, a, equal_var=False, alternative="greater").pvalue < alpha
    # the true spread is the same in every study, so the realised power is that of sd itself
    assert hits / 1500 == pytest.approx(design.power_of(effect, sd, seeds, alpha), abs=0.04)
    assert design.expected_power(effect, 1.0, seeds, alpha, pilot_n=3) < design.power_of(effect, 1.0, seeds, alpha)
    assert np.mean(plugged) > np.mean(planned)  # the plug-in is optimistic on average
    few = design.seeds_for_power(1.0, 1.0, alpha=0.05, power=0.8, pilot_n=3, cap=100)
    assert not few.capped and few.needed == few.seeds
    assert few.seeds > design.seeds_for_power(1.0, 1.0, alpha=0.05, power=0.8).seeds
    assert design.expected_power(1.0, 1.0, few.seeds, 0.05, pilot_n=3) >= 0.8


def test_seeds_for_power_is_the_smallest_that_reaches_it_and_says_when_the_cap_binds() -> None:
    plan = design.seeds_for_power(0.44, 0.24, alpha=0.05 / 3, power=0.8)
    assert plan.power >= 0.8 and not plan.capped
    assert design.power_of(0.44, 0.24, plan.seeds - 1, 0.05 / 3) < 0.8
    capped = design.seeds_for_power(0.01, 0.24, alpha=0.05, power=0.8, cap=6)
    assert capped.capped and capped.seeds == 6 and capped.power < 0.8
    assert capped.detectable > 0.01  # what 6 seeds can detect, stated instead of pretending
    assert design.power_of(capped.detectable, 0.24, 6, 0.05) == pytest.approx(0.8, abs=1e-4)


@pytest.mark.parametrize(
    ("a", "b", "p", "kwargs", "expected"),
    [
        ([0.5, 0.52], [0.9, 0.92], 0.01, {}, "better"),
        ([0.5, 0.52], [0.1, 0.12], 0.01, {}, "worse"),
        ([0.5, 0.52, 0.51], [0.9, 0.92, 0.91], 0.01, {"higher_is_better": False}, "worse"),  # a loss went up
        # not significant, the interval spans 0 and the predicted +0.3: the study could not tell
        ([0.5, 0.7], [0.6, 0.9], 0.4, {"predicted": 0.3}, "inconclusive"),
        # not significant and the interval excludes the predicted +0.3: smaller than predicted, if any
        ([0.50, 0.51, 0.50], [0.50, 0.52, 0.51], 0.4, {"predicted": 0.3}, "no significant difference"),
    ],
)
def test_verdicts(a: list[float], b: list[float], p: float, kwargs: dict[str, object], expected: str) -> None:
    options = {"higher_is_better": True, **kwargs}
    assert design.verdict(design.welch_difference(a, b), p, 0.05, **options) == expected  # type: ignore[arg-type]


def test_an_equivalence_hypothesis_is_judged_by_tost_against_its_margin() -> None:
    a, b = [0.500, 0.502, 0.498, 0.501], [0.501, 0.499, 0.502, 0.500]
    difference = design.welch_difference(a, b)
    tost_p = design.tost(a, b, margin=0.02)
    assert design.verdict(difference, 0.9, 0.05, higher_is_better=True, margin=0.02, tost_p=tost_p) == "equivalent"


def test_convergence_is_the_share_of_improvement_in_the_last_fifth() -> None:
    steps = list(range(0, 101, 10))
    assert design.convergence(steps, [1 - math.exp(-s / 10) for s in steps], True) == pytest.approx(0, abs=1e-3)
    assert design.convergence(steps, [s / 100 for s in steps], True) == pytest.approx(0.2)  # still climbing
    assert design.convergence(steps, [3 - s / 100 for s in steps], False) == pytest.approx(0.2)  # a loss falling
    assert design.convergence([0, 1], [0, 1], True) is None
