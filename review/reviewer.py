"""The agentic ICLR-style reviewer: read, search related work, review as an ensemble, meta-review.

``AgenticReviewer.review(paper)`` goes through these steps and records each in the ``PaperReview``:

1. read the paper within ``max_paper_chars`` (whole, excerpts of every section, or notes on parts;
   see ``review.reading``), recording what was read;
2. when a literature backend and ``related_works > 0`` are given: write related-work queries at
   three levels of specificity, search, keep the nearest works (the paper itself excluded);
3. ``ensemble`` reviews on the form, one per persona (the paper comes first in the prompt and the
   persona last, so a local model reuses the paper's prompt cache across the ensemble);
4. an area chair's meta-review over the reviews;
5. the calibrated score from the configured calibration model, beside the raw scores.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, Field, StringConstraints

from review.calibration import CalibrationModel
from review.forms import MetaReview, Point, decision_for, get_form
from review.ingest import PaperText, paper_from_text
from review.reading import Reading, plan_parts, plan_reading
from review.settings import PERSONAS, ReviewerConfig

REVIEW_VERSION = 1
SYSTEM = (
    "You are an expert reviewer for the ICLR machine learning conference. Read the paper and fill in "
    "the review form honestly: judge the soundness of the evidence, the clarity and the contribution."
)


class StructuredModel(Protocol):
    """What the reviewer needs from a model client (``fars.llm.client.LLMClient`` fits)."""

    async def structured(self, messages: list[dict[str, str]], schema: Any, *, max_tokens: int | None = None) -> Any:
        """Return an instance of ``schema``."""
        ...


class LiteratureSearch(Protocol):
    """What the reviewer needs from a literature backend (``fars.literature`` backends fit)."""

    name: str

    async def search(self, query: str, k: int) -> list[Any]:
        """Hits with ``.record`` (``id``, ``title``, ``abstract``, ``year``) and ``.score``, best first."""
        ...


Query = Annotated[str, StringConstraints(min_length=3, max_length=120)]


class RelatedWorkQueries(BaseModel):
    """Search queries for related work, from broad to specific."""

    broad: Query = Field(description="the research field of the paper, in a few words")
    focused: Query = Field(description="the problem the paper studies and its kind of method")
    specific: Query = Field(description="the paper's specific method or main claim")


class PartNotes(BaseModel):
    """A reviewer's notes on one part of a long paper."""

    summary: str = Field(min_length=10, max_length=500, description="what this part says")
    key_points: list[Point] = Field(min_length=1, max_length=4, description="claims, evidence or problems noticed")


class RelatedWork(BaseModel):
    """A work the reviewer compared the paper with."""

    id: str
    title: str
    year: int | None = None
    score: float
    level: str  # which query found it first: broad, focused or specific


class LiteratureStep(BaseModel):
    """The record of the related-work search."""

    backend: str
    queries: dict[str, str] = Field(default_factory=dict)
    works: list[RelatedWork] = Field(default_factory=list)
    excluded_self: int = 0  # hits dropped because they are the paper under review
    error: str | None = None


class MemberReview(BaseModel):
    """One reviewer of the ensemble: persona, the filled form, its overall rating and sub-scores."""

    persona: str
    review: dict[str, Any]
    rating: float
    subscores: dict[str, float]


class PaperReview(BaseModel):
    """Everything the reviewer did and concluded for one paper (written as review.json)."""

    version: int = REVIEW_VERSION
    reviewer: str  # "model:<model string>" or "oracle"
    form: str
    title: str
    source: str
    reading: Reading | None = None
    literature: LiteratureStep | None = None
    reviews: list[MemberReview]
    meta_review: dict[str, Any] | None = None
    raw_rating: float  # mean overall rating of the ensemble
    meta_rating: float | None = None
    calibrated_rating: float | None = None
    calibration: str | None = None  # name@version of the calibration model applied
    calibration_note: str | None = None
    subscores: dict[str, float] = Field(default_factory=dict)  # ensemble means
    decision: str
    excluded_human: int | None = None  # oracle: the human whose rating was returned
    usage: dict[str, Any] | None = None  # tokens and calls, filled by the caller from its ledger
    wall_s: float = 0.0

    @property
    def final_rating(self) -> float:
        """The area chair's rating when there is a meta-review, else the ensemble mean."""
        return self.meta_rating if self.meta_rating is not None else self.raw_rating

    def features(self) -> dict[str, float]:
        """Calibration features: ensemble-mean sub-scores and confidence, and the raw rating."""
        return {**self.subscores, "rating": self.raw_rating}


def _norm_title(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


class AgenticReviewer:
    """Reviews papers on a form with an ensemble, related work and a meta-review (module docstring)."""

    def __init__(
        self,
        client: StructuredModel,
        settings: ReviewerConfig,
        *,
        literature: LiteratureSearch | None = None,
        calibration: CalibrationModel | None = None,
        top_k: int = 5,
        name: str = "model",
    ) -> None:
        self.client = client
        self.settings = settings
        self.form = get_form(settings.form)
        self.literature = literature
        self.calibration = calibration
        self.top_k = top_k
        self.name = name
        self._abstracts: dict[str, str] = {}  # abstracts of the works found, by id
        if calibration is not None and calibration.form != settings.form:
            raise ValueError(
                f"calibration {calibration.label} was fitted for form {calibration.form!r}, not {settings.form!r}; "
                "set reviewer.calibration to one fitted for this form, or null"
            )

    async def review(self, paper: PaperText | str, *, paper_id: str | None = None) -> PaperReview:
        """Review one paper (a ``PaperText`` or Markdown/plain text); ``paper_id`` keeps it out of its related work."""
        started = time.perf_counter()
        if isinstance(paper, str):
            paper = paper_from_text(paper)
        text, reading = await self._read(paper)
        literature = await self._related_work(paper, text, paper_id)
        related = self._related_block(literature)
        members = [await self._member(i, text, reading, related) for i in range(self.settings.ensemble)]
        meta = await self._meta(paper, members) if self.settings.meta_review else None
        subscores = {k: sum(m.subscores[k] for m in members) / len(members) for k in members[0].subscores}
        raw = sum(m.rating for m in members) / len(members)
        result = PaperReview(
            reviewer=self.name,
            form=self.settings.form,
            title=paper.title,
            source=paper.source,
            reading=reading,
            literature=literature,
            reviews=members,
            meta_review=meta.model_dump() if meta else None,
            raw_rating=raw,
            meta_rating=float(meta.rating) if meta else None,
            subscores=subscores,
            decision=decision_for(raw),
        )
        apply_calibration(result, self.calibration)
        self._note_settings_mismatch(result)
        result.wall_s = time.perf_counter() - started
        return result

    def _note_settings_mismatch(self, result: PaperReview) -> None:
        """Say so when the calibration was fitted on reviews made with other reading or ensemble settings."""
        fitted = (self.calibration.fitted_on.get("reviewer_settings") or {}) if self.calibration else {}
        keys = ("ensemble", "max_paper_chars", "reading", "meta_review", "personas")
        differ = [
            f"{k} {fitted[k]}->{getattr(self.settings, k)}"
            for k in keys
            if k in fitted and fitted[k] != getattr(self.settings, k)
        ]
        if differ and result.calibrated_rating is not None:
            note = "fitted with other reviewer settings: " + ", ".join(differ)
            result.calibration_note = f"{result.calibration_note}; {note}" if result.calibration_note else note

    async def _read(self, paper: PaperText) -> tuple[str, Reading]:
        s = self.settings
        if s.reading == "excerpts" or paper.chars <= s.max_paper_chars:
            return plan_reading(paper, s.max_paper_chars)
        chunks, reading = plan_parts(paper, s.chunk_chars, s.max_parts)
        notes = []
        for i, chunk in enumerate(chunks):
            ask = [
                {"role": "system", "content": "You are an expert ML reviewer taking notes while reading a paper."},
                {
                    "role": "user",
                    "content": f"Part {i + 1} of {len(chunks)} of the paper '{paper.title}':\n\n{chunk}\n\n"
                    "Write notes on this part: what it says, and the claims, evidence or problems you notice.",
                },
            ]
            part = await self.client.structured(ask, PartNotes, max_tokens=400)
            notes.append(f"Part {i + 1}: {part.summary} " + " ".join(f"- {p}" for p in part.key_points))
        reading.notes = notes
        return f"# {paper.title}\n\nNotes taken while reading the paper part by part:\n\n" + "\n\n".join(notes), reading

    async def _related_work(self, paper: PaperText, text: str, paper_id: str | None) -> LiteratureStep | None:
        if self.literature is None or self.settings.related_works == 0 or self.literature.name == "none":
            return None
        step = LiteratureStep(backend=self.literature.name)
        head = text[:2500]
        ask = [
            {"role": "system", "content": "You are an expert ML researcher searching for prior work."},
            {
                "role": "user",
                "content": f"Paper '{paper.title}':\n\n{head}\n\nWrite three search queries for prior work related to "
                "this paper: one broad (the field), one focused (the problem and kind of method), one specific "
                "(its method or main claim).",
            },
        ]
        queries = await self.client.structured(ask, RelatedWorkQueries, max_tokens=150)
        step.queries = queries.model_dump()
        own = _norm_title(paper.title)
        found: dict[str, RelatedWork] = {}
        try:
            for level, query in step.queries.items():
                for hit in await self.literature.search(query, self.top_k):
                    record = hit.record
                    itself = paper_id is not None and record.id.split(":")[-1] == paper_id
                    if itself or (own and _norm_title(record.title) == own):
                        step.excluded_self += 1
                        continue
                    if record.id not in found or found[record.id].score < hit.score:
                        level_found = found[record.id].level if record.id in found else level
                        found[record.id] = RelatedWork(
                            id=record.id,
                            title=record.title,
                            year=record.year,
                            score=float(hit.score),
                            level=level_found,
                        )
                        self._abstracts[record.id] = record.abstract or ""
        except Exception as exc:  # a literature fault must not lose the review; it is recorded
            step.error = f"{type(exc).__name__}: {exc}"[:300]
        step.works = sorted(found.values(), key=lambda w: -w.score)[: self.settings.related_works]
        return step

    def _related_block(self, step: LiteratureStep | None) -> str:
        if step is None or not step.works:
            return ""
        lines = [
            f"- {w.title} ({w.year or 'n.d.'}): {self._abstracts.get(w.id, '')[:400]}".rstrip(": ") for w in step.works
        ]
        return "Related work found in the literature (judge novelty against it):\n" + "\n".join(lines) + "\n\n"

    async def _member(self, index: int, text: str, reading: Reading, related: str) -> MemberReview:
        persona = self.settings.personas[index % len(self.settings.personas)]
        seen = (
            "the whole paper" if reading.complete else f"{reading.chars_read} of its {reading.chars_total} characters"
        )
        extra = (
            f" You are reviewer {index + 1} of {self.settings.ensemble}."
            if index >= len(self.settings.personas)
            else ""
        )
        ask = [
            {"role": "system", "content": SYSTEM},
            {
                "role": "user",
                "content": f"Paper (you see {seen}):\n\n{text}\n\n{related}{PERSONAS[persona]}{extra} "
                "Write your review on the form.",
            },
        ]
        filled = await self.client.structured(ask, self.form, max_tokens=self.settings.max_tokens)
        return MemberReview(
            persona=persona, review=filled.model_dump(), rating=filled.overall(), subscores=filled.subscores()
        )

    async def _meta(self, paper: PaperText, members: list[MemberReview]) -> MetaReview:
        blocks = []
        for i, m in enumerate(members):
            r = m.review
            scores = ", ".join(f"{k} {v:g}" for k, v in m.subscores.items())
            blocks.append(
                f"Reviewer {i + 1} ({m.persona}): rating {m.rating:g}; {scores}.\nSummary: {r.get('summary', '')}\n"
                f"Strengths: {'; '.join(r.get('strengths', []))}\nWeaknesses: {'; '.join(r.get('weaknesses', []))}"
            )
        ask = [
            {"role": "system", "content": "You are the area chair of an ICLR submission; you weigh the reviews."},
            {
                "role": "user",
                "content": f"Paper: {paper.title}\n\n" + "\n\n".join(blocks) + "\n\nWrite the meta-review: the "
                "consensus, the strengths and weaknesses the reviewers agree on, your rating and decision.",
            },
        ]
        result: MetaReview = await self.client.structured(ask, MetaReview, max_tokens=500)
        return result


def apply_calibration(result: PaperReview, calibration: CalibrationModel | None) -> None:
    """Fill ``calibrated_rating`` from the model's features; note when the model was fitted elsewhere."""
    if calibration is None:
        result.calibration_note = "no calibration model configured"
        return
    if calibration.form != result.form:
        result.calibration_note = f"calibration {calibration.label} is for form {calibration.form}, not {result.form}"
        return
    result.calibrated_rating = calibration.predict(result.features())
    result.calibration = calibration.label
    fitted_for = calibration.fitted_on.get("reviewer")
    if fitted_for and fitted_for != result.reviewer:
        result.calibration_note = f"fitted on reviews by {fitted_for}, applied to {result.reviewer}"


async def review_paper(
    client: StructuredModel, paper: str, *, form: str = "iclr2025", max_chars: int = 6000
) -> PaperReview:
    """One plain review of ``paper`` on ``form`` (one reviewer, no meta-review, no calibration)."""
    settings = ReviewerConfig(form=form, max_paper_chars=max_chars, ensemble=1, meta_review=False)  # type: ignore[arg-type]
    return await AgenticReviewer(client, settings).review(paper)
