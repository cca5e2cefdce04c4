"""One way to build the reviewer, shared by ``fars review``, ``fars calibrate`` and the Review stage.

The reviewer (``review/``) is importable alone; this is where FARS hands it its parts: the model
client, the run's one literature backend and the calibration model the config names.
"""

from __future__ import annotations

from typing import Any

from fars.llm.client import model_context_tokens
from review.calibration.baselines import BaselineReviewer, load_baseline
from review.calibration.fit import CalibrationError, load_calibration
from review.reviewer import AgenticReviewer
from review.settings import ReviewerConfig


class ReviewerConfigError(ValueError):
    """The reviewer settings cannot give a reviewer here (e.g. the oracle outside calibration)."""


def reviewer_problems(reviewer: ReviewerConfig, *, allow_oracle: bool = False) -> list[str]:
    """Every reason these reviewer settings cannot build a reviewer (empty when they can)."""
    if reviewer.kind == "oracle":
        if allow_oracle:
            return []
        return [
            "reviewer=oracle returns human ratings and works only in `fars calibrate`; use reviewer=iclr2025 "
            "(or iclr2022) here"
        ]
    if reviewer.kind in ("length", "bow"):
        try:
            load_baseline(reviewer.kind, reviewer.baseline)
        except CalibrationError as exc:
            return [f"reviewer.baseline: {exc}"]
        return []
    try:
        load_calibration(reviewer.calibration, reviewer.form)
    except CalibrationError as exc:
        return [f"reviewer.calibration: {exc}"]
    return []


def build_reviewer(
    client: Any, reviewer: ReviewerConfig, literature: Any | None, *, top_k: int, model: str
) -> AgenticReviewer | BaselineReviewer:
    """The reviewer of a config: the agentic one (calibration loaded, the model's context window known,
    the given literature backend used), or a fitted baseline (``reviewer=length|bow``, no model called).

    ``literature`` is the caller's one backend (the run's, in a pipeline); it is only searched when
    ``reviewer.related_works > 0``. Raises ``ReviewerConfigError`` for settings that cannot review.
    Both kinds offer ``async review(paper, paper_id=None) -> PaperReview``.
    """
    problems = reviewer_problems(reviewer)
    if problems:
        raise ReviewerConfigError("; ".join(problems))
    if reviewer.kind in ("length", "bow"):
        return BaselineReviewer(load_baseline(reviewer.kind, reviewer.baseline), reviewer.form)
    calibration = load_calibration(reviewer.calibration, reviewer.form)
    backend = literature if reviewer.related_works > 0 else None
    return AgenticReviewer(
        client,
        reviewer,
        literature=backend,
        calibration=calibration,
        top_k=top_k,
        name=f"model:{model}",
        context_tokens=lambda: model_context_tokens(model),
    )
