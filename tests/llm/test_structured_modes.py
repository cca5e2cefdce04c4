"""Structured output that adapts to the server: a rejected request is asked the next way, never retried.

The scripted provider refuses modes the way servers do (llama-cpp-python answers ``json_schema`` with
a 500 whose body is a validation error; others answer 400 or 422). The real server is in test_server.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from fars.config import LLMConfig, ScriptedModelConfig
from fars.context import call_context
from fars.llm.client import LLMClient, LLMError, mark_shared_prefix
from fars.run.ledger import Ledger

PROMPT = [{"role": "system", "content": "be exact"}, {"role": "user", "content": "judge the result please"}]


class Verdict(BaseModel):
    claim: str = Field(min_length=3)
    holds: bool
    strength: Literal["weak", "fair", "strong"]
    score: int = Field(ge=1, le=5)


def scripted(refuse: list[str], status: int = 500, **overrides: Any) -> LLMConfig:
    settings: dict[str, Any] = {
        "model": "scripted/server",
        "cache": False,
        "backoff_s": 0.0,
        "max_retries": 3,
        "scripted": ScriptedModelConfig(refuse_modes=refuse, refuse_status=status),  # type: ignore[arg-type]
    }
    settings.update(overrides)
    return LLMConfig(**settings)


def modes_in_ledger(path: Path) -> list[tuple[str | None, bool]]:
    """(structured mode, answered) of every call row, in order."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT structured_mode, response IS NOT NULL FROM calls ORDER BY id").fetchall()
    return [(r[0], bool(r[1])) for r in rows]


def test_a_server_refusing_json_schema_with_a_500_gets_json_object_once_and_for_good(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    client = LLMClient(scripted(["json_schema"]), ledger)
    with call_context("p000", "review"):
        first = asyncio.run(client.structured(PROMPT, Verdict))
        second = asyncio.run(client.structured([*PROMPT, {"role": "user", "content": "again"}], Verdict))
    assert isinstance(first, Verdict) and isinstance(second, Verdict)
    provider = client.handlers["scripted"]
    # the rejected request was not retried (max_retries=3), and the next call went straight to json_object
    assert provider.modes == ["json_schema", "json_object", "json_object"]
    assert client.structured_mode() == "json_object"
    assert modes_in_ledger(tmp_path / "ledger.sqlite") == [
        ("json_schema", False),
        ("json_object", True),
        ("json_object", True),
    ]
    assert ledger.structured_modes() == {"scripted/server": {"json_object": 2}}


@pytest.mark.parametrize("status", [400, 422])
def test_a_server_refusing_json_formats_gets_tool_calls(tmp_path: Path, status: int) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    client = LLMClient(scripted(["json_schema", "json_object"], status), ledger)
    verdict = asyncio.run(client.structured(PROMPT, Verdict))
    assert isinstance(verdict, Verdict)
    assert client.handlers["scripted"].modes == ["json_schema", "json_object", "tools"]
    assert ledger.structured_modes() == {"scripted/server": {"tools": 1}}


def test_a_server_refusing_every_format_gets_plain_text_with_the_schema_in_the_prompt(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    client = LLMClient(scripted(["json_schema", "json_object", "tools"], 422), ledger)
    verdict = asyncio.run(client.structured(PROMPT, Verdict))
    assert isinstance(verdict, Verdict)  # the scripted model followed the schema written in the system prompt
    assert ledger.structured_modes() == {"scripted/server": {"text": 1}}


def test_the_remembered_mode_is_per_model_so_a_fallback_model_starts_over(tmp_path: Path) -> None:
    client = LLMClient(scripted(["json_schema"]), Ledger(tmp_path / "ledger.sqlite"))
    asyncio.run(client.structured(PROMPT, Verdict))
    assert client.structured_mode("scripted/server") == "json_object"
    assert client.structured_mode("scripted/other") == "json_schema"


def test_a_configured_mode_is_where_asking_starts() -> None:
    client = LLMClient(scripted([], structured_mode="tools"))
    asyncio.run(client.structured(PROMPT, Verdict))
    assert client.handlers["scripted"].modes == ["tools"]


def test_a_rejected_plain_request_is_an_error_at_once() -> None:
    cfg = scripted([])
    cfg.scripted.outputs = ["!fault:400", "never reached"]
    client = LLMClient(cfg)
    with pytest.raises(LLMError, match="rejected the request"):  # nothing to fall back to, and never retried
        asyncio.run(client.complete(PROMPT))
    assert client.handlers["scripted"].calls == 1


def test_a_plain_server_error_is_still_retried_as_a_fault(tmp_path: Path) -> None:
    cfg = scripted([])
    cfg.scripted.outputs = ["!fault:500", '{"claim": "abc", "holds": true, "strength": "fair", "score": 2}']
    client = LLMClient(cfg)
    assert asyncio.run(client.structured(PROMPT, Verdict)).score == 2


def test_a_refused_connection_is_named_as_such_with_where(tmp_path: Path) -> None:
    cfg = LLMConfig(
        model="openai/nothing-here",
        api_base="http://127.0.0.1:9/v1",
        api_key_env="FARS_TEST_NO_KEY",
        cache=False,
        max_retries=1,
        backoff_s=0.0,
        timeout_s=20,
    )
    ledger = Ledger(tmp_path / "ledger.sqlite")
    with pytest.raises(LLMError, match=r"connection refused by http://127\.0\.0\.1:9/v1"):
        asyncio.run(LLMClient(cfg, ledger).complete(PROMPT))
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        (error,) = db.execute("SELECT error FROM calls").fetchone()
    assert "connection refused" in error and "InternalServerError" not in error


def test_the_shared_prefix_is_marked_at_the_last_blank_line_of_long_messages() -> None:
    paper = "word " * 1200
    messages = [
        {"role": "system", "content": "review"},
        {"role": "user", "content": f"Paper:\n\n{paper}\n\nYou are critical. Write your review."},
    ]
    marked = mark_shared_prefix(messages, 1024)
    blocks = marked[1]["content"]
    assert blocks[0]["cache_control"] == {"type": "ephemeral"} and blocks[0]["text"].endswith(paper + "\n\n")
    assert blocks[1] == {"type": "text", "text": "You are critical. Write your review."}
    assert "".join(b["text"] for b in blocks) == messages[1]["content"]
    assert mark_shared_prefix(messages, 5000) == messages  # too short to be worth a cache write
    assert messages[1]["content"].startswith("Paper:")  # the caller's messages are not changed


def _contradictions(node: object, where: str = "$") -> list[str]:
    """Each object of a rendered schema that requires a field it does not define."""
    found: list[str] = []
    if isinstance(node, dict):
        if "required" in node and "properties" in node:
            missing = sorted(set(node["required"]) - set(node["properties"]))
            found += [f"{where}: requires {name!r}, which it does not define" for name in missing]
        for key, value in node.items():
            found += _contradictions(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _contradictions(value, f"{where}[{i}]")
    return found


def test_every_schema_a_stage_or_reviewer_asks_for_reads_as_it_validates() -> None:
    """The instruction text showed 'title' required but not among the properties (titles were stripped as if
    they were annotations): every model-facing schema of the stages and the reviewer is rendered and checked."""
    import importlib
    import inspect
    import json

    from pydantic import BaseModel

    from fars.llm.client import schema_for_prompt

    modules = ["fars.stages.ideation", "fars.stages.planning", "fars.stages.writing", "fars.code.search",
               "review.forms", "review.reviewer", "review.related"]  # fmt: skip
    checked = 0
    for name in modules:
        for _, model in inspect.getmembers(importlib.import_module(name), inspect.isclass):
            if issubclass(model, BaseModel) and model is not BaseModel and model.__module__ == name:
                rendered = json.loads(schema_for_prompt(model.model_json_schema()))
                assert _contradictions(rendered) == [], f"{name}.{model.__name__}"
                checked += 1
    assert checked >= 10

    class Titled(BaseModel):  # the case that was broken
        title: str

    assert json.loads(schema_for_prompt(Titled.model_json_schema()))["properties"] == {"title": {"type": "string"}}
