"""LaTeX ingestion: multi-file sources, the source's own macros, tables, appendix and math, on
hand-made sources and on real papers (tests/review/ingest/data/, see its README for sources and licences)."""

from __future__ import annotations

from pathlib import Path

import pytest

from review.ingest.latex import collect_macros, expand_macros, find_main_tex, flatten, strip_comments
from review.ingest.paper import PaperError, load_paper, resolve_paper_path

DATA = Path(__file__).parent / "data"


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_inputs_are_followed_with_or_without_tex_and_never_outside_the_source(tmp_path: Path) -> None:
    (tmp_path / "secret.tex").write_text("SECRET TEXT OUTSIDE THE SOURCE")
    src = write(
        tmp_path / "src",
        {
            "main.tex": "\\documentclass{article}\n\\input{macros}\n\\begin{document}\n\\input{sections/intro}\n"
            "\\include{sections/method.tex}\n% \\input{todo}\n\\input{../secret}\n\\input{missing}\n"
            "\\input{/etc/hostname}\n\\end{document}\n",
            "macros.tex": "\\newcommand{\\datanet}{DataComp}\n",
            "sections/intro.tex": "\\section{Introduction}We build \\datanet{} here.\\input{sections/deep}\n",
            "sections/deep.tex": "Nested text is read.",
            "sections/method.tex": "\\section{Method}The method.",
            "todo.tex": "TODO NEVER READ",
        },
    )
    paper = load_paper(src / "main.tex")
    assert "We build DataComp here." in paper.text and "Nested text is read." in paper.text
    assert "The method." in paper.text and "## 2 Method" in paper.text
    assert "SECRET" not in paper.text and "TODO NEVER READ" not in paper.text
    record = paper.ingest
    assert record.reader == "pylatexenc"
    assert record.files == ["main.tex", "macros.tex", "sections/intro.tex", "sections/deep.tex", "sections/method.tex"]
    assert "inputs_missing" in record.flags
    warnings = " ".join(record.warnings)
    assert "'../secret' leaves the source folder" in warnings and "'missing' not found" in warnings
    assert "'/etc/hostname' is an absolute path" in warnings


def test_an_input_cycle_is_read_once(tmp_path: Path) -> None:
    src = write(tmp_path, {"a.tex": "A text \\input{b}", "b.tex": "B text \\input{a}"})
    reading = flatten(src / "a.tex")
    assert reading.text.count("A text") == 1 and reading.text.count("B text") == 1
    assert any("inputs itself" in w for w in reading.warnings)


def test_comments_are_dropped_as_tex_drops_them() -> None:
    text = strip_comments(
        "50\\% kept % dropped\nnext\n\\\\% also dropped\n\\iffalse hidden \\ifx a \\fi still \\fi shown"
    )
    assert text.startswith("50\\% kept next") and "dropped" not in text
    assert "hidden" not in text and "still" not in text and text.endswith("shown")


def test_the_sources_own_macros_are_expanded() -> None:
    source = (
        "\\newcommand{\\datanet}{DataComp}\\newcommand*\\norm[1]{\\lVert #1\\rVert}"
        "\\newcommand{\\greet}[2][Hello]{#1, #2!}\\def\\pair#1#2{(#1,#2)}\\DeclareMathOperator{\\Prob}{\\mathbb{P}}"
        "\\renewcommand{\\section}{\\@startsection{section}}\\newcommand{\\be}{\\begin{equation}}"
        "Body: \\datanet, $\\norm{x}$, \\greet{world}, \\greet[Hi]{you}, \\pair ab, $\\Prob(Y)$, \\section{S} \\be x \\end{equation}"
    )
    macros, rest = collect_macros(source)
    assert set(macros) == {"datanet", "norm", "greet", "pair", "Prob", "be"}  # \section's layout redefinition is not
    expanded, cut = expand_macros(rest, macros)
    assert not cut
    assert expanded == (
        "Body: DataComp, $\\lVert x\\rVert$, Hello, world!, Hi, you!, (a,b), $\\mathbb{P}(Y)$, \\section{S} "
        "\\begin{equation} x \\end{equation}"
    )
    bomb, _ = collect_macros(
        "\\def\\a{xxxxxxxxxx}\\def\\b{\\a\\a\\a\\a\\a\\a\\a\\a\\a\\a}\\def\\c{\\b\\b\\b\\b\\b\\b\\b\\b\\b\\b}"
    )
    _, cut = expand_macros("\\c\\c\\c", bomb, limit=500)
    assert cut  # a self-multiplying macro is stopped, not followed to exhaustion


def test_tables_appendix_math_and_citations_are_kept(tmp_path: Path) -> None:
    src = write(
        tmp_path,
        {
            "paper.tex": r"""\documentclass{article}
\title{A Study of \textsc{Things}}
\begin{document}\maketitle
\begin{abstract}We study $\alpha$-things.\end{abstract}
\section{Results}
As \citet{smith2020} showed (Table~\ref{tab:main}), $\nabla_\theta L(\theta) = 0$ at $\epsilon = 10^{-8}$:
\begin{equation}\hat{m}_t = \frac{m_t}{1-\beta_1^t}\end{equation}
\begin{table}[t]\caption{Main results}\label{tab:main}
\begin{tabular}{lcc}\toprule Method & Acc & F1 \\ \midrule Ours & \textbf{0.93} & 0.91 \\ Base & 0.85 & 0.80 \\ \bottomrule\end{tabular}
\end{table}
\begin{figure}\begin{tikzpicture}\draw (0,0) -- (1,1);\end{tikzpicture}\caption{A drawing}\end{figure}
\appendix
\section{Proofs}\subsection{Lemma one}The proof.\footnote{A note.}
\end{document}""",
        },
    )
    paper = load_paper(src / "paper.tex")
    assert paper.title == "A Study of Things"
    assert [s.heading for s in paper.sections] == [
        "A Study of Things", "Abstract", "1 Results", "A Proofs", "A.1 Lemma one",
    ]  # fmt: skip
    text = paper.text
    assert "$\\nabla_\\theta L(\\theta) = 0$" in text and "$\\epsilon = 10^{-8}$" in text
    assert "\\hat{m}_t = \\frac{m_t}{1-\\beta_1^t}" in text  # math kept as the LaTeX it is
    assert "[smith2020]" in text and "[tab:main]" in text
    assert "Caption: Main results" in text and "Ours | 0.93 | 0.91" in text and "Method | Acc | F1" in text
    assert "Figure: A drawing" in text and "(0,0)" not in text
    assert "(footnote: A note.)" in text


def test_a_folder_resolves_to_its_main_tex_or_its_pdf_or_says_what_to_pass(tmp_path: Path) -> None:
    main = write(
        tmp_path / "one", {"main.tex": "\\documentclass{article}\\begin{document}x\\end{document}", "intro.tex": "y"}
    )
    assert resolve_paper_path(tmp_path / "one") == main / "main.tex"
    two = write(tmp_path / "two", {"a.tex": "\\documentclass{article}", "b.tex": "\\documentclass{article}"})
    with pytest.raises(
        PaperError, match=r"two: a folder with several LaTeX documents \(a\.tex, b\.tex\); give the main one"
    ):
        resolve_paper_path(two)
    pdf = tmp_path / "three"
    pdf.mkdir()
    (pdf / "paper.pdf").write_bytes(b"%PDF-1.4")
    assert resolve_paper_path(pdf) == pdf / "paper.pdf"
    (pdf / "other.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(PaperError, match=r"a folder with 2 PDFs \(other\.pdf, paper\.pdf\); give the paper's file"):
        resolve_paper_path(pdf)
    empty = write(tmp_path / "four", {"notes.md": "# notes"})
    with pytest.raises(PaperError, match=r"no LaTeX document .*it holds notes\.md"):
        resolve_paper_path(empty)
    with pytest.raises(PaperError, match="no such file or folder"):
        resolve_paper_path(tmp_path / "five")


def test_real_multi_file_source_scipy() -> None:
    """SciPy 1.0 (Nature Methods 2020): paper.tex inputs six files; the folder also holds a cover letter."""
    folder = DATA / "scipy-1.0"
    main, candidates = find_main_tex(folder)
    assert main == folder / "paper.tex" and {c.name for c in candidates} == {"paper.tex", "covlett.tex"}
    paper = load_paper(folder)  # the folder, as a user may give it
    assert paper.title == "SciPy 1.0—Fundamental Algorithms for Scientific Computing in Python"
    assert paper.ingest.files == [
        "paper.tex", "core-dev.tex", "subpackages.tex", "ckdtree.tex", "scipy-optimize.tex", "poly.tex", "consortium.tex",
    ]  # fmt: skip
    assert paper.ingest.flags == [] and paper.chars > 60_000
    heads = [s.heading for s in paper.sections]
    for heading in ("Abstract", "Introduction", "Language choices", "cKDTree", "Numerical optimization", "Discussion"):
        assert heading in heads
    assert len(heads) >= 40
    text = paper.text
    assert "k-d tree" in text or "cKDTree" in text  # from ckdtree.tex, an \input without .tex
    assert "Nelder-Mead | Powell | COBYLA" in text  # the optimizers' table, as rows of cells
    assert "scipy.optimize" in text  # \texttt kept; \code{#1} (the source's macro) expanded
    assert "\\code" not in text and "empty" not in text.split("## Introduction")[0]


def test_real_iclr_source_calibration() -> None:
    """Calibration tests beyond classification (ICLR 2021): math-heavy, seven appendix sections."""
    paper = load_paper(DATA / "calibration-iclr2021" / "main.tex")
    assert paper.title == "Calibration tests beyond classification"
    heads = [s.heading for s in paper.sections]
    assert heads[1:4] == ["Abstract", "1 Introduction", "2 Calibration error: A general framework"]
    assert "3.2 Estimation" in heads and "A Experiments" in heads and "B.3 Kernel calibration error" in heads
    assert heads[-1] == "G Expected calibration error for countably infinite discrete target spaces"
    assert paper.chars > 100_000 and not paper.ingest.flags
    assert "\\mathbb{P}(Y|P_X)" in paper.text  # \Prob, the source's \DeclareMathOperator, expanded inside math
    assert "\\Prob" not in paper.text


def test_fars_own_latex() -> None:
    paper = load_paper(DATA / "fars-paper" / "paper.tex")
    assert paper.title == "title: improvement rest welch all and write results predicts."
    assert [s.heading for s in paper.sections][1:4] == ["Abstract", "1 Introduction", "2 Related Work"]
    assert "Machine-generated paper" not in paper.text  # the running header is layout, not text
    assert "val_accuracy" in paper.text.replace("\\_", "_")
