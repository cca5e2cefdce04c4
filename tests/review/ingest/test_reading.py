"""Paper ingestion (PDF, LaTeX, Markdown, text) and the record of what a review reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from review.ingest.paper import PaperError, latex_to_text, load_paper, paper_from_text, split_sections
from review.reading import fair_shares, plan_parts, plan_reading


def make_pdf(path: Path, lines: list[str]) -> Path:
    """A one-page text PDF written by matplotlib (TrueType fonts, so the text can be extracted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"pdf.fonttype": 42}):
        fig = plt.figure(figsize=(8.5, 11))
        for i, line in enumerate(lines):
            fig.text(0.08, 0.92 - 0.04 * i, line, fontsize=10)
        fig.savefig(path, format="pdf")
        plt.close(fig)
    return path


def test_pdf_text_and_sections(tmp_path: Path) -> None:
    pdf = make_pdf(tmp_path / "p.pdf", ["Weight decay and grokking", "1 Introduction", "We train a small MLP."])
    paper = load_paper(pdf)
    assert paper.format == "pdf" and paper.title == "Weight decay and grokking"
    assert [s.heading for s in paper.sections] == ["", "1 Introduction"]
    assert "small MLP" in paper.sections[1].text


def test_encrypted_and_broken_pdfs_name_the_file(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    plain = make_pdf(tmp_path / "plain.pdf", ["A title", "Some text here."])
    writer = PdfWriter()
    for page in PdfReader(str(plain)).pages:
        writer.add_page(page)
    writer.encrypt("secret")
    locked = tmp_path / "locked.pdf"
    with locked.open("wb") as handle:
        writer.write(handle)
    with pytest.raises(PaperError, match=r"locked\.pdf.*encrypted"):
        load_paper(locked)
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not really a pdf")
    with pytest.raises(PaperError, match=r"broken\.pdf"):
        load_paper(broken)
    (tmp_path / "x.docx").write_text("x")
    with pytest.raises(PaperError, match="unsupported"):
        load_paper(tmp_path / "x.docx")
    with pytest.raises(PaperError, match="no such file"):
        load_paper(tmp_path / "missing.md")


def test_latex_is_reduced_to_prose_with_headings() -> None:
    tex = r"""\documentclass{article}
\title{Grokking under weight decay}
\begin{document}\maketitle
\begin{abstract}We study \emph{grokking}.\end{abstract}
\section{Introduction} Prior work \citep{a} shows % a comment
effects~\ref{fig}.
\begin{figure}\caption{dropped}\end{figure}
\section{Results} Accuracy is \textbf{0.93}.
\end{document}"""
    text = latex_to_text(tex)
    assert text.startswith("# Grokking under weight decay")
    assert "## 1 Introduction" in text and "## 2 Results" in text and "0.93" in text
    assert "comment" not in text and "\\" not in text
    assert "[a]" in text and "Figure: dropped" in text  # citations and captions are kept as text


def test_headings_in_markdown_and_extracted_text() -> None:
    text = "# Title\n\nABSTRACT\n\nWe do x.\n\n1 INTRODUCTION\n\nBody.\n\n3.1 Setup details\n\nMore.\n\nREFERENCES\n\nA. B."
    heads = [s.heading for s in split_sections(text)]
    assert heads == ["Title", "ABSTRACT", "1 INTRODUCTION", "3.1 Setup details", "REFERENCES"]


def test_fair_shares() -> None:
    assert fair_shares([10, 100, 100], 110) == [10, 50, 50]
    assert fair_shares([10, 20], 100) == [10, 20]
    assert sum(fair_shares([500, 300, 1000, 50], 600)) <= 600


def test_short_paper_is_read_whole_and_flagged_as_short() -> None:
    paper = paper_from_text("# T\n\n## Intro\n\nshort text")
    text, reading = plan_reading(paper, 6000)
    assert text == paper.text and reading.mode == "whole" and reading.complete
    assert reading.ingest is not None and reading.ingest.flags == ["short_text"]  # whole, but of almost nothing
    assert "only 25 characters were read" in reading.ingest.warnings[0]
    _, long_reading = plan_reading(paper_from_text("# T\n\n" + "word " * 500), 6000)
    assert long_reading.ingest is not None and long_reading.ingest.flags == []


def prose(chars: int, tag: int) -> str:
    """About ``chars`` characters of sentences that never repeat (a loop of one word is filler, and dropped)."""
    text = " ".join(f"Run {k} of part {tag} measured {k * 7 + tag} units." for k in range(chars // 30 + 1))
    return text[:chars]


def test_long_paper_is_read_in_parts_and_the_record_says_what() -> None:
    body = "\n\n".join(f"## {i} Section {i}\n\n" + prose(5 * (400 + 300 * i), i) for i in range(5))
    paper = paper_from_text(f"# Long paper\n\n{body}\n\n## References\n\n" + "Ref. " * 500)
    text, reading = plan_reading(paper, 3000)
    assert reading.mode == "excerpts" and not reading.complete
    assert len(text) <= 3000 + 120 * len(reading.parts)  # budget plus the continuation markers
    assert reading.chars_read == sum(p.chars_read for p in reading.parts) <= 3000
    refs = [p for p in reading.parts if p.heading == "References"]
    assert refs and refs[0].skipped == "references" and refs[0].chars_read == 0
    assert "section continues" in text
    assert all(p.chars_read > 0 for p in reading.parts if p.skipped is None and p.chars_total)  # every section read


def test_summary_parts_are_bounded() -> None:
    body = "\n\n".join(f"## Part {i}\n\n" + prose(12_000, i) for i in range(10))
    paper = paper_from_text(f"# P\n\n{body}")
    chunks, reading = plan_parts(paper, chunk_chars=4000, max_parts=3)
    assert 1 <= len(chunks) <= 3 and all(len(c) <= 4000 for c in chunks)
    assert reading.mode == "summaries" and not reading.complete and reading.chars_read < paper.chars
