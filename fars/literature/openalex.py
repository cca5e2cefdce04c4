"""OpenAlex (https://openalex.org): free, no key, abstracts as inverted indexes.

Search: ``GET /works?search=QUERY&per-page=K``; look-up: ``GET /works/W...``. Record ids are
``openalex:W...``.
"""

from __future__ import annotations

from typing import Any

from fars.literature.base import LiteratureRecord, SearchHit
from fars.literature.http import HttpFetcher

API = "https://api.openalex.org"
PREFIX = "openalex:"
SELECT = (
    "id,doi,title,display_name,publication_year,abstract_inverted_index,authorships,primary_location,relevance_score"
)


def abstract_from_index(index: dict[str, list[int]] | None) -> str | None:
    """Rebuild an abstract from OpenAlex's inverted index (word -> positions)."""
    if not index:
        return None
    placed = sorted((pos, word) for word, positions in index.items() for pos in positions)
    return " ".join(word for _, word in placed) or None


def record_from_work(work: dict[str, Any]) -> LiteratureRecord:
    """A literature record from one OpenAlex work object."""
    short_id = str(work["id"]).rstrip("/").rsplit("/", 1)[-1]
    location = work.get("primary_location") or {}
    source = location.get("source") or {}
    return LiteratureRecord(
        id=PREFIX + short_id,
        title=work.get("title") or work.get("display_name") or "(untitled)",
        abstract=abstract_from_index(work.get("abstract_inverted_index")),
        authors=[
            a["author"]["display_name"]
            for a in work.get("authorships") or []
            if (a.get("author") or {}).get("display_name")
        ],
        year=work.get("publication_year"),
        venue=source.get("display_name"),
        url=work.get("doi") or location.get("landing_page_url") or work["id"],
        source="openalex",
    )


class OpenAlex:
    """The OpenAlex works API."""

    name = "openalex"

    def __init__(self, fetcher: HttpFetcher, mailto: str | None = None) -> None:
        self.fetcher = fetcher
        self.mailto = mailto

    def _params(self, **extra: Any) -> dict[str, Any]:
        return {**extra, "select": SELECT, **({"mailto": self.mailto} if self.mailto else {})}

    async def search(self, query: str, k: int) -> list[SearchHit]:
        """Works matching ``query``, by OpenAlex's relevance score."""
        if not query.strip():
            return []
        response = await self.fetcher.get(f"{API}/works", params=self._params(search=query, **{"per-page": k}))
        if response is None:
            return []
        works = response.json().get("results") or []
        return [SearchHit(record=record_from_work(w), score=float(w.get("relevance_score") or 0.0)) for w in works[:k]]

    async def get(self, record_id: str) -> LiteratureRecord | None:
        """The work ``openalex:W...`` or None when OpenAlex does not know it."""
        short_id = record_id.removeprefix(PREFIX)
        if not short_id or "/" in short_id:
            return None
        response = await self.fetcher.get(f"{API}/works/{short_id}", params=self._params())
        return None if response is None else record_from_work(response.json())
