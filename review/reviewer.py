"""Review a paper on a form with one model call through the factory's LLM client.

The paper is cut to ``max_chars`` when longer; the result says how much was read, so a cut is never
silent. (Reading in parts, literature search and ensembles come with the agentic reviewer.)
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel

from review.forms import FORMS, decision_for

SYSTEM = (
    "You are an expert reviewer for the ICLR machine learning conference. Read the paper and fill in "
    "the review form honestly: judge the soundness of the evidence, the clarity and the contribution."
)


class StructuredModel(Protocol):
    """What the reviewer needs from a model client."""

    async def structured(self, messages: list[dict[str, str]], schema: Any, *, max_tokens: int | None = None) -> Any:
        """Return an instance of ``schema``."""
        ...


class ReviewResult(BaseModel):
    """A filled-in form plus what the reviewer read."""

    form: str
    review: dict[str, Any]
    rating: float
    decision: str
    chars_read: int
    chars_total: int
    truncated: bool


async def review_paper(
    client: StructuredModel, paper: str, *, form: str = "iclr2025", max_chars: int = 6000
) -> ReviewResult:
    """Review ``paper`` (Markdown or plain text) on ``form``."""
    if form not in FORMS:
        raise KeyError(f"unknown review form {form!r}; known: {sorted(FORMS)}")
    schema = FORMS[form]
    text = paper[:max_chars]
    note = (
        ""
        if len(text) == len(paper)
        else f"\n\n[The paper continues; only the first {max_chars} characters are shown.]"
    )
    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Paper:\n\n{text}{note}\n\nWrite your review."},
    ]
    filled = await client.structured(messages, schema, max_tokens=1100)
    data = filled.model_dump()
    return ReviewResult(
        form=form,
        review=data,
        rating=float(data["rating"]),
        decision=decision_for(float(data["rating"])),
        chars_read=len(text),
        chars_total=len(paper),
        truncated=len(text) < len(paper),
    )
