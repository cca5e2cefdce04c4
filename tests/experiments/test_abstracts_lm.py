"""The abstracts template validates on whole papers it never trains on, and its text rebuilds byte for byte."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

from experiments.abstracts_lm.train import DATA, joined, load_papers
from experiments.chargpt.train import load_corpus
from tests.conftest import REPO

_spec = importlib.util.spec_from_file_location(
    "build_abstracts_corpus", REPO / "benchmarks" / "build_abstracts_corpus.py"
)
assert _spec is not None and _spec.loader is not None
builder = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(builder)


def test_validation_text_is_held_out_papers_only() -> None:
    train, val = load_papers()
    text = joined(train, val)
    seen, held, vocab = load_corpus(text)
    cut = len(seen)
    assert text[:cut] == "".join(train) and text[cut:].rstrip("\n") == "".join(val).rstrip("\n")
    assert len(text) - len("".join(train)) - len("".join(val)) < 20  # a few newlines of padding at most
    assert 0.09 < len(held) / len(text) < 0.1001 and len(vocab) < 100
    train_text = text[:cut]
    assert not any(doc.split("\n")[1][:200] in train_text for doc in val)


def test_the_shipped_text_is_what_the_builder_writes(tmp_path: Path) -> None:
    out = tmp_path / "abstracts.jsonl.gz"
    assert builder.main(["--target", str(out)]) == 0
    assert out.read_bytes() == DATA.read_bytes()
    with gzip.open(DATA, "rt", encoding="ascii") as handle:
        rows = [json.loads(line) for line in handle]
    assert len(rows) == 458 and {r["split"] for r in rows} == {"train", "val"}
    assert all(r["abstract"].isascii() and r["title"] for r in rows)


def test_ascii_folding_keeps_meaning_where_it_can() -> None:
    assert builder.to_ascii("“Efﬁcient” θ-regularised — ℓ2 ×2") == '"Efficient" theta-regularised - l2 x2'


def test_the_folder_credits_openreview_under_cc_by() -> None:
    readme = (DATA.parent / "README.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in readme and "openreview.net" in readme and "build_abstracts_corpus.py" in readme
