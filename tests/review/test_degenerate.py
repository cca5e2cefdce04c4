"""Echoed schema text, placeholders and loops in structured replies, as the embedded model writes them."""

from __future__ import annotations

from typing import Any

from review.checklist import ITEMS
from review.degenerate import echo_problems
from review.forms import ICLR2025Review
from review.related import RelatedWorkQueries

FORM: dict[str, Any] = {
    "questions": [],
    "soundness": 2,
    "presentation": 2,
    "contribution": 2,
    "rating": 3,
    "confidence": 3,
    "checklist": {item: {"answer": "yes", "evidence": f"Section {i} with Table {i}"} for i, item in enumerate(ITEMS)},
}


def test_the_embedded_models_echoes_placeholders_and_loops_are_named() -> None:
    """Each value below was written by SmolLM2-135M in a review of a dev paper (shortened)."""
    reply = ICLR2025Review(
        summary="This paper presents a new approach. The paper is a part of the ICLR conference. " * 4,
        strengths=["strengths", "strengths.1", "1.1.1.1.1.1.1.1.1.1.1.1"],
        weaknesses=["weaknesses_1"],
        **FORM,
    )
    problems = echo_problems(reply)
    assert [p.split(":")[0] for p in problems] == [
        "summary",
        "strengths[0]",
        "strengths[1]",
        "strengths[2]",
        "weaknesses[0]",
    ]
    queries = RelatedWorkQueries(
        broad="the research field of the paper, in a few words", focused="grokking in small MLPs",
        specific="<specific method>",
    )  # fmt: skip
    assert [p.split(":")[0] for p in echo_problems(queries)] == ["broad", "specific"]


def test_real_content_passes() -> None:
    reply = ICLR2025Review(
        summary="The paper shows that weight decay speeds up grokking of modular addition in small MLPs.",
        strengths=["A controlled study of one factor.", "Results over five seeds."],
        weaknesses=["Only one task; no transformer.", "Soundness of the scaling claim is unclear."],
        **FORM,
    )
    assert echo_problems(reply) == []
    # a paper's indexed notation, quoted by a capable reviewer, is content: 'rho_0' was once asked for again
    quoting = reply.model_copy(update={"weaknesses": ["Prop. 2 needs rho_0 > 0, and x_1, theta_2 are never defined."]})
    assert echo_problems(quoting) == []
    assert echo_problems(reply.model_copy(update={"weaknesses": ["weakness_2"]}))  # a slot's name and number is not
    # a review may name a placeholder it found in the paper (the second relay run's was refused for it)
    found = "The Introduction leaves a placeholder '[unverified]' tag on a key factual claim."
    assert echo_problems(reply.model_copy(update={"weaknesses": [found]})) == []
    assert echo_problems(reply.model_copy(update={"weaknesses": ["TODO: add weaknesses of the method here"]}))
    assert echo_problems(reply.model_copy(update={"weaknesses": ["placeholder text"]}))
    words = ("its research field",)
    assert echo_problems(RelatedWorkQueries(broad="its research field", focused="a b c", specific="x y z"), words)
