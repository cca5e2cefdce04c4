"""Degenerate model output (echoes, placeholders, loops, nothing about the study) is recognised; real prose is not."""

from __future__ import annotations

import pytest

from fars.paper.degenerate import degenerate_reasons

SCHEMA = ["a testable claim about the effect of a setting", "short title", "why it might hold"]
STUDY = ["modular addition", "val accuracy", "optimizer", "sgd", "cosine schedule"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Hypothesis: A testable hypothesis.", "field name"),
        ("Theoretical Framework: A Testable Hypothesis.", "content words"),
        ("The Proposal: A New Approach to the Proposal", "content words"),
        ("The Proposal: A New Approach to Optimizer Schedules for Modular Addition", "boilerplate"),  # a cartpole title
        ("The Proposal for a New Optimizer on Modular Addition", "boilerplate"),  # as a chargpt paper was titled
        ("strengths_1", "placeholder"),
        ("<title>", "placeholder"),
        ("a testable claim about the effect of a setting", "echoes"),
        ("sgd cosine sgd cosine sgd cosine sgd cosine sgd cosine sgd cosine", "loops"),
        ("Deep nets learn protein folding from large genomic corpora quickly.", "tied to the study"),
        # as the embedded model wrote them into a digits paper: a phrase going round, a sentence said twice
        (
            "The optimal learning rate for the Adam optimizer is 2.5, which is the maximum allowed by the maximum "
            "allowed gradient descent algorithm. The maximum allowed gradient descent is 2.5, which is the maximum "
            "allowed gradient descent allowed by the Adam optimizer. .",
            "loops",
        ),
        (
            "The optimal learning rate for the SGD optimizer is 2.5 [unverified]. The optimal learning rate for "
            "the SGD optimizer is 2.5 [unverified]",
            "repeats the same sentence",
        ),
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


def test_real_titles_are_not_boilerplate() -> None:
    import json
    from pathlib import Path

    data = Path(__file__).resolve().parents[3] / "shared" / "data" / "iclr2022" / "dev.jsonl"
    if not data.is_file():
        pytest.skip(f"no dev data at {data}")
    titles = [json.loads(line)["title"] for line in data.read_text(encoding="utf-8").split("\n") if line.strip()]
    assert len(titles) > 400
    assert [t for t in titles if any("boilerplate" in r for r in degenerate_reasons(t))] == []


def test_real_papers_paragraphs_are_not_called_loops() -> None:
    """Human prose repeats its subject ("the magnitude vector of images") without going round in a loop."""
    import json
    from pathlib import Path

    data = Path(__file__).resolve().parents[3] / "shared" / "data" / "iclr2022" / "dev.jsonl"
    if not data.is_file():
        pytest.skip(f"no dev data at {data}")
    paragraphs = []
    for line in [line for line in data.read_text(encoding="utf-8").split("\n") if line.strip()][:60]:
        text = json.loads(line).get("text") or ""
        paragraphs += [p for p in text.split("\n\n") if 40 < len(p.split()) < 300 and not set("[]_*|") & set(p)][:40]
    assert len(paragraphs) > 500
    flagged = [p for p in paragraphs if any("loops" in r or "same sentence" in r for r in degenerate_reasons(p))]
    assert len(flagged) <= 0.01 * len(paragraphs), flagged[:3]


def test_a_text_cut_off_mid_word_is_degenerate() -> None:
    """An embedded run's title ended "A Comparative Study on Recurrent Neural Networks with Recurrent Neural-"."""
    from fars.paper.degenerate import degenerate_reasons

    cut = "The Impact of ReLU on Recurrent Neural Networks: A Comparative Study with Recurrent Neural-"
    assert "cut off mid-word" in degenerate_reasons(cut, expected=["ReLU"])
    assert "cut off mid-word" not in degenerate_reasons("ReLU and RMSNorm in a character-level GPT", expected=["ReLU"])
