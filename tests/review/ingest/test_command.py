"""`fars review` on papers users bring (scripted model): what it reads, where it writes, and that it
never overwrites an earlier review unless asked."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fars.cli import main
from review.reviewer import PaperReview
from tests.review.ingest.test_pdf import bomb_pdf

DATA = Path(__file__).parent / "data"
SCRIPTED = ["llm=scripted", "reviewer.related_works=0"]


def reviewed(folder: Path) -> PaperReview:
    return PaperReview.model_validate_json((folder / "review.json").read_text())


def test_review_goes_next_to_the_paper_and_never_over_an_earlier_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # the current folder gets nothing
    first, second = tmp_path / "a" / "paper.pdf", tmp_path / "b" / "paper.pdf"
    for pdf in (first, second):
        pdf.parent.mkdir()
        shutil.copy(DATA / "fars-paper" / "paper.pdf", pdf)
    assert main(["review", str(first), *SCRIPTED]) == 0
    err = capsys.readouterr().err
    assert "read " + str(first) in err and "Machine-generated paper (FARS)" in err  # the dropped header is said
    assert main(["review", str(second), *SCRIPTED]) == 0
    assert main(["review", str(first), *SCRIPTED]) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["paper.pdf", "paper.review", "paper.review-2"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["paper.pdf", "paper.review"]
    assert not (tmp_path / "reviews").exists()
    result = reviewed(tmp_path / "a" / "paper.review")
    assert result.title == "title: improvement rest welch all and write results predicts."
    assert result.reading is not None and result.reading.ingest is not None
    assert result.reading.ingest.dropped == [
        "Machine-generated paper (FARS); numbers and citations checked by the harness"
    ]
    before = (tmp_path / "a" / "paper.review" / "review.json").stat().st_mtime_ns
    assert main(["review", str(first), *SCRIPTED, "overwrite=true"]) == 0  # asked for: the first folder is reused
    assert (tmp_path / "a" / "paper.review" / "review.json").stat().st_mtime_ns != before
    assert not (tmp_path / "a" / "paper.review-3").exists()


def test_an_explicit_out_holding_a_review_is_refused_unless_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paper = tmp_path / "paper.md"
    paper.write_text("# A paper\n\n## Intro\n\n" + "We study things. " * 150)
    out = tmp_path / "mine"
    assert main(["review", str(paper), *SCRIPTED, f"out={out}"]) == 0
    capsys.readouterr()
    assert main(["review", str(paper), *SCRIPTED, f"out={out}"]) == 2
    assert "already holds a review" in capsys.readouterr().err
    assert main(["review", str(paper), *SCRIPTED, f"out={out}", "overwrite=true"]) == 0


def test_a_source_folder_is_reviewed_from_its_main_tex(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "scipy-1.0"
    shutil.copytree(DATA / "scipy-1.0", source)
    assert main(["review", str(source), *SCRIPTED, "reviewer.ensemble=1", "reviewer.meta_review=false"]) == 0
    err = capsys.readouterr().err
    assert "read " + str(source / "paper.tex") + " (pylatexenc)" in err and "7 file(s)" in err
    result = reviewed(source / "paper.review")
    assert result.reading is not None and result.reading.ingest is not None
    assert result.reading.ingest.files[:3] == ["paper.tex", "core-dev.tex", "subpackages.tex"]
    assert result.reading.chars_total > 60_000


def test_a_paper_that_reads_as_almost_nothing_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "rnn"
    src.mkdir()
    (src / "main.tex").write_text(
        "\\documentclass{article}\\title{Recurrent nets}\\begin{document}\\maketitle\n"
        "\\input{abstract}\\input{introduction}\\input{experiments}\n\\end{document}\n"
    )  # as a source shipped without its inputs
    assert main(["review", str(src / "main.tex"), *SCRIPTED, "reviewer.ensemble=1", "reviewer.meta_review=false"]) == 0
    err = capsys.readouterr().err
    assert "warning: " + str(src / "main.tex") + ": \\input{abstract} in main.tex: 'abstract' not found" in err
    assert "characters were read, under the 2000 a paper has" in err
    result = reviewed(src / "main.review")
    assert result.reading is not None and result.reading.ingest is not None
    assert result.reading.ingest.flags == ["inputs_missing", "short_text"]


def test_a_hostile_pdf_exits_2_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from review.ingest import pdf as ingest_pdf

    monkeypatch.setattr(ingest_pdf, "MEMORY_MB", 256)
    bomb = bomb_pdf(tmp_path / "bomb.pdf", 512)
    assert main(["review", str(bomb), *SCRIPTED]) == 2
    err = capsys.readouterr().err
    assert str(bomb) in err and "ran out of its 256 MiB" in err and "Traceback" not in err
    assert not (tmp_path / "bomb.review").exists()


def test_a_pdf_with_a_page_tree_without_end_exits_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.review.ingest.test_pdf import page_tree_pdf

    tree = page_tree_pdf(tmp_path / "tree.pdf")  # claims 2**40 pages
    assert main(["review", str(tree), *SCRIPTED]) == 2
    err = capsys.readouterr().err
    assert str(tree) in err and "not a readable PDF" in err and "Traceback" not in err
    assert not (tmp_path / "tree.review").exists()
