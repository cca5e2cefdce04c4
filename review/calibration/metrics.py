"""Agreement between a reviewer's scores and human ratings, with bootstrap intervals.

``metric_suite`` computes, over papers: Spearman and Kendall (tau-b) with the mean human rating,
overall and within accepted and within rejected papers (the data's text-version confound is absent
within a group), pairwise ranking accuracy, decision AUC, balanced accuracy at a threshold, MAE and
mean bias (reviewer minus human). ``bootstrap`` resamples papers for 95% percentile intervals.
``human_baseline`` scores a held-out human against the mean of the others, on the same papers.
``partial_spearman`` is the rank correlation left once a control (text length) is accounted for, and
``versus`` the paired bootstrap of one score's Spearman minus another's (reviewer against baseline).
An undefined value (e.g. a correlation of constant scores) is NaN and reported as such.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

METRICS = (
    "spearman",
    "spearman_accepted",
    "spearman_rejected",
    "kendall",
    "kendall_accepted",
    "kendall_rejected",
    "pairwise_accuracy",
    "decision_auc",
    "balanced_accuracy",
    "mae",
    "bias",
)


def _constant(a: np.ndarray) -> bool:
    return len(a) < 2 or bool(np.all(a == a[0]))


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman rank correlation (ties get mean ranks); NaN when either side is constant."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if len(a) < 3 or _constant(a) or _constant(b):
        return math.nan
    return float(stats.spearmanr(a, b).statistic)


def kendall(x: ArrayLike, y: ArrayLike) -> float:
    """Kendall's tau-b (corrected for ties); NaN when either side is constant."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if len(a) < 3 or _constant(a) or _constant(b):
        return math.nan
    return float(stats.kendalltau(a, b, variant="b").statistic)


def pairwise_accuracy(pred: ArrayLike, target: ArrayLike) -> float:
    """Over pairs the humans rank differently: share ordered alike by ``pred`` (a tie in pred counts 1/2)."""
    p, t = np.asarray(pred, float), np.asarray(target, float)
    dp = np.sign(p[:, None] - p[None, :])
    dt = np.sign(t[:, None] - t[None, :])
    upper = np.triu(np.ones_like(dp, dtype=bool), k=1) & (dt != 0)
    if not upper.any():
        return math.nan
    agree = np.where(dp[upper] == 0, 0.5, (dp[upper] == dt[upper]).astype(float))
    return float(agree.mean())


def auc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def balanced_accuracy(scores: ArrayLike, labels: ArrayLike, threshold: float) -> float:
    """Mean of the accept and reject recalls when ``score >= threshold`` predicts accept."""
    s, y = np.asarray(scores, float), np.asarray(labels, bool)
    if y.all() or (~y).all():
        return math.nan
    predicted = s >= threshold
    return float((predicted[y].mean() + (~predicted[~y]).mean()) / 2)


def metric_suite(pred: ArrayLike, target: ArrayLike, accepted: ArrayLike, threshold: float) -> dict[str, float]:
    """Every metric of ``METRICS`` for one set of papers."""
    p, t, acc = np.asarray(pred, float), np.asarray(target, float), np.asarray(accepted, bool)
    return {
        "spearman": spearman(p, t),
        "spearman_accepted": spearman(p[acc], t[acc]),
        "spearman_rejected": spearman(p[~acc], t[~acc]),
        "kendall": kendall(p, t),
        "kendall_accepted": kendall(p[acc], t[acc]),
        "kendall_rejected": kendall(p[~acc], t[~acc]),
        "pairwise_accuracy": pairwise_accuracy(p, t),
        "decision_auc": auc(p, acc),
        "balanced_accuracy": balanced_accuracy(p, acc, threshold),
        "mae": float(np.abs(p - t).mean()) if len(p) else math.nan,
        "bias": float((p - t).mean()) if len(p) else math.nan,
    }


def interval(samples: Sequence[float]) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the defined (non-NaN) samples; NaN when too few."""
    a = np.asarray(samples, float)
    a = a[~np.isnan(a)]
    if len(a) < 10:
        return (math.nan, math.nan)
    low, high = np.percentile(a, [2.5, 97.5])
    return (float(low), float(high))


def bootstrap(
    pred: ArrayLike,
    target: ArrayLike,
    accepted: ArrayLike,
    threshold: float,
    *,
    draws: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Each metric's value and bootstrap 95% interval (papers resampled with replacement)."""
    p, t, acc = np.asarray(pred, float), np.asarray(target, float), np.asarray(accepted, bool)
    point = metric_suite(p, t, acc, threshold)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(draws):
        idx = rng.integers(0, len(p), len(p))
        for name, value in metric_suite(p[idx], t[idx], acc[idx], threshold).items():
            samples[name].append(value)
    out = {}
    for name in METRICS:
        low, high = interval(samples[name])
        out[name] = {"value": point[name], "low": low, "high": high}
    return out


def mean_excluding(ratings: Sequence[float], excluded: int | None) -> float:
    """Mean of a paper's human ratings, leaving out the one at index ``excluded`` (if any)."""
    kept = [r for i, r in enumerate(ratings) if i != excluded]
    return float(np.mean(kept))


def human_baseline(
    ratings: Sequence[Sequence[float]],
    accepted: ArrayLike,
    threshold: float,
    *,
    draws: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """One human held out at random per paper against the mean of the others, over ``draws`` draws.

    ``value`` is the mean over draws on all papers; the interval comes from draws that also resample
    papers, so it covers both the choice of held-out human and the sample of papers, like the
    reviewer's bootstrap interval. Papers with fewer than two ratings are left out.
    """
    usable = [i for i, r in enumerate(ratings) if len(r) >= 2]
    rs = [list(map(float, ratings[i])) for i in usable]
    acc = np.asarray(accepted, dtype=bool)[usable]
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {m: [] for m in METRICS}
    samples: dict[str, list[float]] = {m: [] for m in METRICS}
    for _ in range(draws):
        held = [int(rng.integers(len(r))) for r in rs]
        pred = np.asarray([r[h] for r, h in zip(rs, held, strict=True)])
        target = np.asarray([mean_excluding(r, h) for r, h in zip(rs, held, strict=True)])
        for name, value in metric_suite(pred, target, acc, threshold).items():
            values[name].append(value)
        idx = rng.integers(0, len(rs), len(rs))
        for name, value in metric_suite(pred[idx], target[idx], acc[idx], threshold).items():
            samples[name].append(value)
    out = {}
    for name in METRICS:
        defined = [v for v in values[name] if not math.isnan(v)]
        low, high = interval(samples[name])
        out[name] = {"value": float(np.mean(defined)) if defined else math.nan, "low": low, "high": high}
    return out


STRATA = ("all", "accepted", "rejected")


def partial_spearman(x: ArrayLike, y: ArrayLike, z: ArrayLike) -> float:
    """Spearman correlation of ``x`` and ``y`` controlling for ``z``: the partial correlation of their ranks,
    (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)); NaN when a side is constant or ``z`` explains it all."""
    a, b, c = np.asarray(x, float), np.asarray(y, float), np.asarray(z, float)
    if len(a) < 4 or _constant(a) or _constant(b) or _constant(c):
        return math.nan
    r_xy, r_xz, r_yz = spearman(a, b), spearman(a, c), spearman(b, c)
    den = (1 - r_xz**2) * (1 - r_yz**2)
    if den <= 1e-12:
        return math.nan
    return float((r_xy - r_xz * r_yz) / math.sqrt(den))


def _strata(accepted: np.ndarray) -> dict[str, np.ndarray]:
    return {"all": np.ones(len(accepted), bool), "accepted": accepted, "rejected": ~accepted}


def bootstrap_partial(
    pred: ArrayLike, target: ArrayLike, control: ArrayLike, accepted: ArrayLike, *, draws: int = 1000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Partial Spearman of ``pred`` with ``target`` controlling for ``control``, per stratum, with 95% intervals."""
    p, t, c, acc = (np.asarray(v, float) for v in (pred, target, control, accepted))
    acc = acc.astype(bool)
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    samples: dict[str, list[float]] = {s: [] for s in STRATA}
    for _ in range(draws):
        idx = rng.integers(0, len(p), len(p))
        for name, mask in _strata(acc[idx]).items():
            samples[name].append(partial_spearman(p[idx][mask], t[idx][mask], c[idx][mask]))
    for name, mask in _strata(acc).items():
        low, high = interval(samples[name])
        out[name] = {"value": partial_spearman(p[mask], t[mask], c[mask]), "low": low, "high": high}
    return out


def versus(
    pred: ArrayLike, other: ArrayLike, target: ArrayLike, accepted: ArrayLike, *, draws: int = 1000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Spearman of ``pred`` minus Spearman of ``other`` (both with ``target``), per stratum, with a paired
    bootstrap 95% interval: the same resampled papers score both, so their shared noise cancels."""
    p, o, t = (np.asarray(v, float) for v in (pred, other, target))
    acc = np.asarray(accepted, bool)
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {s: [] for s in STRATA}
    for _ in range(draws):
        idx = rng.integers(0, len(p), len(p))
        for name, mask in _strata(acc[idx]).items():
            pi, oi, ti = p[idx][mask], o[idx][mask], t[idx][mask]
            samples[name].append(spearman(pi, ti) - spearman(oi, ti))
    out: dict[str, dict[str, float]] = {}
    for name, mask in _strata(acc).items():
        low, high = interval(samples[name])
        out[name] = {"value": spearman(p[mask], t[mask]) - spearman(o[mask], t[mask]), "low": low, "high": high}
    return out
