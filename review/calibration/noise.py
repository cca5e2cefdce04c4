"""Test-retest reliability of a reviewer: how much its rating of one paper moves between reviews.

From K >= 2 ratings of each of n papers (K reviews of the same paper at a temperature above 0, or
the members of an ensemble) a one-way random-effects analysis of variance gives:

* ``within_sd``: the standard deviation of one rating around its paper's mean (the noise);
* ``between_sd``: the standard deviation of the papers' true means (the signal);
* ``icc``: ICC(1), the share of one rating's variance that is signal, and ``icc_mean``, the same for
  the mean of K ratings (Shrout and Fleiss 1979; K averaged over papers for unequal counts).

``fars compare`` uses ``within_sd`` as a floor on the noise of a run's scores when it computes the
smallest effect the runs could detect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel

from review.calibration.metrics import interval


class Reliability(BaseModel):
    """Test-retest figures of a reviewer, with bootstrap 95% intervals over papers."""

    unit: Literal["member", "review"]  # what each of the K ratings is: an ensemble member, or a whole review
    source: str  # how the K ratings were made
    n_papers: int
    k_mean: float
    within_sd: float
    within_sd_interval: tuple[float | None, float | None] = (None, None)
    between_sd: float | None
    icc: float | None  # undefined (None) when every rating is equal
    icc_interval: tuple[float | None, float | None] = (None, None)
    icc_mean: float | None

    def noise_of_score(self, members: int = 1) -> float:
        """The noise (SD) of one paper's score made as the mean of ``members`` ratings of this unit."""
        return self.within_sd / math.sqrt(max(members, 1)) if self.unit == "member" else self.within_sd


def _anova(groups: list[np.ndarray]) -> tuple[float, float, float]:
    """Mean squares between and within papers, and the adjusted group size k0."""
    n = len(groups)
    sizes = np.array([len(g) for g in groups], float)
    total = sizes.sum()
    grand = np.concatenate(groups).mean()
    means = np.array([g.mean() for g in groups])
    ss_between = float((sizes * (means - grand) ** 2).sum())
    ss_within = float(sum(((g - g.mean()) ** 2).sum() for g in groups))
    ms_between = ss_between / (n - 1) if n > 1 else math.nan
    ms_within = ss_within / (total - n) if total > n else math.nan
    k0 = (total - (sizes**2).sum() / total) / (n - 1) if n > 1 else float(sizes.mean())
    return ms_between, ms_within, k0


def _icc(groups: list[np.ndarray]) -> tuple[float, float, float, float]:
    msb, msw, k0 = _anova(groups)
    within = math.sqrt(msw) if math.isfinite(msw) else math.nan
    if not (math.isfinite(msb) and math.isfinite(msw)) or msb + (k0 - 1) * msw <= 0:
        return within, math.nan, math.nan, math.nan
    icc = (msb - msw) / (msb + (k0 - 1) * msw)
    icc_mean = (msb - msw) / msb if msb > 0 else math.nan
    between = math.sqrt(max((msb - msw) / k0, 0.0))
    return within, between, icc, icc_mean


def _opt(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def reliability(
    ratings: Sequence[Sequence[float]],
    *,
    unit: Literal["member", "review"],
    source: str,
    draws: int = 1000,
    seed: int = 0,
) -> Reliability | None:
    """Reliability from each paper's ratings (papers with fewer than 2 are left out); None below 2 papers."""
    groups = [np.asarray(r, float) for r in ratings if len(r) >= 2]
    if len(groups) < 2:
        return None
    within, between, icc, icc_mean = _icc(groups)
    rng = np.random.default_rng(seed)
    icc_draws, within_draws = [], []
    for _ in range(draws):
        picked = [groups[i] for i in rng.integers(0, len(groups), len(groups))]
        w, _, c, _ = _icc(picked)
        icc_draws.append(c)
        within_draws.append(w)
    icc_low, icc_high = interval(icc_draws)
    w_low, w_high = interval(within_draws)
    return Reliability(
        unit=unit,
        source=source,
        n_papers=len(groups),
        k_mean=float(np.mean([len(g) for g in groups])),
        within_sd=float(within),
        within_sd_interval=(_opt(w_low), _opt(w_high)),
        between_sd=_opt(between),
        icc=_opt(icc),
        icc_interval=(_opt(icc_low), _opt(icc_high)),
        icc_mean=_opt(icc_mean),
    )
