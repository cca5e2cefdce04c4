"""Budgets count what is billed, and cache keys hold every setting that changes a reply.

A provider may bill a try FARS rejects and retries (an empty reply spent on hidden reasoning, an error
with a usage block, a reply that does not fit the schema). Each such try is charged at its usage and
recorded in the ledger as a billed failure; every try, retries included, is reserved before it is sent,
so a provider that bills empty replies forever cannot take a budget past its limit by more than one
call, however many calls are in flight. Dollars are litellm's prices: the scripted model bills as
``openai/gpt-4o-mini`` (``price_as``).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from fars.config import BudgetConfig, LLMConfig, LocalModelConfig, ScriptedModelConfig
from fars.llm.budget import Budget, BudgetExceeded
from fars.llm.client import LLMClient, LLMError, request_hash
from fars.llm.scripted import ScriptedProvider
from fars.run.ledger import Ledger

PRICED = "openai/gpt-4o-mini"
PROMPT = [{"role": "user", "content": "report the accuracy please"}]  # 4 words: 4 prompt tokens
ONE_TRY = 4 * 0.15e-6 + 7 * 0.6e-6  # gpt-4o-mini: $0.15 / $0.60 per million input / output tokens


class Finding(BaseModel):
    metric: str = Field(min_length=1)
    value: float


def priced(
    outputs: list[str] | None = None,
    *,
    routes: dict[str, list[str]] | None = None,
    latency_s: float = 0.0,
    **overrides: Any,
) -> LLMConfig:
    scripted = ScriptedModelConfig(
        output_tokens=7, outputs=outputs or [], routes=routes or {}, price_as=PRICED, latency_s=latency_s
    )
    settings: dict[str, Any] = {
        "model": "scripted/priced",
        "cache": False,
        "backoff_s": 0.0,
        "max_retries": 2,
        "max_tokens": 7,  # the estimate's output part is exact: an honest bound
        "scripted": scripted,
    }
    settings.update(overrides)
    return LLMConfig(**settings)


def rows(ledger: Ledger) -> list[tuple[int, int, float, str | None, str | None]]:
    """(input tokens, output tokens, cost, error, reply) of every recorded call, in order."""
    found = ledger._db.execute("SELECT input_tokens, output_tokens, cost_usd, error, response FROM calls ORDER BY id")
    return [(r[0], r[1], r[2], r[3], r[4]) for r in found.fetchall()]


# -- billed failures are charged and recorded --------------------------------------------------------


def test_a_billed_empty_reply_is_charged_and_recorded_as_a_billed_failure(tmp_path: Path) -> None:
    ledger, budget = Ledger(tmp_path / "ledger.sqlite"), Budget(BudgetConfig(max_dollars=1.0))
    done = asyncio.run(LLMClient(priced(["!fault:empty:billed", "answered"]), ledger, budget).complete(PROMPT))
    assert done.text == "answered" and done.cost_usd == pytest.approx(ONE_TRY)
    (empty, answered) = rows(ledger)
    assert empty[:3] == (4, 7, pytest.approx(ONE_TRY)) and "empty reply" in (empty[3] or "") and empty[4] is None
    assert answered == (4, 7, pytest.approx(ONE_TRY), None, "answered")
    assert budget.dollars == pytest.approx(2 * ONE_TRY) == ledger.total_usage().cost_usd
    assert budget.tokens == 2 * 11


def test_an_empty_reply_the_provider_does_not_bill_costs_nothing(tmp_path: Path) -> None:
    ledger, budget = Ledger(tmp_path / "ledger.sqlite"), Budget(BudgetConfig(max_dollars=1.0))
    asyncio.run(LLMClient(priced(["!fault:empty", "answered"]), ledger, budget).complete(PROMPT))
    assert rows(ledger) == [(4, 7, pytest.approx(ONE_TRY), None, "answered")]
    assert budget.dollars == pytest.approx(ONE_TRY)


def test_a_server_error_with_a_usage_block_is_charged(tmp_path: Path) -> None:
    ledger, budget = Ledger(tmp_path / "ledger.sqlite"), Budget(BudgetConfig(max_dollars=1.0))
    asyncio.run(LLMClient(priced(["!fault:500:billed", "!fault:503:billed", "ok"]), ledger, budget).complete(PROMPT))
    errors = [r[3] or "" for r in rows(ledger)]
    assert "InternalServerError" in errors[0] and "ServiceUnavailableError" in errors[1] and errors[2] == ""
    assert [r[2] for r in rows(ledger)] == [pytest.approx(ONE_TRY)] * 3
    assert budget.dollars == pytest.approx(3 * ONE_TRY)


def test_a_call_that_fails_for_good_is_charged_every_billed_try(tmp_path: Path) -> None:
    ledger, budget = Ledger(tmp_path / "ledger.sqlite"), Budget(BudgetConfig(max_dollars=1.0))
    client = LLMClient(priced(["!fault:empty:billed"] * 3), ledger, budget)
    with pytest.raises(LLMError, match="failed 3 times"):
        asyncio.run(client.complete(PROMPT))
    recorded = rows(ledger)
    assert len(recorded) == 3 and all(r[4] is None and "empty reply" in (r[3] or "") for r in recorded)
    assert ledger.total_usage().cost_usd == pytest.approx(3 * ONE_TRY) == budget.dollars


def test_a_reply_that_does_not_fit_the_schema_is_a_billed_failure(tmp_path: Path) -> None:
    ledger, budget = Ledger(tmp_path / "ledger.sqlite"), Budget(BudgetConfig(max_dollars=1.0))
    client = LLMClient(priced(["!fault:nonjson"], max_tokens=100), ledger, budget)
    result = asyncio.run(client.structured(PROMPT, Finding))
    assert isinstance(result, Finding)
    (rejected, repaired) = rows(ledger)
    assert rejected[2] > 0 and (rejected[3] or "").startswith("invalid Finding:") and rejected[4]  # paid, kept
    assert repaired[2] > 0 and repaired[3] is None
    assert budget.dollars == pytest.approx(ledger.total_usage().cost_usd)


def test_a_billable_mark_on_a_fault_that_cannot_be_billed_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be billed"):
        ScriptedProvider(ScriptedModelConfig(outputs=["!fault:timeout:billed"]))


# -- the budget holds within one call, whatever is in flight ------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_a_provider_billing_every_empty_try_cannot_pass_the_budget(concurrency: int, tmp_path: Path) -> None:
    """Every try of every call is an empty reply, billed: each retry is reserved before it is sent."""
    limit = 30 * ONE_TRY  # ten calls of three tries
    ledger, budget = Ledger(tmp_path / "ledger.sqlite"), Budget(BudgetConfig(max_dollars=limit))
    client = LLMClient(priced(["!fault:empty:billed"] * 400, concurrency=concurrency, latency_s=0.01), ledger, budget)

    async def one(i: int) -> str:
        try:
            await client.complete([{"role": "user", "content": f"call {i} of many"}])
        except BudgetExceeded:
            return "refused"
        except LLMError:
            return "failed"
        return "answered"

    async def many() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(60)))

    outcomes = asyncio.run(many())
    tries = client.handlers["scripted"].calls  # what the provider was sent, so billed
    one_call = max(r[2] for r in rows(ledger))
    billed = tries * one_call  # every try bills the same (4 words, 7 tokens out)
    assert "refused" in outcomes and "answered" not in outcomes
    assert ledger.total_usage().calls == tries  # every billed try is in the ledger
    assert ledger.total_usage().cost_usd == pytest.approx(billed) == pytest.approx(budget.dollars)
    assert billed <= limit + one_call, f"billed ${billed:.6f} against a limit of ${limit:.6f}"
    assert billed >= 0.6 * limit  # the budget was used, not refused early (a try reserves its bound: ~4 tries)


def test_a_retry_is_reserved_before_it_is_sent(tmp_path: Path) -> None:
    """Room for one try's bound and a half of what it bills: the billed empty try leaves no room for a retry."""
    client = LLMClient(priced(["!fault:empty:billed"] * 3), Ledger(tmp_path / "ledger.sqlite"))
    bound = client._estimate_dollars(client._estimate_tokens(PROMPT, None), 7, ("scripted/priced",))
    client.budget = budget = Budget(BudgetConfig(max_dollars=bound + ONE_TRY / 2))
    with pytest.raises(BudgetExceeded, match="dollars used up"):
        asyncio.run(client.complete(PROMPT))
    assert client.handlers["scripted"].calls == 1  # unreserved, the two retries would have been sent (and billed)
    assert budget.dollars == pytest.approx(ONE_TRY) and budget._run.in_flight == 0


# -- cache keys -----------------------------------------------------------------------------------


def _request(client: LLMClient, **changes: Any) -> dict[str, Any]:
    request = {"model": client.cfg.model, "messages": PROMPT, "temperature": 0.0, "max_tokens": 7,
               "response_format": None, **changes}  # fmt: skip
    return request


def test_a_fallbacks_reply_is_cached_under_the_model_that_answered(tmp_path: Path) -> None:
    outputs = ["!fault:500", "from the backup"]
    cfg = priced(outputs, max_retries=0, fallbacks=["scripted/backup"], cache=True, cache_dir=str(tmp_path))
    client = LLMClient(cfg)
    done = asyncio.run(client.complete(PROMPT))
    assert done.model == "scripted/backup" and done.text == "from the backup"
    request = _request(client)
    assert client.cache is not None
    assert client.cache.get(client.cache_key(request, "scripted/backup")) == "from the backup"
    assert client.cache.get(client.cache_key(request, "scripted/priced")) is None  # never the primary's reply
    client.close()
    again = LLMClient(cfg)  # the next run asks the primary again: the backup's reply is not served as its own
    assert not asyncio.run(again.complete(PROMPT)).cache_hit
    again.close()
    backup = LLMClient(priced(outputs, model="scripted/backup", max_retries=0, cache=True, cache_dir=str(tmp_path)))
    hit = asyncio.run(backup.complete(PROMPT))  # a run whose model is the backup is served its reply
    assert hit.cache_hit and hit.text == "from the backup" and hit.model == "scripted/backup"
    backup.close()


def test_the_embedded_models_file_is_in_the_cache_key(tmp_path: Path) -> None:
    small, large, copy = tmp_path / "a" / "model.gguf", tmp_path / "b" / "model.gguf", tmp_path / "c" / "model.gguf"
    for path, size in ((small, 100), (large, 200), (copy, 100)):
        path.parent.mkdir()
        path.write_bytes(b"\0" * size)

    def key(model_path: Path | None, **local: Any) -> str:
        local_cfg = LocalModelConfig(model_path=str(model_path) if model_path else None, **local)
        cfg = LLMConfig(model="local/smollm2-135m", cache=False, local=local_cfg)
        client = LLMClient(cfg)
        try:
            return client.cache_key(_request(client), cfg.model)
        finally:
            client.close()

    assert key(small) != key(large)  # another GGUF, another key
    assert key(small) == key(copy)  # the same file in another folder keys alike
    assert key(small) != key(small, n_ctx=4096)
    assert key(small) != key(None)  # the bundled model is a file of its own


def test_every_setting_that_changes_a_reply_is_in_the_cache_key(tmp_path: Path) -> None:
    client = LLMClient(priced())
    base = _request(client)
    key = client.cache_key(base, "scripted/priced")
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
    for changed in ({"temperature": 0.5}, {"max_tokens": 8}, {"api_base": "http://127.0.0.1:8001/v1"},
                    {"response_format": schema}):  # fmt: skip
        assert client.cache_key({**base, **changed}, "scripted/priced") != key, changed
    assert client.cache_key(base, "scripted/other") != key
    structured = {**base, "response_format": schema}
    text_mode = LLMClient(priced(structured_mode="text"))
    assert text_mode.cache_key(structured, "scripted/priced") != client.cache_key(structured, "scripted/priced")
    other_script = LLMClient(priced(["a scripted reply"]))
    assert other_script.cache_key(base, "scripted/priced") != key
    for c in (client, text_mode, other_script):
        c.close()


def test_keys_made_before_these_settings_still_hit(tmp_path: Path) -> None:
    """With default settings the key is the request's hash, as it always was: existing caches keep hitting."""
    for model in ("scripted/priced", "openai/gpt-4o-mini"):
        client = LLMClient(LLMConfig(model=model, cache=False, max_tokens=7))
        request = _request(client)
        assert client.cache_key(request, model) == request_hash(request)
        client.close()


def test_the_budget_is_settled_even_when_a_try_is_cancelled(tmp_path: Path) -> None:
    budget = Budget(BudgetConfig(max_dollars=1.0))
    cfg = priced(["!fault:hang:30"], timeout_s=30.0)
    client = LLMClient(cfg, Ledger(tmp_path / "ledger.sqlite"), budget)

    async def cancelled() -> None:
        task = asyncio.ensure_future(client.complete(PROMPT))
        while not client.handlers["scripted"].calls:  # the try is sent (and reserved)
            await asyncio.sleep(0)
        assert budget._run.in_flight == 1
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    assert budget._run.reserved_dollars == pytest.approx(0.0) and budget._run.in_flight == 0
