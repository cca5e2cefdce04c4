"""A ``PaperReview`` as Markdown: scores first, then each reviewer, the meta-review and what was read.

Wherever a calibrated score appears it says which calibration made it and whether that model was
fitted under other settings; a calibration withheld for want of signal is shown as withheld, with
its validation figures. The decision rule and any injection flag are stated beside the scores. A review
whose reviewer has no validated signal (``PaperReview.validated``) has its rating and decision labelled
so. Ratings carry the form's own words (1: strong reject). The integrity checklist is a table: each
reviewer's answer per item, with its evidence.
"""

from __future__ import annotations

from typing import Any

from review.checklist import ITEMS
from review.forms import rating_label
from review.reviewer import PaperReview

UNVALIDATED = "[unvalidated reviewer]"


def _items(values: Any) -> str:
    if isinstance(values, list):
        return "\n".join(f"- {v}" for v in values) or "- (none)"
    return str(values)


def calibrated_text(result: PaperReview) -> str:
    """The calibrated score as a reader should see it: value, model, and any mark or reason withheld."""
    status = result.calibration_status
    if result.calibrated_rating is None:
        why = result.calibration_note or "no calibration"
        return f"none: {why}" if status == "no_signal" else f"n/a ({why})"
    text = f"{result.calibrated_rating:.2f} ({result.calibration})"
    if status == "other_settings":
        text += f" **[{result.calibration_note}]**"
    return text


def review_markdown(result: PaperReview) -> str:
    """The review as a Markdown document."""
    lines = [f"# Review: {result.title}", ""]
    if result.injection_flagged and result.injection is not None:
        lines += [
            f"> **Flagged: the paper carries text aimed at its reviewer** ({len(result.injection.findings)} finding(s); "
            f"{'removed before review' if result.injection.mode == 'neutralise' else 'kept: injection=off'}). See "
            "'Injection scan' below.",
            "",
        ]
    label = "" if result.validated else f" {UNVALIDATED}"
    if not result.validated:
        lines += [
            f"> **Unvalidated**: {result.signal_note or 'no calibration shows this reviewer agrees with humans'}",
            "",
        ]
    lines += [
        f"- **Rating** (area chair): {result.meta_rating:g} ({rating_label(result.meta_rating)}){label}"
        if result.meta_rating is not None
        else "",
        f"- **Ensemble mean rating** (raw): {result.raw_rating:.2f} over {len(result.reviews)} reviewer(s){label}",
        f"- **Calibrated rating**: {calibrated_text(result)}",
        f"- **Decision**: {result.decision}{label} (from the {'area chair' if result.meta_rating is not None else 'ensemble mean'}"
        f" rating {result.final_rating:g}; see the decision rule below)",
        "- **Sub-scores** (ensemble mean): " + ", ".join(f"{k} {v:.2f}" for k, v in result.subscores.items()),
        "- **Checklist** (reviewers answering no): "
        + ", ".join(f"{item} {counts.get('no', 0)}/{sum(counts.values())}" for item, counts in result.checklist.items())
        if result.checklist
        else "",
        f"- Form {result.form}, reviewer {result.reviewer}, {result.wall_s:.1f} s"
        + (f", {result.usage.get('total_tokens', 0)} tokens" if result.usage else ""),
        f"- Limits: {result.limits.source}: {result.limits.paper_chars} characters of paper, {result.limits.points} points "
        f"of {result.limits.point_chars} characters, {result.limits.reply_tokens} reply tokens"
        if result.limits
        else "",
        "- Invalid replies (schema text or placeholders), asked again: "
        + ", ".join(f"{k} {v}" for k, v in result.degenerate.items())
        if result.degenerate
        else "",
        "- **Not counted** (no valid form after repairs): " + "; ".join(result.failed) if result.failed else "",
    ]
    lines = [line for line in lines if line] + ["", f"Decision rule: {result.decision_rule}", ""]
    if result.meta_review:
        meta = result.meta_review
        lines += [
            f"## Meta-review (rating {meta.get('rating', '')}: {rating_label(float(meta.get('rating') or 1))}, "
            f"{meta.get('decision', '')}{label})",
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
        decision = f", {member.decision}{label}" if member.decision else ""
        model = f", {member.model}" if member.model else ""
        lines += [
            f"## Reviewer {i} ({member.persona}{model}; rating {member.rating:g}: {rating_label(member.rating)}{decision})",
            "",
        ]
        if member.degenerate:
            lines += [
                "*This review still echoes the form after being asked again:* " + "; ".join(member.degenerate),
                "",
            ]
        for key, value in member.review.items():
            if key in ("decision", "checklist"):
                continue
            lines.append(f"**{key.replace('_', ' ').capitalize()}**:" + ("\n" if isinstance(value, list) else " "))
            lines += [_items(value), ""]
    if any(m.checklist for m in result.reviews):
        lines += _checklist(result)
    if result.literature is not None:
        lines += _literature(result)
    if result.injection is not None and result.injection.findings:
        lines += ["## Injection scan", ""]
        lines += [
            f'- {f.where}: {f.why}{" (removed)" if f.neutralised else ""}: "{f.excerpt}"'
            for f in result.injection.findings
        ]
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


def _checklist(result: PaperReview) -> list[str]:
    """The integrity checklist: one row per item, each reviewer's answer and evidence."""
    heads = " | ".join(f"reviewer {i}" for i in range(1, len(result.reviews) + 1))
    lines = ["## Integrity checklist", "", f"| question | {heads} |", "|---|" + "---|" * len(result.reviews)]
    for item, question in ITEMS.items():
        cells = []
        for member in result.reviews:
            answer = member.checklist.get(item)
            if answer is None:
                cells.append("-")
                continue
            cell = answer.answer + (" (harness)" if answer.source == "harness" else "")
            cell += f": {answer.evidence}" if answer.evidence else ""
            cells.append(cell.replace("|", "\\|").replace("\n", " "))
        lines.append(f"| {question} | " + " | ".join(cells) + " |")
    problems = [p for m in result.reviews for p in m.degenerate_checklist]
    if problems:
        lines += [
            "",
            f"{len(problems)} answer(s) not kept (degenerate; shown as 'not answered'): " + "; ".join(problems[:8]),
        ]
    return [*lines, ""]


def _literature(result: PaperReview) -> list[str]:
    lit = result.literature
    assert lit is not None
    lines = [f"## Related work ({lit.backend})", ""]
    source = "written by the model" if lit.query_source == "model" else "built from the title and abstract"
    lines += [f"Queries ({source}):"] + [f"- {level}: {query}" for level, query in lit.queries.items()]
    if lit.query_problems:
        lines.append("- the model's queries were not used: " + "; ".join(lit.query_problems[:4]))
    kept = {w.id for w in lit.works}
    lines += [
        "",
        "| work | year | search score | relevance | compared | shown | reason |",
        "|---|---|---:|---:|---|---|---|",
    ]
    for w in lit.candidates or lit.works:
        relevance = "-" if w.relevance is None else f"{w.relevance}/3"
        shown = f"{w.text_source} ({w.text_chars})" if w.id in kept else ""
        lines.append(
            f"| {w.title} ({w.id}) | {w.year or 'n.d.'} | {w.score:.2f} | {relevance} | {'yes' if w.id in kept else 'no'} "
            f"| {shown} | {w.reason or ''} |"
        )
    if lit.judge_error:
        lines.append(f"\nRelevance judgement: {lit.judge_error}")
    if lit.error:
        lines.append(f"\nSearch error: {lit.error}")
    lines.append("")
    return lines
