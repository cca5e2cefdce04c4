"""Paper ingestion: a PDF, a LaTeX source (one file or a folder), Markdown or plain text becomes
titled sections of plain text, with a record of what was read and of what looks wrong.

PDFs are read from their layout (``review/ingest/pdf.py``: PDFium in a child process with memory and
time limits; running headers dropped, the title from the type sizes, headings found); LaTeX is
converted by pylatexenc with its ``\\input``/``\\include`` files followed and its own macros expanded
(``review/ingest/latex.py``). A folder given as the paper is resolved to its main ``.tex`` file or its
one PDF. A text that looks too short for a paper (under ``MIN_PAPER_CHARS`` characters, or under
``MIN_CHARS_PER_PAGE`` per PDF page) is flagged in ``PaperText.ingest``, which the review's reading
record carries, so a reader that saw almost nothing never passes for a complete reading.

A paper comes from whoever wrote it: every file is read through ``fars.safe_files`` (the file the user
named as named, anything found in a folder without following links), non-blocking and bounded in
size (``MAX_TEXT_BYTES``, ``MAX_PDF_BYTES``, ``ingest_latex.MAX_FILE_BYTES``); a link, a FIFO or a file
too large is refused with an error naming it, never followed, waited on or read whole.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, Field

from fars.safe_files import UnsafeFileError, read_file, read_named
from review.ingest.pdf import MAX_PDF_BYTES

FORMATS = {".pdf": "pdf", ".tex": "latex", ".md": "markdown", ".markdown": "markdown", ".txt": "text"}
MIN_PAPER_CHARS = 2000  # a conference paper has tens of thousands; below this the reader likely missed it
MIN_CHARS_PER_PAGE = 500  # a page of a paper has about 3,000-5,000; below this, images or unmapped fonts
MAX_TEXT_BYTES = 4 * 2**20  # a Markdown or text paper; a long one has 100-300 KB
_BANNER = re.compile(
    r"^(?:(?:published|accepted|under review|to appear) as an? .{0,40}paper at\b|machine-generated paper \(fars\))",
    re.I,
)


class PaperError(ValueError):
    """A paper file that cannot be read; the message names the file and what to do."""


class Section(BaseModel):
    """One section of a paper: its heading ('' before the first heading) and its text."""

    heading: str
    text: str


class IngestRecord(BaseModel):
    """How a paper was read: by which reader, from which files or pages, and what looked wrong."""

    reader: str = "text"  # e.g. "pdfium layout", "pylatexenc"
    files: list[str] = Field(default_factory=list)  # LaTeX: the files read, main first
    page_count: int | None = None  # PDF: pages in the file
    pages_read: int | None = None  # PDF: pages read (at most the reader's page limit)
    dropped: list[str] = Field(default_factory=list)  # PDF: running headers, footers and banners removed
    flags: list[str] = Field(default_factory=list)  # short_text, few_chars_per_page, pages_cut, inputs_missing, ...
    warnings: list[str] = Field(default_factory=list)  # each flag and problem, said for a person


class PaperText(BaseModel):
    """A paper as plain text, split into sections."""

    title: str
    source: str
    format: str
    text: str
    sections: list[Section] = Field(default_factory=list)
    ingest: IngestRecord = Field(default_factory=IngestRecord)

    @property
    def chars(self) -> int:
        """Length of the whole text."""
        return len(self.text)


_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_NUMBERED = re.compile(r"^(?:[A-Z]\.?|\d+(?:\.\d+)*\.?)\s+[A-Z][^.!?]{1,80}$")
_GLUED = re.compile(r"^(\d+(?:\.\d+)*)\.?([A-Z]{3}[A-Z0-9 ,:&\-–()'/]{0,80})$")  # "1INTRODUCTION", as some PDFs give it
_CAPS = re.compile(r"^[A-Z][A-Z0-9 ,:&\-–()'/]{2,80}$")


def _heading_of(line: str, markdown_only: bool = False) -> str | None:
    stripped = line.strip()
    match = _MD_HEADING.match(line)
    if match:
        return match.group(1).strip()
    if markdown_only or len(stripped) > 90 or not stripped:
        return None
    glued = _GLUED.match(stripped)
    if glued:
        return f"{glued.group(1)} {glued.group(2)}"
    if _NUMBERED.match(stripped) or (_CAPS.match(stripped) and sum(c.isalpha() for c in stripped) >= 4):
        return stripped
    return None


def split_sections(text: str, *, markdown_only: bool = False) -> list[Section]:
    """Split text at heading lines (Markdown ``#`` headings; unless ``markdown_only``, also the numbered
    and upper-case lines plain text has); text before the first heading is a section with heading ''."""
    sections: list[Section] = []
    heading, lines = "", list[str]()
    for line in text.splitlines():
        found = _heading_of(line, markdown_only)
        if found is not None:
            if heading or "".join(lines).strip():
                sections.append(Section(heading=heading, text="\n".join(lines).strip()))
            heading, lines = found, []
        else:
            lines.append(line)
    if heading or "".join(lines).strip():
        sections.append(Section(heading=heading, text="\n".join(lines).strip()))
    return sections


def _title_of(text: str, sections: list[Section], fallback: str) -> str:
    for line in text.splitlines():
        match = _MD_HEADING.match(line)
        if match:
            return match.group(1).strip()[:200]
        if line.strip() and not _BANNER.match(line.strip()):
            return line.strip()[:200]
    return sections[0].heading if sections and sections[0].heading else fallback


def latex_to_text(source: str) -> str:
    """A LaTeX source (one file, already flattened) as Markdown-like text; see ``review.ingest.latex``."""
    from review.ingest.latex import latex_to_markdown

    return latex_to_markdown(source)[1]


def resolve_paper_path(path: str | Path) -> Path:
    """The file to read for a paper argument: the file itself, or for a folder its main ``.tex`` file
    (the one that is a document; by conventional name when several are) or its single PDF. A folder's
    files are looked for without following links (``ingest_latex.source_files``)."""
    from review.ingest.latex import find_main_tex, source_files

    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        raise PaperError(f"{path}: no such file or folder; give the path of a .pdf, .tex, .md or .txt paper")
    if not path.is_dir():
        raise PaperError(f"{path}: not a regular file; give the path of a .pdf, .tex, .md or .txt paper")
    main, candidates = find_main_tex(path)
    if main is not None:
        return main
    if candidates:
        names = ", ".join(str(c.relative_to(path)) for c in candidates[:8])
        raise PaperError(
            f"{path}: a folder with several LaTeX documents ({names}); give the main one, e.g. {path / candidates[0].relative_to(path)}"
        )
    own = [path / name for name in source_files(path, depth=1)]
    pdfs = sorted(p for p in own if p.suffix.lower() == ".pdf")
    if len(pdfs) == 1:
        return pdfs[0]
    if pdfs:
        names = ", ".join(p.name for p in pdfs[:8])
        raise PaperError(f"{path}: a folder with {len(pdfs)} PDFs ({names}); give the paper's file itself")
    others = sorted(p.name for p in own if p.suffix.lower() in FORMATS)[:8]
    hint = f" (it holds {', '.join(others)}: give one of them)" if others else ""
    raise PaperError(
        f"{path}: a folder with no LaTeX document (\\documentclass) and no PDF{hint}; give the paper's file"
    )


def extent_flags(chars: int, pages: int | None = None) -> tuple[list[str], list[str]]:
    """Flags and warnings for a text that looks too short for a paper (in all, or per PDF page)."""
    flags, warnings = [], []
    if chars < MIN_PAPER_CHARS:
        flags.append("short_text")
        warnings.append(
            f"only {chars} characters were read, under the {MIN_PAPER_CHARS} a paper has at the least: "
            "the reader may have missed most of it (inputs not found, scanned pages?)"
        )
    if pages and chars / pages < MIN_CHARS_PER_PAGE:
        flags.append("few_chars_per_page")
        warnings.append(
            f"{chars / pages:.0f} characters per page over {pages} pages, under {MIN_CHARS_PER_PAGE}: "
            "pages of images (a scan?) or fonts without text; give the .tex or .md if you have it"
        )
    return flags, warnings


def read_paper_file(path: Path, *, folder: Path | None, max_bytes: int) -> bytes:
    """The bytes of a paper's file: the one the user named (``folder`` None), followed as named, or one
    found in source ``folder``, read without following a link at any level; never a FIFO or device,
    never over ``max_bytes``. ``PaperError`` naming the file otherwise."""
    try:
        if folder is None:
            return read_named(path, max_bytes=max_bytes)
        return read_file(folder.resolve(), path.relative_to(folder), max_bytes=max_bytes)
    except UnsafeFileError as exc:
        raise PaperError(
            f"{path}: refused: {exc.strerror}; give the paper as a regular file of at most {max_bytes // 2**20} MiB"
        ) from None
    except OSError as exc:
        raise PaperError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def load_paper(path: str | Path) -> PaperText:
    """Read a paper (.pdf, .tex, .md, .txt, or a folder holding one) into sections and the record of
    how it was read; errors name the file and the fix."""
    given = Path(path).expanduser()
    path = resolve_paper_path(given)
    folder = given if given.is_dir() else None  # a file found in a folder: no link below it is followed
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise PaperError(f"{path}: unsupported file type {path.suffix!r}; give a .pdf, .tex, .md or .txt file")
    record = IngestRecord(files=[path.name])
    title: str | None = None
    if kind == "pdf":
        from review.ingest.pdf import PdfReadError, read_pdf

        try:
            pdf = read_pdf(path, data=read_paper_file(path, folder=folder, max_bytes=MAX_PDF_BYTES))
        except PdfReadError as exc:
            raise PaperError(f"{path}: {exc}") from None
        text, title = pdf.text, pdf.title
        record = IngestRecord(
            reader="pdfium layout",
            files=[path.name],
            page_count=pdf.page_count,
            pages_read=pdf.pages_read,
            dropped=pdf.dropped,
            warnings=list(pdf.warnings),
        )
        if pdf.pages_read < pdf.page_count:
            record.flags.append("pages_cut")
        if not text.strip() or (title and text.strip() == f"# {title}"):
            raise PaperError(f"{path}: the PDF has no extractable text (scanned images?); give a text PDF or .tex/.md")
    elif kind == "latex":
        from review.ingest.latex import read_latex

        try:
            latex = read_latex(path, root=folder or path.parent, named=folder is None)
        except UnsafeFileError as exc:
            raise PaperError(f"{path}: refused: {exc.strerror}; give the paper's own source file") from None
        except OSError as exc:
            raise PaperError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        text, title = latex.text, latex.title
        record = IngestRecord(reader="pylatexenc", files=latex.files, warnings=list(latex.warnings))
        if any("not found" in w or "not read" in w for w in latex.warnings):
            record.flags.append("inputs_missing")
    else:
        data = read_paper_file(path, folder=folder, max_bytes=MAX_TEXT_BYTES)
        try:
            text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n").strip()
        except UnicodeDecodeError as exc:
            raise PaperError(f"{path}: not UTF-8 text ({exc}); convert it to UTF-8") from exc
    if not text.strip():
        raise PaperError(f"{path}: the paper is empty")
    # headings the layout found are Markdown; a PDF without type cues for them falls back to the text's look
    explicit = kind == "latex" or (kind == "pdf" and "\n## " in text)
    paper = paper_from_text(text, source=str(path), fmt=kind, fallback_title=path.stem, markdown_only=explicit)
    if title:
        paper.title = title[:200]
    record.flags += paper.ingest.flags
    record.warnings += paper.ingest.warnings
    if kind == "pdf":
        flags, warnings = extent_flags(paper.chars, record.pages_read)
        record.flags += [f for f in flags if f not in record.flags]
        record.warnings += [w for w in warnings if w not in record.warnings]
    paper.ingest = record
    return paper


def paper_from_text(
    text: str, *, source: str = "<text>", fmt: str = "markdown", fallback_title: str = "", markdown_only: bool = False
) -> PaperText:
    """A paper given as text (Markdown or plain), flagged when it looks too short for a paper."""
    sections = split_sections(text, markdown_only=markdown_only)
    flags, warnings = extent_flags(len(text))
    return PaperText(
        title=_title_of(text, sections, fallback_title or "untitled"),
        source=source,
        format=fmt,
        text=text,
        sections=sections,
        ingest=IngestRecord(flags=flags, warnings=warnings),
    )
