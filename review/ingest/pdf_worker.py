"""The PDF readers, run as a child process with its own memory and CPU limits.

``python pdf_worker.py PDF --max-pages N --memory-mb M --cpu-s S`` prints one JSON object: the PDF's
metadata title, its page count and, for each page read, its size and its text lines with their
position, font size and weight (from PDFium through pypdfium2), at most ``--max-chars`` characters
in all. With ``--hidden`` it runs the prompt-injection scan's reader instead (pdfplumber): the runs
of text a human reader does not see (white, under 2pt, off the page) on the first ``--max-pages``
pages. ``PDF`` ``-`` reads the file from stdin, so the parent, which opened it safely, is the only
one to touch the file system. A hostile PDF (a decompression bomb, a page tree without end, a
crash in the parser) costs only this process: it hits its limits and dies, and ``review.ingest.pdf``
turns that into an error naming the file. Only the standard library and the reader in use
(pypdfium2, or pdfplumber) are imported here, so the file runs as a plain script.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

_BOLD_NAME = re.compile(r"bold|black|heavy|semibold|demi|medi|cmbx|cmb\d|-b\b|,b\b", re.I)


def limit_resources(memory_mb: int, cpu_s: int) -> None:
    """Cap this process's address space and CPU time (where the platform allows it)."""
    try:
        import resource
    except ImportError:  # not POSIX: the parent's wall-clock timeout still holds
        return
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))


def page_lines(textpage: Any, raw: Any, ctypes: Any, max_chars: int | None = None) -> list[dict[str, Any]]:
    """The text lines of one page: text, box (top-down coordinates are made by the caller), font size,
    bold; at most ``max_chars`` characters of it (a page may claim millions)."""
    count = raw.FPDFText_CountChars(textpage)
    if max_chars is not None:
        count = min(count, max(0, max_chars))
    lines: list[dict[str, Any]] = []
    chars: list[str] = []
    boxes: list[tuple[float, float, float, float]] = []
    sizes: list[float] = []
    bold = 0
    name_buf = ctypes.create_string_buffer(128)
    flags = ctypes.c_int()
    left, right, bottom, top = (ctypes.c_double() for _ in range(4))
    angle_of = getattr(raw, "FPDFText_GetCharAngle", None)

    def close() -> None:
        nonlocal bold
        text = "".join(chars).strip()
        if text and boxes:
            lines.append(
                {
                    "text": text,
                    "x0": min(b[0] for b in boxes),
                    "x1": max(b[1] for b in boxes),
                    "y0": min(b[2] for b in boxes),
                    "y1": max(b[3] for b in boxes),
                    "size": round(max(sizes), 2) if sizes else 0.0,
                    "bold": bold / max(1, len(sizes)),
                }
            )
        chars.clear()
        boxes.clear()
        sizes.clear()
        bold = 0

    for i in range(count):
        code = raw.FPDFText_GetUnicode(textpage, i)
        char = chr(code) if 0 < code < 0x110000 else ""
        if char in ("\r", "\n"):
            close()
            continue
        if angle_of is not None and char.strip():
            angle = angle_of(textpage, i)
            if 0.2 < angle < 6.08:  # rotated text (an arXiv stamp in the margin): not part of the page's lines
                continue
        chars.append(char)
        if not char.strip() or raw.FPDFText_IsGenerated(textpage, i) == 1:
            continue
        if raw.FPDFText_GetCharBox(textpage, i, left, right, bottom, top):
            boxes.append((left.value, right.value, bottom.value, top.value))
        sizes.append(raw.FPDFText_GetFontSize(textpage, i))
        weight = raw.FPDFText_GetFontWeight(textpage, i)
        if weight < 0:
            length = raw.FPDFText_GetFontInfo(textpage, i, name_buf, len(name_buf), ctypes.byref(flags))
            name = name_buf.value[: max(0, length - 1)].decode("latin-1", errors="replace")
            bold += bool(_BOLD_NAME.search(name))
        else:
            bold += weight >= 600
    close()
    return lines


def extract(source: str | bytes, max_pages: int, max_chars: int = 4_000_000) -> dict[str, Any]:
    """The metadata title, page count and the lines of the first ``max_pages`` pages of ``source`` (a
    path, or the file's bytes), stopping after the page that brings the text past ``max_chars``."""
    import ctypes

    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    try:
        pdf = pdfium.PdfDocument(source)
    except pdfium.PdfiumError as exc:
        message = str(exc)
        kind = "encrypted" if "password" in message.lower() else "unreadable"
        return {"error": kind, "message": message}
    try:
        meta = pdf.get_metadata_dict(skip_empty=True)
    except (pdfium.PdfiumError, ValueError):
        meta = {}
    total = len(pdf)
    pages, unreadable, chars, chars_cut = [], [], 0, False
    for index in range(min(total, max_pages)):
        if chars >= max_chars:
            chars_cut = True
            break
        try:
            page = pdf[index]
        except pdfium.PdfiumError:
            unreadable.append(index + 1)
            continue
        width, height = page.get_size()
        textpage = page.get_textpage()
        lines = page_lines(textpage.raw, raw, ctypes, max_chars - chars)
        chars += sum(len(line["text"]) for line in lines)
        for line in lines:  # PDF coordinates grow upwards; make them top-down
            line["top"], line["bottom"] = height - line.pop("y1"), height - line.pop("y0")
        pages.append({"width": width, "height": height, "lines": lines})
        textpage.close()
        page.close()
    pdf.close()
    return {
        "title": meta.get("Title"),
        "page_count": total,
        "pages": pages,
        "unreadable_pages": unreadable,
        "chars_cut": chars_cut,
    }


def hidden_char(char: dict[str, Any], width: float, height: float) -> str | None:
    """How a character of pdfplumber's is hidden from a human reader (white, under 2pt, off the page), or None."""
    colour = char.get("non_stroking_color")
    values = tuple(colour) if isinstance(colour, list | tuple) else (colour,) if colour is not None else ()
    size = char.get("size")
    if values and all(isinstance(v, int | float) for v in values):
        nums = [float(v) for v in values if isinstance(v, int | float)]
        if (len(nums) in (1, 3) and min(nums) >= 0.95) or (len(nums) == 4 and max(nums) <= 0.05):
            return "white text"
    if isinstance(size, int | float) and size < 2.0:
        return "text under 2pt"
    x0, top = char.get("x0"), char.get("top")
    if isinstance(x0, int | float) and isinstance(top, int | float) and (x0 > width or top > height or x0 < -5):
        return "text outside the page"
    return None


MAX_PAGE_CONTENT_BYTES = 16 * 2**20  # a page's content inflated; a figure of 100,000 points has a few MB
PAGE_TIME_S = 10  # for one page; pdfminer reads about 1-2 MB of content a second


class PageTimeout(BaseException):
    """One page took over ``PAGE_TIME_S`` (a BaseException, so pdfminer's own ``except Exception`` lets it by)."""


def inflated_size(stream: Any, limit: int) -> int | None:
    """The size of a content stream once decoded, counted up to just past ``limit`` without holding it
    (a FlateDecode bomb costs a second of CPU, not gigabytes); None where that cannot be told cheaply
    (other filters, a damaged or encrypted stream): the time and memory limits answer for those."""
    import zlib

    from pdfminer.pdftypes import LITERALS_FLATE_DECODE

    raw = stream.rawdata if stream.rawdata is not None else stream.data
    filters = stream.get_filters()
    if not filters:
        return len(raw or b"")
    if len(filters) != 1 or filters[0][0] not in LITERALS_FLATE_DECODE:
        return None
    inflate, total, pending = zlib.decompressobj(), 0, raw or b""
    try:
        while pending and total <= limit:
            total += len(inflate.decompress(pending, 1 << 20))
            pending = inflate.unconsumed_tail
    except zlib.error:
        return None
    return total


def _page_content_size(mined: Any, limit: int) -> int | None:
    """The decoded size of a page's content streams (None: not known cheaply)."""
    from pdfminer.pdftypes import PDFStream, resolve1

    total = 0
    for item in mined.contents:
        stream = resolve1(item)
        if not isinstance(stream, PDFStream):
            continue
        size = inflated_size(stream, limit - total)
        if size is None:
            return None
        total += size
        if total > limit:
            break
    return total


def _page_runs(
    pdf: Any, mined: Any, number: int, doctop: float, budget: int
) -> tuple[list[dict[str, Any]], int, float]:
    """The hidden runs of one page, the hidden characters kept (at most ``budget``) and the page height."""
    from pdfplumber.page import Page

    page = Page(pdf, mined, page_number=number, initial_doctop=doctop)
    try:
        found: dict[str, list[str]] = {}
        kept = 0
        for char in page.chars:
            how = hidden_char(char, float(page.width), float(page.height))
            if how and kept < budget:
                found.setdefault(how, []).append(str(char.get("text", "")))
                kept += 1
        runs = [
            {"page": number, "how": how, "text": piece}
            for how, chars in found.items()
            for piece in re.split(r"\s{3,}", "".join(chars))
            if len(piece.strip()) >= 3
        ]
        return runs, kept, float(page.height)
    finally:
        page.close()


def hidden_runs(source: bytes, max_pages: int, cpu_s: int = 120, max_chars: int = 1_000_000) -> dict[str, Any]:
    """The runs of hidden text (``hidden_char``) on the first ``max_pages`` pages of a PDF, by pdfplumber.

    Pages are taken one at a time from the page tree (pdfplumber's ``pdf.pages`` would build every page
    of a 20,000-page file first) and closed after use. A page whose content inflates past
    ``MAX_PAGE_CONTENT_BYTES``, or that takes over ``PAGE_TIME_S`` or more memory than this process
    has, is skipped and said; after ``cpu_s * 0.75`` seconds the scan stops where it is. At most
    ``max_chars`` hidden characters are kept.
    """
    import io
    import logging
    import signal
    import time

    import pdfplumber
    from pdfminer.pdfpage import PDFPage

    def timeout(signum: int, frame: Any) -> None:
        raise PageTimeout

    logging.getLogger("pdfminer").setLevel(logging.ERROR)
    signal.signal(signal.SIGALRM, timeout)
    started = time.monotonic()
    runs: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    kept, scanned, more, stopped = 0, 0, False, None
    pdf = pdfplumber.open(io.BytesIO(source))  # never closed: its close() builds every page of the file first
    doctop = 0.0
    for number, mined in enumerate(PDFPage.create_pages(pdf.doc), 1):
        if number > max_pages:
            more = True
            break
        if time.monotonic() - started > 0.75 * cpu_s:
            stopped = f"stopped at page {number} after {time.monotonic() - started:.0f} s"
            break
        scanned = number
        size = _page_content_size(mined, MAX_PAGE_CONTENT_BYTES)
        if size is not None and size > MAX_PAGE_CONTENT_BYTES:
            skipped.append({"page": number, "why": f"its content inflates past {MAX_PAGE_CONTENT_BYTES:,} bytes"})
            continue
        signal.setitimer(signal.ITIMER_REAL, PAGE_TIME_S)
        try:
            page_runs, page_kept, height = _page_runs(pdf, mined, number, doctop, max_chars - kept)
        except PageTimeout:
            skipped.append({"page": number, "why": f"it took over {PAGE_TIME_S} s"})
            continue
        except MemoryError:
            skipped.append({"page": number, "why": "it needed more memory than the scan has"})
            continue
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        runs += page_runs
        kept += page_kept
        doctop += height
    return {
        "pages_scanned": scanned,
        "more_pages": more,
        "skipped": skipped,
        "stopped": stopped,
        "chars_cut": kept >= max_chars,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process: limits first, then extraction; the result as JSON on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdf", help="the PDF file, or - to read it from stdin")
    parser.add_argument("--max-pages", type=int, default=200)
    parser.add_argument("--max-chars", type=int, default=4_000_000)
    parser.add_argument("--memory-mb", type=int, default=2048)
    parser.add_argument("--cpu-s", type=int, default=120)
    parser.add_argument("--hidden", action="store_true", help="find hidden text (pdfplumber) instead of reading")
    args = parser.parse_args(argv)
    limit_resources(args.memory_mb, args.cpu_s)
    package = "pdfplumber" if args.hidden else "pypdfium2"
    try:
        source: str | bytes = sys.stdin.buffer.read() if args.pdf == "-" else args.pdf
        if args.hidden:
            if isinstance(source, str):
                with open(source, "rb") as file:
                    source = file.read()
            result = hidden_runs(source, args.max_pages, args.cpu_s)
        else:
            result = extract(source, args.max_pages, args.max_chars)
    except MemoryError:
        result = {"error": "memory", "message": f"needed more than {args.memory_mb} MiB"}
    except ImportError as exc:
        result = {"error": "missing", "message": f"{exc}; install {package} (`pip install {package}`)"}
    except OSError as exc:
        result = {"error": "unreadable", "message": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # pdfminer raises its own errors (PSEOF, PDFSyntaxError, ...) on a broken file
        if not args.hidden:
            raise
        result = {"error": "unreadable", "message": f"{type(exc).__name__}: {str(exc)[:300]}"}
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
