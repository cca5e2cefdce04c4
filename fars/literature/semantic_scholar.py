"""Semantic Scholar Graph API (https://api.semanticscholar.org): key optional, rate limited.

Search: ``GET /graph/v1/paper/search?query=Q&limit=K&fields=...``; look-up:
``GET /graph/v1/paper/ID?fields=...``. A key from the environment variable named by
``literature.api_key_env`` goes in the ``x-api-key`` header; without one the shared pool often
answers 429, which the HTTP layer retries and the fallback chain survives. Record ids are ``s2:ID``.
"""

from __future__ import annotations

import os
from typing import Any

from fars.literature.base import LiteratureRecord, SearchHit
from fars.literature.http import HttpFetcher

API = "https://api.semanticscholar.org/graph/v1"
PREFIX = "s2:"
FIELDS = "paperId,title,abstract,year,venue,authors,url,externalIds"


def record_from_paper(paper: dict[str, Any]) -> LiteratureRecord:
    """A literature record from one Semantic Scholar paper object."""
    return LiteratureRecord(
        id=PREFIX + str(paper["paperId"]),
        title=paper.get("title") or "(untitled)",
        abstract=paper.get("abstract"),
        authors=[a["name"] for a in paper.get("authors") or [] if a.get("name")],
        year=paper.get("year"),
        venue=paper.get("venue") or None,
        url=paper.get("url"),
        source="semantic_scholar",
    )


class SemanticScholar:
    """The Semantic Scholar paper search and look-up."""

    name = "semantic_scholar"

    def __init__(self, fetcher: HttpFetcher, api_key_env: str | None = None) -> None:
        self.fetcher = fetcher
        self.api_key_env = api_key_env

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return {"x-api-key": key} if key else {}

    async def search(self, query: str, k: int) -> list[SearchHit]:
        """Papers matching ``query``, in Semantic Scholar's order (scored k, k-1, ... 1)."""
        if not query.strip():
            return []
        response = await self.fetcher.get(
            f"{API}/paper/search", params={"query": query, "limit": k, "fields": FIELDS}, headers=self._headers()
        )
        if response is None:
            return []
        papers = [p for p in response.json().get("data") or [] if p.get("paperId")][:k]
        return [SearchHit(record=record_from_paper(p), score=float(len(papers) - i)) for i, p in enumerate(papers)]

    async def get(self, record_id: str) -> LiteratureRecord | None:
        """The paper ``s2:ID`` or None when Semantic Scholar does not know it."""
        paper_id = record_id.removeprefix(PREFIX)
        if not paper_id or "/" in paper_id:
            return None
        response = await self.fetcher.get(f"{API}/paper/{paper_id}", params={"fields": FIELDS}, headers=self._headers())
        return None if response is None else record_from_paper(response.json())
