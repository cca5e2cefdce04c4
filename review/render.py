"""A ``PaperReview`` as Markdown: scores first, then each reviewer, the meta-review and what was read."""

from __future__ import annotations

from typing import Any

from review.reviewer import PaperReview


def _items(values: Any) -> str:
    if isinstance(values, list):
        return "\n".join(f"- {v}" for v in values) or "- (none)"
    return str(values)


def review_markdown(result: PaperReview) -> str:
    """The review as a Markdown document."""
    lines = [f"# Review: {result.title}", ""]
    calibrated = "n/a" if result.calibrated_rating is None else f"{result.calibrated_rating:.2f}"
    lines += [
        f"- **Rating** (area chair): {result.meta_rating:g}" if result.meta_rating is not None else "",
        f"- **Ensemble mean rating** (raw): {result.raw_rating:.2f} over {len(result.reviews)} reviewer(s)",
        f"- **Calibrated rating**: {calibrated}"
        + (f" ({result.calibration})" if result.calibration else "")
        + (f"; note: {result.calibration_note}" if result.calibration_note else ""),
        f"- **Decision**: {result.decision}",
        "- **Sub-scores** (ensemble mean): " + ", ".join(f"{k} {v:.2f}" for k, v in result.subscores.items()),
        f"- Form {result.form}, reviewer {result.reviewer}, {result.wall_s:.1f} s"
        + (f", {result.usage.get('total_tokens', 0)} tokens" if result.usage else ""),
    ]
    lines = [line for line in lines if line] + [""]
    if result.meta_review:
        meta = result.meta_review
        lines += [
            "## Meta-review",
            "",
            str(meta.get("summary", "")),
            "",
            "Agreed strengths:",
            _items(meta.get("agreed_strengths", [])),
            "",
            "Agreed weaknesses:",
            _items(meta.get("agreed_weaknesses", [])),
            "",
        ]
    for i, member in enumerate(result.reviews, 1):
        lines += [f"## Reviewer {i} ({member.persona})", ""]
        for key, value in member.review.items():
            lines.append(f"**{key.replace('_', ' ').capitalize()}**:" + ("\n" if isinstance(value, list) else " "))
            lines += [_items(value), ""]
    if result.literature is not None:
        lit = result.literature
        lines += [f"## Related work ({lit.backend})", ""]
        lines += [f"- query ({level}): {query}" for level, query in lit.queries.items()]
        lines += [f"- found: {w.title} ({w.year or 'n.d.'}; {w.id}; score {w.score:.2f})" for w in lit.works]
        if lit.error:
            lines.append(f"- search error: {lit.error}")
        lines.append("")
    if result.reading is not None:
        r = result.reading
        lines += [
            "## What was read",
            "",
            f"Mode {r.mode}: {r.chars_read} of {r.chars_total} characters (budget {r.budget_chars})"
            + ("" if r.complete else "; the paper was read in parts, see below"),
            "",
            "| section | read | of |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {p.heading or '(start)'} | {p.chars_read} | {p.chars_total}{' (skipped: ' + p.skipped + ')' if p.skipped else ''} |"
            for p in r.parts
        ]
        lines.append("")
    return "\n".join(lines)
