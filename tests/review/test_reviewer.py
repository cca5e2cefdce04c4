"""The agentic reviewer on the scripted model: reading, related work, ensemble, meta-review, calibration."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from fars.config import LLMConfig
from fars.literature import LiteratureRecord, SearchHit
from fars.llm.client import LLMClient
from fars.run.ledger import Ledger
from review.calibration.fit import CalibrationModel
from review.forms import FORMS, ICLR2022Review, ICLR2025Review, form_fields
from review.reviewer import AgenticReviewer, review_paper
from review.settings import ReviewerConfig

PAPER = (
    "# Weight decay speeds up grokking\n\n## Abstract\n\nWe train MLPs on modular addition.\n\n## Results\n\nIt helps."
)


class FakeLiterature:
    """A literature backend of three records; one of them is the paper itself."""

    name = "fake"

    def __init__(self, fail: bool = False) -> None:
        self.queries: list[str] = []
        self.fail = fail

    async def search(self, query: str, k: int) -> list[SearchHit]:
        self.queries.append(query)
        if self.fail:
            raise ConnectionError("service down")
        records = [
            LiteratureRecord(id="x:self", title="Weight Decay Speeds Up Grokking!", source="x"),
            LiteratureRecord(
                id="x:1",
                title="Grokking: generalization beyond overfitting",
                abstract="We find...",
                year=2022,
                source="x",
            ),
            LiteratureRecord(id="x:2", title="Decoupled weight decay", year=2019, source="x"),
        ]
        return [SearchHit(record=r, score=3.0 - i) for i, r in enumerate(records)][:k]


class RecordingClient:
    """Wraps a client and keeps every request's messages."""

    def __init__(self, inner: LLMClient) -> None:
        self.inner = inner
        self.asked: list[tuple[str, list[dict[str, str]]]] = []

    async def structured(self, messages: list[dict[str, str]], schema: Any, *, max_tokens: int | None = None) -> Any:
        self.asked.append((schema.__name__, messages))
        return await self.inner.structured(messages, schema, max_tokens=max_tokens)


@pytest.fixture
def client(tmp_path: Path) -> Any:
    llm = LLMClient(LLMConfig(model="scripted/default", cache=False), Ledger(tmp_path / "ledger.sqlite"))
    yield llm
    llm.close()


def flat_calibration(form: str) -> CalibrationModel:
    names = form_fields(form)
    coef = [0.0] * (len(names) - 1) + [0.5]
    return CalibrationModel(
        name="t", form=form, features=names, mean=[0.0] * len(names), scale=[1.0] * len(names), coef=coef, intercept=2.0,
        alpha=1.0, fitted_on={"reviewer": "model:scripted", "reviewer_settings": {"ensemble": 1}, "n_papers": 40},
        cv={"spearman": 0.4, "spearman_low": 0.1, "spearman_high": 0.6, "decision_auc": 0.7},
    )  # fmt: skip


def test_ensemble_meta_review_related_work_and_calibration(client: LLMClient) -> None:
    literature = FakeLiterature()
    recorder = RecordingClient(client)
    settings = ReviewerConfig(ensemble=3, personas=["balanced", "critical"])
    reviewer = AgenticReviewer(
        recorder, settings, literature=literature, calibration=flat_calibration("iclr2025"), name="model:scripted"
    )
    result = asyncio.run(reviewer.review(PAPER))
    assert [m.persona for m in result.reviews] == ["balanced", "critical", "balanced"]
    for member in result.reviews:
        ICLR2025Review.model_validate(member.review)  # each is a valid form
    assert result.raw_rating == pytest.approx(sum(m.rating for m in result.reviews) / 3)
    assert result.meta_rating in (1, 3, 5, 6, 8, 10) and result.final_rating == result.meta_rating
    assert result.calibrated_rating == pytest.approx(2.0 + 0.5 * result.raw_rating)
    assert result.calibration == "t@v1" and result.calibration_status == "other_settings" and result.validated
    assert "ensemble 1->3" in (result.calibration_note or "")  # fitted on reviews made otherwise: said
    lit = result.literature
    assert lit is not None and set(lit.queries) == {"broad", "focused", "specific"}
    assert len(literature.queries) == 3 and lit.excluded_self == 3
    assert {w.id for w in lit.candidates} == {"x:1", "x:2"} and all(w.relevance is not None for w in lit.candidates)
    kept = sorted((w for w in lit.candidates if w.relevance), key=lambda w: (-(w.relevance or 0), -w.score))
    assert [w.id for w in lit.works] == [w.id for w in kept] != []  # those judged related, most related first
    names = [name for name, _ in recorder.asked]
    assert names == [
        "RelatedWorkQueries", "RelevanceJudgements", "ICLR2025Review", "ICLR2025Review", "ICLR2025Review", "MetaReview",
    ]  # fmt: skip
    # the paper comes first and the persona last, so the members' prompts share the paper as a prefix
    prompts = [m[-1]["content"] for name, m in recorder.asked if name == "ICLR2025Review"]
    shared = prompts[0][: prompts[0].index("Related work")]
    assert all(p.startswith(shared) for p in prompts) and "Grokking: generalization" in prompts[0]
    assert prompts[0] != prompts[2]  # a third member differs from the first (its number is stated)


def test_iclr2022_form_and_a_failing_literature_service(client: LLMClient) -> None:
    settings = ReviewerConfig(form="iclr2022", ensemble=1, meta_review=False)
    result = asyncio.run(AgenticReviewer(client, settings, literature=FakeLiterature(fail=True)).review(PAPER))
    ICLR2022Review.model_validate(result.reviews[0].review)
    assert set(result.subscores) == {*ICLR2022Review.subscore_fields, "confidence"}
    assert result.meta_rating is None and result.final_rating == result.raw_rating
    assert result.literature is not None and "service down" in (result.literature.error or "")
    assert result.calibrated_rating is None and result.calibration_note == "no calibration model configured"


def test_summaries_mode_reads_long_papers_in_parts(client: LLMClient) -> None:
    long_paper = "# Long\n\n" + "\n\n".join(
        f"## S{i}\n\n" + " ".join(f"Sentence {j} of part {i} reports measurement {i * 1000 + j}." for j in range(150))
        for i in range(6)
    )
    settings = ReviewerConfig(reading="summaries", max_paper_chars=2000, chunk_chars=8000, max_parts=3, ensemble=1)
    recorder = RecordingClient(client)
    result = asyncio.run(AgenticReviewer(recorder, settings).review(long_paper))
    reading = result.reading
    assert reading is not None and reading.mode == "summaries" and not reading.complete
    assert 1 <= len(reading.notes) <= 3
    asked = [n for n, _ in recorder.asked].count("PartNotes")  # a note that loops ("text text text") is asked again
    assert len(reading.notes) <= asked <= 2 * len(reading.notes)


def test_calibration_for_another_form_is_refused(client: LLMClient) -> None:
    with pytest.raises(ValueError, match="iclr2022"):
        AgenticReviewer(client, ReviewerConfig(form="iclr2025"), calibration=flat_calibration("iclr2022"))


def test_plain_review_paper_and_forms_registry(client: LLMClient) -> None:
    result = asyncio.run(review_paper(client, PAPER, form="iclr2022"))
    assert result.form == "iclr2022" and len(result.reviews) == 1
    assert set(FORMS) == {"iclr2025", "iclr2022"}
    with pytest.raises(ValueError, match="persona"):
        ReviewerConfig(personas=["grumpy"])


def test_replies_with_raw_newlines_inside_strings_parse() -> None:
    """The embedded model sometimes writes a raw line break inside a JSON string; it is accepted."""
    from fars.llm.client import parse_structured
    from review.forms import MetaReview

    reply = '{"summary": "first line\nsecond line", "agreed_strengths": ["abc"], "agreed_weaknesses": ["def"], "rating": 5, "decision": "reject"}'
    assert parse_structured(MetaReview, reply).summary == "first line\nsecond line"


def scripted_client(tmp_path: Path, outputs: list[str]) -> LLMClient:
    from fars.config import ScriptedModelConfig

    cfg = LLMConfig(model="scripted/default", cache=False, scripted=ScriptedModelConfig(outputs=outputs))
    return LLMClient(cfg, Ledger(tmp_path / "scripted.sqlite"))


LONG_WEAKNESSES = [
    f"Weakness {i}: " + " ".join(f"claim {k} rests on seed {k + i} alone;" for k in range(40))[:588] for i in range(8)
]  # long, concrete and not a loop
STRONG_REVIEW = {
    "summary": " ".join(f"Section {i} shows that weight decay {i} speeds up grokking of task {i}." for i in range(12)),
    "strengths": ["A clean, controlled setting with a single varied factor.", "Clear figures over seeds."],
    "weaknesses": LONG_WEAKNESSES,
    "questions": ["Does the effect survive a change of optimizer?"],
    "soundness": 2, "presentation": 3, "contribution": 2, "rating": 5, "confidence": 4,
    "checklist": {
        "numbers_consistent": {"answer": "yes", "evidence": "Table 1 and Section 4 both give 91.2%"},
        "baselines_compared": {"answer": "no", "evidence": "only the unregularised MLP is run"},
        "claims_supported": {"answer": "unclear", "evidence": ""},
        "derivations_valid": {"answer": "yes", "evidence": "Section 3 derives the decay rate step by step"},
        "reproducible": {"answer": "yes", "evidence": "seeds 0-4 and every learning rate are listed in Table 2"},
        "free_of_filler": {"answer": "yes", "evidence": "every section reports a measurement"},
        "free_of_reviewer_text": {"answer": "yes", "evidence": "no passage addresses the reader as reviewer"},
    },
}  # fmt: skip
STRONG_QUERIES = {"broad": "grokking in neural networks", "focused": "weight decay and delayed generalization",
                  "specific": "weight decay speeds up grokking on modular addition"}  # fmt: skip
STRONG_JUDGEMENTS = {"judgements": [{"work": 1, "relevance": 3, "reason": "the grokking paper itself"},
                                    {"work": 2, "relevance": 1, "reason": "weight decay, another setting"}]}  # fmt: skip
STRONG_META = {"summary": "Both reviewers find the setting clean and the evidence thin.",
               "agreed_strengths": ["clean setting"], "agreed_weaknesses": LONG_WEAKNESSES[:6], "rating": 5}  # fmt: skip


def test_a_strong_reviewers_long_review_is_kept_whole_with_queries_and_judgements(tmp_path: Path) -> None:
    from review.render import review_markdown

    outputs = [json.dumps(o) for o in (STRONG_QUERIES, STRONG_JUDGEMENTS, STRONG_REVIEW, STRONG_META)]
    client = scripted_client(tmp_path, outputs)
    settings = ReviewerConfig(ensemble=1, meta_review=True)
    reviewer = AgenticReviewer(client, settings, literature=FakeLiterature(), context_tokens=128_000)
    result = asyncio.run(reviewer.review(PAPER * 30))
    client.close()
    assert result.limits is not None and result.limits.source.startswith("context") and result.limits.points >= 8
    assert result.reading is not None and result.reading.complete  # the whole paper, not 6,000 characters
    member = result.reviews[0].review
    assert member["weaknesses"] == LONG_WEAKNESSES and all(len(w) == 600 for w in member["weaknesses"])
    assert result.meta_review is not None and result.meta_review["agreed_weaknesses"] == LONG_WEAKNESSES[:6]
    lit = result.literature
    assert lit is not None and lit.queries == STRONG_QUERIES and lit.query_source == "model"
    assert [(w.id, w.relevance, w.reason) for w in lit.candidates] == [
        ("x:1", 3, "the grokking paper itself"), ("x:2", 1, "weight decay, another setting"),
    ]  # fmt: skip
    markdown = review_markdown(result)
    assert all(w in markdown for w in LONG_WEAKNESSES) and "the grokking paper itself" in markdown
    assert result.degenerate == {}


def test_the_relevance_schema_ends_where_the_candidates_end() -> None:
    """The embedded model went on judging works 22, 23, ... of an 8-work list until its token limit cut the
    JSON: the schema sent for n candidates (the grammar's list bound) holds at most n judgements of works 1-n."""
    from pydantic import ValidationError

    from review.related import judgements_for

    schema = judgements_for(3)
    assert schema.__name__ == "RelevanceJudgements"  # the name the call is recorded and counted under
    assert schema.model_json_schema()["properties"]["judgements"]["maxItems"] == 3
    item = {"relevance": 1, "reason": "same broad field"}
    assert len(schema.model_validate({"judgements": [{"work": i, **item} for i in (1, 2, 3)]}).judgements) == 3
    for bad in ([{"work": i, **item} for i in (1, 2, 3, 4)], [{"work": 4, **item}]):
        with pytest.raises(ValidationError):
            schema.model_validate({"judgements": bad})


def test_under_fixed_limits_the_same_long_review_does_not_fit(tmp_path: Path) -> None:
    outputs = [json.dumps(STRONG_REVIEW)] * 3  # the first try and both repairs
    client = scripted_client(tmp_path, outputs)
    settings = ReviewerConfig(ensemble=1, meta_review=False, related_works=0, limits="fixed")
    with pytest.raises(Exception, match="ICLR2025Review"):
        asyncio.run(AgenticReviewer(client, settings, context_tokens=128_000).review(PAPER))
    client.close()


ECHO = {"broad": "the research field of the paper, in a few words",
        "focused": "the problem the paper studies and its kind of method",
        "specific": "the paper's specific method or main claim"}  # fmt: skip
PLACEHOLDER_REVIEW = {**STRONG_REVIEW, "summary": "summary of the paper: what the paper claims and does",
                      "strengths": ["strengths_1"], "weaknesses": ["weaknesses_1"], "questions": []}  # fmt: skip


def test_echoed_schema_queries_are_caught_counted_and_replaced(tmp_path: Path) -> None:
    """The embedded model's failure: its queries were the schema's descriptions, its points placeholders."""
    from review.render import review_markdown

    outputs = [json.dumps(ECHO), json.dumps(ECHO)] + [json.dumps(PLACEHOLDER_REVIEW)] * 2
    client = scripted_client(tmp_path, outputs)
    literature = FakeLiterature()
    settings = ReviewerConfig(ensemble=1, meta_review=False, judge_relevance=False)
    result = asyncio.run(AgenticReviewer(client, settings, literature=literature).review(PAPER))
    client.close()
    lit = result.literature
    assert lit is not None and lit.query_source == "fallback" and "research field" in lit.query_problems[0]
    assert lit.queries["specific"] == "Weight decay speeds up grokking"  # from the title
    assert not any("research field" in q for q in literature.queries)  # never searched for the prompt
    assert result.degenerate == {"RelatedWorkQueries": 2, "ICLR2025Review": 2}
    assert any("strengths_1" in p for p in result.reviews[0].degenerate)
    markdown = review_markdown(result)
    assert "built from the title and abstract" in markdown and "echoes the form" in markdown


def test_a_calibration_without_signal_is_not_presented_and_decisions_follow_ratings(client: LLMClient) -> None:
    intercept = flat_calibration("iclr2025").model_copy(
        update={"coef": [0.0] * 5, "cv": {"spearman": -0.25, "decision_auc": 0.5}, "fitted_on": {"n_papers": 30}}
    )
    settings = ReviewerConfig(ensemble=2, related_works=0)
    result = asyncio.run(AgenticReviewer(client, settings, calibration=intercept).review(PAPER))
    assert result.calibrated_rating is None and result.calibration_status == "no_signal"
    assert "Spearman -0.25" in (result.calibration_note or "") and "not presented" in (result.calibration_note or "")
    for member in result.reviews:
        assert member.decision == ("accept" if member.rating >= 6 else "reject") and "decision" not in member.review
    assert result.meta_rating is not None and result.meta_review is not None
    assert result.decision == result.meta_review["decision"] == ("accept" if result.meta_rating >= 6 else "reject")
    noisy = flat_calibration("iclr2025").model_copy(update={"cv": {"spearman": 0.3, "spearman_low": -0.1}})
    assert not noisy.signal()[0]  # an interval that reaches 0 is no signal either


def test_a_reviewer_without_a_valid_form_does_not_sink_the_review(tmp_path: Path) -> None:
    """`fars review` on a produced PDF: the embedded model's first reviewer never closed its form and the
    whole review failed, though the second reviewer and the area chair could answer."""
    from review.degenerate import InvalidReply
    from review.render import review_markdown

    # reviewer 1: every attempt (the first and two repairs) prose where JSON was asked; then the schema's
    # own valid instances for reviewer 2 and the area chair
    client = scripted_client(tmp_path, ["!fault:nonjson"] * 3)
    settings = ReviewerConfig(ensemble=2, meta_review=True, related_works=0, calibration=None)
    result = asyncio.run(AgenticReviewer(client, settings).review(PAPER))
    client.close()
    assert len(result.reviews) == 1 and result.meta_rating is not None
    assert len(result.failed) == 1 and result.failed[0].startswith("reviewer 1:")
    assert "Not counted" in review_markdown(result)
    # with no reviewer answering, there is no review: the error says so
    client = scripted_client(tmp_path / "none", ["!fault:nonjson"] * 3)
    with pytest.raises(InvalidReply):
        asyncio.run(
            AgenticReviewer(
                client, ReviewerConfig(ensemble=1, meta_review=False, related_works=0, calibration=None)
            ).review(PAPER)
        )
    client.close()
