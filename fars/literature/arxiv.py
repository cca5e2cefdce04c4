"""arXiv's Atom API (https://export.arxiv.org/api/query): no key; it asks for 3 s between calls.

Search: ``search_query=all:...&max_results=K``; look-up: ``id_list=ID``. Record ids are
``arxiv:ID`` without the version suffix.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from fars.literature.base import LiteratureError, LiteratureRecord, SearchHit
from fars.literature.http import HttpFetcher
from fars.literature.similarity import content_words

API = "https://export.arxiv.org/api/query"
PREFIX = "arxiv:"
NS = {"atom": "http://www.w3.org/2005/Atom", "arxiv": "http://arxiv.org/schemas/atom"}
_VERSION = re.compile(r"v\d+$")


def _text(node: ET.Element | None) -> str | None:
    return " ".join(node.text.split()) if node is not None and node.text else None


def parse_feed(xml_text: str) -> list[LiteratureRecord]:
    """The entries of an arXiv Atom feed as literature records (error entries skipped)."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise LiteratureError(f"arxiv returned a feed that is not valid XML ({exc})") from None
    records = []
    for entry in root.findall("atom:entry", NS):
        raw_id = _text(entry.find("atom:id", NS)) or ""
        if "/abs/" not in raw_id:  # arXiv reports a bad id as an entry pointing at /api/errors
            continue
        arxiv_id = _VERSION.sub("", raw_id.split("/abs/", 1)[1])
        published = _text(entry.find("atom:published", NS)) or ""
        records.append(
            LiteratureRecord(
                id=PREFIX + arxiv_id,
                title=_text(entry.find("atom:title", NS)) or "(untitled)",
                abstract=_text(entry.find("atom:summary", NS)),
                authors=[n for a in entry.findall("atom:author", NS) if (n := _text(a.find("atom:name", NS)))],
                year=int(published[:4]) if published[:4].isdigit() else None,
                venue=_text(entry.find("arxiv:journal_ref", NS)) or "arXiv",
                url=f"https://arxiv.org/abs/{arxiv_id}",
                source="arxiv",
            )
        )
    return records


class Arxiv:
    """The arXiv query API."""

    name = "arxiv"

    def __init__(self, fetcher: HttpFetcher) -> None:
        self.fetcher = fetcher

    async def search(self, query: str, k: int) -> list[SearchHit]:
        """Entries matching the content words of ``query`` (arXiv's relevance order; scored k, k-1, ... 1)."""
        words = list(dict.fromkeys(content_words(query)))[:8]
        if not words:
            return []
        params = {  # any of the words; arXiv's relevance order ranks works matching more of them first
            "search_query": " OR ".join(f"all:{w}" for w in words),
            "start": 0,
            "max_results": k,
            "sortBy": "relevance",
        }
        response = await self.fetcher.get(API, params=params)
        records = [] if response is None else parse_feed(response.text)[:k]
        return [SearchHit(record=r, score=float(len(records) - i)) for i, r in enumerate(records)]

    async def get(self, record_id: str) -> LiteratureRecord | None:
        """The entry ``arxiv:ID`` or None when arXiv does not know it."""
        arxiv_id = record_id.removeprefix(PREFIX)
        if not re.fullmatch(r"[A-Za-z\-.]*/?\d{4}\.?\d{3,5}(v\d+)?", arxiv_id):
            return None
        response = await self.fetcher.get(API, params={"id_list": arxiv_id, "max_results": 1})
        records = [] if response is None else parse_feed(response.text)
        return records[0] if records else None
