"""Text fields with a stated length that a reply may overrun without voiding the form.

A form tells the model how long each point may be (the JSON schema's ``maxLength``, which constrained
decoders enforce). A hosted model that decodes freely sometimes writes a point a little longer; with a
hard limit, that one point voided the whole review and cost a second request carrying the whole paper
again (a capable reviewer's first two replies to one paper were refused for a weakness over 200
characters). So a reply is held to ``OVERRUN`` times the stated length: within it the text is kept
whole, beyond it cut at the last sentence or word end inside that room, marked with an ellipsis.

Use as ``Annotated[str, Bounded(200, least=3)]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

OVERRUN = 2.0  # a field holds this many times its stated length before it is cut
ELLIPSIS = "…"


def fit(value: str, limit: int) -> str:
    """``value`` whole if it is within ``OVERRUN * limit`` characters, else cut at a sentence or word end."""
    room = int(OVERRUN * limit)
    if len(value) <= room:
        return value
    head = value[: room - len(ELLIPSIS) - 1]
    sentence = max((m.end() for m in re.finditer(r"[.!?;](?=\s)", head)), default=0)
    if sentence >= room // 2:
        return head[:sentence].rstrip() + " " + ELLIPSIS
    word = head.rfind(" ")
    return (head[:word] if word >= room // 2 else head).rstrip(" ,;:") + ELLIPSIS


@dataclass(frozen=True)
class Bounded:
    """Metadata for a ``str``: the schema states at most ``limit`` characters (at least ``least``);
    validation keeps what fits ``OVERRUN * limit`` and cuts the rest (``fit``)."""

    limit: int
    least: int = 0

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            lambda v: fit(v, self.limit), core_schema.str_schema(min_length=self.least)
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        stated: dict[str, Any] = {"type": "string", "maxLength": self.limit}
        if self.least:
            stated["minLength"] = self.least
        return stated
