"""Run budgets: tokens, dollars and wall time, checked before every model call and charged after.

Because the check happens before each call against what has been spent so far, a run overshoots a
limit by at most the one call in flight (per concurrent connection).
"""

from __future__ import annotations

import time

from fars.config import BudgetConfig


class BudgetExceeded(RuntimeError):
    """A run limit is used up; the project stops cleanly with status ``budget_exhausted``."""


class Budget:
    """Spent-so-far counters against the configured limits."""

    def __init__(
        self, cfg: BudgetConfig, *, tokens: int = 0, dollars: float = 0.0, started: float | None = None
    ) -> None:
        self.cfg = cfg
        self.tokens = tokens
        self.dollars = dollars
        self.started = time.time() if started is None else started

    def check(self, estimated_tokens: int = 0) -> None:
        """Raise BudgetExceeded if a limit is already reached or this call would pass the token limit."""
        if self.cfg.max_wall_s is not None and time.time() - self.started >= self.cfg.max_wall_s:
            raise BudgetExceeded(f"wall-time budget of {self.cfg.max_wall_s:g}s used up")
        if self.cfg.max_tokens is not None and self.tokens + estimated_tokens > self.cfg.max_tokens:
            raise BudgetExceeded(
                f"token budget used up: {self.tokens} spent, about {estimated_tokens} more asked, "
                f"limit {self.cfg.max_tokens} (raise budget.max_tokens)"
            )
        if self.cfg.max_dollars is not None and self.dollars >= self.cfg.max_dollars:
            raise BudgetExceeded(
                f"dollar budget used up: ${self.dollars:.4f} of ${self.cfg.max_dollars:.4f} (raise budget.max_dollars)"
            )

    def charge(self, tokens: int, dollars: float) -> None:
        """Add what a call actually cost."""
        self.tokens += tokens
        self.dollars += dollars
