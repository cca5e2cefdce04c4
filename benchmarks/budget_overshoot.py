"""How far a dollar budget is passed, with adversarial prompts and with a provider that bills failed tries,
at 1, 4 and 16 calls in flight.

Usage: ``python benchmarks/budget_overshoot.py [--calls 80] [--limit 0.004] [--billing-only]``

Prompts of digits, code and non-Latin text (which a characters/4 guess undercounts) go through the real
client, budget and ledger to the scripted model, billed as a real provider bills: prompt tokens as
gpt-4o-mini's tokenizer counts them (litellm's ``token_counter``), at gpt-4o-mini's litellm price.
Printed for each prompt kind and concurrency: the overshoot of the limit (spent / limit - 1) with the
prompt bound FARS uses (``fars.llm.budget.prompt_token_bound``) and with the characters/4 estimate it
replaced, and how many calls were paid.

The second table is a provider that bills the empty replies FARS rejects and retries (``!fault:empty:billed``):
one that never answers (every try empty) and one whose first try of each call is empty. The overshoot is
of what the provider billed (counted on its side, whatever the ledger says) against the limit, beside what
the ledger recorded and the dearest single try (one call's worth).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
from litellm.types.utils import Usage as LiteUsage

from fars.config import BudgetConfig, LLMConfig, ScriptedModelConfig
from fars.llm.budget import Budget, BudgetExceeded
from fars.llm.client import LLMClient, LLMError
from fars.llm.scripted import ScriptedProvider
from fars.run.ledger import Ledger

PRICED = "openai/gpt-4o-mini"
PROMPTS = {
    "digits": "0 1 2 3 4 5 6 7 8 9 " * 60,
    "code": "for(i=0;i<n;i++){x[i]+=y[i]*2;}\n" * 40,
    "non-latin": "注意力机制は重要です。Внимание — всё. 🙂🚀 " * 30,
}


class TokenizerBilled(ScriptedProvider):
    """The scripted model billing prompt tokens by gpt-4o-mini's tokenizer; it keeps its own bill."""

    billed_usd = 0.0  # what this provider billed, answered or not (its side of the account)
    dearest_try_usd = 0.0
    tries_billed = 0

    def _respond(self, model: str, messages: list, optional_params: dict, model_response: Any, scripted: Any) -> Any:
        response: Any = super()._respond(model, messages, optional_params, model_response, scripted)
        if not response.usage.total_tokens:  # a reply this provider does not bill
            return response
        prompt = litellm.token_counter(model=PRICED, messages=messages)
        out = self.cfg.output_tokens
        response.usage = LiteUsage(prompt_tokens=prompt, completion_tokens=out, total_tokens=prompt + out)
        cost = sum(litellm.cost_per_token(model=PRICED, prompt_tokens=prompt, completion_tokens=out))
        self.billed_usd += cost
        self.dearest_try_usd = max(self.dearest_try_usd, cost)
        self.tries_billed += 1
        return response


def chars_over_4(messages: list[dict[str, str]], response_format: Any = None) -> int:
    """The estimate FARS used before: characters / 4."""
    return sum(len(m.get("content", "")) for m in messages) // 4


def measure(kind: str, concurrency: int, calls: int, limit: float, folder: Path, old: bool) -> tuple[float, int]:
    """(spent / limit - 1, calls paid) for one setting."""
    cfg = LLMConfig(
        model="scripted/priced",
        cache=False,
        concurrency=concurrency,
        max_tokens=50,
        scripted=ScriptedModelConfig(output_tokens=50, latency_s=0.02, price_as=PRICED),
    )
    ledger = Ledger(folder / f"{kind}-{concurrency}-{old}.sqlite")
    client = LLMClient(cfg, ledger, Budget(BudgetConfig(max_dollars=limit)))
    client.handlers["scripted"] = TokenizerBilled(cfg.scripted)
    if old:
        client._estimate_tokens = chars_over_4  # type: ignore[method-assign]

    async def one(i: int) -> None:
        with contextlib.suppress(BudgetExceeded):
            await client.complete([{"role": "system", "content": "You are terse."},
                                   {"role": "user", "content": f"{i}: {PROMPTS[kind]}"}])  # fmt: skip

    async def many() -> None:
        await asyncio.gather(*(one(i) for i in range(calls)))

    asyncio.run(many())
    spent = ledger.total_usage()
    return spent.cost_usd / limit - 1, spent.calls


# the billing-failure providers: which scripted replies each call's tries get, in order
FAILING = {
    "never answers": ["!fault:empty:billed"] * 3,  # llm.max_retries=2: every try of a call is empty, and billed
    "empty, then answers": ["!fault:empty:billed", "answered at last"],
}


def measure_billing(kind: str, concurrency: int, calls: int, limit: float, folder: Path) -> dict[str, float]:
    """What a provider that bills empty replies billed against ``limit``, and what the ledger recorded."""
    routes = {f"[call {i}]": list(FAILING[kind]) for i in range(calls)}
    cfg = LLMConfig(
        model="scripted/priced",
        cache=False,
        concurrency=concurrency,
        max_tokens=50,
        max_retries=2,
        backoff_s=0.0,
        scripted=ScriptedModelConfig(output_tokens=50, latency_s=0.02, price_as=PRICED, routes=routes),
    )
    ledger = Ledger(folder / f"billing-{kind}-{concurrency}.sqlite")
    client = LLMClient(cfg, ledger, Budget(BudgetConfig(max_dollars=limit)))
    provider = TokenizerBilled(cfg.scripted)
    client.handlers["scripted"] = provider

    async def one(i: int) -> None:
        with contextlib.suppress(BudgetExceeded, LLMError):
            await client.complete([{"role": "user", "content": f"[call {i}] {PROMPTS['code']}"}])

    async def many() -> None:
        await asyncio.gather(*(one(i) for i in range(calls)))

    asyncio.run(many())
    return {
        "overshoot": provider.billed_usd / limit - 1,
        "one_call": provider.dearest_try_usd / limit,
        "tries": provider.tries_billed,
        "ledger": ledger.total_usage().cost_usd / limit,
    }


def main() -> None:
    """Print the overshoot tables."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=80)
    p.add_argument("--limit", type=float, default=0.004)
    p.add_argument("--billing-only", action="store_true", help="only the provider that bills failed tries")
    args = p.parse_args()
    logging.getLogger("fars.llm.client").setLevel(logging.ERROR)  # not a warning for every retried try
    print(f"dollar budget ${args.limit}, {args.calls} calls offered, billed as {PRICED} (tokenizer and price)")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.billing_only:
            print(
                f"{'prompt':10} {'in flight':>9} {'overshoot (bound)':>18} {'paid':>5} "
                f"{'overshoot (chars/4)':>20} {'paid':>5}"
            )
            for kind in PROMPTS:
                for concurrency in (1, 4, 16):
                    new, paid_new = measure(kind, concurrency, args.calls, args.limit, Path(tmp), old=False)
                    old, paid_old = measure(kind, concurrency, args.calls, args.limit, Path(tmp), old=True)
                    print(f"{kind:10} {concurrency:>9} {new:>+18.1%} {paid_new:>5} {old:>+20.1%} {paid_old:>5}")
            print()
        print("a provider billing the empty replies FARS retries (llm.max_retries=2), code prompts:")
        print(
            f"{'provider':20} {'in flight':>9} {'overshoot (billed)':>19} {'one call':>9} "
            f"{'tries billed':>13} {'ledger / limit':>15}"
        )
        for kind in FAILING:
            for concurrency in (1, 4, 16):
                got = measure_billing(kind, concurrency, args.calls, args.limit, Path(tmp))
                print(
                    f"{kind:20} {concurrency:>9} {got['overshoot']:>+19.1%} {got['one_call']:>9.1%} "
                    f"{int(got['tries']):>13} {got['ledger']:>15.1%}"
                )


if __name__ == "__main__":
    main()
