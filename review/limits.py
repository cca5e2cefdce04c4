"""How much a review may read and write: fixed limits, or limits derived from the model's context.

The fixed limits (``reviewer.max_paper_chars``, ``max_points``, ``point_chars``, ``max_tokens``) are
the embedded model's budget. A model with a large context gets room in proportion to it: the whole
paper up to what fits beside the form, the related works and the reply; more and longer points; a
longer reply; queries written from the whole text read; fuller text of the nearest works. The reviewer
never asks a provider for its context: the caller passes ``context_tokens`` (``fars`` takes it from
litellm's model data), so the reviewer stays importable alone.
"""

from __future__ import annotations

from pydantic import BaseModel

from review.settings import ReviewerConfig

CHARS_PER_TOKEN = 3.5  # English prose and LaTeX run about 3.5-4 characters a token; the low end is the safe one
AUTO_CONTEXT_TOKENS = 32_768  # limits=auto: models with at least this much context get context limits
MAX_PAPER_CHARS = 400_000  # even a 1M-token model reads at most this much of one paper
PROMPT_OVERHEAD_TOKENS = 2_500  # system prompt, form schema, persona, instructions
FIXED_QUERY_CHARS = 2_500  # fixed limits: paper text the query writer sees, beyond title, abstract and headings
FIXED_WORK_CHARS = 400  # fixed limits: characters of each related work shown


class ReviewLimits(BaseModel):
    """The limits one review works within, and where they came from (recorded in the review)."""

    source: str  # "fixed" or "context (N tokens)"
    paper_chars: int
    points: int
    point_chars: int
    summary_chars: int
    reply_tokens: int
    query_chars: int
    work_chars: int
    context_tokens: int | None = None


def uses_context(settings: ReviewerConfig, context_tokens: int | None) -> bool:
    """Whether limits come from the context window: ``limits=context``, or ``auto`` and a large context."""
    if context_tokens is None or settings.limits == "fixed":
        return False
    return settings.limits == "context" or context_tokens >= AUTO_CONTEXT_TOKENS


def review_limits(settings: ReviewerConfig, context_tokens: int | None = None) -> ReviewLimits:
    """The limits for ``settings`` and a model with ``context_tokens`` of context (None: unknown)."""
    fixed = ReviewLimits(
        source="fixed",
        paper_chars=settings.max_paper_chars,
        points=settings.max_points,
        point_chars=settings.point_chars,
        summary_chars=max(600, 3 * settings.point_chars),
        reply_tokens=settings.max_tokens,
        query_chars=FIXED_QUERY_CHARS,
        work_chars=FIXED_WORK_CHARS,
        context_tokens=context_tokens,
    )
    if not uses_context(settings, context_tokens):
        return fixed
    assert context_tokens is not None
    reply = min(max(context_tokens // 16, settings.max_tokens), 8_192)
    points = max(settings.max_points, 10)
    point_chars = max(settings.point_chars, 1_000)
    work_chars = 4_000 if context_tokens >= 64_000 else 1_500
    works_tokens = int(settings.related_works * work_chars / CHARS_PER_TOKEN)
    paper_tokens = context_tokens - reply - PROMPT_OVERHEAD_TOKENS - works_tokens
    paper_chars = int(max(paper_tokens, 0) * 0.8 * CHARS_PER_TOKEN)  # 20% headroom for tokeniser differences
    paper_chars = min(max(paper_chars, settings.max_paper_chars), MAX_PAPER_CHARS)
    return ReviewLimits(
        source=f"context ({context_tokens} tokens)",
        paper_chars=paper_chars,
        points=points,
        point_chars=point_chars,
        summary_chars=max(2_000, 3 * point_chars),
        reply_tokens=reply,
        query_chars=min(paper_chars, 60_000),
        work_chars=work_chars,
        context_tokens=context_tokens,
    )
