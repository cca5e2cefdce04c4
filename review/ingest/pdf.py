"""PDF papers as text, read from their layout: title, running headers, headings, hyphenation.

The text and each line's position and font come from PDFium (``review/ingest/pdf_worker.py``, run as a
child process under memory, CPU and wall-clock limits, so a decompression bomb or a page tree without
end ends in an error naming the file, never in a hung or killed review). The parent reads the file
(safely, bounded: ``review.ingest.paper.read_paper_file``) and hands the child its bytes on stdin; the
prompt-injection scan's pdfplumber reader runs the same way (``run_worker(mode="hidden")``). From
the layout:

* running headers and footers (lines repeated at the top or bottom of most pages, page numbers, and
  venue banners such as "Published as a conference paper at ICLR 2021" or FARS's own
  "Machine-generated paper (FARS); ...") are dropped and recorded;
* the title is the largest type in the upper part of the first page, not its first line;
* headings are short lines that look like headings ("1 INTRODUCTION", "1INTRODUCTION", "A.2 Setup",
  "References") and are set in bold or larger type; they become Markdown headings;
* words hyphenated at line ends are joined, ligatures spelled out.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fars.safe_files import read_named

MAX_PAGES = 200
MAX_CHARS = 4_000_000  # text read from one PDF (a long paper has 100-300 thousand characters)
MEMORY_MB = 2048
TIME_LIMIT_S = 120
HIDDEN_MEMORY_MB = 1024  # the hidden-text scan (pdfplumber): a 60-page paper takes about 300 MiB
HIDDEN_TIME_LIMIT_S = 60  # pdfplumber reads 3-10 pages a second; the scan stops at 3/4 of this with what it found
WORKER = Path(__file__).with_name("pdf_worker.py")
MAX_PDF_BYTES = 100 * 2**20  # a PDF paper (arXiv takes at most 50 MB)
LIGATURES = {"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"}
BANNERS = re.compile(
    r"^(?:(?:published|accepted|under review|to appear) as an? .{0,40}paper at\b"
    r"|machine-generated paper \(fars\)"
    r"|preprint\b.{0,40}(?:under review|work in progress)"
    r"|arxiv:\d{4}\.\d{4,5}(?:v\d+)?\b"
    r"|proceedings of the\b.{0,120}\b(?:19|20)\d\d\b"
    r"|workshop (?:paper )?at\b)",
    re.I,
)
_NUMBER = r"(?:\d{1,2}(?:\.\d{1,2}){0,3}|[A-Z](?:\.\d{1,2}){0,3})"
_HEADING = re.compile(rf"^(?P<num>{_NUMBER})\.?(?P<gap>\s*)(?P<title>[A-Z][^\n]{{1,95}})$")
_NAMED = re.compile(
    r"^(?:abstract|references|bibliography|acknowledge?ments?|appendix|appendices|introduction|conclusions?"
    r"|related work|discussion|supplementary material|broader impacts?(?: statement)?|limitations"
    r"|ethics statement|reproducibility statement)$",
    re.I,
)


class PdfReadError(ValueError):
    """A PDF that could not be read; the message says why and what to do (the caller names the file)."""


@dataclass
class PdfReading:
    """What was read of a PDF: its text (Markdown headings), title, pages and what was left out."""

    title: str | None
    text: str
    page_count: int
    pages_read: int
    dropped: list[str] = field(default_factory=list)  # running headers, footers and banners removed
    warnings: list[str] = field(default_factory=list)


def run_worker(
    path: Path,
    *,
    data: bytes | None = None,
    hidden: bool = False,
    max_pages: int | None = None,
    memory_mb: int | None = None,
    time_limit_s: int | None = None,
) -> dict[str, Any]:
    """Run ``pdf_worker.py`` on the PDF ``path`` under the limits (default: this module's ``MAX_PAGES``,
    ``MEMORY_MB`` and ``TIME_LIMIT_S``, or ``HIDDEN_MEMORY_MB`` and ``HIDDEN_TIME_LIMIT_S`` for the
    hidden-text scan); its JSON
    result, or ``PdfReadError``. The child gets the file's bytes on stdin: ``data``, or the file as
    the user named it (``fars.safe_files.read_named``: a regular file, at most ``MAX_PDF_BYTES``).
    ``hidden``: run the injection scan's reader (pdfplumber) instead of the text reader."""
    max_pages = MAX_PAGES if max_pages is None else max_pages
    memory_mb = (HIDDEN_MEMORY_MB if hidden else MEMORY_MB) if memory_mb is None else memory_mb
    time_limit_s = (HIDDEN_TIME_LIMIT_S if hidden else TIME_LIMIT_S) if time_limit_s is None else time_limit_s
    task, reader = ("the hidden-text scan", "the scan") if hidden else ("reading", "the reader")
    if data is None:
        try:
            data = read_named(path, max_bytes=MAX_PDF_BYTES)
        except OSError as exc:
            raise PdfReadError(f"not read: {exc.strerror or exc}") from None
    command = [
        sys.executable,
        "-I",
        str(WORKER),
        "-",
        "--max-pages",
        str(max_pages),
        "--max-chars",
        str(MAX_CHARS),
        "--memory-mb",
        str(memory_mb),
        "--cpu-s",
        str(time_limit_s),
        *(["--hidden"] if hidden else []),
    ]
    try:
        done = subprocess.run(
            command, input=data, capture_output=True, timeout=time_limit_s + 2 + time_limit_s // 4, check=False
        )
    except subprocess.TimeoutExpired:
        raise PdfReadError(
            f"{task} took over {time_limit_s} s and was stopped (a hostile or very complex PDF?); "
            "check the file, or give the paper's .tex or .md"
        ) from None
    if done.returncode != 0 or not done.stdout.strip():
        signal = -done.returncode if done.returncode < 0 else None
        why = (
            f"{reader} ran out of its {memory_mb} MiB or {time_limit_s} s CPU (signal {signal}; a decompression bomb "
            "or a huge page tree?)"
            if signal
            else f"{reader} failed (exit {done.returncode}): {done.stderr.decode(errors='replace').strip()[-300:]}"
        )
        raise PdfReadError(f"not a readable PDF: {why}; check the file, or give the paper's .tex or .md")
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        raise PdfReadError(f"not a readable PDF: {reader} gave no result; check the file") from None
    if "error" in result:
        kind, message = result["error"], result.get("message", "")
        if kind == "encrypted":
            raise PdfReadError("the PDF is encrypted; give a decrypted copy (e.g. `qpdf --decrypt in.pdf out.pdf`)")
        if kind == "memory":
            doing = "the hidden-text scan" if hidden else "reading it"
            raise PdfReadError(f"{doing} {message} (a decompression bomb?); check the file, or give its .tex or .md")
        raise PdfReadError(f"not a readable PDF ({message}); check the file")
    return result


def _normal(text: str) -> str:
    """A line's text with digits and spacing normalised, to recognise running headers and footers."""
    return re.sub(r"\s+", " ", re.sub(r"\d+", "#", text)).strip().lower()


def _margin_lines(pages: list[dict[str, Any]]) -> tuple[set[str], list[str]]:
    """Normalised texts of lines repeated in the top or bottom margin of most pages, and a sample of them."""
    seen: Counter[str] = Counter()
    sample: dict[str, str] = {}
    for page in pages:
        height = page["height"] or 792.0
        texts = set()
        for line in page["lines"]:
            if line["top"] < 0.1 * height or line["bottom"] > 0.9 * height:
                key = _normal(line["text"])
                texts.add(key)
                sample.setdefault(key, line["text"])
        seen.update(texts)
    needed = max(2, int(0.5 * len(pages) + 0.5))
    repeated = {key for key, n in seen.items() if n >= needed and len(pages) >= 2}
    return repeated, [sample[k] for k in sorted(repeated)]


def _is_page_number(text: str) -> bool:
    return bool(
        re.fullmatch(r"[-–—\s]*(?:page\s*)?(?:\d{1,4}|[ivxlc]{1,6})(?:\s*(?:of|/)\s*\d{1,4})?[-–—\s]*", text, re.I)
    )


def _body_size(pages: list[dict[str, Any]]) -> float:
    """The font size most of the text is set in (weighted by characters)."""
    sizes: Counter[float] = Counter()
    for page in pages:
        for line in page["lines"]:
            sizes[round(line["size"], 1)] += len(line["text"])
    return sizes.most_common(1)[0][0] if sizes else 10.0


def _title(first: dict[str, Any], body: float) -> tuple[str | None, list[dict[str, Any]]]:
    """The title of a paper (the run of largest-type lines in the upper part of its first page) and its lines."""
    lines = [line for line in first["lines"] if line["top"] < 0.5 * (first["height"] or 792.0)]
    big = [line for line in lines if line["size"] >= 1.15 * body and re.search(r"[A-Za-z]{2}", line["text"])]
    if not big:
        return None, []
    largest = max(line["size"] for line in big)
    chosen = [line for line in big if line["size"] >= 0.93 * largest]
    start = lines.index(chosen[0])
    run = []
    for line in lines[start:]:
        if line["size"] < 0.93 * largest:
            break
        run.append(line)
    title = " ".join(" ".join(line["text"] for line in run).split())
    return (title[:300], run) if len(title) >= 3 else (None, [])


def _heading(line: dict[str, Any], body: float, left: float) -> str | None:
    """The heading a line is (as it should read, e.g. '1 INTRODUCTION'), or None. ``left`` is the
    x position most lines of the page start at: an unnumbered heading starts there."""
    text = " ".join(line["text"].split())
    if not text or len(text) > 100 or (text.endswith((",", ";", ".")) and not _NAMED.match(text.rstrip("."))):
        return None
    larger, bold = line["size"] >= 1.08 * body, line["bold"] >= 0.6
    if _NAMED.match(text.rstrip(".:")):
        return text.rstrip(".:") if larger or bold or text.isupper() else None
    if re.search(r"[a-z]\d|\d[a-z]|[=<>′¨´ˆ˜˙¸˚]|\d\.\d\d", text) or text.count(",") >= 2:
        return None  # affiliation marks ("Virtanen1"), formulas, numbers: not a heading
    if re.match(r"(?:figure|fig\.|table|algorithm|listing|lemma|theorem|proof|definition)\b", text, re.I):
        return None
    m = _HEADING.match(text)
    if m:
        title = m.group("title")
        caps = sum(c.isupper() for c in title) >= 0.8 * sum(c.isalpha() for c in title)
        if sum(c.isalpha() for c in title) < 3 or not (larger or bold or caps):
            return None
        lettered = len(m.group("num")) == 1 and m.group("num").isalpha()
        if lettered and not (m.group("gap") and (larger or bold or caps)):
            return None  # "Aspects of..." is a word, not appendix A
        if lettered and sum(c.isalpha() or c == " " for c in title) < 0.85 * len(title):
            return None  # "Y K(PX, PX)": a formula
        return f"{m.group('num')} {title}"
    words = text.split()
    starts_left = abs(line["x0"] - left) < 4
    if text[0].isupper() and len(words) <= 10 and ((larger and line["bold"] >= 0.3) or (bold and starts_left)):
        return text
    return None


def _left_margin(lines: list[dict[str, Any]]) -> float:
    """The x position most full lines of a page start at."""
    starts = Counter(round(line["x0"]) for line in lines if len(line["text"]) >= 50)
    return float(starts.most_common(1)[0][0]) if starts else 0.0


def _join(lines: list[str]) -> str:
    """Lines of one block joined: words hyphenated at a line end (PDFium marks them) rejoined."""
    text = "\n".join(lines)
    text = re.sub(r"[\x02\ufffe]\s*", "", text)  # soft hyphens where a word was broken across lines
    for ligature, letters in LIGATURES.items():
        text = text.replace(ligature, letters)
    return text


def layout_text(result: dict[str, Any]) -> PdfReading:
    """The worker's lines as a paper: running headers dropped, title found, headings marked."""
    pages = result["pages"]
    body = _body_size(pages)
    repeated, dropped = _margin_lines(pages)
    dropped = [d for d in dropped if not _is_page_number(d)]
    banners: list[str] = []
    kept_pages: list[list[dict[str, Any]]] = []
    for page in pages:
        height = page["height"] or 792.0
        kept = []
        for line in page["lines"]:
            in_margin = line["top"] < 0.1 * height or line["bottom"] > 0.9 * height
            text = line["text"].strip()
            if in_margin and (_normal(text) in repeated or _is_page_number(text)):
                continue
            if (in_margin or line["top"] < 0.2 * height) and BANNERS.match(text) and line["size"] < 1.15 * body:
                banners.append(text)
                continue
            kept.append(line)
        kept_pages.append(kept)
    first = next(({"lines": k, "height": p["height"]} for k, p in zip(kept_pages, pages, strict=True) if k), None)
    title, title_lines = _title(first, body) if first else (None, [])
    skip = {id(line) for line in title_lines}
    blocks: list[str] = []
    current: list[str] = []
    for kept in kept_pages:
        left = _left_margin(kept)
        for line in kept:
            if id(line) in skip:
                continue
            heading = _heading(line, body, left)
            if heading is not None:
                if current:
                    blocks.append(_join(current))
                blocks.append(f"## {heading}")
                current = []
            else:
                current.append(line["text"])
        if current:  # a page ends a block; the next page's first line may continue the sentence
            blocks.append(_join(current))
            current = []
    text = "\n\n".join(b for b in blocks if b.strip())
    text = re.sub(r"\(cid:\d+\)", "", text)
    if title:
        text = f"# {title}\n\n{text}"
    reading = PdfReading(
        title=title,
        text=text.strip(),
        page_count=int(result.get("page_count") or len(pages)),
        pages_read=len(pages),  # pages whose text was read
        dropped=sorted(set(dropped) | set(banners)),
    )
    unreadable = result.get("unreadable_pages") or []
    if unreadable:
        reading.warnings.append(f"{len(unreadable)} page(s) could not be read: {unreadable[:10]}")
    if result.get("chars_cut"):
        reading.warnings.append(f"the text was cut at {MAX_CHARS:,} characters; later pages were not read")
    if reading.pages_read + len(unreadable) < reading.page_count:
        reading.warnings.append(f"only the first {reading.pages_read} of {reading.page_count} pages were read")
    unmapped = sum(line["text"].count("(cid:") for page in pages for line in page["lines"])
    if unmapped > 50:
        reading.warnings.append(f"{unmapped} glyphs had no Unicode mapping and were left out (math fonts?)")
    return reading


def read_pdf(
    path: Path,
    *,
    data: bytes | None = None,
    max_pages: int | None = None,
    memory_mb: int | None = None,
    time_limit_s: int | None = None,
) -> PdfReading:
    """Read a PDF paper under the limits (see the module doc; ``data``: its bytes, already read safely);
    ``PdfReadError`` says why not."""
    result = run_worker(path, data=data, max_pages=max_pages, memory_mb=memory_mb, time_limit_s=time_limit_s)
    reading = layout_text(result)
    meta = (result.get("title") or "").strip()
    if not reading.title and _plausible_title(meta):
        reading.title = meta[:300]
        reading.text = f"# {reading.title}\n\n{reading.text}"
    return reading


def _plausible_title(meta: str) -> bool:
    """Whether a PDF's metadata title looks like a title (not empty, a file name or a tool's default)."""
    return (
        len(meta) >= 4
        and bool(re.search(r"[A-Za-z]{3}", meta))
        and not re.search(r"\.(?:dvi|tex|pdf|docx?|ps)$|^untitled|^microsoft word|^title$", meta, re.I)
    )
