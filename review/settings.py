"""The reviewer's settings (the ``reviewer`` config group) and its personas.

Defined here, not in ``fars.config``, so the reviewer stays importable alone; ``fars.config``
re-exports ``ReviewerConfig`` as the schema of the ``reviewer`` group.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.dataclasses import dataclass

PERSONAS: dict[str, str] = {
    "balanced": "You weigh strengths and weaknesses evenly and judge the paper as a whole.",
    "critical": (
        "You are a demanding reviewer: you look for flaws in the evidence, missing baselines, weak statistics "
        "and claims the results do not support, and you rate accordingly."
    ),
    "methods": "You focus on the technical correctness and soundness of the method and its assumptions.",
    "empirical": "You focus on the experiments: baselines, number of seeds, significance, ablations, reproducibility.",
    "novelty": "You focus on novelty and significance: what is new compared with the related work.",
}


@dataclass(config=ConfigDict(extra="forbid"))
class ReviewerConfig:
    """Which form, how a paper is read, the ensemble, the meta-review and the calibration model."""

    # model: the agentic reviewer; oracle: returns a human's rating (harness check; calibrate only);
    # length, bow: trivial baselines fitted on human ratings (text length; a bag-of-words ridge)
    kind: Literal["model", "oracle", "length", "bow"] = "model"
    # the judge: the model that reviews, apart from the writer's (llm.model); None: llm.model. Hold it fixed
    # across a sweep over writer models, so every paper is scored by one judge
    model: str | None = None
    # ensemble members by model, in turn (member i: models[i % len]); personas stay. Empty: every member is ``model``
    models: list[str] = Field(default_factory=list)
    context_tokens: int | None = Field(
        default=None, ge=1024
    )  # the judge's context window, for a model litellm does not know
    form: Literal["iclr2025", "iclr2022"] = "iclr2025"
    # fixed: the limits below; context: limits derived from the model's context window (these are floors);
    # auto: context for a model with at least 32k tokens of context, fixed otherwise (the embedded model)
    limits: Literal["auto", "fixed", "context"] = "auto"
    max_paper_chars: int = Field(default=6000, ge=500)  # characters of paper text one review reads at most
    reading: Literal["excerpts", "summaries"] = "excerpts"  # how a longer paper is read (see review.reading)
    chunk_chars: int = Field(default=6000, ge=500)  # summaries mode: characters per part summarised
    max_parts: int = Field(default=6, ge=1, le=64)  # summaries mode: parts read at most
    ensemble: int = Field(default=2, ge=1, le=16)  # independent reviews per paper
    personas: list[str] = Field(default_factory=lambda: ["balanced", "critical"])
    meta_review: bool = True  # an area chair's meta-review over the ensemble
    related_works: int = Field(default=5, ge=0, le=50)  # nearest works read (0: no literature search)
    max_tokens: int = Field(default=1300, ge=64)  # per review reply (the form with its checklist)
    max_points: int = Field(default=4, ge=1, le=20)  # strengths, weaknesses, questions per review at most
    point_chars: int = Field(default=200, ge=50)  # characters per point at most
    judge_relevance: bool = True  # the model judges each related-work candidate's relevance before reviewing
    fulltext_works: int = Field(default=2, ge=0, le=20)  # nearest works read in fuller text when the backend has it
    echo_retries: int = Field(default=1, ge=0, le=5)  # asks again when a reply echoes the schema or placeholders
    injection: Literal["neutralise", "off"] = "neutralise"  # text aimed at the reviewer: removed and flagged
    calibration: str | None = "default"  # a shipped calibration name, a JSON path, or null for none
    baseline: str = "default"  # length/bow kinds: the fitted baseline model (shipped name or JSON path)

    @model_validator(mode="after")
    def _known_personas(self) -> ReviewerConfig:
        unknown = [p for p in self.personas if p not in PERSONAS]
        if unknown or not self.personas:
            raise ValueError(f"unknown or no persona(s) {unknown or self.personas}; choose from {sorted(PERSONAS)}")
        return self
