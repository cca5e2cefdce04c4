"""Statistics of an experiment's design: intervals at small n, equivalence, power, seeds and verdicts.

A study compares conditions over a few seeds each. At that size a bootstrap of two points says nothing
(its interval has zero width when the seeds agree), so intervals here use Student's t. What a study can
detect is decided before it runs: from a pilot's seed-to-seed spread and the effect the hypothesis
predicts (or the smallest effect of interest), ``seeds_for_power`` gives the seeds per condition that
reach the wanted power at the corrected level, and ``detectable_effect`` the effect a capped number of
seeds can detect. After the runs, ``verdict`` reads a comparison as better, worse, equivalent within a
margin (two one-sided tests, ``tost``), or inconclusive: an interval that spans both the predicted effect
and zero has not answered the question.

Differences are candidate minus baseline in the metric's own units; ``higher_is_better`` turns them
into improvements where a direction matters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize, stats

Sides = Literal["two-sided", "greater", "less"]
Verdict = Literal["better", "worse", "equivalent", "no significant difference", "inconclusive"]


def _values(values: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a non-empty list of finite numbers (got {values!r})")
    return arr


@dataclass(frozen=True)
class MeanInterval:
    """A mean and its two-sided Student-t interval at ``confidence`` (a single value: no interval)."""

    mean: float
    low: float | None
    high: float | None
    n: int
    confidence: float


def t_interval(values: Sequence[float], confidence: float = 0.95) -> MeanInterval:
    """Student's t interval of the mean: mean +- t(n-1) * sd / sqrt(n). Two equal seeds give a zero-width
    interval only when they are equal to the last digit; one seed gives none (``low``/``high`` None)."""
    x = _values(values, "values")
    mean = float(x.mean())
    if x.size < 2:
        return MeanInterval(mean, None, None, 1, confidence)
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return MeanInterval(mean, mean - half, mean + half, int(x.size), confidence)


@dataclass(frozen=True)
class Difference:
    """mean(b) - mean(a) with Welch's standard error, degrees of freedom and two-sided interval."""

    estimate: float
    se: float
    df: float
    low: float
    high: float
    confidence: float


def welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference | None:
    """The difference of means ``b - a`` with Welch's interval; None with fewer than 2 values in either."""
    x, y = _values(a, "baseline values"), _values(b, "candidate values")
    if x.size < 2 or y.size < 2:
        return None
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1)) if se > 0 else float(x.size + y.size - 2)
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    estimate = float(y.mean() - x.mean())
    return Difference(estimate, se, df, estimate - half, estimate + half, confidence)


def one_sided_p(difference: Difference, direction: Literal["greater", "less"], null: float = 0.0) -> float:
    """p of Welch's one-sided test that the difference is ``direction`` than ``null``."""
    if difference.se == 0:
        above = difference.estimate > null if direction == "greater" else difference.estimate < null
        return 0.0 if above else 1.0
    t = (difference.estimate - null) / difference.se
    return float(stats.t.sf(t, difference.df) if direction == "greater" else stats.t.cdf(t, difference.df))


def tost(a: Sequence[float], b: Sequence[float], margin: float) -> float | None:
    """Two one-sided tests of equivalence: the p-value that ``b - a`` lies within +-``margin`` (the larger
    of the two one-sided p-values); None with fewer than 2 values in either sample."""
    if margin <= 0:
        raise ValueError(f"an equivalence margin must be positive (got {margin})")
    difference = welch_difference(a, b)
    if difference is None:
        return None
    return max(one_sided_p(difference, "greater", -margin), one_sided_p(difference, "less", margin))


def power_of(effect: float, sd: float, seeds: int, alpha: float, sides: Sides = "greater") -> float:
    """The power of Welch's test (equal seeds and spread) to detect a true difference ``effect`` with
    ``seeds`` per condition at level ``alpha``: the noncentral t's tail beyond the critical value."""
    if seeds < 2:
        return 0.0
    if sd <= 0:
        return 1.0 if effect != 0 else alpha
    df = 2 * seeds - 2
    ncp = effect / (sd * math.sqrt(2 / seeds))
    if sides == "two-sided":
        crit = float(stats.t.ppf(1 - alpha / 2, df))
        return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))
    crit = float(stats.t.ppf(1 - alpha, df))
    return float(stats.nct.sf(crit, df, ncp if sides == "greater" else -ncp))


def expected_power(
    effect: float, sd: float, seeds: int, alpha: float, pilot_n: int, sides: Sides = "greater", points: int = 64
) -> float:
    """Power averaged over the true spreads a pilot's sample ``sd`` over ``pilot_n`` seeds leaves possible
    (sigma^2 = df * sd^2 / chi2(df), at ``points`` quantiles). A 3-seed pilot's sd is too small more often
    than not: seeds sized on it as if it were the truth gave 0.64 power where 0.77 was planned (and 0.63 where
    0.80 was, benchmarks/power.py); planned on the average they come true."""
    if pilot_n < 2 or sd <= 0:
        return power_of(effect, sd, seeds, alpha, sides)
    if seeds < 2:
        return 0.0
    df_pilot, df = pilot_n - 1, 2 * seeds - 2
    spreads = sd * np.sqrt(df_pilot / stats.chi2.ppf((np.arange(points) + 0.5) / points, df_pilot))
    ncp = effect / (spreads * math.sqrt(2 / seeds))
    if sides == "two-sided":
        crit = float(stats.t.ppf(1 - alpha / 2, df))
        return float(np.mean(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp)))
    crit = float(stats.t.ppf(1 - alpha, df))
    return float(np.mean(stats.nct.sf(crit, df, ncp if sides == "greater" else -ncp)))


def _power(effect: float, sd: float, seeds: int, alpha: float, sides: Sides, pilot_n: int | None) -> float:
    if pilot_n is None:
        return power_of(effect, sd, seeds, alpha, sides)
    return expected_power(effect, sd, seeds, alpha, pilot_n, sides)


@dataclass(frozen=True)
class SeedPlan:
    """How many seeds a comparison gets and what it can detect with them.

    ``seeds`` per condition; ``power`` the power they give for ``effect``; ``capped`` True when the cap
    bound (``needed`` is then what the power would have taken, None if more than the search's limit);
    ``detectable`` the smallest effect the chosen seeds detect with the wanted power.
    """

    seeds: int
    needed: int | None
    power: float
    capped: bool
    detectable: float
    effect: float
    sd: float
    alpha: float
    wanted_power: float


def detectable_effect(
    sd: float, seeds: int, alpha: float, power: float = 0.8, sides: Sides = "greater", pilot_n: int | None = None
) -> float:
    """The smallest true difference ``seeds`` per condition detect with probability ``power`` (inf below 2, or
    where no effect up to 100 sd reaches it); with ``pilot_n``, the power expected given a pilot's ``sd``."""
    if seeds < 2:
        return math.inf
    if sd <= 0:
        return 0.0
    high = sd * 100
    if _power(high, sd, seeds, alpha, sides, pilot_n) < power:
        return math.inf
    return float(
        optimize.brentq(lambda e: _power(e, sd, seeds, alpha, sides, pilot_n) - power, 0.0, high, xtol=sd * 1e-6)
    )


def seeds_for_power(
    effect: float,
    sd: float,
    *,
    alpha: float,
    power: float = 0.8,
    cap: int = 20,
    minimum: int = 2,
    sides: Sides = "greater",
    search: int = 200,
    pilot_n: int | None = None,
) -> SeedPlan:
    """Seeds per condition for Welch's test to detect ``effect`` (in the direction tested; use its size)
    with probability ``power`` at ``alpha`` given a seed-to-seed spread ``sd``, at least ``minimum`` and
    at most ``cap``. When the cap binds the plan says so and what the capped seeds can detect. With
    ``pilot_n``, ``sd`` is a pilot's estimate over that many seeds and the power is the one expected over
    what the true spread may be (``expected_power``)."""
    effect = abs(effect)
    needed = next(
        (n for n in range(max(2, minimum), search + 1) if _power(effect, sd, n, alpha, sides, pilot_n) >= power),
        None,
    )
    seeds = min(cap, needed) if needed is not None else cap
    seeds = max(seeds, minimum)
    return SeedPlan(
        seeds=seeds,
        needed=needed,
        power=_power(effect, sd, seeds, alpha, sides, pilot_n),
        capped=needed is None or needed > cap,
        detectable=detectable_effect(sd, seeds, alpha, power, sides, pilot_n),
        effect=effect,
        sd=sd,
        alpha=alpha,
        wanted_power=power,
    )


def verdict(
    difference: Difference | None,
    p_value: float | None,
    alpha: float,
    *,
    higher_is_better: bool,
    predicted: float | None = None,
    margin: float | None = None,
    tost_p: float | None = None,
) -> Verdict:
    """What a comparison found. Significant at ``alpha`` (``p_value`` already corrected for its family):
    better or worse by direction. Otherwise equivalent when a margin was set and TOST rejects at ``alpha``;
    inconclusive when the interval spans both zero and the predicted effect (or the margin); else no
    significant difference (the interval excludes the predicted effect: the effect, if any, is smaller)."""
    if difference is None:
        return "inconclusive"
    sign = 1.0 if higher_is_better else -1.0
    if p_value is not None and p_value < alpha:
        return "better" if sign * difference.estimate > 0 else "worse"
    if margin is not None and tost_p is not None and tost_p < alpha:
        return "equivalent"
    target = predicted if predicted is not None else (sign * margin if margin is not None else None)
    if (
        target is not None
        and target != 0
        and difference.low <= min(0.0, target)
        and difference.high >= max(0.0, target)
    ):
        return "inconclusive"
    return "no significant difference"


def convergence(steps: Sequence[float], values: Sequence[float], higher_is_better: bool) -> float | None:
    """The share of a curve's improvement made in its last fifth of training (0: flat at the end, converged;
    near 1: still climbing). None for a curve of fewer than 3 points or with no improvement at all."""
    s, v = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    keep = np.isfinite(s) & np.isfinite(v)
    s, v = s[keep], v[keep]
    if s.size < 3:
        return None
    sign = 1.0 if higher_is_better else -1.0
    gain = sign * (v[-1] - v[0])
    if gain <= 0:
        return None
    cut = s[0] + 0.8 * (s[-1] - s[0])
    before = v[s <= cut][-1] if np.any(s <= cut) else v[0]
    return float(max(0.0, sign * (v[-1] - before)) / gain)
