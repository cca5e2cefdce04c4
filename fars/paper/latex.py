"""Compiling a paper's LaTeX to PDF, safely: no shell escape, a private folder, a time limit.

``find_tex_engine`` is asked once at run start, so a missing TeX engine is reported before anything
expensive runs (papers are then written as .tex and .md only). ``compile_latex`` copies the .tex
and its figures into a temporary folder, runs the engine there twice (for citations) with
``-no-shell-escape``, TeX's paranoid file access (no reading or writing outside that folder) and a
time limit, and returns the PDF's page count; a failure raises ``LatexError`` with the log's
first error.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ENGINES = ("pdflatex", "xelatex", "lualatex")
INSTALL_HINT = (
    "install one, e.g. `apt-get install texlive-latex-base texlive-latex-recommended texlive-fonts-recommended`"
)


class LatexError(RuntimeError):
    """The TeX engine failed or is missing; the message says which paper, why, and what to do."""


@dataclass(frozen=True)
class CompiledPdf:
    """A compiled paper: where its PDF is and how many pages it has."""

    path: Path
    pages: int
    engine: str


def find_tex_engine(preferred: str = "pdflatex") -> str | None:
    """The path of the preferred TeX engine, else of another one installed, else None."""
    for name in (preferred, *(e for e in ENGINES if e != preferred)):
        found = shutil.which(name)
        if found:
            return found
    return None


def pdf_page_count(path: Path) -> int:
    """Pages of a PDF (pypdf when installed; else counted from uncompressed page objects)."""
    try:
        from pypdf import PdfReader
    except ImportError:
        data = path.read_bytes()
        return len(re.findall(rb"/Type\s*/Page(?![s\w])", data))
    return len(PdfReader(str(path)).pages)


def _first_error(log_text: str) -> str:
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("!"):
            return " ".join(x.strip() for x in lines[i : i + 3])[:400]
    return " ".join(lines[-5:])[:400]


def compile_latex(
    tex_path: Path,
    *,
    engine: str | None = None,
    timeout_s: float = 120.0,
    extra_files: list[str] | None = None,
    out_path: Path | None = None,
) -> CompiledPdf:
    """Compile ``tex_path`` to a PDF next to it (or at ``out_path``); see the module docstring.

    ``extra_files`` are paths relative to the .tex's folder (figures) copied along with it.
    """
    exe = engine or find_tex_engine()
    if exe is None:
        raise LatexError(f"no TeX engine found to compile {tex_path}; {INSTALL_HINT}")
    out_path = out_path or tex_path.with_suffix(".pdf")
    with tempfile.TemporaryDirectory(prefix="fars-tex-") as tmp:
        work = Path(tmp)
        shutil.copy(tex_path, work / "paper.tex")
        for rel in extra_files or []:
            src = (tex_path.parent / rel).resolve()
            if src.is_file() and src.is_relative_to(tex_path.parent.resolve()):
                (work / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, work / rel)
        env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TEXMFVAR", "TEXMFHOME")},
            "openin_any": "p",  # kpathsea: no reading of dot files or files above the folder
            "openout_any": "p",  # and no writing outside it
            "shell_escape": "f",
            "max_print_line": "10000",  # TeX wraps its messages at 79 columns: a long path's "not found" became "n ot found"
            "error_line": "254",
            "half_error_line": "238",
        }
        cmd = [exe, "-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"]
        for _ in range(2):  # the second pass resolves citations and references
            try:
                done = subprocess.run(
                    cmd, cwd=work, env=env, capture_output=True, text=True, errors="replace", timeout=timeout_s
                )
            except subprocess.TimeoutExpired:
                raise LatexError(
                    f"{Path(exe).name} took longer than {timeout_s:.0f}s on {tex_path}; raise paper.compile_timeout_s"
                ) from None
            if done.returncode != 0:
                log = (work / "paper.log").read_text(errors="replace") if (work / "paper.log").exists() else done.stdout
                raise LatexError(
                    f"{Path(exe).name} failed on {tex_path} (exit {done.returncode}): {_first_error(log)}; "
                    "the .tex and .md are kept, fix the template or set paper.compile=never"
                )
        pdf = work / "paper.pdf"
        if not pdf.is_file():
            raise LatexError(f"{Path(exe).name} wrote no PDF for {tex_path}")
        shutil.copy(pdf, out_path)
    return CompiledPdf(path=out_path, pages=pdf_page_count(out_path), engine=Path(exe).name)


def engine_notice(compile_mode: str, preferred: str = "pdflatex") -> tuple[int, str]:
    """(log level, message) saying at run start whether papers will be compiled to PDF, and with what."""
    if compile_mode == "never":
        return logging.INFO, "paper.compile=never: papers are written as .tex and .md, not compiled to PDF"
    exe = find_tex_engine(preferred)
    if exe is not None:
        return logging.INFO, f"papers will be compiled to PDF with {exe} (no shell escape)"
    if compile_mode == "always":
        return (
            logging.ERROR,
            f"paper.compile=always but no TeX engine ({', '.join(ENGINES)}) is installed; {INSTALL_HINT}",
        )
    return (
        logging.WARNING,
        f"no TeX engine ({', '.join(ENGINES)}) found: papers will be written as .tex and .md but NOT compiled "
        f"to PDF; {INSTALL_HINT}, or set paper.compile=never to silence this",
    )
