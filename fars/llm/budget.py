"""Budgets: tokens, dollars and wall time, per run and per project, checked before and after each call.

Before each try of a model call, retries and fallbacks included, the client *reserves* its estimate
(a bound of its prompt tokens as sent plus ``max_tokens``, priced from litellm's cost data at the
model it is sent to); the reservation is refused when what is spent plus what tries in flight have
reserved plus this estimate would pass a limit. After the try what the provider billed replaces the
reservation: the reply's usage, or a failed try's where the provider billed it (an empty reply with
usage), so a retry is checked against what its failed tries cost. The prompt bound
(``prompt_token_bound``) is the request's UTF-8 bytes plus a chat template's overhead: no byte-level
tokenizer (GPT's, Llama's, SmolLM's, ...) makes more tokens than bytes, so digits, code and non-Latin
text (which a characters/4 guess undercounts up to 12x) cannot slip past it. So however many calls run
at once, a limit is not passed by a call that bills what it asked for, and no call starts once a limit
is reached.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fars.config import BudgetConfig

MESSAGE_OVERHEAD_TOKENS = 16  # what a chat template adds around each message (role, separators, a prefix)
REQUEST_OVERHEAD_TOKENS = 64  # what a provider adds to every request (reply priming, a default system prompt)


def prompt_token_bound(messages: Sequence[Mapping[str, Any]], response_format: Mapping[str, Any] | None = None) -> int:
    """An upper bound of the prompt tokens of a request: its UTF-8 bytes, plus template overheads.

    The schema of a structured request is counted too (providers bill it as prompt). Never less than a
    byte-level tokenizer's count, and costs microseconds (no tokenizer is loaded on the event loop).
    """
    total = REQUEST_OVERHEAD_TOKENS
    for message in messages:
        content = message.get("content") or ""
        text = content if isinstance(content, str) else json.dumps(content, default=str)
        total += len(text.encode("utf-8")) + len(str(message.get("role", "")).encode("utf-8"))
        total += MESSAGE_OVERHEAD_TOKENS
    if response_format:
        total += len(json.dumps(response_format, separators=(",", ":"), default=str).encode("utf-8"))
    return total


class BudgetExceeded(RuntimeError):
    """A limit is used up; the project stops cleanly with status ``budget_exhausted``.

    ``scope`` is ``"run"`` (no new project starts) or ``"project"`` (only this project stops).
    """

    def __init__(self, message: str, scope: str = "run") -> None:
        super().__init__(message)
        self.scope = scope


class _HeldInFlight(BudgetExceeded):
    """Refused only for what calls in flight hold: the call may fit once they settle (``reserve_waiting``)."""


@dataclass
class _Spent:
    tokens: int = 0
    dollars: float = 0.0
    reserved_tokens: int = 0
    reserved_dollars: float = 0.0
    in_flight: int = 0
    started: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Reservation:
    """What one call in flight has reserved, and for which project."""

    project_id: str | None
    tokens: int
    dollars: float


def _spent_so_far(tokens: int, dollars: float, started: float | None, whose: str) -> None:
    """Refuse spending read back from a ledger that no call could have made: a negative or non-finite count
    would be credited to the budget (``fars.run.ledger.value_problems`` names such values before a resume)."""
    if (
        isinstance(tokens, bool)
        or not isinstance(tokens, int)
        or tokens < 0
        or not math.isfinite(dollars)
        or dollars < 0
        or (started is not None and not math.isfinite(started))
    ):
        raise ValueError(
            f"{whose} spending read back from the ledger is impossible ({tokens!r} tokens, ${dollars!r}, started "
            f"{started!r}): a hand-edited ledger? `fars run resume=FOLDER` names the values to correct"
        )


class Budget:
    """Spent-so-far counters (run and per project) against the configured limits."""

    def __init__(
        self, cfg: BudgetConfig, *, tokens: int = 0, dollars: float = 0.0, started: float | None = None
    ) -> None:
        _spent_so_far(tokens, dollars, started, "the run's")
        self.cfg = cfg
        self._run = _Spent(tokens, dollars, started=time.time() if started is None else started)
        self._projects: dict[str, _Spent] = {}
        self._lock = threading.Lock()
        self._settled: asyncio.Event | None = None  # set when a call settles: waiting reservations try again
        self._settled_loop: asyncio.AbstractEventLoop | None = None

    @property
    def tokens(self) -> int:
        """Tokens spent by the run so far."""
        return self._run.tokens

    @property
    def dollars(self) -> float:
        """Dollars spent by the run so far."""
        return self._run.dollars

    def project(self, project_id: str, *, tokens: int = 0, dollars: float = 0.0, started: float | None = None) -> None:
        """Start (or, on resume, restore) a project's counters; ValueError for impossible ones read back."""
        _spent_so_far(tokens, dollars, started, f"project {project_id}'s")
        with self._lock:
            self._projects[project_id] = _Spent(tokens, dollars, started=time.time() if started is None else started)

    def check(self, estimated_tokens: int = 0, estimated_dollars: float = 0.0, project_id: str | None = None) -> None:
        """Raise BudgetExceeded if the run or project could not afford a call of this estimate."""
        with self._lock:
            self._refuse_if_over(estimated_tokens, estimated_dollars, project_id)

    def reserve(
        self, estimated_tokens: int, estimated_dollars: float = 0.0, project_id: str | None = None
    ) -> Reservation:
        """Check and hold a call's estimate until ``settle``; raise BudgetExceeded if it cannot be afforded."""
        with self._lock:
            self._refuse_if_over(estimated_tokens, estimated_dollars, project_id)
            for spent in self._scopes(project_id):
                spent.reserved_tokens += estimated_tokens
                spent.reserved_dollars += estimated_dollars
                spent.in_flight += 1
            return Reservation(project_id, estimated_tokens, estimated_dollars)

    async def reserve_waiting(
        self, estimated_tokens: int, estimated_dollars: float = 0.0, project_id: str | None = None
    ) -> Reservation:
        """``reserve``, but a call that would fit once the calls in flight settle waits for them instead.

        The estimates are upper bounds, so calls in flight usually cost less than they hold; refusing a
        call for what they hold would end projects with budget left (most at high concurrency). Only a
        call that cannot fit even if every call in flight cost nothing is refused.
        """
        while True:
            try:
                return self.reserve(estimated_tokens, estimated_dollars, project_id)
            except _HeldInFlight:
                loop = asyncio.get_running_loop()
                if self._settled is None or self._settled_loop is not loop:
                    self._settled, self._settled_loop = asyncio.Event(), loop
                await self._settled.wait()

    def settle(self, reservation: Reservation, tokens: int, dollars: float) -> None:
        """Replace a reservation by what the call actually cost (0 and 0 if it failed)."""
        with self._lock:
            for spent in self._scopes(reservation.project_id):
                spent.reserved_tokens -= reservation.tokens
                spent.reserved_dollars -= reservation.dollars
                spent.in_flight -= 1
                spent.tokens += tokens
                spent.dollars += dollars
        woken, self._settled = self._settled, None
        if woken is not None:
            woken.set()  # called on the event loop by the client; waiting reservations try again

    def charge(self, tokens: int, dollars: float, project_id: str | None = None) -> None:
        """Add what a call cost without a reservation."""
        with self._lock:
            for spent in self._scopes(project_id):
                spent.tokens += tokens
                spent.dollars += dollars

    def _scopes(self, project_id: str | None) -> list[_Spent]:
        scopes = [self._run]
        if project_id is not None:
            scopes.append(self._projects.setdefault(project_id, _Spent()))
        return scopes

    def _refuse_if_over(self, tokens: int, dollars: float, project_id: str | None) -> None:
        cfg = self.cfg
        self._check_scope(self._run, "run", "budget", tokens, dollars, cfg.max_tokens, cfg.max_dollars, cfg.max_wall_s)
        if project_id is not None:
            self._check_scope(
                self._projects.setdefault(project_id, _Spent()),
                "project",
                f"project {project_id}'s budget",
                tokens,
                dollars,
                cfg.project_max_tokens,
                cfg.project_max_dollars,
                cfg.project_max_wall_s,
            )

    @staticmethod
    def _check_scope(
        spent: _Spent,
        scope: str,
        label: str,
        tokens: int,
        dollars: float,
        max_tokens: int | None,
        max_dollars: float | None,
        max_wall_s: float | None,
    ) -> None:
        key = "budget." if scope == "run" else "budget.project_"
        if max_wall_s is not None and time.time() - spent.started >= max_wall_s:
            raise BudgetExceeded(f"{label}: wall time of {max_wall_s:g}s used up (raise {key}max_wall_s)", scope)
        if max_tokens is not None:
            committed = spent.tokens + spent.reserved_tokens
            if spent.tokens >= max_tokens or committed + tokens > max_tokens:
                kind = _HeldInFlight if spent.tokens + tokens <= max_tokens and spent.in_flight else BudgetExceeded
                raise kind(
                    f"{label}: tokens used up: {spent.tokens} spent, {spent.reserved_tokens} in flight, at most "
                    f"{tokens} more asked, limit {max_tokens} (raise {key}max_tokens)",
                    scope,
                )
        if max_dollars is not None:
            committed_usd = spent.dollars + spent.reserved_dollars
            if spent.dollars >= max_dollars or committed_usd + dollars > max_dollars:
                fits = spent.dollars + dollars <= max_dollars and spent.in_flight
                raise (_HeldInFlight if fits else BudgetExceeded)(
                    f"{label}: dollars used up: ${spent.dollars:.4f} spent, ${spent.reserved_dollars:.4f} in flight, "
                    f"at most ${dollars:.4f} more asked, limit ${max_dollars:.4f} (raise {key}max_dollars)",
                    scope,
                )
