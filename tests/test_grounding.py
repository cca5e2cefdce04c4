"""Grounding: every number traced to results or config, every citation to a verified record."""

from __future__ import annotations

from fars.grounding import UNVERIFIED_MARK, BibEntry, Sources, check_text, mark_unverified, repair_prose
from fars.paper import Paper, Section, render_markdown, results_table
from tests.test_paper import RESULTS

BIB = [
    BibEntry(
        key="power2022",
        record_id="openreview:abc",
        title="Grokking: generalization beyond overfitting",
        authors=["Alethea Power"],
        year=2022,
        venue="ICLR 2022",
        verified=True,
    )
]
PLAN = {"knob": "lr", "baseline": 0.01, "variants": [0.03], "seeds": [0, 1], "steps": 30}


def sources() -> Sources:
    return Sources(results=RESULTS, plan=PLAN)


def paper(body: str) -> str:
    table = results_table(RESULTS)
    sections = [Section(heading="Introduction", body=body), Section(heading="Results", body="See Table 1.")]
    return render_markdown(
        Paper(
            title="Learning rate and grokking", abstract="We test it.", sections=sections, table=table, bibliography=BIB
        )
    )


def test_a_planted_wrong_number_and_an_invented_citation_are_caught_and_named() -> None:
    text = paper(
        "Grokking was reported by [@power2022]. A higher learning rate reached 0.9731 accuracy, "
        "as Smith et al. (2019) also found [@smith2019]."
    )
    report = check_text(text, sources(), BIB)
    assert [n.text for n in report.ungrounded] == ["0.9731"]
    assert {c.text for c in report.unverified_citations} == {"Smith et al. (2019)", "[@smith2019]"}
    problems = "\n".join(report.problems())
    assert "ungrounded number '0.9731'" in problems and "smith2019" in problems and "Smith" in problems
    assert not report.ok and report.verified_citation_rate == 1 / 3
    assert 0 < report.grounded_number_rate < 1
    marked = mark_unverified(text, report)
    assert f"0.9731 {UNVERIFIED_MARK}" in marked and f"[@smith2019] {UNVERIFIED_MARK}" in marked
    assert check_text(marked, sources(), BIB).unverified_citations  # marking does not hide them


def test_a_paper_written_from_the_results_is_fully_grounded() -> None:
    text = paper("Grokking was reported by [@power2022]; we vary lr over 30 steps and seeds 0 and 1 (in 2022).")
    report = check_text(text, sources(), BIB)
    assert report.ok, report.problems()
    kinds = {n.text: (n.kind, n.source) for n in report.numbers}
    assert kinds["0.7500"] == ("result", "results.conditions.lr=0.03.metric.mean")
    assert kinds["0.0312"][1] == "results.conditions.lr=0.03.p_vs_baseline"
    assert kinds["2022"][0] == "not_a_result"  # a year (and the bibliography's year)
    assert report.citations[0].text == "[1]" and report.citations[0].record_id == "openreview:abc"
    assert report.grounded_number_rate == 1.0 and report.verified_citation_rate == 1.0


def test_rounding_percentages_and_labels() -> None:
    report = check_text("Accuracy rose to 75.0% from 50%; Table 2 and Section 3.1 show 0.75 and .5.", sources(), [])
    assert report.ok, report.problems()
    assert [n.kind for n in report.numbers if n.text in ("2", "3.1")] == ["not_a_result", "not_a_result"]
    assert check_text("Accuracy was 0.7513.", sources(), []).ungrounded  # shown to 4 digits: must match to 4


def test_numeric_citation_beyond_the_bibliography_and_unresolved_record() -> None:
    unresolved = [BIB[0].model_copy(update={"verified": False})]
    report = check_text("As shown in [1, 2].", sources(), unresolved)
    reasons = [c.reason for c in report.citations]
    assert "was not found by the literature backend" in reasons[0]
    assert "no [2]" in reasons[1]


def test_repair_drops_only_the_sentences_that_cannot_be_traced() -> None:
    text = "We build on [@power2022]. Accuracy improved by 12.5 points. Results follow [@nobody2020]. We used lr."
    fixed, dropped = repair_prose(text, sources(), BIB)
    assert fixed == "We build on [@power2022]. We used lr."
    assert len(dropped) == 2 and "12.5" in dropped[0] and "nobody2020" in dropped[1]
