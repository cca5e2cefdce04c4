"""The agentic reviewer on the scripted model: reading, related work, ensemble, meta-review, calibration."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fars.config import LLMConfig
from fars.ledger import Ledger
from fars.literature import LiteratureRecord, SearchHit
from fars.llm.client import LLMClient
from review.calibration import CalibrationModel
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
        alpha=1.0, fitted_on={"reviewer": "model:other", "reviewer_settings": {"ensemble": 1}, "n_papers": 40},
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
    assert result.calibration == "t@v1" and "model:other" in (result.calibration_note or "")
    assert "ensemble 1->3" in (result.calibration_note or "")  # fitted on reviews made otherwise: said
    lit = result.literature
    assert lit is not None and set(lit.queries) == {"broad", "focused", "specific"}
    assert len(literature.queries) == 3 and lit.excluded_self == 3
    assert [w.id for w in lit.works] == ["x:1", "x:2"]
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
    long_paper = "# Long\n\n" + "\n\n".join(f"## S{i}\n\n" + "text " * 1500 for i in range(6))
    settings = ReviewerConfig(reading="summaries", max_paper_chars=2000, chunk_chars=8000, max_parts=3, ensemble=1)
    recorder = RecordingClient(client)
    result = asyncio.run(AgenticReviewer(recorder, settings).review(long_paper))
    reading = result.reading
    assert reading is not None and reading.mode == "summaries" and not reading.complete
    assert 1 <= len(reading.notes) <= 3
    assert [n for n, _ in recorder.asked].count("PartNotes") == len(reading.notes)


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
