"""Which project and stage the code running now works for: set by the pipeline around each stage.

The model client attributes calls with it, the literature chain its look-ups, the scripted model its
simulated waits. A module of its own (below the client, the literature backends and the providers)
so each of them can read it without importing the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class CallContext:
    """Which project and stage a call belongs to."""

    project_id: str | None = None
    stage: str | None = None


_context: ContextVar[CallContext] = ContextVar("fars_call_context", default=CallContext())  # noqa: B039 (frozen)


@contextlib.contextmanager
def call_context(project_id: str | None, stage: str | None) -> Iterator[None]:
    """Attribute the model calls (and literature look-ups) made inside the block to a project and stage."""
    token = _context.set(CallContext(project_id, stage))
    try:
        yield
    finally:
        _context.reset(token)


def current_call_context() -> CallContext:
    """The project and stage the running code belongs to."""
    return _context.get()
