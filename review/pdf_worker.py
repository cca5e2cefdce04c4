"""The PDF text extractor, run as a child process with its own memory and CPU limits.

``python pdf_worker.py PDF --max-pages N --memory-mb M --cpu-s S`` prints one JSON object: the PDF's
metadata title, its page count and, for each page read, its size and its text lines with their
position, font size and weight (from PDFium through pypdfium2). A hostile PDF (a decompression bomb,
a page tree without end, a crash in the parser) costs only this process: it hits its limits and
dies, and ``review.ingest_pdf`` turns that into an error naming the file. Only the standard library
and pypdfium2 are imported here, so the file runs as a plain script.
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


def page_lines(textpage: Any, raw: Any, ctypes: Any) -> list[dict[str, Any]]:
    """The text lines of one page: text, box (top-down coordinates are made by the caller), font size, bold."""
    count = raw.FPDFText_CountChars(textpage)
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


def extract(path: str, max_pages: int) -> dict[str, Any]:
    """The metadata title, page count and the lines of the first ``max_pages`` pages of ``path``."""
    import ctypes

    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    try:
        pdf = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        message = str(exc)
        kind = "encrypted" if "password" in message.lower() else "unreadable"
        return {"error": kind, "message": message}
    try:
        meta = pdf.get_metadata_dict(skip_empty=True)
    except (pdfium.PdfiumError, ValueError):
        meta = {}
    total = len(pdf)
    pages, unreadable = [], []
    for index in range(min(total, max_pages)):
        try:
            page = pdf[index]
        except pdfium.PdfiumError:
            unreadable.append(index + 1)
            continue
        width, height = page.get_size()
        textpage = page.get_textpage()
        lines = page_lines(textpage.raw, raw, ctypes)
        for line in lines:  # PDF coordinates grow upwards; make them top-down
            line["top"], line["bottom"] = height - line.pop("y1"), height - line.pop("y0")
        pages.append({"width": width, "height": height, "lines": lines})
        textpage.close()
        page.close()
    pdf.close()
    return {"title": meta.get("Title"), "page_count": total, "pages": pages, "unreadable_pages": unreadable}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process: limits first, then extraction; the result as JSON on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdf")
    parser.add_argument("--max-pages", type=int, default=200)
    parser.add_argument("--memory-mb", type=int, default=2048)
    parser.add_argument("--cpu-s", type=int, default=120)
    args = parser.parse_args(argv)
    limit_resources(args.memory_mb, args.cpu_s)
    try:
        result = extract(args.pdf, args.max_pages)
    except MemoryError:
        result = {"error": "memory", "message": f"needed more than {args.memory_mb} MiB"}
    except ImportError as exc:
        result = {"error": "missing", "message": f"{exc}; install pypdfium2 (`pip install pypdfium2`)"}
    except OSError as exc:
        result = {"error": "unreadable", "message": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
