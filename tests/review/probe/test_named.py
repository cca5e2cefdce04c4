"""The probe's "named" rule: the checklist item answered no, or a criticism quoting what was planted."""

from __future__ import annotations

from review.checklist import CheckedAnswer
from review.ingest.paper import paper_from_text
from review.probe.flaws import perturb
from review.probe.runner import JUDGED, item_says_no, judge_prompt, names_flaw
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
    _, planted = perturb(paper_from_text(PAPER), "padding")
    flagged = _review(
        ["Only one dataset."], "A pruning paper.", numbers="no", evidence="Section 2 repeats generic sentences",
        item="free_of_filler",
    )  # fmt: skip
    assert names_flaw("padding", flagged, planted)
    assert not names_flaw("injection", flagged, planted)  # another flaw's item is not this one
    unclear = _review(["Only one dataset."], "A pruning paper.", numbers="unclear", evidence="", item="free_of_filler")
    assert not names_flaw("padding", unclear, planted)


def test_overclaims_and_broken_steps_are_named_by_quoting_them_not_by_the_items_no() -> None:
    """The relay probe's capable reviewer answered claims_supported "no" on 3 of 4 untouched originals and
    derivations_valid "no" on 2 of 4, each for the real paper's own faults: the answer alone does not point at
    the planted claim or step; every copy's review quoted them."""
    for kind, item, said in (
        ("overclaiming", "claims_supported", "'outperforms every existing method on every benchmark' is unsupported"),
        ("broken_equation", "derivations_valid", "Sec 3 writes L(θ) = 2 L(θ), so L(θ) = 1, which is invalid"),
    ):
        _, planted = perturb(paper_from_text(PAPER), kind)
        vague = _review(
            ["Only one dataset."], "x", numbers="no", evidence="Section 4 claims more than Table 1", item=item
        )
        assert not names_flaw(kind, vague, planted) and item_says_no(kind, vague), kind
        quoted = _review([said], "x", numbers="no", evidence="the abstract", item=item)
        assert names_flaw(kind, quoted, planted), kind


def test_a_deleted_baseline_is_named_by_the_judge_asked_alike_of_the_original() -> None:
    """A deletion leaves nothing to quote: a judge call on the review's criticism decides, and the same question on
    the original's review gives the base rate."""
    _, planted = perturb(paper_from_text(PAPER), "baseline_removed")
    review = _review(["Table 1 has no row for the dense model the gains are measured against."], "A pruning paper.")
    assert not names_flaw("baseline_removed", review, planted)  # the checklist said yes; nothing quoted
    assert names_flaw("baseline_removed", review, planted, judged=True)
    assert not names_flaw("baseline_removed", review, planted, judged=False)
    asked = judge_prompt("baseline_removed", review)[1]["content"]
    assert "no row for the dense model" in asked and "A pruning paper." not in asked  # criticism only, no summary
    assert JUDGED["baseline_removed"] in asked


def test_numbers_named_inconsistent_name_the_planted_contradiction_only_by_quoting_it() -> None:
    """A capable reviewer reading whole ICLR papers answered numbers_consistent "no" on 3 of 5 untouched originals,
    with real evidence: the answer alone would name the planted contradiction in 80% of originals."""
    _, planted = perturb(paper_from_text(PAPER), "contradicting_numbers")
    wrong = planted.quotes[0]
    vague = _review(["Only one dataset."], "A pruning paper.", numbers="no", evidence="Section 4 and Table 2 differ")
    assert not names_flaw("contradicting_numbers", vague, planted)
    quoted = _review(["Only one dataset."], "A pruning paper.", numbers="no", evidence=f"text {wrong}, table 7.87")
    assert names_flaw("contradicting_numbers", quoted, planted)


def test_a_deletion_is_paired_only_where_the_originals_reviewer_saw_what_it_deletes() -> None:
    """A capable reviewer answered baselines_compared "no" on 2 of 4 untouched originals (an analysis paper running
    only its own models, a method compared only with its own variants): there the deletion removes nothing the
    reviewer saw, so the pair is counted as absent, not as a copy named against an original named."""
    from review.probe.runner import ProbePaper, build_probe_report

    copy, planted = perturb(paper_from_text(PAPER), "baseline_removed")
    assert copy is not None and planted.applicable
    items, reviews = [], {}
    for pid, original_says in (("with", "yes"), ("without", "no")):
        items += [
            ProbePaper(id=pid, title="t", text=PAPER, source="s", original=pid, flaw=None, planted=None),
            ProbePaper(id=f"{pid}~baseline_removed", title="t", text=copy.text, source="s", original=pid,
                       flaw="baseline_removed", planted=planted),
        ]  # fmt: skip
        reviews[pid] = _review([], "x", numbers=original_says, evidence="Table 1", item="baselines_compared")
        reviews[f"{pid}~baseline_removed"] = _review(
            ["No baseline is compared."], "x", numbers="no", evidence="no baseline rows", item="baselines_compared"
        )
    report = build_probe_report(items, reviews, {}, reviewer=None, name="scripted", kinds=["baseline_removed"],
                                draws=50)  # fmt: skip
    [flaw] = report.flaws
    assert (flaw.reviewed, flaw.already_absent, flaw.applicable) == (1, 1, 2)
    assert (flaw.named_rate, flaw.named_rate_original) == (1.0, 0.0)  # the item flipped on the one pair kept
    assert "1 original(s) left out, whose reviewer found none there to delete" in flaw.reason
