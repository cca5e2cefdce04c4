"""Every provider fault the scripted model can inject: retried, waited out, repaired or fallen back from.

Each test scripts the faults, runs the real client, and checks the outcome and the ledger: faults are
not billed, the model that answered is recorded, and failures past the limits end in a clear error.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from fars.config import LLMConfig, ScriptedModelConfig
from fars.context import call_context
from fars.llm import client as client_module
from fars.llm.client import LLMClient, LLMError, StructuredOutputError
from fars.run.ledger import Ledger

PROMPT = [{"role": "user", "content": "report the accuracy please"}]


class Finding(BaseModel):
    metric: str = Field(min_length=1)
    value: float
    confident: bool


def scripted(outputs: list[str], **overrides: Any) -> LLMConfig:
    settings: dict[str, Any] = {
        "model": "scripted/primary",
        "cache": False,
        "backoff_s": 0.01,
        "max_retries": 3,
        "timeout_s": 5.0,
        "scripted": ScriptedModelConfig(output_tokens=7, outputs=outputs),
    }
    settings.update(overrides)
    return LLMConfig(**settings)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The back-off waits the client asks for (taken, but recorded)."""
    seen: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float, *args: Any) -> Any:
        seen.append(delay)
        return await real_sleep(min(delay, 0.01), *args)

    monkeypatch.setattr(client_module.asyncio, "sleep", sleep)
    return seen


def calls(ledger: Ledger) -> list[tuple[str, int, str | None]]:
    """(model, output tokens, error) of every recorded call, in order."""
    rows = ledger._db.execute("SELECT model, output_tokens, error FROM calls ORDER BY id").fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


@pytest.mark.parametrize("fault", ["429", "500", "503", "timeout", "connection"])
def test_raised_fault_is_retried_with_backoff_then_recovers(fault: str, tmp_path: Path, waits: list[float]) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    client = LLMClient(scripted([f"!fault:{fault}", f"!fault:{fault}", "recovered"]), ledger)
    done = asyncio.run(client.complete(PROMPT))
    assert done.text == "recovered"
    assert waits == [0.01, 0.02]  # exponential back-off
    assert calls(ledger) == [("scripted/primary", 7, None)]  # faults are not billed


def test_429_retry_after_header_is_honoured(tmp_path: Path, waits: list[float]) -> None:
    client = LLMClient(scripted(["!fault:429:1.5", "ok"]), Ledger(tmp_path / "ledger.sqlite"))
    assert asyncio.run(client.complete(PROMPT)).text == "ok"
    assert waits == [1.5]  # the provider's Retry-After, not the back-off


def test_a_hung_provider_hits_the_client_time_out_and_is_retried(tmp_path: Path) -> None:
    client = LLMClient(scripted(["!fault:hang:30", "ok"], timeout_s=0.3), Ledger(tmp_path / "ledger.sqlite"))
    assert asyncio.run(client.complete(PROMPT)).text == "ok"


def test_an_empty_reply_is_retried(tmp_path: Path, waits: list[float]) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    done = asyncio.run(LLMClient(scripted(["!fault:empty", "now with content"]), ledger).complete(PROMPT))
    assert done.text == "now with content" and len(waits) == 1


@pytest.mark.parametrize(("fault", "paid_calls"), [("truncated", 2), ("nonjson", 2), ("empty", 1)])
def test_bad_structured_replies_are_repaired(fault: str, paid_calls: int, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    result = asyncio.run(LLMClient(scripted([f"!fault:{fault}"]), ledger).structured(PROMPT, Finding))
    assert isinstance(result, Finding)
    # a truncated or prose reply is paid, then repaired by asking again; an empty one is retried unpaid
    assert len(calls(ledger)) == paid_calls


def test_truncated_reply_gets_a_larger_token_allowance(tmp_path: Path) -> None:
    seen: list[int] = []
    client = LLMClient(scripted(["!fault:truncated"], max_tokens=100), Ledger(tmp_path / "ledger.sqlite"))
    original = client.complete

    async def spy(messages: list[dict[str, str]], **kw: Any) -> Any:
        seen.append(kw["max_tokens"])
        return await original(messages, **kw)

    client.complete = spy  # type: ignore[method-assign]
    asyncio.run(client.structured(PROMPT, Finding))
    assert seen == [100, 200]


def test_context_overflow_falls_back_to_the_next_model_without_retrying(tmp_path: Path, waits: list[float]) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    cfg = scripted(["!fault:context", "answered by the bigger model"], fallbacks=["scripted/bigger"])
    with call_context("p000", "writing"):
        done = asyncio.run(LLMClient(cfg, ledger).complete(PROMPT))
    assert done.model == "scripted/bigger" and waits == []
    assert calls(ledger) == [
        ("scripted/primary", 0, "context window exceeded"),
        ("scripted/bigger", 7, None),  # the ledger names the model that answered
    ]


def test_fallback_chain_is_tried_in_order_after_retries(tmp_path: Path, waits: list[float]) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    outputs = ["!fault:500", "!fault:500", "!fault:429", "!fault:timeout", "third time lucky"]
    cfg = scripted(outputs, max_retries=1, fallbacks=["scripted/second", "scripted/third"])
    done = asyncio.run(LLMClient(cfg, ledger).complete(PROMPT))
    assert done.text == "third time lucky" and done.model == "scripted/third"
    models = [(m, e is None) for m, _, e in calls(ledger)]
    assert models == [("scripted/primary", False), ("scripted/second", False), ("scripted/third", True)]


def test_every_model_failing_ends_in_one_clear_error(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    cfg = scripted(["!fault:500"] * 4, max_retries=1, fallbacks=["scripted/backup"])
    with pytest.raises(LLMError, match=r"every model in the chain failed \(2\)") as caught:
        asyncio.run(LLMClient(cfg, ledger).complete(PROMPT))
    message = str(caught.value)
    assert "scripted/primary failed 2 times" in message and "scripted/backup failed 2 times" in message
    assert "llm.fallbacks" in message or "llm.max_retries" in message
    assert ledger.total_usage().total_tokens == 0


def test_a_single_model_failing_names_what_to_do(tmp_path: Path) -> None:
    cfg = scripted(["!fault:503"] * 3, max_retries=2)
    with pytest.raises(LLMError, match=r"failed 3 times; last fault: ServiceUnavailableError.*raise llm.max_retries"):
        asyncio.run(LLMClient(cfg, Ledger(tmp_path / "ledger.sqlite")).complete(PROMPT))


def test_repair_that_never_succeeds_is_a_clear_structured_error() -> None:
    cfg = scripted(["!fault:nonjson"] * 3, repair_attempts=2)
    with pytest.raises(StructuredOutputError, match="no valid Finding after 3 attempts"):
        asyncio.run(LLMClient(cfg).structured(PROMPT, Finding))


def test_faulty_reply_is_not_cached(tmp_path: Path) -> None:
    cfg = scripted(["!fault:truncated"], cache=True, cache_dir=str(tmp_path / "cache"))
    first = asyncio.run(LLMClient(cfg).complete(PROMPT, response_format=None))
    again = asyncio.run(LLMClient(cfg).complete(PROMPT))
    assert first.finish_reason == "length" and not again.cache_hit
    assert json.dumps(again.text)  # a fresh, whole reply
