"""The embedded model on its one llama thread: honest time-outs, stopped generations, prefix reuse.

These run the real SmolLM2 GGUF through the client. A provider slowed per token (its ``on_token``
hook, called on the llama thread after every token) stands in for a loaded machine, so the queue is
long and each generation takes a known few seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from fars.config import LLMConfig, LocalModelConfig
from fars.context import call_context
from fars.llm.client import LLMClient, LLMError
from fars.llm.local import LocalLlamaProvider
from fars.run.ledger import Ledger

DEV = Path(__file__).resolve().parents[3] / "shared" / "data" / "iclr2022" / "dev.jsonl"
FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "Story",
        "schema": {"type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]},
    },
}


class SlowProvider(LocalLlamaProvider):
    """The embedded provider, slowed by ``delay_s`` after every generated token."""

    delay_s = 0.5

    def on_token(self) -> None:
        time.sleep(self.delay_s)


def slow_client(ledger: Ledger | None = None, *, delay_s: float = SlowProvider.delay_s, **overrides: Any) -> LLMClient:
    settings: dict[str, Any] = {
        "cache": False,
        "concurrency": 8,
        "backoff_s": 0.0,
        "max_retries": 0,
        "local": LocalModelConfig(n_threads=1, n_ctx=2048),
    }
    settings.update(overrides)
    client = LLMClient(LLMConfig(**settings), ledger)
    provider = SlowProvider(client.cfg.local, client.cfg.timeout_s)
    client.handlers["local"] = provider
    provider.delay_s = 0.0  # load and warm the model first (a first decode is slow): not what is measured
    provider.with_model("smollm2-135m", lambda llm: llm.create_completion("Once upon a time", max_tokens=2))
    provider.delay_s = delay_s
    return client


def ask(topic: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write a long story about {topic}, as JSON."}]


@pytest.mark.slow
def test_calls_waiting_for_the_llama_thread_do_not_time_out(tmp_path: Path) -> None:
    # 4 calls of up to 12 tokens at 0.25 s a token: the last waits about 9 s and finishes after the 10 s limit
    client = slow_client(Ledger(tmp_path / "ledger.sqlite"), timeout_s=10.0, max_tokens=12, delay_s=0.25)
    provider = client.handlers["local"]
    seen_waiting: list[int] = []

    async def go() -> list[Any]:
        calls = [asyncio.create_task(client.complete(ask(t), response_format=FORMAT)) for t in "abcd"]
        while not all(c.done() for c in calls):
            seen_waiting.append(client.calls_waiting())
            await asyncio.sleep(0.2)
        return [await c for c in calls]

    started = time.perf_counter()
    try:
        done = asyncio.run(go())
    finally:
        client.close()
    wall = time.perf_counter() - started
    assert len(done) == 4 and all(d.output_tokens > 0 for d in done)
    assert provider.stats.timed_out == 0
    assert wall > client.cfg.timeout_s  # the last call waited longer than the limit, and did not time out
    assert max(seen_waiting) == 3  # the queue was visible while it lasted
    assert provider.waiting == 0 and provider.running == 0


def test_a_timed_out_generation_is_stopped_before_its_retry(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    client = slow_client(ledger, timeout_s=2.0, max_tokens=60, max_retries=1)
    provider = client.handlers["local"]
    started = time.perf_counter()
    with pytest.raises(LLMError, match="failed 2 times"):
        asyncio.run(client.complete(ask("a lighthouse"), response_format=FORMAT))
    wall = time.perf_counter() - started
    assert provider.stats.timed_out == 2 and provider.running == 0
    # each attempt was cut at its limit (60 tokens at 0.5 s would take 30 s each): nothing ran on for nobody
    assert provider.stats.generated_tokens < 2 * (2.0 / SlowProvider.delay_s + 2)
    assert wall < 30
    client.close()


def test_a_caller_that_gives_up_stops_its_generation_and_its_queued_calls(tmp_path: Path) -> None:
    client = slow_client(timeout_s=60.0, max_tokens=60)
    provider = client.handlers["local"]

    async def go() -> None:
        first = asyncio.create_task(client.complete(ask("a river"), response_format=FORMAT))
        second = asyncio.create_task(client.complete(ask("a mountain"), response_format=FORMAT))
        while provider.generating < 2:  # past its prompt (which llama.cpp reads in one go), generating
            await asyncio.sleep(0.05)
        assert provider.waiting == 1
        first.cancel()
        second.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
        gave_up = time.perf_counter()
        while provider.running and time.perf_counter() - gave_up < 5:
            await asyncio.sleep(0.02)
        assert provider.running == 0 and time.perf_counter() - gave_up < 2 * SlowProvider.delay_s + 1
        assert provider.waiting == 0

    asyncio.run(go())
    time.sleep(0.5)
    assert provider.stats.calls == 1  # the queued call never started
    assert provider.stats.abandoned == 2
    assert provider.stats.generated_tokens < 60
    client.close()


def dev_papers(n: int) -> list[tuple[str, str]]:
    if not DEV.is_file():
        pytest.skip(f"no dev data at {DEV}")
    rows = []
    with DEV.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            rows.append((row["id"], row["text"]))
            if len(rows) == n:
                break
    return rows


def stock_sampling(client: LLMClient) -> None:
    """Give the client's loaded model llama-cpp-python's own sampler back (no greedy grammar shortcut)."""
    from llama_cpp import Llama

    def restore(llm: Any) -> None:
        llm._init_sampler = Llama._init_sampler.__get__(llm)

    client.handlers["local"].with_model("smollm2-135m", restore)


def test_interleaved_calls_reuse_kept_prefixes_with_identical_replies(tmp_path: Path) -> None:
    papers = [text[:1200] for _, text in dev_papers(2)]
    prompts = [
        [{"role": "user", "content": f"Paper:\n\n{paper}\n\n{persona} Give your verdict as JSON."}]
        for persona in ("You are balanced.", "You are critical.")
        for paper in papers
    ]  # paper 1, paper 2, paper 1 again, paper 2 again: each repeat follows the other paper

    def replies(cache_mb: int, stock: bool) -> tuple[list[str], Any]:
        local = LocalModelConfig(n_threads=1, n_ctx=2048, prompt_cache_mb=cache_mb)
        client = LLMClient(LLMConfig(cache=False, max_tokens=24, local=local), Ledger(tmp_path / f"{cache_mb}.sqlite"))
        if stock:
            stock_sampling(client)
        try:
            texts = [asyncio.run(client.complete(m, response_format=FORMAT)).text for m in prompts]
        finally:
            client.close()
        return texts, client.ledger

    plain, plain_ledger = replies(0, stock=True)  # every prompt evaluated whole, llama-cpp-python's sampler
    reused, reused_ledger = replies(256, stock=False)
    assert reused == plain
    assert plain_ledger.total_usage().cached_input_tokens == 0
    usage = reused_ledger.total_usage()
    assert usage.input_tokens == plain_ledger.total_usage().input_tokens
    # the repeats read their paper from the kept states, though the other paper's prompt came between
    assert usage.cached_input_tokens > 0.4 * usage.input_tokens
    assert usage.evaluated_input_tokens == usage.input_tokens - usage.cached_input_tokens


@pytest.mark.slow
@pytest.mark.timeout(1800)  # four reviews on the real model: about a minute on a quiet 2-core machine
def test_temperature_zero_reviews_are_byte_identical_with_and_without_prefix_reuse(tmp_path: Path) -> None:
    from review.ingest.paper import paper_from_text
    from review.reviewer import AgenticReviewer
    from review.settings import ReviewerConfig

    (paper_id, text), *_ = dev_papers(1)
    settings = ReviewerConfig(
        ensemble=2,
        meta_review=False,
        related_works=0,
        calibration=None,
        max_paper_chars=1000,
        max_tokens=200,
        echo_retries=0,
    )

    def review(cache_mb: int, stock: bool) -> tuple[str, Ledger]:
        ledger = Ledger(tmp_path / f"ledger-{cache_mb}.sqlite")
        # no repair or echo retry: a reply that fails is compared as it is, and costs no second generation
        local = LocalModelConfig(n_threads=1, prompt_cache_mb=cache_mb)
        cfg = LLMConfig(cache=False, repair_attempts=0, local=local)
        client = LLMClient(cfg, ledger)
        if stock:
            stock_sampling(client)
        reviewer = AgenticReviewer(client, settings)

        async def go() -> str:
            from fars.llm.client import StructuredOutputError

            with call_context(paper_id, "review"):
                try:
                    result = await reviewer.review(paper_from_text(text), paper_id=paper_id)
                except StructuredOutputError as exc:  # the 135M model may loop past its limit: the same way twice
                    return f"failed: {exc}"
            return result.model_dump_json(exclude={"wall_s"})

        try:
            return asyncio.run(go()), ledger
        finally:
            client.close()

    plain, plain_ledger = review(0, stock=True)
    reused, reused_ledger = review(256, stock=False)
    assert reused == plain
    import sqlite3

    replies = []
    for name in ("ledger-0.sqlite", "ledger-256.sqlite"):
        with sqlite3.connect(tmp_path / name) as db:
            replies.append([r[0] for r in db.execute("SELECT response FROM calls ORDER BY id")])
    assert sorted(replies[0]) == sorted(replies[1]) and replies[0]  # every reply byte for byte, not only the review
    without, with_reuse = plain_ledger.total_usage(), reused_ledger.total_usage()
    assert without.evaluated_input_tokens == without.input_tokens and without.cached_input_tokens == 0
    assert with_reuse.input_tokens == without.input_tokens
    assert with_reuse.cached_input_tokens > 0.3 * with_reuse.input_tokens  # the second reviewer read the paper once
