"""The offline backend: BM25 (the ``bm25s`` library) over a JSONL corpus of titles and abstracts.

The bundled corpus holds the titles and abstracts of about 16,000 ICLR, ICML and NeurIPS papers
(2017-2024; OpenReview metadata, see ``data/README.md``). A corpus of one's own works too: a JSONL file,
gzipped or not, one JSON object a line with ``id``, ``title`` and optionally ``abstract``, ``year``,
``venue``, ``url``, ``authors``. The records are read when the corpus is first loaded; the BM25 index is
built at the first search, once per process and file, and kept on disk under ``$FARS_CACHE_DIR`` (else
``~/.cache/fars``) keyed by the file's content, so a later process loads it (about 0.2 s) instead of
building it again (about 5 s for the bundled corpus on two cores).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from fars.literature.base import LiteratureRecord, SearchHit

BUNDLED_CORPUS = Path(__file__).resolve().parent / "data" / "ml_papers.jsonl.gz"
SOURCE = "openreview"
INDEX_RECIPE = "title-twice+abstract;stopwords=en;v1"  # part of the cache key: change it when the text indexed changes
CACHE_MIN_RECORDS = 2000  # smaller corpora index in well under a second: not worth a cache entry
_LOADED: dict[Path, OfflineCorpus] = {}
_LOCK = threading.Lock()
log = logging.getLogger(__name__)


class CorpusError(ValueError):
    """The corpus file is missing or malformed; the message names the file and line."""


def read_corpus(path: Path) -> list[LiteratureRecord]:
    """The records of a JSONL corpus file (``.gz`` read as gzip); a bare id is taken as an OpenReview one.

    An id with a prefix (``arxiv:2101.00001``, ``iclr:2023-…``) keeps it; a record's ``source`` is its own
    field, else ``openreview``."""
    if not path.is_file():
        raise CorpusError(
            f"literature corpus {path} does not exist; set literature.corpus_path to a JSONL file, or null for the bundled one"
        )
    records = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8") as f:
            lines = list(f)
    except (OSError, UnicodeDecodeError) as exc:
        raise CorpusError(f"{path}: not a readable UTF-8 JSONL file ({type(exc).__name__}: {exc})") from None
    for line_no, line in enumerate(lines, 1):
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
                    source=row.get("source") or SOURCE,  # the bundled records are all OpenReview metadata
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


def _bm25s() -> Any:
    """The ``bm25s`` module, imported at first use (it brings numpy and scipy: about a second)."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs each index build at DEBUG
    return bm25s


def index_cache_dir() -> Path:
    """Where built indexes are kept: ``$FARS_CACHE_DIR/literature-index`` (else under ``~/.cache/fars``)."""
    return Path(os.environ.get("FARS_CACHE_DIR") or Path.home() / ".cache" / "fars") / "literature-index"


class OfflineCorpus:
    """BM25 search and id look-up over an in-memory corpus; the index is built (or loaded) at the first search."""

    name = "offline"

    def __init__(self, records: list[LiteratureRecord], cache_key: str | None = None) -> None:
        self.records = records
        self.by_id = {r.id: r for r in records}
        self._cache_key = cache_key if len(records) >= CACHE_MIN_RECORDS else None
        self._index: Any = None
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path | None = None) -> OfflineCorpus:
        """The corpus at ``path`` (the bundled one when None), read once per process."""
        resolved = Path(path).expanduser().resolve() if path else BUNDLED_CORPUS
        with _LOCK:
            if resolved not in _LOADED:
                records = read_corpus(resolved)
                digest = hashlib.sha256(resolved.read_bytes()).hexdigest()[:24]
                _LOADED[resolved] = cls(records, cache_key=f"{digest}-{len(records)}")
            return _LOADED[resolved]

    def _built_index(self) -> Any:
        """The BM25 index: loaded from the disk cache when there, else built (and saved when worth it)."""
        bm25s = _bm25s()
        folder = None
        if self._cache_key:
            recipe = hashlib.sha256(f"{INDEX_RECIPE};bm25s={bm25s.__version__}".encode()).hexdigest()[:8]
            folder = index_cache_dir() / f"{self._cache_key}-{recipe}"
            if (folder / "params.index.json").is_file():
                try:
                    return bm25s.BM25.load(str(folder), show_progress=False)
                except (OSError, ValueError, KeyError) as exc:  # a damaged entry: build afresh below
                    log.warning("ignoring the literature index cached at %s (%s: %s)", folder, type(exc).__name__, exc)
        corpus = [f"{r.title} {r.title} {r.abstract or ''}" for r in self.records]  # the title counts twice
        index = bm25s.BM25()
        index.index(bm25s.tokenize(corpus, stopwords="en", show_progress=False), show_progress=False)
        if folder is not None:
            self._save(index, folder)
        return index

    @staticmethod
    def _save(index: Any, folder: Path) -> None:
        """Write ``index`` to ``folder`` atomically (another process may be writing the same one); on failure
        only log: the cache saves time, nothing depends on it."""
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
            index.save(str(staging), show_progress=False)
            try:
                staging.rename(folder)
            except OSError:  # another process saved it first
                shutil.rmtree(staging, ignore_errors=True)
        except OSError as exc:
            log.info("could not cache the literature index in %s (%s: %s)", folder, type(exc).__name__, exc)

    def search_now(self, query: str, k: int) -> list[SearchHit]:
        """The ``k`` best BM25 matches of ``query`` with a positive score, best first."""
        tokens = _bm25s().tokenize([query], stopwords="en", show_progress=False)
        if not tokens.vocab:
            return []
        k = max(1, min(k, len(self.records)))
        with self._lock:
            if self._index is None:
                self._index = self._built_index()
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
        """The record with this id (``openreview:ID`` or the bare OpenReview id, ``iclr:2023-…``), or None."""
        return self.by_id.get(record_id) or self.by_id.get(f"{SOURCE}:{record_id}")
