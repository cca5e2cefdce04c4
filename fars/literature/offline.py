"""The offline backend: BM25 (the ``bm25s`` library) over a JSONL corpus of titles and abstracts.

The bundled corpus holds the titles and abstracts of 459 ICLR 2022 submissions (OpenReview, CC BY
4.0; see ``data/README.md``). A corpus of one's own works too: one JSON object a line with ``id``,
``title`` and optionally ``abstract``, ``year``, ``venue``, ``url``, ``authors``. The index is built
once per process and file (about 0.1 s for the bundled corpus).
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from fars.literature.base import LiteratureRecord, SearchHit

BUNDLED_CORPUS = Path(__file__).resolve().parent / "data" / "iclr2022_corpus.jsonl"
SOURCE = "openreview"
_LOADED: dict[Path, OfflineCorpus] = {}
_LOCK = threading.Lock()


class CorpusError(ValueError):
    """The corpus file is missing or malformed; the message names the file and line."""


def read_corpus(path: Path) -> list[LiteratureRecord]:
    """The records of a JSONL corpus file, ids prefixed ``openreview:`` unless already prefixed."""
    if not path.is_file():
        raise CorpusError(
            f"literature corpus {path} does not exist; set literature.corpus_path to a JSONL file, or null for the bundled one"
        )
    records = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                raw_id = str(row["id"])
                records.append(
                    LiteratureRecord(
                        id=raw_id if ":" in raw_id else f"{SOURCE}:{raw_id}",
                        title=row["title"],
                        abstract=row.get("abstract"),
                        authors=row.get("authors") or [],
                        year=row.get("year"),
                        venue=row.get("venue"),
                        url=row.get("url"),
                        source=row.get("source") or SOURCE,
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise CorpusError(
                    f"{path}:{line_no}: not a corpus record ({type(exc).__name__}: {exc}); "
                    "each line needs a JSON object with at least 'id' and 'title'"
                ) from None
    if not records:
        raise CorpusError(f"literature corpus {path} holds no records")
    return records


class OfflineCorpus:
    """BM25 search and id look-up over an in-memory corpus."""

    name = "offline"

    def __init__(self, records: list[LiteratureRecord]) -> None:
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs each index build at DEBUG
        self.records = records
        self.by_id = {r.id: r for r in records}
        self._bm25s = bm25s
        corpus = [f"{r.title} {r.title} {r.abstract or ''}" for r in records]  # the title counts twice
        self._index = bm25s.BM25()
        self._index.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path | None = None) -> OfflineCorpus:
        """The corpus at ``path`` (the bundled one when None), indexed once per process."""
        resolved = Path(path).expanduser().resolve() if path else BUNDLED_CORPUS
        with _LOCK:
            if resolved not in _LOADED:
                _LOADED[resolved] = cls(read_corpus(resolved))
            return _LOADED[resolved]

    def search_now(self, query: str, k: int) -> list[SearchHit]:
        """The ``k`` best BM25 matches of ``query`` with a positive score, best first."""
        tokens = self._bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not tokens.vocab:
            return []
        k = max(1, min(k, len(self.records)))
        with self._lock:
            docs, scores = self._index.retrieve(tokens, k=k, show_progress=False)
        return [
            SearchHit(record=self.records[int(i)], score=round(float(s), 4))
            for i, s in zip(docs[0], scores[0], strict=True)
            if s > 0
        ]

    async def search(self, query: str, k: int) -> list[SearchHit]:
        """The ``k`` records most relevant to ``query`` (BM25), best first."""
        return self.search_now(query, k)

    async def get(self, record_id: str) -> LiteratureRecord | None:
        """The record with this id (``openreview:ID`` or the bare OpenReview id), or None."""
        return self.by_id.get(record_id) or self.by_id.get(f"{SOURCE}:{record_id}")
