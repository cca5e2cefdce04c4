"""One way to build the reviewer, shared by ``fars review``, ``fars calibrate``, ``fars probe`` and the Review stage.

The reviewer (``review/``) is importable alone; this is where FARS hands it its parts: the model
client, a literature backend (the run's one backend in a pipeline, one made from its config for a
command) and the calibration model the config names.
"""

from __future__ import annotations

import functools
import logging
import weakref
from dataclasses import replace
from typing import Any

from fars.config import LiteratureConfig
from fars.literature import LiteratureBackend, make_backend
from fars.llm.client import LLMClient, model_context_tokens
from review.calibration.baselines import BaselineReviewer, load_baseline
from review.calibration.fit import CalibrationError, load_calibration
from review.reviewer import AgenticReviewer
from review.settings import ReviewerConfig

log = logging.getLogger(__name__)
_FREE = ("local/", "scripted/")  # in-process models: their windows are the harness's own settings


def judge_model(reviewer: ReviewerConfig, writer_model: str) -> str:
    """The model that reviews: ``reviewer.model``, else the writer's ``llm.model``."""
    return reviewer.model or writer_model


def judge_client(client: Any, model: str) -> Any:
    """A client that asks ``model``: ``client`` itself when it already does, else one beside it.

    The new client shares the ledger and the budget (every call is recorded and charged once) and has no
    fallbacks (a judge that silently became another model would be another judge). It is released when
    ``client`` is, or at exit.
    """
    if not isinstance(client, LLMClient) or client.cfg.model == model:
        return client
    judge = LLMClient(replace(client.cfg, model=model, fallbacks=[]), client.ledger, client.budget)
    weakref.finalize(client, judge.close)
    return judge


def judge_context(reviewer: ReviewerConfig, model: str) -> int | None:
    """The judge's context window: ``reviewer.context_tokens``, else litellm's figure; a warning when neither."""
    if reviewer.context_tokens is not None:
        return reviewer.context_tokens
    tokens = model_context_tokens(model)
    if tokens is None and not model.startswith(_FREE) and reviewer.limits != "fixed":
        log.warning(
            "the context window of %s is not known, so reviews read at most reviewer.max_paper_chars=%d characters "
            "of a paper; set reviewer.context_tokens=N (its window in tokens) to read whole papers",
            model,
            reviewer.max_paper_chars,
        )
    return tokens


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
        load_calibration(reviewer.calibration, reviewer.form, reviewer.model)
    except CalibrationError as exc:
        return [f"reviewer.calibration: {exc}"]
    return []


def build_reviewer(
    client: Any,
    reviewer: ReviewerConfig,
    literature: LiteratureBackend | LiteratureConfig | None,
    *,
    top_k: int,
    model: str,
) -> AgenticReviewer | BaselineReviewer:
    """The reviewer of a config: the agentic one (calibration loaded, the model's context window known,
    the literature searched), or a fitted baseline (``reviewer=length|bow``, no model called).

    ``literature`` is the backend to search (the run's one backend, in a pipeline) or the config to make
    one from (a command's), made and searched only when ``reviewer.related_works > 0``. Raises
    ``ReviewerConfigError`` for settings that cannot review (``reviewer_problems`` names them up front).
    Both kinds offer ``async review(paper, paper_id=None) -> PaperReview``. ``model`` is the writer's; the
    judge is ``reviewer.model`` when set (``judge_model``), asked through a client of its own.
    """
    problems = reviewer_problems(reviewer)
    if problems:
        raise ReviewerConfigError("; ".join(problems))
    if reviewer.kind in ("length", "bow"):
        return BaselineReviewer(load_baseline(reviewer.kind, reviewer.baseline), reviewer.form)
    judge = judge_model(reviewer, model)
    calibration = load_calibration(reviewer.calibration, reviewer.form, judge)
    backend = None
    if reviewer.related_works > 0:
        backend = make_backend(literature) if isinstance(literature, LiteratureConfig) else literature
    name = f"model:{judge}" if not reviewer.models else "model:" + "+".join(dict.fromkeys(reviewer.models))
    return AgenticReviewer(
        judge_client(client, judge),
        reviewer,
        literature=backend,
        calibration=calibration,
        top_k=top_k,
        name=name,
        context_tokens=functools.cache(lambda: judge_context(reviewer, judge)),  # warned once, not per paper
        member_clients={m: judge_client(client, m) for m in dict.fromkeys(reviewer.models)},
    )
