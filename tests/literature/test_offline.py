"""The bundled offline corpus: titles and abstracts only, BM25 search, id look-up, clear errors."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from pathlib import Path

import pytest

from fars.config import LiteratureConfig
from fars.literature import make_backend
from fars.literature.offline import BUNDLED_CORPUS, CorpusError, OfflineCorpus, read_corpus
from fars.literature.similarity import text_similarity


def test_bundled_corpus_holds_titles_and_abstracts_only_with_attribution() -> None:
    with gzip.open(BUNDLED_CORPUS, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    assert len(rows) > 16_000
    allowed = {"id", "title", "abstract", "year", "venue", "url", "authors"}
    assert all({"id", "title", "abstract", "year", "venue"} <= set(r) <= allowed for r in rows)  # no ratings, no text
    assert all(len(r["abstract"]) >= 100 for r in rows)  # placeholders left out
    assert len({r["title"].casefold() for r in rows}) == len(rows)  # each title once
    venues = {r["venue"].split()[0] for r in rows}
    assert venues == {"ICLR", "ICML", "NeurIPS"}
    assert all(not r.get("url") or r["url"].startswith("https://openreview.net/") for r in rows)
    notice = (BUNDLED_CORPUS.parent / "README.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in notice and "CC0" in notice and "OpenReview" in notice
    counted = re.search(r"\| total \| (\d+) \|", notice)
    assert counted and int(counted.group(1)) == len(rows)  # the README's table is the file's


def test_search_finds_a_paper_by_its_own_words_and_get_resolves_ids() -> None:
    corpus = OfflineCorpus.load()
    target = corpus.records[100]
    hits = asyncio.run(corpus.search(target.title, 5))
    assert hits[0].record.id == target.id
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert asyncio.run(corpus.get(target.id)) == target
    assert asyncio.run(corpus.get(target.id.removeprefix("openreview:"))) == target
    assert asyncio.run(corpus.get("openreview:does-not-exist")) is None
    assert asyncio.run(corpus.search("qqqzzzxxx", 5)) == [] and asyncio.run(corpus.search("", 5)) == []
    assert make_backend(LiteratureConfig()).name == "offline"  # the default backend


def test_a_corpus_of_ones_own_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text('{"id": "a1", "title": "Sharpness aware minimisation", "year": 2021}\n{"id": "arxiv:2', "utf-8")
    with pytest.raises(CorpusError, match=r"mine.jsonl:2: not a corpus record"):
        read_corpus(path)
    path.write_text('{"id": "a1", "title": "Sharpness aware minimisation", "year": 2021}\n', "utf-8")
    backend = make_backend(LiteratureConfig(corpus_path=str(path)))
    assert asyncio.run(backend.search("sharpness", 3))[0].record.id == "openreview:a1"
    with pytest.raises(CorpusError, match=r"does not exist; set literature\.corpus_path"):
        read_corpus(tmp_path / "missing.jsonl")


def test_similarity_is_bounded_and_ignores_stop_words() -> None:
    assert text_similarity("weight decay helps grokking", "Weight decay helps grokking.") == pytest.approx(1.0)
    assert text_similarity("the of and", "the of and") == 0.0
    assert 0 < text_similarity("weight decay in transformers", "learning rate decay schedules") < 0.5
