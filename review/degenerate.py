"""Degenerate structured replies: the schema's own text or placeholders where content belongs.

A small model asked for JSON against a schema often copies the schema into the values: a search
query that reads "the research field of the paper, in a few words" (a field's description), a
strength that reads "strengths_1" (a field's name and a number), or a bare placeholder ("string",
"...", "<text>"), or loops ("1.1.1.1...", one sentence ten times). Such a reply validates, yet says nothing. ``echo_problems`` names every such
value of a parsed reply, so the reviewer can ask again, fall back, and count them.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel


class InvalidReply(RuntimeError):
    """A model gave no reply that fits the requested schema (after its repairs).

    The reviewer's model (any object with ``structured``) raises a subclass of this when it gives up on
    a form; fars's client does (``StructuredOutputError``). The reviewer then goes on without that
    reviewer; budgets, cancellation and provider failures are other errors and still end the review.
    """


_PLACEHOLDERS = {
    "string", "str", "text", "example", "placeholder", "todo", "tbd", "n/a", "na", "none", "null", "value",
    "your answer", "your answer here", "insert text", "lorem ipsum", "query", "point", "item",
}  # fmt: skip
_BRACKETED = re.compile(r"^\s*(?:<[^<>]{0,60}>|\{[^{}]{0,60}\}|\[[^\[\]]{0,60}\]|\.{2,}|…)\s*$")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def _schema_texts(model: type[BaseModel]) -> tuple[set[str], list[str]]:
    """Field names and descriptions (with the model's docstring) of ``model`` and its nested models."""
    names: set[str] = set()
    descriptions: list[str] = []
    if model.__doc__:
        descriptions.append(_norm(model.__doc__))
    for name, info in model.model_fields.items():
        names.add(_norm(name))
        if info.description:
            descriptions.append(_norm(info.description))
        for arg in getattr(info.annotation, "__args__", ()) or ():
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                sub_names, sub_descriptions = _schema_texts(arg)
                names |= sub_names
                descriptions += sub_descriptions
    return names, [d for d in descriptions if len(d.split()) >= 3]


def is_echo(value: str, names: set[str], descriptions: list[str]) -> str | None:
    """Why ``value`` is schema text or a placeholder (None when it is not)."""
    norm = _norm(value)
    if not norm:
        return "empty text" if not _BRACKETED.match(value) else f"placeholder {value.strip()!r}"
    if _BRACKETED.match(value) or norm in _PLACEHOLDERS:
        return f"placeholder {value.strip()[:40]!r}"
    words = norm.split()
    if len(words) >= 6 and len(set(words)) <= 2:
        return f"a loop {value.strip()[:30]!r}"
    sentences = [" ".join(x.split()) for x in re.split(r"[.!?]+", value) if x.strip()]
    if len(sentences) >= 4 and len(set(sentences)) <= len(sentences) // 2:
        return "a loop (the same sentence again and again)"
    stem = re.sub(r"\s*\d+$", "", norm)  # "strengths 1", "weakness 2"
    if stem in names or stem.rstrip("s") in {n.rstrip("s") for n in names}:
        return f"field name {value.strip()[:40]!r}"
    for description in descriptions:
        if description in norm or (len(norm.split()) >= 3 and norm in description):
            return f"the schema's description {description[:60]!r}"
    return None


def echo_problems(reply: BaseModel, prompt_phrases: tuple[str, ...] = ()) -> list[str]:
    """Every text value of ``reply`` that echoes its schema (or one of ``prompt_phrases``, words of the
    request that describe what to write) or is a placeholder, as 'field: why'."""
    names, descriptions = _schema_texts(type(reply))
    descriptions += [d for d in map(_norm, prompt_phrases) if len(d.split()) >= 3]
    problems: list[str] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, BaseModel):
            for key in type(value).model_fields:
                walk(getattr(value, key), f"{where}.{key}" if where else key)
        elif isinstance(value, str):
            why = is_echo(value, names, descriptions)
            if why:
                problems.append(f"{where}: {why}")
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                walk(item, f"{where}[{i}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}.{key}")

    walk(reply, "")
    return problems


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
    ) -> tuple[Any, list[str]]:
        """The reply and the echo problems left in it (empty when it is clean)."""
        asked = list(messages)
        reply: Any = None
        problems: list[str] = []
        for attempt in range(self.retries + 1):
            reply = await self.client.structured(asked, schema, max_tokens=max_tokens)
            problems = echo_problems(reply, prompt_phrases)
            if not problems:
                return reply, []
            self.counts[schema.__name__] = self.counts.get(schema.__name__, 0) + 1
            if attempt < self.retries:
                asked = [
                    *messages,
                    {"role": "assistant", "content": reply.model_dump_json()[-3000:]},
                    {
                        "role": "user",
                        "content": "That reply copied the form's own wording or placeholders instead of content ("
                        + "; ".join(problems[:4])
                        + "). Reply again with the same JSON fields, each written about this paper in your own words.",
                    },
                ]
        return reply, problems
