"""Budgets under concurrency: the dollar overshoot bound, per-project limits, clean ends in the RunRecord.

Dollars are real litellm prices: the scripted model bills as ``openai/gpt-4o-mini`` (``price_as``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fars.budget import Budget, BudgetExceeded
from fars.config import BudgetConfig, LLMConfig, ScriptedModelConfig
from fars.context import call_context
from fars.ledger import Ledger
from fars.llm.client import LLMClient
from fars.records import ProjectStatus
from fars.summary import read_run_record
from tests.conftest import FAST, run_fars
from tests.test_pipeline import assert_record_matches_ledger

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
