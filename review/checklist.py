"""The integrity checklist every review answers: fixed yes/no/unclear questions, each with its evidence.

A coarse overall rating rarely moves a step for a flaw the reviewer wrote down; a fixed question does
("do the numbers in the text agree with the tables?"), so the probe can tell whether a planted flaw was
named and the fitted score can weigh each answer (as the Stanford Agentic Reviewer scores fixed
dimensions and maps them to a rating by a regression). Every question is phrased so that "yes" means
the paper is sound on that point.

A weak model answers such questions degenerately (the question read back, a placeholder, one sentence
pasted under every item, "yes" with no evidence). ``clean_checklist`` never invents an answer for it:
each such item becomes ``not answered`` and is counted, so the checklist a reader sees holds only
answers the model gave with evidence of its own.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from review.bounded import Bounded
from review.degenerate import normalized, value_problems

Answer = Literal["yes", "no", "unclear"]
Cleaned = Literal["yes", "no", "unclear", "not answered"]
NOT_ANSWERED: Literal["not answered"] = "not answered"
EVIDENCE_CHARS = 160  # the fixed form's evidence length (the embedded model's budget)
# item id -> the question; "yes" is always the sound answer
ITEMS: dict[str, str] = {
    "numbers_consistent": "Do the numbers in the text agree with the tables and figures?",
    # ablations and controls of the method, and works only cited, are not a comparison: a capable reviewer answered
    # "yes" on probe copies whose every comparison had been deleted, citing exactly those (issue 30)
    "baselines_compared": (
        "Are the method's results compared, with numbers on the same tasks, against baselines or prior methods "
        "(not only its own ablations or controls, nor works only cited)?"
    ),
    "claims_supported": "Do the claims stay within what the evidence shows?",
    "derivations_valid": "Are the equations and derivations valid?",
    "reproducible": "Is the setup reproducible (settings, seeds, data named)?",
    "free_of_filler": "Is the text free of filler and repetition without content?",
    "free_of_reviewer_text": "Is the paper free of text addressed to its reviewer?",
}
SCORES: dict[str, float] = {"yes": 1.0, "no": -1.0, "unclear": 0.0, NOT_ANSWERED: 0.0}
ITEM_HARNESS = "free_of_reviewer_text"  # the harness's own injection scan answers it when it finds such text


def _drop_description(schema: dict[str, Any]) -> None:
    schema.pop("description", None)  # small models copy a class docstring into the values


class ChecklistAnswer(BaseModel):
    """One checklist answer: yes, no or unclear, and the evidence (a quote or a location)."""

    model_config = ConfigDict(json_schema_extra=_drop_description)
    answer: Answer
    evidence: Annotated[str, Bounded(EVIDENCE_CHARS)] = Field(description="a short quote or section that shows it")


class CheckedAnswer(BaseModel):
    """A checklist answer as recorded: the model's, ``not answered`` when degenerate, or the harness's."""

    answer: Cleaned
    evidence: str = ""
    source: Literal["model", "harness"] = "model"
    problem: str | None = None  # why the model's answer was not kept


class Checklist(BaseModel):
    """The checklist as a form field: one ``{answer, evidence}`` object per item (``ITEMS``)."""

    model_config = ConfigDict(json_schema_extra=_drop_description)
    numbers_consistent: ChecklistAnswer = Field(description=ITEMS["numbers_consistent"])
    baselines_compared: ChecklistAnswer = Field(description=ITEMS["baselines_compared"])
    claims_supported: ChecklistAnswer = Field(description=ITEMS["claims_supported"])
    derivations_valid: ChecklistAnswer = Field(description=ITEMS["derivations_valid"])
    reproducible: ChecklistAnswer = Field(description=ITEMS["reproducible"])
    free_of_filler: ChecklistAnswer = Field(description=ITEMS["free_of_filler"])
    free_of_reviewer_text: ChecklistAnswer = Field(description=ITEMS["free_of_reviewer_text"])


@cache
def checklist_model(evidence_chars: int = EVIDENCE_CHARS) -> type[BaseModel]:
    """``Checklist`` with evidence of at most ``evidence_chars`` characters (a larger model gets more room)."""
    if evidence_chars == EVIDENCE_CHARS:
        return Checklist
    answer = create_model(
        "ChecklistAnswer",
        __base__=ChecklistAnswer,
        evidence=(Annotated[str, Bounded(evidence_chars)], Field(description="a short quote or section that shows it")),
    )
    fields: dict[str, Any] = {item: (answer, Field(description=question)) for item, question in ITEMS.items()}
    sized: type[BaseModel] = create_model("Checklist", __base__=Checklist, **fields)
    return sized


def clean_checklist(filled: Any) -> tuple[dict[str, CheckedAnswer], list[str]]:
    """The model's checklist with every degenerate answer turned into ``not answered``, and the problems.

    Degenerate: evidence that is empty for a yes or no (an answer without evidence is not kept), a
    placeholder or loop, the question or a field name read back, a single word (the embedded model
    writes "no" or "n" as its evidence), or the same evidence pasted under three or more items.
    """
    raw: dict[str, Any] = filled.model_dump() if isinstance(filled, BaseModel) else dict(filled or {})
    evidences = Counter(normalized(str((raw.get(i) or {}).get("evidence", ""))) for i in ITEMS)
    out: dict[str, CheckedAnswer] = {}
    problems: list[str] = []
    for item, question in ITEMS.items():
        given = raw.get(item) or {}
        answer: Any = given.get("answer")
        evidence = " ".join(str(given.get("evidence", "")).split())
        why: str | None = None
        if answer not in ("yes", "no", "unclear"):
            why = "no answer"
        elif not normalized(evidence):
            why = None if answer == "unclear" else f"'{answer}' without evidence"
        else:
            found = value_problems(evidence, (*ITEMS, "answer", "evidence"), (question, *ITEMS.values()))
            if found:
                why = found[0]
            elif len(normalized(evidence).split()) < 2 or normalized(evidence) in ("yes", "no", "unclear"):
                why = "evidence too short to point anywhere"  # "no", "n": the answer again, not a quote or place
            elif evidences[normalized(evidence)] >= 3:
                why = "the same evidence under several items"
        if why is None:
            out[item] = CheckedAnswer(answer=answer, evidence=evidence)
        else:
            out[item] = CheckedAnswer(answer=NOT_ANSWERED, problem=why)
            problems.append(f"checklist.{item}: {why}")
    return out, problems


def checklist_features(checklists: list[dict[str, CheckedAnswer]]) -> dict[str, float]:
    """Per item, the mean answer over the ensemble (yes +1, no -1, unclear or not answered 0): ``check_ITEM``."""
    if not checklists:
        return {f"check_{item}": 0.0 for item in ITEMS}
    return {
        f"check_{item}": sum(SCORES[c[item].answer] if item in c else 0.0 for c in checklists) / len(checklists)
        for item in ITEMS
    }


FEATURES = [f"check_{item}" for item in ITEMS]


def checklist_counts(checklists: list[dict[str, CheckedAnswer]]) -> dict[str, dict[str, int]]:
    """Per item, how many reviewers answered yes, no, unclear or not at all (what the area chair and readers see)."""
    return {item: dict(Counter(c[item].answer for c in checklists if item in c)) for item in ITEMS}


def says_no(checklists: list[dict[str, CheckedAnswer]], item: str) -> bool:
    """Whether any reviewer answered ``no`` to ``item`` (with evidence, or the harness did)."""
    return any(item in c and c[item].answer == "no" for c in checklists)
