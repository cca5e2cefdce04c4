"""The model client on the scripted provider: tokens, ledger, cache, replay, retries, repair, budget."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from fars.config import BudgetConfig, LLMConfig, ScriptedModelConfig
from fars.context import call_context
from fars.llm.budget import Budget, BudgetExceeded
from fars.llm.client import LLMClient, LLMError, StructuredOutputError, extract_json
from fars.run.ledger import Ledger

PROMPT = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "name three colours please"}]


class Colours(BaseModel):
    names: list[str] = Field(min_length=3, max_length=3)
    favourite: Literal["red", "green", "blue"]
    confidence: int = Field(ge=1, le=5)


def scripted(outputs: list[str] | None = None, **overrides: object) -> LLMConfig:
    settings: dict[str, object] = {
        "model": "scripted/test",
        "cache": False,
        "backoff_s": 0.0,
        "scripted": ScriptedModelConfig(output_tokens=7, outputs=outputs or []),
    }
    settings.update(overrides)
    return LLMConfig(**settings)  # type: ignore[arg-type]


def test_scripted_completion_counts_fixed_tokens_and_is_recorded(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    client = LLMClient(scripted(), ledger)
    with call_context("p000", "ideation"):
        done = asyncio.run(client.complete(PROMPT))
    assert done.output_tokens == 7
    assert done.input_tokens == 6  # words in the two messages
    assert done.cost_usd == 0.0 and not done.cache_hit
    usage = ledger.usage(by="stage")["ideation"]
    assert (usage.calls, usage.input_tokens, usage.output_tokens) == (1, 6, 7)


def test_structured_reply_is_valid_and_deterministic(tmp_path: Path) -> None:
    first = asyncio.run(LLMClient(scripted()).structured(PROMPT, Colours))
    second = asyncio.run(LLMClient(scripted()).structured(PROMPT, Colours))
    assert isinstance(first, Colours) and len(first.names) == 3 and 1 <= first.confidence <= 5
    assert first == second


def test_schema_requests_are_built_once_and_handed_out_fresh() -> None:
    from fars.llm.client import _schema_request, _schema_texts

    _schema_texts.cache_clear()
    instruction, first = _schema_request(Colours)
    first["json_schema"]["schema"]["properties"].clear()  # a provider editing the schema in place
    again, second = _schema_request(Colours)
    assert again == instruction and "favourite" in instruction
    assert set(second["json_schema"]["schema"]["properties"]) == {"names", "favourite", "confidence"}
    assert _schema_texts.cache_info().hits == 1


def test_in_process_models_are_listed_with_litellm_as_free() -> None:
    import litellm

    LLMClient(scripted(model="scripted/listed-test", fallbacks=["local/other-test"]))
    for model in ("scripted/listed-test", "local/other-test"):
        info = litellm.get_model_info(model)
        assert info["input_cost_per_token"] == 0.0 and info["output_cost_per_token"] == 0.0
        assert info["supports_response_schema"]


def test_invalid_reply_is_repaired_by_asking_again(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    good = json.dumps({"names": ["a", "b", "c"], "favourite": "red", "confidence": 2})
    client = LLMClient(scripted(["not json at all", f"```json\n{good}\n```"]), ledger)
    result = asyncio.run(client.structured(PROMPT, Colours))
    assert result.favourite == "red"
    assert ledger.total_usage().calls == 2


def test_reply_that_never_validates_raises_a_clear_error() -> None:
    bad = json.dumps({"names": ["a"], "favourite": "purple", "confidence": 9})
    client = LLMClient(scripted([bad, bad, bad], repair_attempts=2))
    with pytest.raises(StructuredOutputError, match=r"no valid Colours after 3 attempts"):
        asyncio.run(client.structured(PROMPT, Colours))


def test_provider_faults_are_retried_then_succeed(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    client = LLMClient(scripted(["!fault:429", "!fault:500", "!fault:timeout", "finally"], max_retries=3), ledger)
    done = asyncio.run(client.complete(PROMPT))
    assert done.text == "finally"
    rows = ledger.usage()
    assert rows[""].calls == 1  # faults before success are not billed


def test_provider_faults_beyond_the_limit_fail_clearly_and_are_recorded(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    client = LLMClient(scripted(["!fault:429", "!fault:connection"], max_retries=1), ledger)
    with pytest.raises(LLMError, match="failed 2 times"):
        asyncio.run(client.complete(PROMPT))
    assert ledger.total_usage().calls == 1  # the failure row, with zero tokens
    assert ledger.total_usage().total_tokens == 0


def test_context_overflow_is_not_retried() -> None:
    client = LLMClient(scripted(["!fault:context", "never reached"], max_retries=5))
    with pytest.raises(LLMError, match="prompt too long"):
        asyncio.run(client.complete(PROMPT))


def test_cache_replays_a_deterministic_request_at_zero_tokens(tmp_path: Path) -> None:
    cfg = scripted(cache=True, cache_dir=str(tmp_path / "cache"))
    first_ledger, second_ledger = Ledger(tmp_path / "a.sqlite"), Ledger(tmp_path / "b.sqlite")
    first = asyncio.run(LLMClient(cfg, first_ledger).complete(PROMPT))
    second = asyncio.run(LLMClient(cfg, second_ledger).complete(PROMPT))
    assert second.text == first.text and second.cache_hit
    assert second_ledger.total_usage().total_tokens == 0
    assert second_ledger.total_usage().cache_hits == 1


def test_sampling_requests_are_not_cached(tmp_path: Path) -> None:
    cfg = scripted(cache=True, cache_dir=str(tmp_path / "cache"), temperature=0.7)
    asyncio.run(LLMClient(cfg).complete(PROMPT))
    again = asyncio.run(LLMClient(cfg).complete(PROMPT))
    assert not again.cache_hit


def test_ledger_replay_means_a_resumed_run_pays_nothing_twice(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    with call_context("p000", "writing"):
        paid = asyncio.run(LLMClient(scripted(temperature=0.9), ledger).complete(PROMPT))
        # a new process (new client) making the same call at the same place replays it
        replayed = asyncio.run(LLMClient(scripted(temperature=0.9), ledger).complete(PROMPT))
    assert replayed.text == paid.text and replayed.cache_hit
    assert ledger.total_usage().total_tokens == paid.input_tokens + paid.output_tokens


def test_budget_stops_calls_before_they_overshoot(tmp_path: Path) -> None:
    budget = Budget(BudgetConfig(max_tokens=600))
    client = LLMClient(scripted(max_tokens=200), budget=budget)
    asyncio.run(client.complete(PROMPT))  # 6 + 7 tokens spent; next estimate 201 fits
    asyncio.run(client.complete([{"role": "user", "content": "again"}]))
    assert budget.tokens == 13 + 8
    tight = Budget(BudgetConfig(max_tokens=100))
    with pytest.raises(BudgetExceeded, match=r"budget\.max_tokens"):
        asyncio.run(LLMClient(scripted(max_tokens=200), budget=tight).complete(PROMPT))


def test_extract_json_strips_fences_prose_and_trailing_commas() -> None:
    assert json.loads(extract_json('Sure! ```json\n{"a": [1, 2,],}\n``` hope it helps')) == {"a": [1, 2]}
