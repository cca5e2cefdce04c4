"""Degenerate model text: the schema's own words or placeholders where content belongs, or loops.

A small model asked for JSON against a schema often copies the schema into the values: a search
query that reads "the research field of the paper, in a few words" (a field's description), a
strength that reads "strengths_1" (a field's name and a number), or a bare placeholder ("string",
"...", "<text>"), or loops ("1.1.1.1...", one sentence ten times). Such a reply validates, yet says
nothing. ``value_problems`` names every such problem of one text: the one detector, which the reviewer
applies to every value of a reply (``echo_problems``, so it can ask again, fall back, and count them) and
``fars.paper.degenerate`` builds on for prose about a study.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel


class InvalidReply(RuntimeError):
    """A model gave no reply that fits the requested schema (after its repairs).

    The reviewer's model (any object with ``structured``) raises a subclass of this when it gives up on
    a form; fars's client does (``StructuredOutputError``). The reviewer then goes on without that
    reviewer; budgets, cancellation and provider failures are other errors and still end the review.
    """


_PLACEHOLDERS = {
    "string",
    "str",
    "text",
    "example",
    "placeholder",
    "todo",
    "tbd",
    "n/a",
    "na",
    "none",
    "null",
    "value",
    "your answer",
    "your answer here",
    "insert text",
    "lorem ipsum",
    "query",
    "point",
    "item",
}
_BRACKETED = re.compile(r"^\s*(?:<[^<>]{0,60}>|\{[^{}]{0,60}\}|\[[^\[\]]{0,60}\]|\.{2,}|…)\s*$")
# a placeholder anywhere in a text: a form's slot name and a number (``strengths_1``, ``question_2``), a slot
# (``<title>``, ``{name}``, ``[insert ...]``) or a filler word. A variable with an index (``rho_0``, ``x_1``,
# ``theta_2``) is a paper's notation, which a review quotes: not a placeholder
_SLOTS = (
    r"strengths?|weakness(?:es)?|questions?|limitations?|points?|items?|fields?|values?|texts?|examples?|names?"
    r"|titles?|summary|summaries|answers?|evidence|reasons?|claims?|ideas?|sections?|entry|entries"
)
_PLACEHOLDER_IN = re.compile(
    rf"(?ix)(\b(?:{_SLOTS})_\d+\b)|(<[a-z _-]{{2,30}}>)|(\{{[a-z _-]{{2,30}}\}})|(\[(?:insert|your|todo|tbd)[^\]]*\])"
    r"|\b(lorem\s+ipsum|xxx+)\b"
)
# a filler word is a placeholder where it stands for the text (short, or leading it: "TODO", "TBD: fill in"), not
# where a sentence uses it as a word: a review of the second relay run said the paper "leaves a placeholder
# '[unverified]' marker" and was refused as degenerate
_FILLER = re.compile(r"(?i)\b(todo|tbd|placeholder)\b")
FILLER_WORDS = 8  # a text of fewer words holding a filler word is that filler
LOOPS = "loops (repeats the same phrases)"


def normalized(text: str) -> str:
    """``text`` as lower-case words and numbers joined by single spaces (what the checks compare)."""
    return " ".join(words_of(text))


def words_of(text: str) -> list[str]:
    """The lower-case words and numbers of ``text``."""
    return re.findall(r"[a-z0-9]+", text.lower())


def sentences_of(text: str) -> list[str]:
    """The sentences of ``text``, lower-cased, without their end marks."""
    return [s.strip(" .!?").lower() for s in re.split(r"[.!?]\s+", " ".join(text.split())) if s.strip(" .!?")]


def _schema_texts(model: type[BaseModel]) -> tuple[set[str], list[str]]:
    """Field names and descriptions (with the model's docstring) of ``model`` and its nested models."""
    names: set[str] = set()
    descriptions: list[str] = []
    if model.__doc__:
        descriptions.append(model.__doc__)
    for name, info in model.model_fields.items():
        names.add(name)
        if info.description:
            descriptions.append(info.description)
        for arg in getattr(info.annotation, "__args__", ()) or ():
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                sub_names, sub_descriptions = _schema_texts(arg)
                names |= sub_names
                descriptions += sub_descriptions
    return names, descriptions


def _placeholder(value: str, norm: str) -> str | None:
    if _BRACKETED.match(value) or norm in _PLACEHOLDERS:
        return f"placeholder {value.strip()[:40]!r}"
    found = _PLACEHOLDER_IN.search(value)
    if found:
        return f"placeholder text {found.group(0)!r}"
    filler = _FILLER.search(value)
    if filler and (len(norm.split()) < FILLER_WORDS or not value[: filler.start()].strip(" \t\n:-*\"'")):
        return f"placeholder text {filler.group(0)!r}"
    return None


def _loop(words: list[str]) -> str | None:
    if len(words) >= 6 and len(set(words)) <= 2:
        return "loops (the same word or two again and again)"
    if len(words) >= 12:
        trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        if len(set(trigrams)) / len(trigrams) < 0.5:
            return LOOPS
    return None


def _repeated_sentence(value: str) -> str | None:
    sentences = sentences_of(value)
    repeated = [s for s, n in Counter(sentences).items() if n > 1 and len(words_of(s)) >= 5]
    if (len(sentences) >= 3 and len(set(sentences)) <= len(sentences) / 2) or repeated:
        return "repeats the same sentence"
    return None


def _field_name(value: str, norm: str, names: set[str]) -> str | None:
    stem = re.sub(r"\s*\d+$", "", norm)  # "strengths 1", "weakness 2"
    if stem in names or stem.rstrip("s") in {n.rstrip("s") for n in names}:
        return f"field name {value.strip()[:40]!r}"
    return None


def _schema_echo(norm: str, descriptions: list[str]) -> str | None:
    words = set(norm.split())
    for description in descriptions:
        if (
            description in norm
            or (len(norm.split()) >= 3 and norm in description)
            or (len(words) >= 3 and len(set(description.split()) & words) >= 0.8 * len(words))
        ):
            return f"echoes the schema or instructions ({description[:60]!r})"
    return None


def value_problems(value: str, names: Iterable[str] = (), descriptions: Iterable[str] = ()) -> list[str]:
    """Why ``value`` says nothing (empty when it may stand): empty, a placeholder, a loop, the same sentence
    again, a field's name (``names``, the schema's), or one of ``descriptions`` (the schema's descriptions,
    fixed instructions: texts it must not merely repeat) read back."""
    norm = normalized(value)
    if not norm:
        return ["empty text" if not _BRACKETED.match(value) else f"placeholder {value.strip()!r}"]
    named = {normalized(n) for n in names}
    described = [d for d in map(normalized, descriptions) if len(d.split()) >= 3]
    found = (
        _placeholder(value, norm),
        _loop(norm.split()),
        _repeated_sentence(value),
        _field_name(value, norm, named),
        _schema_echo(norm, described),
    )
    return [why for why in found if why is not None]


def echo_problems(reply: BaseModel, prompt_phrases: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> list[str]:
    """Every text value of ``reply`` that echoes its schema (or one of ``prompt_phrases``, words of the
    request that describe what to write) or is a placeholder, as 'field: why'; top-level fields in
    ``skip`` are left to the caller's own check."""
    names, descriptions = _schema_texts(type(reply))
    named = {normalized(n) for n in names}
    described = [d for d in map(normalized, [*descriptions, *prompt_phrases]) if len(d.split()) >= 3]
    problems: list[str] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, BaseModel):
            for key in type(value).model_fields:
                walk(getattr(value, key), f"{where}.{key}" if where else key)
        elif isinstance(value, str):
            found = value_problems(value, named, described)
            if found:
                problems.append(f"{where}: {found[0]}")
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}.{key}")

    for key in type(reply).model_fields:
        if key not in skip:
            walk(getattr(reply, key), key)
    return problems


def _shown(reply: str, limit: int = 6000) -> str:
    """A reply asked about again, from its start (a cut start once hid which fields the complaint named)."""
    return reply if len(reply) <= limit else reply[:limit] + " ... (the rest of that reply is left out here)"


class CheckedModel:
    """Asks a model for structured output and rejects echoed replies: asks again, then gives up.

    Wraps anything with the reviewer's ``structured`` method. Each reply with schema text or
    placeholders is counted in ``counts`` (by schema name) and asked again with the problems named, at
    most ``retries`` times; the last reply is then returned with its problems, for the caller to fall
    back or to flag.
    """

    def __init__(self, client: Any, retries: int = 1) -> None:
        self.client = client
        self.retries = retries
        self.counts: dict[str, int] = {}

    async def ask(
        self,
        messages: list[dict[str, str]],
        schema: type[BaseModel],
        *,
        max_tokens: int | None = None,
        prompt_phrases: tuple[str, ...] = (),
        skip_fields: tuple[str, ...] = (),
    ) -> tuple[Any, list[str]]:
        """The reply and the echo problems left in it (empty when it is clean; ``skip_fields`` unchecked)."""
        asked = list(messages)
        reply: Any = None
        problems: list[str] = []
        for attempt in range(self.retries + 1):
            reply = await self.client.structured(asked, schema, max_tokens=max_tokens)
            problems = echo_problems(reply, prompt_phrases, skip_fields)
            if not problems:
                return reply, []
            self.counts[schema.__name__] = self.counts.get(schema.__name__, 0) + 1
            if attempt < self.retries:
                asked = [
                    *messages,
                    {"role": "assistant", "content": _shown(reply.model_dump_json())},
                    {
                        "role": "user",
                        "content": "That reply copied the form's own wording or placeholders instead of content ("
                        + "; ".join(problems[:4])
                        + "). Reply again with the same JSON fields, each written about this paper in your own words.",
                    },
                ]
        return reply, problems
