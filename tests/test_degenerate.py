"""Degenerate model output (echoes, placeholders, loops, nothing about the study) is recognised; real prose is not."""

from __future__ import annotations

import pytest

from fars.degenerate import degenerate_reasons

SCHEMA = ["a testable claim about the effect of a setting", "short title", "why it might hold"]
STUDY = ["modular addition", "val accuracy", "optimizer", "sgd", "cosine schedule"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Hypothesis: A testable hypothesis.", "field name"),
        ("Theoretical Framework: A Testable Hypothesis.", "content words"),
        ("The Proposal: A New Approach to the Proposal", "content words"),
        ("strengths_1", "placeholder"),
        ("<title>", "placeholder"),
        ("a testable claim about the effect of a setting", "echoes"),
        ("sgd cosine sgd cosine sgd cosine sgd cosine sgd cosine sgd cosine", "loops"),
        ("Deep nets learn protein folding from large genomic corpora quickly.", "tied to the study"),
    ],
)
def test_degenerate_text_is_named(text: str, reason: str) -> None:
    found = degenerate_reasons(text, echoes=SCHEMA, field_names=["title", "statement", "rationale"], expected=STUDY)
    assert any(reason in r for r in found), found


def test_a_prompt_read_back_is_an_echo() -> None:
    prompt = "Propose one hypothesis about the method: SGD with momentum 0.9 and weight decay, instead of adamw"
    assert "repeats the prompt" in degenerate_reasons(prompt, prompt=prompt, expected=STUDY)


def test_real_prose_about_the_study_stands() -> None:
    text = "Replacing AdamW with SGD and a cosine schedule should raise validation accuracy on modular addition."
    assert degenerate_reasons(text, echoes=SCHEMA, field_names=["title"], expected=STUDY) == []
