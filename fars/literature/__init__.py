"""Literature: one interface over the offline corpus and the online search services.

Stages and the reviewer ask ``make_backend(cfg.literature)`` for a backend and call ``search`` and
``get``; which service answers (and the fallback between them) is the config's business:

- ``offline`` (default): BM25 over the bundled ICLR 2022 titles and abstracts (no network);
- ``openalex``, ``arxiv``, ``semantic_scholar``: one service, then ``literature.fallback`` in order;
- ``online``: the services of ``literature.chain`` in order (by default Semantic Scholar, OpenAlex,
  arXiv, then the offline corpus), each with retries and backoff that honour Retry-After;
- ``none``: finds nothing, verifies nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import BaseModel, Field

from fars.config import LiteratureConfig


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


BACKEND_NAMES = ("offline", "openalex", "arxiv", "semantic_scholar")
Sleep = Callable[[float], Awaitable[Any]]


def make_single_backend(
    name: str, cfg: LiteratureConfig, *, transport: Any = None, sleep: Sleep | None = None
) -> LiteratureBackend:
    """One backend by name (no fallback); ``transport`` and ``sleep`` let tests replay recorded responses."""
    if name == "none":
        return NoLiterature()
    if name == "offline":
        from fars.literature.offline import OfflineCorpus

        return OfflineCorpus.load(cfg.corpus_path)
    from fars.literature.http import HttpFetcher

    fetcher = HttpFetcher(name, cfg, transport=transport, sleep=sleep)
    if name == "openalex":
        from fars.literature.openalex import OpenAlex

        return OpenAlex(fetcher, mailto=cfg.mailto)
    if name == "arxiv":
        from fars.literature.arxiv import Arxiv

        return Arxiv(fetcher)
    if name == "semantic_scholar":
        from fars.literature.semantic_scholar import SemanticScholar

        return SemanticScholar(fetcher, api_key_env=cfg.api_key_env)
    raise ValueError(f"unknown literature backend {name!r}; choose from {[*BACKEND_NAMES, 'online', 'none']}")


def backend_chain(cfg: LiteratureConfig) -> list[str]:
    """The backends a config tries, in order (duplicates dropped)."""
    if cfg.backend == "none":
        return []
    names = list(cfg.chain) if cfg.backend == "online" else [cfg.backend, *cfg.fallback]
    return list(dict.fromkeys(names))


def make_backend(cfg: LiteratureConfig, *, transport: Any = None, sleep: Sleep | None = None) -> LiteratureBackend:
    """The backend the config names: one service, or a fallback chain when more than one is tried."""
    names = backend_chain(cfg)
    if not names:
        return NoLiterature()
    backends = [make_single_backend(n, cfg, transport=transport, sleep=sleep) for n in names]
    if len(backends) == 1:
        return backends[0]
    from fars.literature.chain import FallbackChain

    return FallbackChain(backends)
