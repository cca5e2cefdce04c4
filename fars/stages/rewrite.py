"""Sentences of the model's prose that fail the paper's checks, sent back to the model to rewrite.

A capable model's draft sometimes states a number the records do not hold, cites what the search did not
verify, or claims more than the corrected tests show. Replacing such a sentence with the harness's own on
the same point keeps the paper honest but splices machine text into the model's argument: in the relay
runs, the harness's sentence on the other measures ("train accuracy was 1.0000 in the baseline ...") landed
just before the model's "we did not check training accuracy", and a restated hypothesis stood where an
abstract's sentence had been. So, in open research, each failing sentence goes back to the model once, with
what failed and the records it may state, and its rewrite stands in its place when it passes the same checks
and is not degenerate. What still fails is left to ``fars.stages.writing.repair_in_place`` (the harness's
sentence, or dropped), so a weak or absent answer loses nothing.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, Field

from fars.llm.client import LLMClient, LLMError
from fars.paper.claims import OTHERS_WORK_PARTS, check_claims, repair_claims
from fars.paper.degenerate import degenerate_reasons
from fars.paper.grounding import BibEntry, Numbers, Sources, check_text, split_sentences
from fars.run.contracts import Results

log = logging.getLogger(__name__)

REWRITE_ASK = "These sentences of your draft failed the paper's checks"
INSTRUCTION = (
    "Rewrite each so it keeps its place in the paragraph's argument and passes the checks, or give an empty "
    "sentence where it cannot be said from these records. The claim check reads each clause (clauses joined by a "
    "semicolon, 'while', 'whereas' or 'but') as a claim about one condition: name each clause's condition by what "
    "it is ('the CNN with shifts', 'removing the shifts', 'smoothing at 0.3'), not by a record label such as "
    "'method' or 'followup-...', and say 'than the baseline' where a clause compares with it."
)
MAX_SENTENCES = 12  # failing sentences sent back in one request; the rest go to the harness's repair


class Rewrite(BaseModel):
    """The model's new wording of one failing sentence."""

    index: int = Field(description="the number of the sentence in the list")
    sentence: str = Field(max_length=600, description="the rewritten sentence, or empty to leave it out")


class Rewrites(BaseModel):
    """The model's answer: one rewrite per failing sentence."""

    rewrites: list[Rewrite] = Field(default_factory=list, max_length=MAX_SENTENCES)


class Records(Protocol):
    """What a paper is written from, as far as a rewrite needs it (``fars.stages.writing.Material``)."""

    @property
    def results(self) -> Results: ...

    @property
    def numbers(self) -> Numbers: ...

    @property
    def summary(self) -> str: ...

    @property
    def setup(self) -> str: ...

    @property
    def bibliography(self) -> list[BibEntry]: ...

    @property
    def sources(self) -> Sources: ...


@dataclass(frozen=True)
class Failing:
    """One sentence of a model part that fails a check, and why."""

    part: str
    sentence: str
    why: str


def failing_sentences(texts: dict[str, str], parts: list[str], m: Records) -> list[Failing]:
    """The model's sentences (title aside: a title is replaced whole) that state an untraceable number, cite an
    unverified record or claim what the tests do not show."""
    out = []
    for part in parts:
        if part == "title":
            continue
        for sentence in split_sentences(texts[part]):
            report = check_text(sentence, m.sources, m.bibliography)
            _, wrong = repair_claims(sentence, m.results) if part not in OTHERS_WORK_PARTS else ("", [])
            if not report.ok or wrong:
                # what the claim check read (the condition, what its test found), not just "unsupported": in the
                # relay run the model, told only that, rewrote two sentences the check read the same way again
                claims = check_claims(sentence, m.results).problems if wrong else []
                out.append(
                    Failing(part, sentence, "; ".join([*report.problems(), *(claims or wrong)]) or "unsupported")
                )
    return out


def rewrite_prompt(failing: list[Failing], texts: dict[str, str], m: Records) -> list[dict[str, str]]:
    """The request: the records the paper may state, each failing sentence in its paragraph, and what failed."""
    listed = "\n".join(
        f"{i}. [{f.part}] \u201c{f.sentence}\u201d \u2014 failed: {f.why}" for i, f in enumerate(failing, 1)
    )
    paragraphs = "\n".join(f"{p}: {texts[p]}" for p in dict.fromkeys(f.part for f in failing))
    citable = "\n".join(f"[@{e.key}] {e.title}" for e in m.bibliography if e.verified)
    return [
        {"role": "system", "content": "You write clear, honest machine learning papers."},
        {
            "role": "user",
            "content": (
                f"Experiment: {m.numbers.plain(m.setup)}\nFindings: {m.numbers.plain(m.summary)}\n"
                + (f"Works the paper may cite, by key:\n{citable}\n" if citable else "")
                + f"Your draft's paragraphs:\n{paragraphs}\n\n{REWRITE_ASK} (every number must be one the "
                "experiment or findings state; cite only the keys above; claim only what the corrected tests "
                f"show):\n{listed}\n\n{INSTRUCTION}"
            ),
        },
    ]


async def rewrite_failing(llm: LLMClient, texts: dict[str, str], parts: list[str], m: Records) -> list[str]:
    """Each failing sentence of the model's ``parts`` replaced by the model's rewrite where the rewrite passes the
    checks (``texts`` updated); what was rewritten, for grounding.json's repairs."""
    failing = failing_sentences(texts, parts, m)[:MAX_SENTENCES]
    if not failing:
        return []
    ask = rewrite_prompt(failing, texts, m)
    try:
        answer = await llm.structured(ask, Rewrites, max_tokens=250 * len(failing) + 200)
    except LLMError as exc:  # the harness's repair still runs: nothing is lost
        log.warning("the rewrite request failed (%s): the harness repairs the sentences itself", exc)
        return []
    done: list[str] = []
    for r in answer.rewrites:
        if not 1 <= r.index <= len(failing):
            continue
        f, new = failing[r.index - 1], r.sentence.strip()
        if f.sentence not in texts[f.part]:
            continue  # answered twice: the first rewrite stands
        if not new:
            texts[f.part] = _replace(texts[f.part], f.sentence, "")
            done.append(f"{f.part}: the model left out \u201c{f.sentence[:160]}\u201d: {f.why}")
            continue
        # a minimal edit keeps most of the failing sentence's words, so only the fixed instructions count as echoes
        if degenerate_reasons(new, echoes=[REWRITE_ASK, INSTRUCTION]) or _fails(new, m, f.part):
            continue  # the harness's repair takes it
        texts[f.part] = _replace(texts[f.part], f.sentence, new)
        done.append(
            f"{f.part}: rewritten by the model \u201c{f.sentence[:160]}\u201d -> \u201c{new[:160]}\u201d: {f.why}"
        )
    return done


def _fails(sentence: str, m: Records, part: str = "") -> bool:
    """Whether a rewrite still fails a check (every sentence of it; claims not checked in other work's parts)."""
    _, wrong = repair_claims(sentence, m.results) if part not in OTHERS_WORK_PARTS else ("", [])
    return bool(wrong) or not check_text(sentence, m.sources, m.bibliography).ok


def _replace(text: str, old: str, new: str) -> str:
    """``text`` with the sentence ``old`` put as ``new`` (removed when empty), paragraphs kept, spaces single."""
    return re.sub(r"[ \t]{2,}", " ", text.replace(old, new, 1)).strip()
