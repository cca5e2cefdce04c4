"""The probe's "named" rule: the checklist item answered no, or a criticism quoting what was planted."""

from __future__ import annotations

from review.checklist import CheckedAnswer
from review.ingest.paper import paper_from_text
from review.probe.flaws import perturb
from review.probe.runner import names_flaw
from review.reviewer import MemberReview, PaperReview

PAPER = (
    "# Sparse heads\n\n## Abstract\nWe prune attention heads.\n\n## Method\nWe score each head by its gradient.\n\n"
    "## Results\nOur method reaches 7.87 on the benchmark.\n\n| method | score |\n|---|---|\n| ours | 7.87 |\n"
    "| dense | 6.12 |\n\n## Conclusion\nPruning keeps the score.\n"
)


def _review(
    weaknesses: list[str],
    summary: str,
    numbers: str = "yes",
    evidence: str = "Table 1 matches Section 3",
    item: str = "numbers_consistent",
) -> PaperReview:
    member = MemberReview(
        persona="critical", rating=5.0, subscores={}, decision="reject",
        review={"summary": summary, "strengths": ["clear"], "weaknesses": weaknesses, "questions": []},
        checklist={item: CheckedAnswer(answer=numbers, evidence=evidence)},  # type: ignore[arg-type]
    )  # fmt: skip
    return PaperReview(reviewer="model:m", form="iclr2025", title="t", source="s", reviews=[member], raw_rating=5.0,
                       decision="reject")  # fmt: skip


def test_a_review_quoting_the_planted_number_names_the_flaw_and_the_original_does_not() -> None:
    copy, planted = perturb(paper_from_text(PAPER), "contradicting_numbers")
    assert copy is not None and planted.quotes
    wrong = planted.quotes[0]
    assert wrong in copy.text and wrong not in PAPER
    quoting = _review([f"The text claims {wrong} but the table reports 7.87."], "A pruning paper.")
    assert names_flaw("contradicting_numbers", quoting, planted)
    # the untouched original's review: keywords of a flaw ("inconsistent", "baseline") are not naming it
    original = _review(["The baseline comparison is inconsistent across sections."], "A pruning paper.")
    assert not names_flaw("contradicting_numbers", original, planted)
    # a summary that repeats the planted number is not a criticism of it
    repeating = _review(["Only one dataset."], f"The method reaches {wrong}, its best result.")
    assert not names_flaw("contradicting_numbers", repeating, planted)
    # a number inside a longer number is not a quote of it
    assert not names_flaw("contradicting_numbers", _review([f"Accuracy 1{wrong}5 is high."], "x"), planted)


def test_the_matching_checklist_item_answered_no_names_the_flaw() -> None:
    _, planted = perturb(paper_from_text(PAPER), "overclaiming")
    flagged = _review(
        ["Only one dataset."], "A pruning paper.", numbers="no", evidence="the abstract claims more than Table 1",
        item="claims_supported",
    )  # fmt: skip
    assert names_flaw("overclaiming", flagged, planted)
    assert not names_flaw("broken_equation", flagged, planted)  # another flaw's item is not this one
    unclear = _review(
        ["Only one dataset."], "A pruning paper.", numbers="unclear", evidence="", item="claims_supported"
    )
    assert not names_flaw("overclaiming", unclear, planted)


def test_numbers_named_inconsistent_name_the_planted_contradiction_only_by_quoting_it() -> None:
    """A capable reviewer reading whole ICLR papers answered numbers_consistent "no" on 3 of 5 untouched originals,
    with real evidence: the answer alone would name the planted contradiction in 80% of originals."""
    _, planted = perturb(paper_from_text(PAPER), "contradicting_numbers")
    wrong = planted.quotes[0]
    vague = _review(["Only one dataset."], "A pruning paper.", numbers="no", evidence="Section 4 and Table 2 differ")
    assert not names_flaw("contradicting_numbers", vague, planted)
    quoted = _review(["Only one dataset."], "A pruning paper.", numbers="no", evidence=f"text {wrong}, table 7.87")
    assert names_flaw("contradicting_numbers", quoted, planted)
