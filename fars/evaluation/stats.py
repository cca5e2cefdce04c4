"""Two-sample statistics for comparing review scores of two runs.

All functions take the baseline sample ``a`` first and the candidate ``b`` second and report effects
as candidate minus baseline, so a negative effect means the candidate scored lower. Bootstrap
resampling uses a fixed seed, so the same inputs always give the same interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Alternative = Literal["two-sided", "less", "greater"]


@dataclass(frozen=True)
class TestResult:
    """A test statistic and its p-value."""

    statistic: float
    p_value: float


@dataclass(frozen=True)
class Interval:
    """A bootstrap estimate of a mean difference.

    ``low``/``high`` bound the two-sided interval at ``confidence``; ``upper``/``lower`` are the
    one-sided bounds at the same confidence (the ``confidence`` and ``1 - confidence`` quantiles).
    """

    estimate: float
    low: float
    high: float
    lower: float
    upper: float
    confidence: float


def _floats(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty list of numbers (got {len(arr)} value(s))")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds a value that is not a finite number: {values!r}")
    return arr


def mann_whitney(a: Sequence[float], b: Sequence[float], alternative: Alternative = "two-sided") -> TestResult:
    """Mann-Whitney U of ``b`` against ``a`` (U counts pairs where b beats a, ties one half).

    ``alternative="less"`` tests whether the candidate ``b`` is stochastically smaller than ``a``.
    Exact p-values for small samples without ties, the normal approximation otherwise (scipy's rule).
    """
    x, y = _floats(b, "candidate scores"), _floats(a, "baseline scores")
    if np.ptp(np.concatenate([x, y])) == 0:  # every value equal: no evidence of any difference
        return TestResult(statistic=x.size * y.size / 2, p_value=1.0)
    result = stats.mannwhitneyu(x, y, alternative=alternative, method="auto")
    return TestResult(statistic=float(result.statistic), p_value=float(result.pvalue))


def wilcoxon_signed_rank(differences: Sequence[float], alternative: Alternative = "two-sided") -> TestResult:
    """Wilcoxon signed-rank test of paired differences (candidate minus baseline) against zero."""
    d = _floats(differences, "paired differences")
    if np.all(d == 0):
        return TestResult(statistic=0.0, p_value=1.0)
    result = stats.wilcoxon(d, alternative=alternative, zero_method="wilcox")
    return TestResult(statistic=float(result.statistic), p_value=float(result.pvalue))


def cliffs_delta(a: Sequence[float], b: Sequence[float]) -> float:
    """Cliff's delta of ``b`` over ``a``: P(b > a) - P(b < a) over all pairs, in [-1, 1]."""
    x, y = _floats(a, "baseline scores"), _floats(b, "candidate scores")
    signs = np.sign(y[:, None] - x[None, :])
    return float(signs.sum() / signs.size)


def cliffs_magnitude(delta: float) -> str:
    """Romano et al.'s labels for |delta|: negligible, small, medium, large."""
    size = abs(delta)
    if size < 0.147:
        return "negligible"
    if size < 0.33:
        return "small"
    if size < 0.474:
        return "medium"
    return "large"


def _interval(estimate: float, draws: np.ndarray, confidence: float) -> Interval:
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must lie between 0.5 and 1 (got {confidence})")
    tail = (1 - confidence) / 2
    low, high, lower, upper = np.quantile(draws, [tail, 1 - tail, 1 - confidence, confidence])
    return Interval(float(estimate), float(low), float(high), float(lower), float(upper), confidence)


def bootstrap_mean_difference(
    a: Sequence[float],
    b: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap of mean(b) - mean(a), resampling each sample independently."""
    x, y = _floats(a, "baseline scores"), _floats(b, "candidate scores")
    rng = np.random.default_rng(seed)
    mean_x = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    mean_y = y[rng.integers(0, y.size, size=(resamples, y.size))].mean(axis=1)
    return _interval(float(y.mean() - x.mean()), mean_y - mean_x, confidence)


def bootstrap_paired_difference(
    differences: Sequence[float], *, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> Interval:
    """Percentile bootstrap of the mean of paired differences (pairs resampled together)."""
    d = _floats(differences, "paired differences")
    rng = np.random.default_rng(seed)
    draws = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    return _interval(float(d.mean()), draws, confidence)


def bootstrap_mean(
    values: Sequence[float], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> Interval:
    """Percentile bootstrap interval of a sample's mean (a single value: the value itself)."""
    x = _floats(values, "values")
    if x.size == 1:
        v = float(x[0])
        return Interval(v, v, v, v, v, confidence)
    rng = np.random.default_rng(seed)
    draws = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    return _interval(float(x.mean()), draws, confidence)


def welch_t(a: Sequence[float], b: Sequence[float]) -> TestResult | None:
    """Welch's two-sided t-test of ``b`` against ``a``; None when undefined (fewer than 2 values, no variance)."""
    x, y = _floats(a, "baseline values"), _floats(b, "candidate values")
    if x.size < 2 or y.size < 2:
        return None
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return TestResult(statistic=0.0, p_value=1.0) if x[0] == y[0] else None
    with warnings.catch_warnings():  # near-identical samples: scipy warns, and its p-value is still the right one
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(y, x, equal_var=False)
    p = float(result.pvalue)
    return None if not np.isfinite(p) else TestResult(statistic=float(result.statistic), p_value=p)


def hedges_g(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Hedges' g of ``b`` over ``a``: the standardised mean difference, small-sample corrected; None if undefined."""
    x, y = _floats(a, "baseline values"), _floats(b, "candidate values")
    nx, ny = x.size, y.size
    if nx < 2 or ny < 2:
        return None
    pooled = np.sqrt(((nx - 1) * x.var(ddof=1) + (ny - 1) * y.var(ddof=1)) / (nx + ny - 2))
    if pooled == 0:
        return None
    correction = 1 - 3 / (4 * (nx + ny) - 9)
    return float((y.mean() - x.mean()) / pooled * correction)


def holm(p_values: dict[str, float | None]) -> dict[str, float | None]:
    """Holm's step-down adjustment of a family of p-values (None stays None and does not count)."""
    tested = sorted((p, name) for name, p in p_values.items() if p is not None)
    m = len(tested)
    adjusted: dict[str, float | None] = {name: None for name in p_values}
    running = 0.0
    for rank, (p, name) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[name] = running
    return adjusted


@dataclass(frozen=True)
class Power:
    """The smallest mean difference a one-sided test at ``confidence`` detects with probability ``power``.

    ``mde`` is None when it cannot be computed (too few papers; ``reason`` says why). ``sd`` is the
    standard deviation it assumed: the observed one, or the reviewer's noise floor when that is larger
    (a sample of a few papers can look steadier than the reviewer is).
    """

    mde: float | None
    sd: float
    se: float
    df: float
    paired: bool
    confidence: float
    power: float
    noise_floor: float | None
    reason: str | None = None


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else 0.0


def minimum_detectable_effect(
    a: Sequence[float],
    b: Sequence[float],
    *,
    differences: Sequence[float] | None = None,
    confidence: float = 0.95,
    power: float = 0.8,
    noise_sd: float | None = None,
) -> Power:
    """The minimum detectable effect of comparing ``b`` with ``a`` (paired when ``differences`` is given).

    MDE = (t_confidence + t_power) * SE, with t quantiles at the test's degrees of freedom: the
    usual normal-approximation power formula with Student's t for small samples. Unpaired, SE is
    Welch's (each sample's SD floored at ``noise_sd``) with Welch-Satterthwaite degrees of freedom;
    paired, SE is the SD of the differences (floored at sqrt(2) * ``noise_sd``: each side carries the
    reviewer's noise) over sqrt(n), with n - 1 degrees of freedom.
    """
    if not 0.5 < confidence < 1 or not 0.5 <= power < 1:
        raise ValueError(f"confidence must lie in (0.5, 1) and power in [0.5, 1) (got {confidence}, {power})")
    floor = float(noise_sd) if noise_sd else 0.0
    if differences is not None:
        d = _floats(differences, "paired differences")
        if d.size < 2:
            return Power(None, 0.0, 0.0, 0.0, True, confidence, power, noise_sd, "fewer than 2 pairs")
        sd = max(_sd(d), math.sqrt(2) * floor)
        se, df = sd / math.sqrt(d.size), float(d.size - 1)
    else:
        x, y = _floats(a, "baseline scores"), _floats(b, "candidate scores")
        if x.size < 2 or y.size < 2:
            return Power(None, 0.0, 0.0, 0.0, False, confidence, power, noise_sd, "fewer than 2 papers in a run")
        va, vb = max(_sd(x), floor) ** 2 / x.size, max(_sd(y), floor) ** 2 / y.size
        se = math.sqrt(va + vb)
        df = (
            (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
            if va + vb > 0
            else float(x.size + y.size - 2)
        )
        sd = math.sqrt((va * x.size + vb * y.size) / 2) if se > 0 else 0.0
    t_sum = float(stats.t.ppf(confidence, df) + stats.t.ppf(power, df))
    return Power(t_sum * se, sd, se, df, differences is not None, confidence, power, noise_sd)
