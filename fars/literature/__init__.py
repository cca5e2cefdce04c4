"""Literature: one interface over the offline corpus and the online search services.

Stages and the reviewer ask ``make_backend(cfg.literature)`` for a backend and call ``search`` and
``get``; which service answers (and the fallback between them) is the config's business:

- ``offline`` (default): BM25 over the bundled ICLR, ICML and NeurIPS titles and abstracts (no network);
- ``openalex``, ``arxiv``, ``semantic_scholar``: one service, then ``literature.fallback`` in order;
- ``online``: the services of ``literature.chain`` in order (by default Semantic Scholar, OpenAlex,
  arXiv, then the offline corpus), each with retries and backoff that honour Retry-After;
- ``none``: finds nothing, verifies nothing.
"""

from __future__ import annotations

from typing import Any

from fars.config import LiteratureConfig
from fars.literature.base import (
    BackendUnavailable,
    LiteratureBackend,
    LiteratureError,
    LiteratureRecord,
    NoLiterature,
    SearchHit,
    Sleep,
)

__all__ = [
    "BACKEND_NAMES",
    "BackendUnavailable",
    "LiteratureBackend",
    "LiteratureError",
    "LiteratureRecord",
    "NoLiterature",
    "SearchHit",
    "Sleep",
    "backend_chain",
    "make_backend",
    "make_single_backend",
]


BACKEND_NAMES = ("offline", "openalex", "arxiv", "semantic_scholar")


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
