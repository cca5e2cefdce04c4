"""Related work for a review: queries at three levels, search, a relevance judgement, fuller text.

1. The model writes three queries (broad: the field; focused: the problem and kind of method;
   specific: the method or main claim) from the title, abstract, section headings and as much of
   the text as the limits allow. A reply that echoes the schema or holds placeholders is asked
   again; if it still does, or fails, queries are built from the title and abstract instead
   (``query_source="fallback"``, with the problems recorded).
2. Each query is searched; hits are merged, the paper itself excluded.
3. The model judges each candidate's relevance (0 unrelated ... 3 same problem and approach); the
   unrelated are dropped and the rest ranked by relevance, then search score. Every judgement is
   recorded, so a reader sees why a work was or was not compared with.
4. The nearest ``fulltext_works`` works are read in fuller text when the backend offers it (an
   ``async fulltext(record_id)`` method, or a ``text`` field on its records); the others by abstract.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, Field, StringConstraints, create_model

from review.degenerate import CheckedModel
from review.ingest.paper import PaperText
from review.limits import ReviewLimits
from review.settings import ReviewerConfig

Query = Annotated[str, StringConstraints(min_length=3, max_length=120)]
QUERY_PHRASES = (
    "its research field",
    "the problem it studies and its kind of method",
    "its own method or main claim",
)
_STOP = frozenset(
    re.findall(
        r"\w+",
        "the a an and or of for to in on with by from at as is are was were be been being this that these those "
        "we our us it its their them they which what when where how than then thus also such can may might will "
        "would should could not no yes into over under between via using use used based new show shows shown paper "
        "propose proposed approach method methods results result work study studies problem problems model models "
        "data task tasks learning performance however while both each other more most many much well very one two",
    )
)


class LiteratureSearch(Protocol):
    """What the reviewer needs from a literature backend (``fars.literature`` backends fit)."""

    name: str

    async def search(self, query: str, k: int) -> list[Any]:
        """Hits with ``.record`` (``id``, ``title``, ``abstract``, ``year``) and ``.score``, best first."""
        ...


class RelatedWorkQueries(BaseModel):
    """Search queries for related work, from broad to specific."""

    broad: Query = Field(description="the research field of the paper, in a few words")
    focused: Query = Field(description="the problem the paper studies and its kind of method")
    specific: Query = Field(description="the paper's specific method or main claim")


class Judgement(BaseModel):
    """The model's judgement of one candidate work."""

    work: int = Field(ge=1, description="the candidate's number")
    relevance: Literal[0, 1, 2, 3] = Field(
        description="0 unrelated, 1 same broad field only, 2 same problem, 3 same problem and a similar approach"
    )
    reason: str = Field(min_length=3, max_length=120, description="why, in a few words")


class RelevanceJudgements(BaseModel):
    """Relevance judgements of candidate related works, one per candidate."""

    judgements: list[Judgement] = Field(min_length=1, max_length=60)


def judgements_for(candidates: int) -> type[RelevanceJudgements]:
    """The judgements schema for this many candidates: at most one item each, numbered 1 to ``candidates``.

    Under a grammar a schema's list bound is where the reply must end: the embedded model, given room for 60
    items, went on judging works 22, 23, ... that were never listed until its token limit cut the JSON, and the
    retry with twice the tokens did the same (a third of the embedded run's review time)."""
    item = create_model(
        "Judgement", __base__=Judgement, work=(int, Field(ge=1, le=candidates, description="the candidate's number"))
    )
    return create_model(
        "RelevanceJudgements",
        __base__=RelevanceJudgements,
        judgements=(list[item], Field(min_length=1, max_length=candidates)),  # type: ignore[valid-type]  # a model made at run time
    )


class RelatedWork(BaseModel):
    """A work the reviewer compared the paper with (or judged and left out)."""

    id: str
    title: str
    year: int | None = None
    score: float
    level: str  # which query found it first: broad, focused or specific
    relevance: int | None = None  # the model's judgement, 0-3 (None: not judged)
    reason: str | None = None
    text_source: Literal["abstract", "fulltext", "none"] = "abstract"
    text_chars: int = 0  # characters of its text the reviewers were shown


class LiteratureStep(BaseModel):
    """The record of the related-work search."""

    backend: str
    queries: dict[str, str] = Field(default_factory=dict)
    query_source: Literal["model", "fallback"] = "model"
    query_problems: list[str] = Field(default_factory=list)  # why the model's queries were not used
    candidates: list[RelatedWork] = Field(default_factory=list)  # every work found and judged
    works: list[RelatedWork] = Field(default_factory=list)  # the ones the reviewers compared with
    excluded_self: int = 0  # hits dropped because they are the paper under review
    judge_error: str | None = None
    error: str | None = None


def norm_title(title: str) -> str:
    """A title in lower case, punctuation folded, to match a paper against its own search hits."""
    return re.sub(r"[^a-z0-9]+", " ", title.lower()).strip()


def abstract_of(paper: PaperText) -> str:
    """The paper's abstract: the section headed so, else the opening of its text after the title."""
    for section in paper.sections:
        if norm_title(section.heading).startswith("abstract") and section.text.strip():
            return section.text.strip()
    text = paper.text
    if text.lstrip().startswith("#"):
        text = text.split("\n", 1)[-1]
    return text.strip()[:1200]


def keywords(text: str, k: int) -> list[str]:
    """The ``k`` most frequent content words of ``text`` (stop words and short words left out)."""
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z0-9\-]{3,}", text) if w.lower() not in _STOP]
    counts = Counter(w.lower() for w in words)
    return [w for w, _ in counts.most_common(k)]


def fallback_queries(paper: PaperText) -> RelatedWorkQueries:
    """Queries built from the title and abstract, for when the model's cannot be used."""
    abstract = abstract_of(paper)
    title_words = keywords(paper.title, 8)
    ranked = list(dict.fromkeys([*title_words[:2], *keywords(abstract, 12)]))
    broad = " ".join(ranked[:3]) or "machine learning"
    focused = " ".join(ranked[:6]) or broad
    specific = paper.title.strip()[:120] if len(paper.title.strip()) >= 3 else " ".join(ranked[:10])
    return RelatedWorkQueries(broad=broad[:120], focused=focused[:120], specific=specific or focused)


async def find_related(
    model: CheckedModel,
    literature: LiteratureSearch,
    paper: PaperText,
    text: str,
    settings: ReviewerConfig,
    limits: ReviewLimits,
    *,
    paper_id: str | None,
    top_k: int,
) -> tuple[LiteratureStep, dict[str, str]]:
    """The literature step's record and the text to show of each kept work, by id (module docstring)."""
    step = LiteratureStep(backend=literature.name)
    step.queries = (await _queries(model, paper, text, limits, step)).model_dump()
    own = norm_title(paper.title)
    found: dict[str, RelatedWork] = {}
    records: dict[str, Any] = {}
    try:
        for level, query in step.queries.items():
            for hit in await literature.search(query, top_k):
                record = hit.record
                itself = paper_id is not None and record.id.split(":")[-1] == paper_id
                if itself or (own and norm_title(record.title) == own):
                    step.excluded_self += 1
                    continue
                if record.id not in found or found[record.id].score < hit.score:
                    first = found[record.id].level if record.id in found else level
                    found[record.id] = RelatedWork(
                        id=record.id, title=record.title, year=record.year, score=float(hit.score), level=first
                    )
                    records[record.id] = record
    except Exception as exc:  # a literature fault must not lose the review; it is recorded
        step.error = f"{type(exc).__name__}: {exc}"[:300]
    ranked = sorted(found.values(), key=lambda w: -w.score)[: max(2 * settings.related_works, 8)]
    if settings.judge_relevance and ranked:
        await _judge(model, paper, ranked, records, step)
    step.candidates = ranked
    kept = [w for w in ranked if w.relevance != 0]
    kept.sort(key=lambda w: (-(w.relevance if w.relevance is not None else 1.5), -w.score))
    step.works = kept[: settings.related_works]
    texts = await _texts(literature, step.works, records, settings.fulltext_works, limits.work_chars)
    return step, texts


async def _queries(
    model: CheckedModel, paper: PaperText, text: str, limits: ReviewLimits, step: LiteratureStep
) -> RelatedWorkQueries:
    headings = "; ".join(s.heading for s in paper.sections if s.heading)[:600]
    whole = len(text) <= limits.query_chars
    ask = [
        {"role": "system", "content": "You are an expert ML researcher searching for prior work."},
        {
            "role": "user",
            "content": f"Paper '{paper.title}'.\n\nAbstract: {abstract_of(paper)[:1500]}\n\nSections: {headings}\n\n"
            f"{'Text' if whole else 'Opening of the text'}:\n{text[: limits.query_chars]}\n\n"
            "Write three search queries for prior work related to this paper, each a few words of real content "
            f"taken from the paper: broad ({QUERY_PHRASES[0]}), focused ({QUERY_PHRASES[1]}), specific "
            f"({QUERY_PHRASES[2]}).",
        },
    ]
    try:
        queries, problems = await model.ask(ask, RelatedWorkQueries, max_tokens=150, prompt_phrases=QUERY_PHRASES)
    except (
        ValueError,
        RuntimeError,
    ) as exc:  # no valid reply at all: fall back (a budget error recurs at the next call)
        queries, problems = None, [f"no valid reply: {type(exc).__name__}: {str(exc)[:200]}"]
    if queries is not None and not problems and len(set(queries.model_dump().values())) == 3:
        return queries
    if queries is not None and not problems:
        problems = ["the three queries are not distinct"]
    step.query_source = "fallback"
    step.query_problems = problems
    return fallback_queries(paper)


async def _judge(
    model: CheckedModel, paper: PaperText, works: list[RelatedWork], records: dict[str, Any], step: LiteratureStep
) -> None:
    lines = [
        f"[{i}] {w.title} ({w.year or 'n.d.'}): {(records[w.id].abstract or '')[:300]}" for i, w in enumerate(works, 1)
    ]
    ask = [
        {"role": "system", "content": "You are an expert ML researcher judging which prior works bear on a paper."},
        {
            "role": "user",
            "content": f"Paper '{paper.title}': {abstract_of(paper)[:1000]}\n\nCandidate prior works found by search:\n"
            + "\n".join(lines)
            + "\n\nJudge how related each candidate is to the paper: 0 unrelated, 1 same broad field only, 2 same "
            "problem, 3 same problem and a similar approach. One judgement per candidate, by its number, with a "
            "short reason.",
        },
    ]
    try:
        reply, problems = await model.ask(ask, judgements_for(len(works)), max_tokens=60 + 50 * len(works))
    except (ValueError, RuntimeError) as exc:  # unjudged works are ranked by search score; recorded
        step.judge_error = f"{type(exc).__name__}: {str(exc)[:200]}"
        return
    for judgement in reply.judgements:
        if 1 <= judgement.work <= len(works) and works[judgement.work - 1].relevance is None:
            works[judgement.work - 1].relevance = judgement.relevance
            works[judgement.work - 1].reason = judgement.reason
    if problems:
        step.judge_error = "reasons echo the schema: " + "; ".join(problems[:3])


async def _texts(
    literature: LiteratureSearch, works: list[RelatedWork], records: dict[str, Any], fulltext: int, chars: int
) -> dict[str, str]:
    texts: dict[str, str] = {}
    fetch = getattr(literature, "fulltext", None)
    for i, work in enumerate(works):
        record = records[work.id]
        body = ""
        if i < fulltext:
            body = str(getattr(record, "text", None) or getattr(record, "full_text", None) or "")
            if not body and callable(fetch):
                try:
                    body = str(await fetch(work.id) or "")
                except Exception:  # no fuller text: the abstract stands in (the record says which was shown)
                    body = ""
        if body:
            work.text_source = "fulltext"
        else:
            body = record.abstract or ""
            work.text_source = "abstract" if body else "none"
        texts[work.id] = body[:chars]
        work.text_chars = len(texts[work.id])
    return texts


def related_block(step: LiteratureStep | None, texts: dict[str, str]) -> str:
    """The related works as the reviewers see them (empty without works)."""
    if step is None or not step.works:
        return ""
    lines = []
    for w in step.works:
        judged = f" [relevance {w.relevance}/3]" if w.relevance is not None else ""
        body = texts.get(w.id, "")
        lines.append(f"- {w.title} ({w.year or 'n.d.'}){judged}" + (f": {body}" if body else ""))
    return "Related work found in the literature (judge novelty against it):\n" + "\n".join(lines) + "\n\n"
