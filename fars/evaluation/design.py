"""Statistics of an experiment's design: intervals at small n, equivalence, power, seeds and verdicts.

A study compares conditions over a few seeds each. At that size a bootstrap of two points says nothing
(its interval has zero width when the seeds agree), so intervals here use Student's t. What a study can
detect is decided before it runs: from a pilot's seed-to-seed spread and the effect the hypothesis
predicts (or the smallest effect of interest), ``seeds_for_power`` gives the seeds per condition that
reach the wanted power at the corrected level, and ``detectable_effect`` the effect a capped number of
seeds can detect. After the runs, ``verdict`` reads a comparison as better, worse, equivalent within a
margin (two one-sided tests, ``tost``), or inconclusive: an interval that spans both the predicted effect
and zero has not answered the question.

The pilot's curve is read against the same noise (``curve_trend``: converged, still improving, or unstable),
and a pilot whose seeds agreed exactly gets a spread no smaller than the metric's ``resolution``: a spread of
zero would make every design "2 seeds" with intervals of no width.

Differences are candidate minus baseline in the metric's own units; ``higher_is_better`` turns them
into improvements where a direction matters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import optimize, stats

# "equivalence": TOST within a margin (``effect`` is the margin, the true difference taken as zero)
Sides = Literal["two-sided", "greater", "less", "equivalence"]
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
    if sides == "equivalence":
        return _tost_power(np.array([ncp]), df, alpha)
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
    if sides == "equivalence":
        return _tost_power(ncp, df, alpha)
    if sides == "two-sided":
        crit = float(stats.t.ppf(1 - alpha / 2, df))
        return float(np.mean(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp)))
    crit = float(stats.t.ppf(1 - alpha, df))
    return float(np.mean(stats.nct.sf(crit, df, ncp if sides == "greater" else -ncp)))


def _tost_power(margins: np.ndarray, df: int, alpha: float) -> float:
    """The power of TOST to show equivalence when the true difference is zero, for margins in standard errors
    (averaged over them): both one-sided tests pass when the estimate lies within margin - t_crit standard
    errors of zero, so power = 2 F_t(margin - t_crit) - 1, or 0 where the margin is under t_crit."""
    crit = float(stats.t.ppf(1 - alpha, df))
    return float(np.mean(np.clip(2 * stats.t.cdf(margins - crit, df) - 1, 0.0, 1.0)))


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
    what the true spread may be (``expected_power``). An ``sd`` of 0 is degenerate (2 seeds, every effect
    detectable): a pilot whose seeds agreed passes its floor instead (``resolution``)."""
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


def _finite_curve(steps: Sequence[float], values: Sequence[float]) -> tuple[Any, Any]:
    """A curve's points where both step and value are finite."""
    s, v = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    keep = np.isfinite(s) & np.isfinite(v)
    return s[keep], v[keep]


def convergence(steps: Sequence[float], values: Sequence[float], higher_is_better: bool) -> float | None:
    """The share of a curve's improvement made in its last fifth of training (0: flat at the end; near 1: still
    climbing; a fall at the end counts as 0). None for a curve of fewer than 3 points or with no improvement at
    all. Whether the curve converged takes the noise as well (``curve_trend``)."""
    s, v = _finite_curve(steps, values)
    if s.size < 3:
        return None
    sign = 1.0 if higher_is_better else -1.0
    gain = sign * (v[-1] - v[0])
    if gain <= 0:
        return None
    cut = s[0] + 0.8 * (s[-1] - s[0])
    before = v[s <= cut][-1] if np.any(s <= cut) else v[0]
    return float(max(0.0, sign * (v[-1] - before)) / gain)


TrendStatus = Literal["converged", "still improving", "unstable"]


@dataclass(frozen=True)
class Trend:
    """How a learning curve ends, judged against the noise the study's comparisons must resolve.

    ``status``: "unstable" where the final value is worse than the curve's best by more than ``noise`` (it
    peaked and fell back, or diverged); else "still improving" where its last fifth of training improved it by
    more than the converged share of its whole improvement, or by more than ``noise``; else "converged". None
    where the curve neither improved nor fell back beyond the noise. ``share`` is ``convergence``;
    ``late_change`` the last value minus the value at the start of the last fifth (metric units, signed as the
    metric); ``best_step``/``best`` the curve's best point (the first, on ties) and ``final_step``/``final`` its
    last.
    """

    status: TrendStatus | None
    share: float | None
    late_change: float
    best_step: float
    best: float
    final_step: float
    final: float
    noise: float
    higher_is_better: bool

    @property
    def late_gain(self) -> float:
        """The last fifth's improvement (negative: it made the curve worse)."""
        return self.late_change if self.higher_is_better else -self.late_change

    @property
    def drop(self) -> float:
        """How far the final value is worse than the best (0 where it ends at its best)."""
        return abs(self.final - self.best)


def _beyond(change: float, noise: float, scale: float) -> bool:
    """Whether ``change`` exceeds ``noise`` by more than float round-off (a change of exactly one resolution
    step, computed as a difference of means, must not pass a noise floor of that step)."""
    return change > noise + 1e-9 * max(noise, abs(scale))


# a curve whose last fifth still moved it by half the seed sd is still improving: a fifth more training would
# move it about as much again, a difference the study's few-seed comparisons (which resolve about one sd) are
# looking for. A capable model read chargpt's 0.113 bpc in the last fifth of 200 steps, just under the sd
# 0.115, labelled "converged", as "still dropping 0.003 bpc a step: not convergence".
LATE_NOISE = 0.5


def curve_trend(
    steps: Sequence[float],
    values: Sequence[float],
    higher_is_better: bool,
    noise: float,
    converged_share: float = 0.1,
    quantum: float | None = None,
) -> Trend | None:
    """Whether a curve converged, is still improving, or is unstable, given ``noise``: the seed-to-seed sd
    (the smallest difference the study's comparisons must resolve). The share of improvement alone misjudges
    both ends: a curve with a huge early drop (a character model from 6.6 bits) makes a small share of its
    gain at the end even while the end still moves by more than the noise, and a curve that peaked and
    collapsed has its last-fifth gain clipped at zero. ``quantum``: the step the metric of one run moves in,
    where the caller knows it better than this curve's values show (a mean over seeds of an accuracy on 360
    images moves in thirds of an image, and its gaps need not be whole multiples of the smallest); None: read
    from the curve. None for a curve of fewer than 3 finite points."""
    s, v = _finite_curve(steps, values)
    if s.size < 3:
        return None
    sign = 1.0 if higher_is_better else -1.0
    share = convergence(s, v, higher_is_better)
    cut = s[0] + 0.8 * (s[-1] - s[0])
    before = v[s <= cut][-1] if np.any(s <= cut) else v[0]
    late_change = float(v[-1] - before)
    i = int(np.argmax(sign * v))
    best, final = float(v[i]), float(v[-1])
    status: TrendStatus | None
    if _beyond(sign * (best - final), noise, best):
        status = "unstable"
    elif share is None:
        status = None
    # (never below one step of a metric that moves in steps: a last fifth that gained one image of 360 is flat)
    elif share > converged_share or _beyond(
        sign * late_change, max(LATE_NOISE * noise, metric_step(v) if quantum is None else quantum), final
    ):
        status = "still improving"
    else:
        status = "converged"
    return Trend(status, share, late_change, float(s[i]), best, float(s[-1]), final, noise, higher_is_better)


def metric_step(values: Sequence[float] | np.ndarray) -> float:
    """The step a metric moves in where its values show one (every gap between them a whole multiple of the
    smallest: an accuracy on 360 images moves by 1/360), else 0 (a continuous metric such as bits per char).
    Whole to a thousandth of a step: a training script's float32 accuracies are k/360 only to about 1e-7, so
    their gaps are whole multiples of the smallest only to a few parts in 1e5 (1e-6 read every real accuracy
    curve as continuous)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    step = resolution(x)
    if not step:
        return 0.0
    gaps = np.diff(np.unique(x)) / step
    return step if bool(np.all(np.abs(gaps - np.round(gaps)) < 1e-3)) else 0.0


def resolution(values: Sequence[float] | np.ndarray) -> float | None:
    """The metric's resolution as its values show it: the smallest gap between two distinct values (gaps of
    float round-off ignored), None where fewer than two distinct values were seen. A metric counted over a
    finite set moves in steps (an accuracy on 360 images by 1/360); the smallest gap seen is a multiple of that
    step, usually the step itself once a few curves are pooled. Where seeds agree exactly their spread is below
    the resolution, not zero: ``resolution`` is the smallest difference two seeds could have shown."""
    x = np.asarray(values, dtype=float)
    x = np.unique(x[np.isfinite(x)])
    if x.size < 2:
        return None
    gaps = np.diff(x)
    gaps = gaps[gaps > 1e-9 * max(1.0, float(np.max(np.abs(x))))]
    return float(gaps.min()) if gaps.size else None


def floor_cause(values: Sequence[float]) -> str:
    """Why a pilot's spread over ``values`` (one per seed) was floored at the metric's resolution: its seeds agreed
    exactly, or spread by less than one step of the metric (the fifth relay run's papers said "the pilot's seeds
    agreed exactly" of 0.975, 0.978 and 0.978)."""
    if len(set(values)) > 1:
        return f"the pilot's {len(values)} seeds spread by less than one step of it (sd {float(np.std(values, ddof=1)):.2g})"
    return f"the pilot's {len(values)} seeds gave identical values"
