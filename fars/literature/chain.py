"""A fallback chain of literature backends: the first one that answers is used.

A backend that cannot answer (``LiteratureError``: rate limits past every retry, server faults, no
network) hands the question to the next one, and the chain notes which backend answered and which
failed, for the project's records. A look-up goes to the backend that owns the id's prefix; if that
service is down, a record the chain itself received earlier in this process still counts as found.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fars.context import current_call_context
from fars.literature.base import LiteratureBackend, LiteratureError, LiteratureRecord, SearchHit

log = logging.getLogger(__name__)
ID_PREFIXES = {"openreview": "offline", "openalex": "openalex", "arxiv": "arxiv", "s2": "semantic_scholar"}


@dataclass
class ChainEvent:
    """One question to the chain: which backends failed (and why), which one answered, and for whom.

    ``project_id`` and ``stage`` come from the call context, so one chain shared by every project of
    a run still tells each project which services answered it.
    """

    kind: str
    query: str
    answered_by: str | None
    failures: list[str] = field(default_factory=list)
    project_id: str | None = field(default_factory=lambda: current_call_context().project_id)
    stage: str | None = field(default_factory=lambda: current_call_context().stage)


class FallbackChain:
    """Backends tried in order; see the module docstring."""

    def __init__(self, backends: list[LiteratureBackend]) -> None:
        if not backends:
            raise ValueError("a fallback chain needs at least one backend")
        self.backends = backends
        self.name = "+".join(b.name for b in backends)
        self.events: list[ChainEvent] = []  # every question asked, in order (see ``answered_for``)
        self._seen: dict[str, LiteratureRecord] = {}

    def answered_for(self, project_id: str | None, stage: str | None = None) -> list[str]:
        """The backends that answered one project's questions (of one stage, when given), sorted."""
        return sorted(
            {
                e.answered_by
                for e in self.events
                if e.answered_by and e.project_id == project_id and (stage is None or e.stage == stage)
            }
        )

    async def search(self, query: str, k: int) -> list[SearchHit]:
        """The first backend's answer that does not fail; LiteratureError when every one failed."""
        failures: list[str] = []
        for backend in self.backends:
            try:
                hits = await backend.search(query, k)
            except LiteratureError as exc:
                failures.append(f"{backend.name}: {exc}")
                log.warning("literature backend %s failed (%s); trying the next one", backend.name, str(exc)[:200])
                continue
            self.events.append(ChainEvent("search", query, backend.name, failures))
            self._seen.update((h.record.id, h.record) for h in hits)
            return hits
        self.events.append(ChainEvent("search", query, None, failures))
        raise LiteratureError(f"every literature backend failed for {query[:80]!r}: " + " | ".join(failures))

    async def get(self, record_id: str) -> LiteratureRecord | None:
        """The record from the backend owning its id prefix (or every backend for an unknown prefix)."""
        owner = ID_PREFIXES.get(record_id.split(":", 1)[0])
        candidates = [b for b in self.backends if owner is None or b.name == owner]
        failures: list[str] = []
        for backend in candidates:
            try:
                found = await backend.get(record_id)
            except LiteratureError as exc:
                failures.append(f"{backend.name}: {exc}")
                continue
            self.events.append(ChainEvent("get", record_id, backend.name, failures))
            if found is not None:
                return found
        self.events.append(ChainEvent("get", record_id, "memory" if record_id in self._seen else None, failures))
        return self._seen.get(record_id) if failures else None
