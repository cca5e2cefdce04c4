"""Statistics against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fars.evaluation import stats


def test_cliffs_delta_by_hand() -> None:
    # b=[2,3,4] over a=[1,2,3]: 6 pairs b>a, 1 pair b<a (2<3), 2 ties -> (6-1)/9
    assert stats.cliffs_delta([1, 2, 3], [2, 3, 4]) == pytest.approx(5 / 9)
    assert stats.cliffs_delta([1, 2], [3, 4]) == 1.0
    assert stats.cliffs_delta([3, 4], [1, 2]) == -1.0
    assert stats.cliffs_delta([5, 5], [5, 5]) == 0.0
    assert stats.cliffs_magnitude(5 / 9) == "large"
    assert stats.cliffs_magnitude(-0.2) == "small"
    assert stats.cliffs_magnitude(0.1) == "negligible"


def test_mann_whitney_exact_by_hand() -> None:
    # b entirely above a, 3 vs 3, no ties: U = 9; exact two-sided p = 2 / C(6,3) = 0.1
    result = stats.mann_whitney([1, 2, 3], [4, 5, 6])
    assert result.statistic == 9
    assert result.p_value == pytest.approx(0.1)
    # one-sided "candidate lower" for a candidate entirely below: 1 / 20
    assert stats.mann_whitney([4, 5, 6], [1, 2, 3], alternative="less").p_value == pytest.approx(0.05)
    # U with ties counts one half per tie: b=[2,3,4] over a=[1,2,3] -> 6 + 2/2 = 7
    assert stats.mann_whitney([1, 2, 3], [2, 3, 4]).statistic == 7
    assert stats.mann_whitney([5, 5], [5, 5]).p_value == 1.0


def test_bootstrap_is_exact_on_constant_samples_and_seeded() -> None:
    iv = stats.bootstrap_mean_difference([2, 2, 2], [1, 1], confidence=0.9, resamples=500)
    assert (iv.estimate, iv.low, iv.high, iv.lower, iv.upper) == (-1, -1, -1, -1, -1)
    rng = np.random.default_rng(1)
    a, b = list(rng.normal(5, 1, 30)), list(rng.normal(4.5, 1, 30))
    first = stats.bootstrap_mean_difference(a, b, seed=3)
    assert first == stats.bootstrap_mean_difference(a, b, seed=3)
    assert first != stats.bootstrap_mean_difference(a, b, seed=4)


def test_bootstrap_interval_matches_the_normal_interval_on_large_samples() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(5.0, 1.0, 400), rng.normal(4.0, 1.0, 400)
    iv = stats.bootstrap_mean_difference(list(a), list(b), confidence=0.95, resamples=20_000)
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    diff = b.mean() - a.mean()
    assert iv.estimate == pytest.approx(diff)
    assert iv.low == pytest.approx(diff - 1.96 * se, abs=0.02)
    assert iv.high == pytest.approx(diff + 1.96 * se, abs=0.02)
    assert iv.upper == pytest.approx(diff + 1.645 * se, abs=0.02)  # one-sided 95% bound
    assert iv.low < iv.lower < iv.estimate < iv.upper < iv.high


def test_paired_statistics() -> None:
    iv = stats.bootstrap_paired_difference([-1.0, -1.0, -1.0])
    assert iv.high == -1.0
    # Wilcoxon signed-rank, 5 negative differences: exact one-sided p = 1 / 2^5
    assert stats.wilcoxon_signed_rank([-1, -2, -3, -4, -5], alternative="less").p_value == pytest.approx(1 / 32)
    assert stats.wilcoxon_signed_rank([0, 0, 0]).p_value == 1.0


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="baseline scores must be a non-empty"):
        stats.cliffs_delta([], [1.0])
    with pytest.raises(ValueError, match="not a finite number"):
        stats.mann_whitney([1.0, float("nan")], [1.0])
    with pytest.raises(ValueError, match="confidence must lie between"):
        stats.bootstrap_mean_difference([1, 2], [1, 2], confidence=0.3)


def test_minimum_detectable_effect_by_formula_and_by_simulation() -> None:
    from scipy import stats as sps

    a = [3.0, 5.0, 6.0, 8.0] * 4  # SD 2.16 (ddof 1), n 16 each
    sd = float(np.std(a, ddof=1))
    power = stats.minimum_detectable_effect(a, list(a), confidence=0.95, power=0.8)
    se = sd * np.sqrt(2 / 16)  # Welch with equal SDs and sizes: 30 degrees of freedom
    assert power.df == pytest.approx(30.0)
    assert power.mde == pytest.approx((sps.t.ppf(0.95, 30) + sps.t.ppf(0.8, 30)) * se)
    # a true drop of that size is found by the one-sided test about 80% of the time
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, sd, (1000, 16))
    assert power.mde is not None
    y = rng.normal(5.0 - power.mde, sd, (1000, 16))
    found = sps.ttest_ind(y, x, axis=1, equal_var=False, alternative="less").pvalue < 0.05
    assert found.mean() == pytest.approx(0.8, abs=0.04)


def test_the_noise_floor_and_pairing_enter_the_effect_size() -> None:
    steady = stats.minimum_detectable_effect([], [], differences=[0.0] * 16)
    assert steady.mde == 0.0 and steady.paired and steady.df == 15
    noisy = stats.minimum_detectable_effect([], [], differences=[0.0] * 16, noise_sd=1.0)
    assert noisy.sd == pytest.approx(np.sqrt(2)) and noisy.mde is not None and noisy.mde > 0.8
    assert stats.minimum_detectable_effect([1.0], [1.0, 2.0]).mde is None  # one paper: undefined, says why
    with pytest.raises(ValueError, match="power"):
        stats.minimum_detectable_effect([1, 2], [1, 2], power=1.2)
