"""The literature interface every backend implements: records, hits, errors, the protocol, ``none``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import BaseModel, Field


class LiteratureRecord(BaseModel):
    """One work: enough to cite it and to judge whether it is related."""

    id: str  # stable and prefixed by its source, e.g. "openreview:abc123", "arxiv:2101.00001"
    title: str
    abstract: str | None = None
    authors: list[str] = Field(default_factory=list)
    year: int | None = None
    venue: str | None = None
    url: str | None = None
    source: str


class SearchHit(BaseModel):
    """A record found for a query, with the backend's relevance score (higher is closer)."""

    record: LiteratureRecord
    score: float


class LiteratureBackend(Protocol):
    """What every backend offers."""

    name: str

    async def search(self, query: str, k: int) -> list[SearchHit]:
        """The ``k`` records most relevant to ``query``, best first."""
        ...

    async def get(self, record_id: str) -> LiteratureRecord | None:
        """The record with this id, or None when it does not exist (used to verify citations)."""
        ...


class LiteratureError(RuntimeError):
    """A literature service could not answer (after retries); the chain moves to its next backend."""


class BackendUnavailable(LiteratureError):
    """The service kept failing (rate limits, server errors, no network) after every retry."""


class NoLiterature:
    """The backend of ``literature=none``: finds nothing, verifies nothing."""

    name = "none"

    async def search(self, query: str, k: int) -> list[SearchHit]:
        """No results."""
        return []

    async def get(self, record_id: str) -> LiteratureRecord | None:
        """Nothing exists."""
        return None


Sleep = Callable[[float], Awaitable[Any]]
