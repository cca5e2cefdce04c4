"""PDF ingestion: titles, running headers, headings and math on real PDFs (tests/review/ingest/data/, see its
README), and bounded, clear failures on hostile ones (a decompression bomb, a page tree without end)."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import pytest

from review.ingest import pdf as ingest_pdf
from review.ingest.paper import PaperError, load_paper, split_sections

DATA = Path(__file__).parent / "data"


def raw_pdf(path: Path, objects: list[bytes], *, wrong_offset: int | None = None) -> Path:
    """A PDF written by hand: ``objects`` are the bodies of objects 1..n (1 is the catalog).
    ``wrong_offset``: the xref entry of that object points a few bytes into it, not at its header."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    if wrong_offset is not None:
        offsets[wrong_offset - 1] += 3
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path


def text_pdf(path: Path, pages: list[list[str]], **kwargs: int) -> Path:
    """A PDF of Helvetica text lines, one list of lines a page."""
    n = len(pages)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    for i, lines in enumerate(pages):
        page_obj, content_obj = 4 + 2 * i, 5 + 2 * i
        kids.append(b"%d 0 R" % page_obj)
        ops = b"".join(
            b"BT /F1 11 Tf 72 %d Td (%s) Tj ET\n" % (720 - 16 * k, line.encode()) for k, line in enumerate(lines)
        )
        objects += [
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 3 0 R >> >> >>" % content_obj,
            b"<< /Length %d >>\nstream\n" % len(ops) + ops + b"\nendstream",
        ]
        if i == 0:
            objects.insert(2, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), n)
    return raw_pdf(path, objects, **kwargs)


def bomb_pdf(path: Path, mib: int) -> Path:
    """A one-page PDF whose content stream inflates from about a thousandth of ``mib`` MiB to ``mib`` MiB."""
    packer, chunk, data = zlib.compressobj(9), b" " * 2**20, bytearray()
    for _ in range(mib):
        data += packer.compress(chunk)
    data += packer.flush()
    return raw_pdf(
        path,
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + bytes(data) + b"\nendstream",
        ],
    )


def page_tree_pdf(path: Path, depth: int = 40) -> Path:
    """A page tree that claims 2**depth pages: every node has the next one twice as its kids."""
    nodes = [
        b"<< /Type /Pages /Kids [%d 0 R %d 0 R] /Count %d >>" % (3 + d, 3 + d, 2 ** (depth - d)) for d in range(depth)
    ]
    return raw_pdf(path, [b"<< /Type /Catalog /Pages 2 0 R >>", *nodes, b"<< /Type /Page /MediaBox [0 0 612 792] >>"])


def test_published_iclr_pdf_title_header_headings_and_math() -> None:
    """ICLR 2021's running header is not the title, is dropped from the text and is recorded."""
    paper = load_paper(DATA / "calibration-iclr2021" / "main.pdf")
    assert paper.title == "CALIBRATION TESTS BEYOND CLASSIFICATION"
    assert "Published as a conference paper" not in paper.text
    record = paper.ingest
    assert record.reader == "pdfium layout" and record.page_count == record.pages_read == 35
    assert record.dropped == ["Published as a conference paper at ICLR 2021"] and record.flags == []
    heads = [s.heading for s in paper.sections]
    assert heads[1:5] == [
        "ABSTRACT",
        "1 INTRODUCTION",
        "2 CALIBRATION ERROR: A GENERAL FRAMEWORK",
        "3 KERNEL CALIBRATION ERROR",
    ]
    for heading in (
        "3.1 CHOICE OF KERNEL",
        "6 CONCLUSION",
        "REFERENCES",
        "A EXPERIMENTS",
        "B.3 KERNEL CALIBRATION ERROR",
    ):
        assert heading in heads
    assert heads[-1].startswith("G EXPECTED CALIBRATION ERROR")
    for symbol, at_least in {"α": 5, "β": 5, "θ": 5, "ϵ": 3, "λ": 5, "σ": 5, "∈": 5}.items():
        assert paper.text.count(symbol) >= at_least, symbol  # the source uses each of these
    assert "estimates" in paper.text and "esti\x02" not in paper.text  # words hyphenated at line ends rejoined
    assert paper.chars > 90_000


def test_fars_own_pdf_title_is_not_its_running_header() -> None:
    paper = load_paper(DATA / "fars-paper" / "paper.pdf")
    assert paper.title == "title: improvement rest welch all and write results predicts."
    assert paper.ingest.dropped == ["Machine-generated paper (FARS); numbers and citations checked by the harness"]
    assert "Machine-generated paper" not in paper.text
    assert [s.heading for s in paper.sections][1:4] == ["ABSTRACT", "1 INTRODUCTION", "2 RELATED WORK"]


def test_a_one_page_banner_is_not_the_title(tmp_path: Path) -> None:
    """Without pages to compare, a venue banner is still known as one; the title is the first other line."""
    pdf = text_pdf(
        tmp_path / "one.pdf",
        [
            [
                "Published as a conference paper at ICLR 2021",
                "Sparse attention at scale",
                "1INTRODUCTION",
                "We study sparse attention.",
            ]
        ],
    )
    paper = load_paper(pdf)
    assert paper.title == "Sparse attention at scale" and "Published" not in paper.text
    assert "1 INTRODUCTION" in [s.heading for s in paper.sections]  # a glued number and word is a heading


def test_glued_headings_split_plain_text() -> None:
    heads = [s.heading for s in split_sections("Title\n1INTRODUCTION\nText.\n2RELATED WORK\nMore.\n10 runs in all.")]
    assert heads == ["", "1 INTRODUCTION", "2 RELATED WORK"]


def test_too_little_text_is_flagged(tmp_path: Path) -> None:
    pages = [["A short paper"], ["page two"], ["page three"]]
    paper = load_paper(text_pdf(tmp_path / "thin.pdf", pages))
    assert "short_text" in paper.ingest.flags and "few_chars_per_page" in paper.ingest.flags
    assert any("characters per page over 3 pages" in w for w in paper.ingest.warnings)


def test_page_limit_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_pdf, "MAX_PAGES", 2)
    pages = [[f"Line {i} of a page of text that goes on for a while, about a paper."] * 30 for i in range(3)]
    paper = load_paper(text_pdf(tmp_path / "long.pdf", pages))
    assert paper.ingest.page_count == 3 and paper.ingest.pages_read == 2 and "pages_cut" in paper.ingest.flags
    assert "only the first 2 of 3 pages were read" in paper.ingest.warnings


def test_no_pypdf_noise_on_a_pdf_with_wrong_pointing_objects(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    pdf = text_pdf(tmp_path / "xref.pdf", [["Broken cross references", "Text of the page."]], wrong_offset=3)
    from pypdf import PdfReader

    with caplog.at_level(logging.WARNING):
        PdfReader(str(pdf)).pages[0].extract_text()
    assert "Ignoring wrong pointing object" in caplog.text  # the file does trigger pypdf's warning
    caplog.clear()
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG):
        paper = load_paper(pdf)
    out, err = capfd.readouterr()
    assert "Broken cross references" in paper.text
    assert "wrong pointing" not in out + err + caplog.text and not caplog.records


def test_decompression_bomb_is_stopped_with_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_pdf, "MEMORY_MB", 256)
    bomb = bomb_pdf(tmp_path / "bomb.pdf", 512)  # 0.5 MB on disk, 512 MiB inflated
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(PaperError, match=r"bomb\.pdf: not a readable PDF: the reader ran out of its 256 MiB"):
        load_paper(bomb)


def test_a_page_tree_without_end_is_refused(tmp_path: Path) -> None:
    tree = page_tree_pdf(tmp_path / "tree.pdf")
    with pytest.raises(PaperError, match=r"tree\.pdf: not a readable PDF"):
        load_paper(tree)


def test_a_pdf_without_text_says_so(tmp_path: Path) -> None:
    empty = raw_pdf(
        tmp_path / "scan.pdf",
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        ],
    )
    with pytest.raises(PaperError, match=r"scan\.pdf: the PDF has no extractable text"):
        load_paper(empty)


def test_slow_reading_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_pdf, "TIME_LIMIT_S", 0)
    monkeypatch.setattr(ingest_pdf, "WORKER", tmp_path / "slow.py")
    (tmp_path / "slow.py").write_text("import time\ntime.sleep(30)\n")
    pdf = text_pdf(tmp_path / "p.pdf", [["Text"]])
    with pytest.raises(PaperError, match=r"p\.pdf: reading took over 0 s and was stopped"):
        load_paper(pdf)
