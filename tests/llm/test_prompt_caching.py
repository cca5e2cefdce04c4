"""Provider prompt caching: cached input tokens read from the provider's usage, priced by litellm, summed.

The scripted provider reports cached tokens as the real APIs do (OpenAI's automatic caching of long
shared prefixes; Anthropic's explicit cache_control writes and reads), billed at a real model's prices.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import litellm
import pytest

from fars.config import LLMConfig, ScriptedModelConfig
from fars.context import call_context
from fars.evaluation.report import render_report
from fars.llm.client import LLMClient
from fars.pipeline.tracking import summary_metrics
from fars.run.ledger import Ledger
from fars.run.summary import build_run_record

PAPER = " ".join(f"token{i % 97}" for i in range(1500))


def ensemble_prompts() -> list[list[dict[str, str]]]:
    """Two reviewer prompts on one paper: the paper first, the persona last."""
    return [
        [
            {"role": "system", "content": "You review papers."},
            {"role": "user", "content": f"Paper:\n\n{PAPER}\n\n{persona} Write your review."},
        ]
        for persona in ("You are balanced.", "You are critical.")
    ]


def client_for(style: str, price_as: str, ledger: Ledger, **overrides: Any) -> LLMClient:
    cfg = LLMConfig(
        model="scripted/priced",
        cache=False,
        backoff_s=0.0,
        scripted=ScriptedModelConfig(output_tokens=10, price_as=price_as, prompt_cache=style),  # type: ignore[arg-type]
        **overrides,
    )
    return LLMClient(cfg, ledger)


def run_all(client: LLMClient) -> list[Any]:
    async def go() -> list[Any]:
        with call_context("p000", "review"):
            return [await client.complete(m) for m in ensemble_prompts()]

    return asyncio.run(go())


def test_openai_style_automatic_caching_is_read_from_usage_and_priced_cheaper(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    first, second = run_all(client_for("automatic", "openai/gpt-4o-mini", ledger))
    assert first.cached_input_tokens == 0 and first.saved_usd == 0.0
    words = first.input_tokens
    shared = len(f"You review papers. Paper: {PAPER}".split())
    assert second.cached_input_tokens == shared // 128 * 128 and second.input_tokens == words
    info = litellm.get_model_info("openai/gpt-4o-mini")
    full = words * info["input_cost_per_token"] + 10 * info["output_cost_per_token"]
    cached = second.cached_input_tokens
    expected = (words - cached) * info["input_cost_per_token"] + cached * info["cache_read_input_token_cost"]
    assert second.cost_usd == pytest.approx(expected + 10 * info["output_cost_per_token"])
    assert second.saved_usd == pytest.approx(full - second.cost_usd) and second.saved_usd > 0
    total = ledger.total_usage()
    assert total.cached_input_tokens == cached
    assert total.evaluated_input_tokens == 2 * words - cached
    assert total.saved_usd == pytest.approx(second.saved_usd)


def test_anthropic_style_explicit_caching_needs_the_marks_the_client_sets(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    first, second = run_all(client_for("explicit", "anthropic/claude-haiku-4-5", ledger))
    info = litellm.get_model_info("anthropic/claude-haiku-4-5")
    assert first.cached_input_tokens == 0
    assert first.saved_usd < 0  # the cache write is dearer than plain input ...
    assert second.cached_input_tokens > 1000  # ... and the next call reads the paper from the cache
    assert first.saved_usd + second.saved_usd > 0  # net: the ensemble paid less than without caching
    cached = second.cached_input_tokens
    assert second.cost_usd == pytest.approx(
        (second.input_tokens - cached) * info["input_cost_per_token"]
        + cached * info["cache_read_input_token_cost"]
        + 10 * info["output_cost_per_token"]
    )
    unmarked = Ledger(tmp_path / "unmarked.sqlite")
    plain = run_all(client_for("explicit", "anthropic/claude-haiku-4-5", unmarked, prompt_caching=False))
    assert [c.cached_input_tokens for c in plain] == [0, 0]  # no marks, no caching: as with the real API


def test_the_run_record_report_and_wandb_show_cached_tokens_and_dollars_saved(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.add_project("p000", 0, "caching")
    run_all(client_for("automatic", "openai/gpt-4o-mini", ledger))
    record = build_run_record(ledger, tmp_path, {"llm": {"model": "scripted/priced"}}, "completed", 0.0, 0)
    overall = record.totals.overall
    assert overall.cached_input_tokens > 1000 and overall.saved_usd > 0
    assert record.totals.by_stage["review"].cached_input_tokens == overall.cached_input_tokens
    assert record.projects[0].usage.saved_usd == pytest.approx(overall.saved_usd)
    metrics = summary_metrics(record)
    assert metrics["tokens/cached_input"] == overall.cached_input_tokens
    assert metrics["cost_usd/saved"] == pytest.approx(overall.saved_usd)
    page = render_report(record, tmp_path, tmp_path)
    assert f"{overall.cached_input_tokens:,}" in page and "saved by prompt caching" in page
    assert f"${overall.saved_usd:.4f}" in page


def test_older_ledgers_gain_the_new_call_columns(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the calls table as the first release wrote it
        db.execute(
            "CREATE TABLE calls (id INTEGER PRIMARY KEY AUTOINCREMENT, project_id TEXT, stage TEXT, model TEXT NOT NULL, "
            "request_hash TEXT NOT NULL, ordinal INTEGER NOT NULL, input_tokens INTEGER NOT NULL, "
            "output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL, latency_s REAL NOT NULL, "
            "cache_hit INTEGER NOT NULL, ts REAL NOT NULL, response TEXT, error TEXT)"
        )
        db.execute("INSERT INTO calls VALUES (1, 'p', 's', 'm', 'h', 0, 5, 2, 0.1, 1.0, 0, 0, 'x', NULL)")
    ledger = Ledger(path)
    usage = ledger.total_usage()
    assert (usage.input_tokens, usage.cached_input_tokens, usage.saved_usd) == (5, 0, 0.0)
    run_all(client_for("automatic", "openai/gpt-4o-mini", ledger))
    assert ledger.total_usage().cached_input_tokens > 0
