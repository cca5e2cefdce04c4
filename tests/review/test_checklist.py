"""The integrity checklist, reading that drops filler first, rating labels and calibration matched by model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from review.calibration.fit import CalibrationModel, load_calibration, shipped_for
from review.checklist import ITEMS, NOT_ANSWERED, checklist_features, clean_checklist
from review.forms import rating_label
from review.ingest.paper import paper_from_text
from review.reading import drop_filler, plan_reading
from review.render import review_markdown
from review.reviewer import CHECKLIST_DEGENERATE, AgenticReviewer, PaperReview, apply_calibration
from review.settings import ReviewerConfig
from tests.review.test_reviewer import PAPER, STRONG_REVIEW, scripted_client

GOOD = {item: {"answer": "yes", "evidence": f"Section {i} states it with Table {i}"} for i, item in enumerate(ITEMS)}


def test_clean_answers_are_kept_and_degenerate_ones_become_not_answered() -> None:
    kept, problems = clean_checklist(GOOD)
    assert problems == [] and all(kept[i].answer == "yes" and kept[i].evidence == GOOD[i]["evidence"] for i in ITEMS)
    weak = {
        "numbers_consistent": {"answer": "yes", "evidence": ITEMS["numbers_consistent"]},  # the question read back
        "baselines_compared": {"answer": "no", "evidence": ""},  # a verdict with no evidence
        "claims_supported": {"answer": "yes", "evidence": "the paper is good"},
        "derivations_valid": {"answer": "unclear", "evidence": ""},  # unclear needs no evidence
        "reproducible": {"answer": "no", "evidence": "no"},  # the answer again (the embedded model's habit)
        "free_of_filler": {"answer": "yes", "evidence": "the paper is good"},
        "free_of_reviewer_text": {"answer": "yes", "evidence": "the paper is good"},  # pasted under three items
    }
    kept, problems = clean_checklist(weak)
    answers = {item: kept[item].answer for item in ITEMS}
    assert answers == {
        "numbers_consistent": NOT_ANSWERED, "baselines_compared": NOT_ANSWERED, "claims_supported": NOT_ANSWERED,
        "derivations_valid": "unclear", "reproducible": NOT_ANSWERED, "free_of_filler": NOT_ANSWERED,
        "free_of_reviewer_text": NOT_ANSWERED,
    }  # fmt: skip
    assert len(problems) == 6 and all(kept[i].evidence == "" for i in ITEMS if answers[i] == NOT_ANSWERED)
    assert "echoes" in (kept["numbers_consistent"].problem or "")
    assert "too short" in (kept["reproducible"].problem or "") and "same evidence" in (
        kept["free_of_filler"].problem or ""
    )
    placeholder, _ = clean_checklist(GOOD | {"claims_supported": {"answer": "yes", "evidence": "evidence_1"}})
    assert "placeholder" in (placeholder["claims_supported"].problem or "")
    # nothing invented: a missing checklist is all "not answered", scoring 0 like "unclear"
    empty, missing = clean_checklist(None)
    assert {a.answer for a in empty.values()} == {NOT_ANSWERED} and len(missing) == len(ITEMS)
    assert checklist_features([empty]) == {f"check_{i}": 0.0 for i in ITEMS}
    assert checklist_features([kept])["check_derivations_valid"] == 0.0


def test_a_review_carries_the_checklist_and_counts_degenerate_answers(tmp_path: Path) -> None:
    degenerate = {**STRONG_REVIEW, "checklist": {i: {"answer": "yes", "evidence": "string"} for i in ITEMS}}
    client = scripted_client(tmp_path, [json.dumps(STRONG_REVIEW), json.dumps(degenerate)])
    settings = ReviewerConfig(ensemble=2, meta_review=False, related_works=0)
    reviewer = AgenticReviewer(client, settings, name="model:scripted/default", context_tokens=128_000)  # room for it
    result = asyncio.run(reviewer.review(PAPER))
    client.close()
    first, second = result.reviews
    assert first.checklist["baselines_compared"].answer == "no" and first.degenerate_checklist == []
    assert {a.answer for a in second.checklist.values()} == {NOT_ANSWERED}  # filled as not answered, not invented
    assert second.review["checklist"]["numbers_consistent"]["evidence"] == "string"  # the model's own reply is kept
    assert result.degenerate.get(CHECKLIST_DEGENERATE) == len(ITEMS)
    assert "ICLR2025Review" not in result.degenerate  # a degenerate checklist does not make the form asked again
    assert result.checklist["baselines_compared"] == {"no": 1, NOT_ANSWERED: 1}
    assert result.features()["check_baselines_compared"] == -0.5
    text = review_markdown(result)
    assert "## Integrity checklist" in text and "only the unregularised MLP is run" in text
    assert f"{len(ITEMS)} answer(s) not kept" in text
    # no calibration for this judge: its rating and decision are labelled unvalidated, and how to fit one is said
    assert not result.validated and "unvalidated reviewer" in (result.signal_note or "")
    assert "fars calibrate reviewer.model=scripted/default" in (result.signal_note or "")
    assert "[unvalidated reviewer]" in text and "reject [unvalidated reviewer]" in text


def test_reading_drops_filler_before_cutting_real_sections() -> None:
    filler = " ".join(["Machine learning has attracted considerable attention in recent years."] * 40)
    results = "| method | accuracy |\n|---|---|\n| ours | 91.25 |\n| baseline | 88.10 |\n\nOurs reaches 91.25 on the test set."
    text = (
        f"# A study\n\n## Introduction\n{filler} We study weight decay in small networks.\n\n"
        f"## Method\nWe train five seeds of a two-layer MLP.\n\n## Results\n{results}\n"
    )
    paper = paper_from_text(text)
    budget = paper.chars - 2000  # over budget: something must go
    shown, reading = plan_reading(paper, budget)
    assert reading.filler_dropped >= 2000 and "91.25" in shown and "88.10" in shown
    assert "We study weight decay" in shown and "five seeds" in shown  # the real sentences stay
    assert shown.count("considerable attention") == 1  # its first time stays; the repeats go
    assert "sentences the paper already said, word for word" in shown  # the reviewer is told what went, plainly
    assert all(p.chars_read == p.chars_total - p.filler_dropped for p in reading.parts if p.skipped is None)
    # a paper within the budget is read whole, filler and all
    whole, full = plan_reading(paper, paper.chars)
    assert full.mode == "whole" and full.filler_dropped == 0 and whole == paper.text
    # short recurring sentences ("See Table 1.") are not filler; table rows are never touched
    kept, dropped = drop_filler(
        paper_from_text("## A\nSee Table 1. x\n\n## B\nSee Table 1. y\n| a | 1 |\n| a | 1 |").sections
    )
    assert dropped == [0, 0] and kept[1].text.count("| a | 1 |") == 2


def test_rating_labels_follow_the_forms_words() -> None:
    assert rating_label(1) == "strong reject" and rating_label(3) == "reject" and rating_label(10) == "strong accept"
    assert rating_label(6.5) == "between marginally above the acceptance threshold and accept"


def _calibration(model: str) -> CalibrationModel:
    return CalibrationModel(
        name=f"{model}-cal", form="iclr2025", features=["rating"], mean=[5.0], scale=[1.0], coef=[0.5], intercept=5.0,
        alpha=1.0, fitted_on={"reviewer": f"model:{model}", "model": model, "n_papers": 60},
        cv={"spearman": 0.4, "spearman_low": 0.2, "spearman_high": 0.6, "decision_auc": 0.7},
    )  # fmt: skip


def _review(model: str) -> PaperReview:
    return PaperReview(reviewer=f"model:{model}", form="iclr2025", title="t", source="s", reviews=[], raw_rating=6.0,
                       decision="accept")  # fmt: skip


def test_calibration_is_matched_by_reviewer_model() -> None:
    same, other = _review("openai/judge"), _review("openai/other")
    apply_calibration(same, _calibration("openai/judge"))
    assert same.calibration_status == "applied" and same.calibrated_rating == 5.5 and same.validated
    apply_calibration(other, _calibration("openai/judge"))  # another judge's calibration is never shown
    assert other.calibration_status == "other_model" and other.calibrated_rating is None and not other.validated
    assert "fitted for openai/judge, not openai/other" in (other.calibration_note or "")
    assert "fars calibrate reviewer.model=openai/other" in (other.calibration_note or "")
    # the shipped default is the embedded model's: found for it, for no other model
    shipped = shipped_for("iclr2025", "local/smollm2-135m")
    assert shipped is not None and shipped.name == "default-iclr2025.json"
    assert (
        shipped_for("iclr2025", "openai/other") is None and load_calibration("default", "iclr2025", "openai/x") is None
    )
    embedded = load_calibration("default", "iclr2025", "local/smollm2-135m")
    assert embedded is not None
    review = _review("local/smollm2-135m")
    apply_calibration(review, embedded)  # its own calibration, which shows no signal: labelled so
    assert (
        review.calibration_status == "no_signal" and not review.validated and "no signal" in (review.signal_note or "")
    )


def test_ensemble_members_by_model_and_the_meta_review_names_them(tmp_path: Path) -> None:
    """reviewer.models: member i is written by models[i % len] through its own client; personas stay."""
    asked: list[str] = []

    class Named:
        def __init__(self, name: str, client: object) -> None:
            self.name, self.client = name, client

        async def structured(
            self, messages: list[dict[str, str]], schema: object, *, max_tokens: int | None = None
        ) -> object:
            asked.append(f"{self.name}:{getattr(schema, '__name__', '')}")
            if getattr(schema, "__name__", "") == "MetaReview":
                assert "balanced, judge/a" in messages[-1]["content"] and "critical, judge/b" in messages[-1]["content"]
            return await self.client.structured(messages, schema, max_tokens=max_tokens)  # type: ignore[attr-defined]

    client = scripted_client(tmp_path, [])
    settings = ReviewerConfig(ensemble=2, related_works=0, models=["judge/a", "judge/b"])
    members = {"judge/a": Named("a", client), "judge/b": Named("b", client)}
    reviewer = AgenticReviewer(Named("chair", client), settings, name="model:judge/a+judge/b", member_clients=members)
    result = asyncio.run(reviewer.review(PAPER))
    client.close()
    assert [(m.persona, m.model) for m in result.reviews] == [("balanced", "judge/a"), ("critical", "judge/b")]
    assert asked[0].startswith("a:ICLR2025Review") and asked[-1] == "chair:MetaReview" and "b:ICLR2025Review" in asked


def test_a_point_over_its_stated_length_does_not_void_the_review() -> None:
    from review.bounded import ELLIPSIS, OVERRUN
    from review.forms import ICLR2025Review

    over = "The pilot's two seeds agree to the last image, so the sd of Table 1 is a floor " * 3  # ~240 of 200
    runaway = "The power analysis assumes the pilot's spread holds at scale. " * 12  # ~740: past any overrun
    form = ICLR2025Review.model_validate({**STRONG_REVIEW, "weaknesses": [over.strip(), runaway.strip()]})
    kept, cut = form.weaknesses
    assert kept == over.strip()  # a modest overrun is kept whole
    assert cut.endswith(ELLIPSIS) and len(cut) <= OVERRUN * 200 and cut.removesuffix(ELLIPSIS).rstrip().endswith(".")
    assert runaway.startswith(cut.removesuffix(ELLIPSIS).rstrip())  # cut at a sentence end, nothing rewritten
    schema = ICLR2025Review.model_json_schema()
    assert schema["properties"]["weaknesses"]["items"]["maxLength"] == 200  # the model is still told the limit
    evidence = {"answer": "no", "evidence": "Table 2 " * 60}
    checklist = {**GOOD, "baselines_compared": evidence}
    checked = ICLR2025Review.model_validate({**STRONG_REVIEW, "weaknesses": [kept], "checklist": checklist})
    assert len(checked.checklist.baselines_compared.evidence) <= OVERRUN * 160
