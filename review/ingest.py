"""Paper ingestion: a PDF, LaTeX, Markdown or plain-text file becomes titled sections of plain text.

PDF text comes from pypdf; LaTeX is reduced to its prose (sections kept as Markdown headings,
comments, preamble and most commands dropped). Headings are found in Markdown (``# ...``) and in
the numbered or upper-case heading lines that PDF text extraction yields (``3 EXPERIMENTS``).
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, Field

FORMATS = {".pdf": "pdf", ".tex": "latex", ".md": "markdown", ".markdown": "markdown", ".txt": "text"}


class PaperError(ValueError):
    """A paper file that cannot be read; the message names the file and what to do."""


class Section(BaseModel):
    """One section of a paper: its heading ('' before the first heading) and its text."""

    heading: str
    text: str


class PaperText(BaseModel):
    """A paper as plain text, split into sections."""

    title: str
    source: str
    format: str
    text: str
    sections: list[Section] = Field(default_factory=list)

    @property
    def chars(self) -> int:
        """Length of the whole text."""
        return len(self.text)


_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_NUMBERED = re.compile(r"^(?:[A-Z]\.?|\d+(?:\.\d+)*\.?)\s+[A-Z][^.!?]{1,80}$")
_CAPS = re.compile(r"^[A-Z][A-Z0-9 ,:&\-–()'/]{2,80}$")


def _heading_of(line: str) -> str | None:
    stripped = line.strip()
    match = _MD_HEADING.match(line)
    if match:
        return match.group(1).strip()
    if len(stripped) > 90 or not stripped:
        return None
    if _NUMBERED.match(stripped) or (_CAPS.match(stripped) and sum(c.isalpha() for c in stripped) >= 4):
        return stripped
    return None


def split_sections(text: str) -> list[Section]:
    """Split text at heading lines; text before the first heading is a section with heading ''."""
    sections: list[Section] = []
    heading, lines = "", list[str]()
    for line in text.splitlines():
        found = _heading_of(line)
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
        if line.strip():
            return line.strip()[:200]
    return sections[0].heading if sections and sections[0].heading else fallback


def read_pdf(path: Path) -> tuple[str, str | None]:
    """The text of a PDF, page by page, and its metadata title; an encrypted or unreadable PDF raises ``PaperError``."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise PaperError(f"{path}: the PDF is encrypted; give a decrypted copy (e.g. `qpdf --decrypt`)")
        pages = [page.extract_text() or "" for page in reader.pages]
        meta_title = str(reader.metadata.title).strip() if reader.metadata and reader.metadata.title else None
    except PaperError:
        raise
    except (PdfReadError, ValueError, KeyError, OSError) as exc:
        raise PaperError(f"{path}: not a readable PDF ({type(exc).__name__}: {exc}); check the file") from exc
    text = "\n".join(pages).strip()
    if not text:
        raise PaperError(f"{path}: the PDF has no extractable text (scanned images?); give a text PDF or .tex/.md")
    return text, meta_title or None


_TEX_SECTION = re.compile(r"\\(section|subsection|subsubsection|paragraph)\*?\{([^{}]*)\}")
_TEX_DROP_ENVS = ("figure", "figure*", "table", "table*", "tikzpicture", "thebibliography")


def latex_to_text(source: str) -> str:
    """LaTeX reduced to prose: comments, preamble, floats and commands removed, sections as headings."""
    text = re.sub(r"(?<!\\)%.*", "", source)
    begin = text.find("\\begin{document}")
    title = re.search(r"\\title\{([^{}]*)\}", text)
    if begin != -1:
        text = text[begin + len("\\begin{document}") :]
    text = text.split("\\end{document}")[0]
    for env in _TEX_DROP_ENVS:
        text = re.sub(rf"\\begin\{{{re.escape(env)}\}}.*?\\end\{{{re.escape(env)}\}}", "", text, flags=re.S)
    text = re.sub(r"\\begin\{abstract\}", "\n# Abstract\n", text)
    text = _TEX_SECTION.sub(
        lambda m: "\n" + "#" * (2 if m.group(1) == "section" else 3) + " " + m.group(2) + "\n", text
    )
    text = re.sub(r"\\(?:cite[pt]?|ref|eqref|label|url)\*?(\[[^\]]*\])?\{[^{}]*\}", "", text)
    text = re.sub(r"\\(?:textbf|textit|emph|texttt|underline|mathrm|text)\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"\\(?:begin|end)\{[^{}]*\}", "", text)
    text = re.sub(r"\\(?:maketitle|centering|small|footnotesize|hline|toprule|midrule|bottomrule|item)\b", "", text)
    text = re.sub(r"\\[a-zA-Z]+\*?(\[[^\]]*\])?", "", text)
    text = text.replace("~", " ").replace("{", "").replace("}", "").replace("\\\\", "\n")
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n\s*\n\s*\n+", "\n\n", text).strip()
    if title:
        text = f"# {title.group(1).strip()}\n\n{text}"
    return text


def load_paper(path: str | Path) -> PaperText:
    """Read a paper file (.pdf, .tex, .md, .txt) into sections; errors name the file and the fix."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PaperError(f"{path}: no such file; give the path of a .pdf, .tex, .md or .txt paper")
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise PaperError(f"{path}: unsupported file type {path.suffix!r}; give a .pdf, .tex, .md or .txt file")
    title = None
    if kind == "pdf":
        text, title = read_pdf(path)
    else:
        try:
            raw = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise PaperError(f"{path}: not UTF-8 text ({exc}); convert it to UTF-8") from exc
        text = latex_to_text(raw) if kind == "latex" else raw.strip()
    if not text.strip():
        raise PaperError(f"{path}: the paper is empty")
    paper = paper_from_text(text, source=str(path), fmt=kind, fallback_title=path.stem)
    if title:
        paper.title = title[:200]
    return paper


def paper_from_text(text: str, *, source: str = "<text>", fmt: str = "markdown", fallback_title: str = "") -> PaperText:
    """A paper given as text (Markdown or plain)."""
    sections = split_sections(text)
    return PaperText(
        title=_title_of(text, sections, fallback_title or "untitled"),
        source=source,
        format=fmt,
        text=text,
        sections=sections,
    )
