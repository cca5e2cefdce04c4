"""Grounding: the harness's numbers traced to their fields, the model's to what their sentence is about,
every citation to a verified record."""

from __future__ import annotations

import math

from fars.paper.document import Paper, Section, render_markdown, results_table
from fars.paper.grounding import UNVERIFIED_MARK, BibEntry, Numbers, Sources, check_text, mark_unverified, repair_prose
from tests.paper.test_document import RESULTS

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
PLAN = {"knob": "lr", "seeds": [0, 1], "steps": 30}


def sources() -> Sources:
    return Sources(
        aliases={"method": ["sgd", "cosine"], "method-without-schedule": ["sgd"]},
        metric="val_accuracy",
        results=RESULTS,
        plan=PLAN,
        config={"significance_level": 0.05},
    )


def checked(body: str) -> tuple[str, object]:
    numbers = Numbers()
    table = results_table(RESULTS, numbers)
    sections = [Section(heading="Introduction", body=body), Section(heading="Results", body="See Table 1.")]
    md, spans = render_markdown(
        Paper(title="Sgd and cosine", abstract="We test it.", sections=sections, table=table, bibliography=BIB), numbers
    )
    return md, check_text(md, sources(), BIB, spans)


def test_a_planted_wrong_number_and_an_invented_citation_are_caught_and_named() -> None:
    md, report = checked(
        "Grokking was reported by [@power2022]. The method reached 0.9731 accuracy, "
        "as Smith et al. (2019) also found [@smith2019]."
    )
    assert [n.text for n in report.ungrounded] == ["0.9731"]  # type: ignore[attr-defined]
    assert {c.text for c in report.unverified_citations} == {"Smith et al. (2019)", "[@smith2019]"}  # type: ignore[attr-defined]
    problems = "\n".join(report.problems())  # type: ignore[attr-defined]
    assert "ungrounded number '0.9731'" in problems and "smith2019" in problems and "Smith" in problems
    assert not report.ok and report.verified_citation_rate == 1 / 3  # type: ignore[attr-defined]
    marked = mark_unverified(md, report)  # type: ignore[arg-type]
    assert f"0.9731 {UNVERIFIED_MARK}" in marked and f"[@smith2019] {UNVERIFIED_MARK}" in marked


def test_harness_numbers_are_traced_to_the_field_they_were_written_from() -> None:
    _, report = checked("Grokking was reported by [@power2022]; we vary the optimizer (in 2022).")
    assert report.ok, report.problems()  # type: ignore[attr-defined]
    by_text = {n.text: n for n in report.numbers if n.provenance == "harness"}  # type: ignore[attr-defined]
    assert by_text["0.7500"].source == "results.conditions.method.metric.mean"
    assert by_text["0.0312"].source == "results.conditions.method.p_adjusted"
    assert report.summary()["numbers_from_harness"] >= 20  # type: ignore[attr-defined]
    assert report.grounded_number_rate == 1.0 and report.verified_citation_rate == 1.0  # type: ignore[attr-defined]


def test_a_coincidentally_equal_value_does_not_ground_a_number() -> None:
    """'a batch of 0.05' equals the significance level and 'trained 2 epochs' equals a seed count, by value only."""
    report = check_text("We used a dropout rate of 0.05 throughout.", sources(), [])
    assert [n.text for n in report.ungrounded] == ["0.05"]
    note = report.ungrounded[0].note  # it names the fields it equals by value only
    assert "results.alpha" in note and "metric.std" in note and "not about that field" in note
    good = check_text("Nothing was significant at the 0.05 level.", sources(), [])
    assert good.ok and good.numbers[0].source in ("results.alpha", "config.significance_level")
    # a result's value, rounded as shown, in a sentence about that condition and quantity: grounded
    right = check_text("With sgd and cosine the method reached an accuracy of 0.75.", sources(), [])
    assert right.ok and right.numbers[0].source == "results.conditions.method.metric.mean"
    # the same value said of the wrong condition is not traced to it
    wrong = check_text("The baseline reached an accuracy of 0.75.", sources(), [])
    assert [n.text for n in wrong.ungrounded] == ["0.75"]


def test_rounding_percentages_and_labels() -> None:
    report = check_text("The method with sgd reached an accuracy of 75.0%; see Table 2 and Section 3.1.", sources(), [])
    assert report.ok, report.problems()
    assert [n.kind for n in report.numbers if n.text in ("2", "3.1")] == ["not_a_result", "not_a_result"]
    assert check_text("The method reached an accuracy of 0.7513.", sources(), []).ungrounded  # 4 digits shown


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


def test_a_count_of_updates_or_iterations_is_the_plans_steps() -> None:
    # the relay run's CartPole abstract lost "ending far below its peak after 40 updates" (a step is an update)
    for said in ("after 30 updates", "over 30 iterations", "for 30 steps"):
        _, report = checked(f"Grokking was reported by [@power2022]; training stops {said}.")
        assert report.ok, (said, report.problems())  # type: ignore[attr-defined]
    _, report = checked("Grokking was reported by [@power2022]; it took 30 images.")
    assert not report.ok  # a 30 that is not about steps is still ungrounded


def test_a_hash_that_reads_as_a_huge_number_does_not_crash_the_check() -> None:
    # the relay run lost its digits paper to OverflowError: "...7e9320..." in a code hash parsed as 7e9320 = inf
    found = Sources(plan={"steps": 30, "provenance": {"code_sha256": "4f07e9320ab1e708"}})
    assert all(math.isfinite(v) for _, v, _ in found.values) and any(p == "plan.steps" for p, _, _ in found.values)
    assert found.trace("30", 30.0, False, "we train for 30 steps")[0] == "plan.steps"


def test_a_knobs_value_is_grounded_where_prose_names_the_knob_in_words() -> None:
    # the second relay run's introduction: "tolerate peak rates near 1e-2 [unverified]" (the method's lr=0.01)
    found = Sources(plan={"conditions": [{"knobs": {"lr": 0.01, "batch_size": 128}}]})
    assert check_text("Small transformers tolerate peak rates near 1e-2 with AdamW.", found, []).ok
    assert check_text("We train with batches of 128 sequences.", found, []).ok
    assert not check_text("We keep 0.01 of the images.", found, []).ok


def test_a_sentence_on_the_data_may_restate_the_tasks_own_numbers_and_no_other() -> None:
    """The third relay run lost introduction sentences for "a fixed 360-image held-out split": the template's
    description states it, but was no source of the paper's numbers."""
    task = "360 images (36 of each digit) are held out and the other 1,437 trained on."
    found = Sources(task={"description": task})
    text = "On 8x8 digits with a fixed 360-image held-out split and 1,437 training images, we ask a question."
    assert not check_text(text, found, []).ungrounded
    wrong = check_text("The held-out split has 365 images.", found, [])
    assert [n.text for n in wrong.ungrounded] == ["365"]
    about_else = check_text("The method gained 36 points.", found, [])  # a number of the task, not of a result
    assert [n.text for n in about_else.ungrounded] == ["36"]


def test_a_sentence_restating_the_registered_prediction_may_quote_its_number() -> None:
    found = Sources(hypothesis={"prediction": "CNN raises mean val_accuracy at 3000 steps by about 0.006"})
    assert not check_text("We pre-registered a gain of about 0.006 and a one-sided test.", found, []).ungrounded
    assert check_text("The CNN gained 0.006.", found, []).ungrounded  # a result, not the prediction


def test_the_checks_own_false_alarms_from_a_relay_run_pass() -> None:
    """A relay answerer's correct sentences sent back by the check: a follow-up's own setting without its knob's
    name ("a stronger smoothing, at strength 0.3"), a count the sentence derives ("each 8x8 image's 64 pixels",
    equal to the batch size by value), and the interval's level ("the 95% interval")."""
    sources = Sources(
        aliases={"method": ["label_smoothing"]},
        metric="val_accuracy",
        results={
            "confidence": 0.95,
            "conditions": {
                "baseline": {"knobs": {"batch_size": 64, "width": 64}},
                "followup-label-smoothing-0p3": {"knobs": {"label_smoothing": 0.3}},
            },
        },
    )
    for sentence, token in (
        ("A stronger smoothing, at strength 0.3, was also better.", "0.3"),
        ("Each 8x8 image has 64 pixels.", "64"),
        ("The 95% interval of the difference excludes zero.", "95%"),
        ("Accuracy moves in steps of 1/360.", "1"),
    ):
        number = check_text(sentence, sources, []).numbers[0]
        assert number.text == token and number.kind != "ungrounded", (sentence, number)
    # still ungrounded: a bare 64 with no dimensions, and a setting the sentence ties to no condition
    for sentence in ("Each image has 64 pixels.", "The learning rate of 0.3 was used."):
        [number] = check_text(sentence, sources, []).numbers
        assert number.kind == "ungrounded", sentence
