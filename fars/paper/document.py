"""The paper as data, and its two renderings: Markdown and LaTeX on FARS's own ICLR-like template.

Prose comes from the model; every number (setup, results table, test statistics) is written by the
harness from the plan and ``results.json``; figures are the experiment's learning-curve files;
citations are ``[@key]`` markers the harness resolves against the paper's bibliography (numbered
``[n]`` in Markdown, ``\\cite{key}`` in LaTeX). Model text is escaped before it enters LaTeX, so it
can never run TeX code.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from fars.paper.grounding import BibEntry, Numbers, Span
from fars.run.contracts import ComparisonOutcome, Results

CITE_MARK = re.compile(r"\[@([A-Za-z0-9_:\-]+)\]")
_MULTI_CITE = re.compile(r"\[(@[A-Za-z0-9_:\-]+(?:\s*[;,]\s*@[A-Za-z0-9_:\-]+)+)\]")


def split_citations(text: str) -> str:
    """``[@a; @b]`` (Pandoc's grouped citation, which capable models write) -> ``[@a] [@b]``, the one form the
    bibliography and the citation check read; before this a grouped citation stayed raw text in the paper."""
    return _MULTI_CITE.sub(lambda m: " ".join(f"[{key.strip()}]" for key in re.split(r"[;,]", m.group(1))), text)


class Section(BaseModel):
    """A titled section of prose (``code``: a verbatim block after it, e.g. a winning diff in the appendix)."""

    heading: str
    body: str
    code: str | None = None
    table: ResultsTable | None = None  # after the body, numbered before the results table (e.g. the setup)


class ResultsTable(BaseModel):
    """A table of numbers filled from results, with its caption."""

    caption: str
    header: list[str]
    rows: list[list[str]]


def _markdown_table(t: ResultsTable, number: int) -> list[str]:
    out = ["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    out += ["| " + " | ".join(row) + " |" for row in t.rows]
    return [*out, "", f"*Table {number}: {t.caption}*", ""]


LONG_CELL = 60  # characters: a column holding a longer cell wraps in a paragraph column instead of shrinking all
TABLE_CHARS = 95  # characters of a table row that fit the 5.5in text width at \small (Times), column gaps included
PAD_CHARS = 3  # a column's gap (2 x tabcolsep) in characters


_NUMBER_MARK = re.compile("\ue000\\d+\ue001")  # a harness number's marker (fars.paper.grounding.Numbers)


def _shown_len(cell: str) -> int:
    """About how many characters a cell prints: a harness number's marker stands for a number of about 6."""
    return len(_NUMBER_MARK.sub("0.0000", cell))


def _wrapped_widths(longest: list[int], wide: int | None) -> dict[int, int]:
    """Columns to wrap (index -> width in characters) so a table fits the line at its own size: the widest
    first, each to half its length (at least 12 characters), until the rest fits. The third relay run's results
    table (9 columns, per-seed values among them) was shrunk to about half size, its text a few points high."""
    fixed = {i: (TABLE_CHARS // 2 if i == wide else n) for i, n in enumerate(longest)}
    widths: dict[int, int] = {}
    for narrowest in (False, True):  # first to half their length, then, if still too wide, to 12 characters
        for i in sorted(range(len(longest)), key=lambda i: -longest[i]):
            if table_chars(fixed) <= TABLE_CHARS:
                return _spread(widths, longest, TABLE_CHARS - table_chars(fixed))
            if i == wide or longest[i] < 16:  # wrapping a shorter column saves too little
                continue
            fixed[i] = widths[i] = 12 if narrowest else max(12, (longest[i] + 1) // 2)
    return _spread(widths, longest, TABLE_CHARS - table_chars(fixed))


def _spread(widths: dict[int, int], longest: list[int], slack: int) -> dict[int, int]:
    """The wrapped columns given the line's room left over, in proportion to their text (never past it): the
    fifth relay run's Table 1 wrapped its value column to 12 characters with a third of the line unused, and the
    trainable parameters of five conditions stood one word a line down most of a page."""
    if slack <= 0 or not widths:
        return widths
    total = sum(longest[i] for i in widths)
    return {i: min(longest[i], w + slack * longest[i] // total) for i, w in widths.items()}


def table_chars(widths: dict[int, int]) -> int:
    """A row's printed width in characters, column gaps included."""
    return sum(widths.values()) + PAD_CHARS * len(widths)


def _latex_table(t: ResultsTable, place: str = "H") -> list[str]:
    """A booktabs table that is never enlarged and only shrunk to the text width when it still does not fit; a
    column with a long cell (Table 1's seed-design sentence) wraps instead, so the table keeps a readable size
    (the second relay run's PDF shrank Table 1 to an unreadable few points to fit that one sentence)."""
    longest = [
        max([_shown_len(t.header[i]), *(_shown_len(r[i]) for r in t.rows if i < len(r))]) for i in range(len(t.header))
    ]
    wide = max(range(len(longest)), key=lambda i: longest[i]) if max(longest, default=0) > LONG_CELL else None
    widths = _wrapped_widths(longest, wide)
    fitted = {i: widths.get(i, TABLE_CHARS // 2 if i == wide else n) for i, n in enumerate(longest)}
    # still wider than the line with every long column wrapped (9 columns): a smaller font, not a shrunken table
    size = r"\small" if table_chars(fitted) <= TABLE_CHARS else r"\footnotesize"
    spec = "".join(
        r"p{0.5\linewidth}"
        if i == wide
        else rf">{{\raggedright\arraybackslash}}p{{{widths[i] / TABLE_CHARS:.2f}\linewidth}}"
        if i in widths
        else "l"
        for i in range(len(t.header))
    )
    return [
        rf"\begin{{table}}[{place}]",
        rf"\centering{size}",
        r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
        r"\begin{tabular}{" + spec + "}",
        r"\toprule",
        " & ".join(tex_escape(h) for h in t.header) + r" \\",
        r"\midrule",
        *[" & ".join(tex_escape(c) for c in row) + r" \\" for row in t.rows],
        r"\bottomrule",
        r"\end{tabular}}",
        rf"\caption{{{tex_escape(t.caption)}}}",
        r"\end{table}",
    ]


class Figure(BaseModel):
    """A figure: its files (relative to the paper's folder; PNG for Markdown, PDF preferred for LaTeX)."""

    caption: str
    png: str | None = None
    pdf: str | None = None


class Paper(BaseModel):
    """A short paper: title, abstract, sections, one results table and figures after a named section.

    Text may hold the provenance markers of ``fars.paper.grounding.Numbers``; the renderers resolve them.
    """

    title: str
    abstract: str
    sections: list[Section]
    table: ResultsTable
    table_after: str = "Results"
    appendix: list[Section] = Field(default_factory=list)  # after the references
    figures: list[Figure] = Field(default_factory=list)
    bibliography: list[BibEntry] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


def results_table(results: Results, numbers: Numbers) -> ResultsTable:
    """The results table: per condition its role, mean ± std over seeds, the 95% Student-t interval of the mean,
    the difference from the baseline, Hedges' g, the Holm-adjusted p-value and the verdict."""
    metric = results.metric
    rows = []
    for name, cond in results.conditions.items():
        m = cond.metric
        path = f"results.conditions.{name}"
        interval = (
            f"[{numbers.num(cond.ci_low, f'{path}.ci_low')}, {numbers.num(cond.ci_high, f'{path}.ci_high')}]"
            if cond.ci_low is not None and cond.ci_high is not None
            else "—"
        )
        mean = f"{numbers.num(m.mean, f'{path}.metric.mean')} ± {numbers.num(m.std, f'{path}.metric.std')}"
        seeds = numbers.num(m.n, f"{path}.metric.n", "{:d}") + _per_seed(cond.values, path, numbers)
        registered = _registered(results, name)
        if registered is not None:  # an ablation: its row is its registered test against what it ablates
            i, o = registered
            at = f"results.comparisons[{i}]"
            rows.append(
                [
                    name,
                    f"{cond.role} of {o.reference}",
                    mean,
                    interval,
                    ("—" if o.difference is None else numbers.num(o.difference, f"{at}.difference", "{:+.4f}"))
                    + f" (vs {o.reference})"
                    # against the baseline too, descriptive: relay reviewers asked what removing a part leaves
                    # against the baseline, which the row's registered test does not say
                    + (
                        f"; {numbers.num(cond.difference, f'{path}.difference', '{:+.4f}')} (vs baseline)"
                        if cond.difference is not None
                        else ""
                    ),
                    "—",
                    ("—" if o.p_adjusted is None else numbers.num(o.p_adjusted, f"{at}.p_adjusted", "{:.3g}"))
                    + f" ({o.family}, vs {o.reference})"
                    + (
                        f"; {numbers.num(cond.p_vs_baseline, f'{path}.p_vs_baseline', '{:.3g}')} (vs baseline, "
                        "descriptive)"
                        if cond.p_vs_baseline is not None
                        else ""
                    ),
                    seeds,
                    f"{o.verdict} (vs {o.reference})",
                ]
            )
            continue
        rows.append(
            [
                name,
                cond.role,
                mean,
                interval,
                "—" if cond.difference is None else numbers.num(cond.difference, f"{path}.difference", "{:+.4f}"),
                "—" if cond.effect_size is None else numbers.num(cond.effect_size, f"{path}.effect_size", "{:.2f}"),
                "—"
                if cond.p_adjusted is None
                else numbers.num(cond.p_adjusted, f"{path}.p_adjusted", "{:.3g}")
                + (f" ({cond.family}{_KIND_CELL.get(cond.test_kind or '', '')})" if cond.family else "")
                + (
                    f"; two-sided {numbers.num(cond.p_two_sided, f'{path}.p_two_sided', '{:.3g}')}"
                    if cond.p_two_sided is not None
                    else ""
                ),
                seeds,
                cond.verdict + (" (interval beyond the margin)" if cond.test_kind == "tost-beyond-margin" else ""),
            ]
        )
    direction = "higher" if results.higher_is_better else "lower"
    ablations = [n for n in results.conditions if _registered(results, n) is not None]
    members: Counter[str] = Counter(c.family for n, c in results.conditions.items() if c.family and n not in ablations)
    members["secondary"] += len(ablations)
    families = any(members.values())
    tests = (
        _family_tests(members, next((c.test_kind for c in results.conditions.values() if c.family == "primary"), None))
        if families
        else "the two-sided Welch t-test against the baseline after Holm's correction over every condition"
    )
    return ResultsTable(
        caption=(
            f"Final {metric} ({direction} is better) after {numbers.num(results.steps, 'results.steps', '{:d}')} "
            f"steps: mean ± standard deviation over seeds, the {numbers.num(100 * results.confidence, 'results.confidence', '{:g}%')}"
            " Student-t interval of the mean (cut to the metric's range), the difference from "
            f"the baseline's mean, Hedges' g (positive: better), {tests}, and the seeds (with each seed's value "
            "where there are few)"
            + (
                "; an ablation's difference, test and verdict are against the condition it removes a part from "
                "(named in its row), as registered, with its difference and uncorrected two-sided p against the "
                "baseline beside them "
                if ablations
                else " "
            )
            + f"(verdicts at α = {numbers.num(results.alpha, 'results.alpha', '{:g}')})."
        ),
        header=[
            "condition",
            "role",
            metric,
            "interval",
            "Δ vs baseline",
            "g",
            "p (adj.)" if families else "p (Holm)",
            "seeds",
            "verdict",
        ],
        rows=rows,
    )


def _registered(results: Results, name: str) -> tuple[int, ComparisonOutcome] | None:
    """An ablation's registered comparison against the condition it ablates (its index in ``results.comparisons``)."""
    parent = results.conditions[name].registered_against
    return results.outcome(name, parent) if parent else None


# the primary's test, in the table's p cell and in the caption (``ConditionResult.test_kind``)
_KIND_CELL = {"tost": ", TOST", "tost-beyond-margin": ", TOST", "two-sided-against": ", two-sided"}
_KIND_CAPTION = {
    "tost": "TOST against its pre-registered equivalence margin, uncorrected",
    "tost-beyond-margin": "TOST against its pre-registered equivalence margin, uncorrected, with the two-sided Welch "
    "p beside it: equivalence failed and the verdict is the difference's interval, wholly past the margin",
    "one-sided": "one-sided in the predicted direction, uncorrected",
    "two-sided-against": "two-sided, uncorrected: registered one-sided, the result went against the predicted "
    "direction",
    "two-sided": "two-sided, uncorrected",
}


def _family_tests(members: Mapping[str, int], primary_kind: str | None = None) -> str:
    """The caption's words on the tests, naming only the families the table has, each with its members' count
    (``members``): a two-condition study's caption described secondary and exploratory families it did not have,
    and a relay run's reviewer read it as boilerplate. The primary's words follow the test its p came from
    (``primary_kind``, ``ConditionResult.test_kind``): relay papers' captions called a TOST one-sided, and a
    one-sided registration reported two-sided "one-sided"; a family of one has no Holm correction to name."""
    present = {family for family, count in members.items() if count}
    said = []
    if "primary" in present:
        said.append(f"the pre-registered primary ({_KIND_CAPTION.get(primary_kind or '', _KIND_CAPTION['one-sided'])})")
    named = (
        ("secondary", "the pre-registered secondary", "the pre-registered secondary comparison"),
        ("exploratory", "the exploratory conditions (not in the plan)", "the exploratory condition (not in the plan)"),
    )
    for family, several, one in named:
        if family in present:
            said.append(
                f"{several} two-sided, with Holm's correction among them"
                if members[family] > 1
                else f"{one} two-sided, uncorrected (one in its family)"
            )
    lead = "the test against the baseline in its family: " if len(present) > 1 else "the test against the baseline: "
    return lead + ", ".join(said)


PER_SEED_SHOWN = 5  # a condition with at most this many seeds shows each seed's value beside the count


def _per_seed(values: list[float], path: str, numbers: Numbers) -> str:
    """Each seed's value, where there are few: at two or three seeds a mean and sd hide what the reader needs."""
    if not values or len(values) > PER_SEED_SHOWN:
        return ""
    return " (" + ", ".join(numbers.num(v, f"{path}.values[{i}]") for i, v in enumerate(values)) + ")"


def _markdown_citations(text: str, paper: Paper) -> str:
    """``[@key]`` -> ``[n]`` (its place in the bibliography); an unknown key stays as written."""
    numbers = {e.key: i for i, e in enumerate(paper.bibliography, 1)}
    return CITE_MARK.sub(lambda m: f"[{numbers[m.group(1)]}]" if m.group(1) in numbers else m.group(0), text)


def reference_line(entry: BibEntry) -> str:
    """One bibliography entry as plain text: authors, title, venue, year."""
    # corpus records as they come: an author listed twice, a name in lower case ("xue wang"); and "et al." before
    # the joining period printed "et al.." (a relay answerer listed all three)
    authors = list(dict.fromkeys(a.strip() for a in entry.authors if a.strip()))
    authors = [a.title() if a == a.lower() else a for a in authors]
    parts = [", ".join(authors[:6]) + (" et al" if len(authors) > 6 else "")] if authors else []
    parts.append(entry.title.rstrip("."))
    venue = entry.venue or ""
    parts.append(", ".join(str(x) for x in (venue, entry.year) if x and not (x == entry.year and str(x) in venue)))
    return ". ".join(p for p in parts if p) + "."


def _table_anchor(paper: Paper) -> int:
    """The index of the section the results table and figures follow: ``table_after``, else the last
    section (-1: right after the abstract), so they always come before the references."""
    named = [i for i, section in enumerate(paper.sections) if section.heading == paper.table_after]
    return named[0] if named else len(paper.sections) - 1


def render_markdown(paper: Paper, numbers: Numbers | None = None) -> tuple[str, list[Span]]:
    """The paper as Markdown, and where each harness-written number stands in it (its provenance).

    Sections, the results table and figures after their section, then the references.
    """
    out = [f"# {paper.title}", "", "## Abstract", "", _markdown_citations(paper.abstract, paper), ""]
    anchor = _table_anchor(paper)
    tables = 0
    for index, section in [(-1, None), *enumerate(paper.sections)]:
        if section is not None:
            out += [f"## {section.heading}", "", _markdown_citations(section.body, paper), ""]
            if section.table is not None:
                tables += 1
                out += _markdown_table(section.table, tables)
        if index == anchor:
            tables += 1
            out += _markdown_table(paper.table, tables)
            for i, fig in enumerate(paper.figures, 1):
                if fig.png or fig.pdf:
                    out += [f"![Figure {i}]({fig.png or fig.pdf})", "", f"*Figure {i}: {fig.caption}*", ""]
    if paper.bibliography:
        out += ["## References", ""]
        for i, entry in enumerate(paper.bibliography, 1):
            link = f" <{entry.url}>" if entry.url else ""
            out += [f"[{i}] {reference_line(entry)}{link} <!-- {entry.record_id} -->", ""]
    for section in paper.appendix:
        out += [f"## Appendix: {section.heading}", "", _markdown_citations(section.body, paper), ""]
        if section.code:
            fence = "````" if "```" in section.code else "```"
            out += [fence, section.code.rstrip("\n"), fence, ""]
    text = "\n".join(out)
    return numbers.resolve(text) if numbers is not None else (text, [])


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "—": "---",
}
# characters outside Latin-1 that pdflatex cannot print from UTF-8 input: their TeX spelling
_TEX_UNICODE = {
    "‘": "`",
    "’": "'",
    "“": "``",
    "”": "''",
    "–": "--",
    "…": r"\ldots{}",
    "−": "-",
    "•": r"\textbullet{}",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "≈": r"$\approx$",
    "≠": r"$\neq$",
    "→": r"$\rightarrow$",
    "←": r"$\leftarrow$",
    "∞": r"$\infty$",
    "α": r"$\alpha$",
    "Δ": r"$\Delta$",
    "β": r"$\beta$",
    "γ": r"$\gamma$",
    "δ": r"$\delta$",
    "ε": r"$\epsilon$",
    "η": r"$\eta$",
    "λ": r"$\lambda$",
    "μ": r"$\mu$",
    "σ": r"$\sigma$",
    "θ": r"$\theta$",
    "\u00a0": "~",
}
_TEX_SPECIAL.update(_TEX_UNICODE)
_TEX_RE = re.compile("|".join(re.escape(k) for k in _TEX_SPECIAL))
_NOT_PRINTABLE = re.compile(r"[^\x09\x0a\x0d\x20-\x7e\u00a1-\u00ff]")


def tex_escape(text: str) -> str:
    """Escape text so LaTeX prints it literally (no commands, no math, no file access).

    Characters pdflatex cannot print (outside ASCII and Latin-1, bar a few spelled out in TeX, and
    control characters) become "?", so model text can never break the compile either.
    """
    escaped = _TEX_RE.sub(lambda m: _TEX_SPECIAL[m.group(0)], text)
    return _NOT_PRINTABLE.sub("?", escaped)


_SAFE_PATH = re.compile(r"[A-Za-z0-9_\-./]+")

# FARS's own ICLR-like layout (written for FARS): Times, a 5.5 x 9 inch text block, a running head,
# a ruled title block, small-caps section headings and booktabs tables. Only packages of Debian's
# texlive-latex-base, -latex-recommended and -fonts-recommended are used.
PREAMBLE = r"""\documentclass[10pt,letterpaper]{article}
\usepackage[T1]{fontenc}
\usepackage[utf8]{inputenc}
\usepackage{mathptmx}
\usepackage[textwidth=5.5in,textheight=9in,centering,headsep=0.25in]{geometry}
\usepackage{booktabs}
\usepackage{array}
\usepackage{graphicx}
\usepackage{float}
\usepackage{fancyvrb}
\usepackage{url}
\usepackage{fancyhdr}
\setlength{\parindent}{0pt}
\setlength{\parskip}{5.5pt}
\pagestyle{fancy}
\fancyhf{}
\renewcommand{\headrulewidth}{0pt}
\fancyhead[L]{\small\itshape Machine-generated paper (FARS); numbers and citations checked by the harness}
\fancyfoot[C]{\thepage}
\makeatletter
\renewcommand{\section}{\@startsection{section}{1}{0pt}{-2.0ex plus -0.5ex}{1.2ex}{\normalfont\large\bfseries\scshape}}
\renewcommand{\subsection}{\@startsection{subsection}{2}{0pt}{-1.6ex plus -0.4ex}{0.8ex}{\normalfont\normalsize\bfseries}}
\renewcommand{\maketitle}{\thispagestyle{fancy}\vspace*{-0.1in}\hrule height 1.5pt\vspace{0.14in}%
  {\raggedright\LARGE\bfseries\@title\par}\vspace{0.1in}\hrule height 0.5pt\vspace{0.12in}%
  {\raggedright\normalsize\@author\par}\vspace{0.25in}}
\renewenvironment{abstract}{\begin{center}\large\scshape Abstract\end{center}\vspace{-0.5ex}%
  \list{}{\leftmargin=0.5in\rightmargin=0.5in}\item\relax}{\endlist\vspace{1ex}}
\makeatother
"""


def _latex_citations(escaped: str, paper: Paper) -> str:
    """``[@key]`` in escaped text -> ``\\cite{key}`` for keys of the bibliography; others stay visible text."""
    keys = {e.key for e in paper.bibliography}
    return CITE_MARK.sub(lambda m: rf"\cite{{{m.group(1)}}}" if m.group(1) in keys else m.group(0), escaped)


def _graphic_path(fig: Figure) -> str | None:
    """The file LaTeX includes (the PDF when there is one), if its name is safe to put in TeX."""
    path = fig.pdf or fig.png
    if path is None or not _SAFE_PATH.fullmatch(path) or ".." in path.split("/") or path.startswith("/"):
        return None
    return path


def render_latex(paper: Paper, numbers: Numbers | None = None) -> str:
    """The paper as a standalone LaTeX file on the FARS template (pdflatex, no shell escape needed)."""
    if numbers is not None:  # numbers in place of their provenance markers, before anything is escaped
        paper = Paper.model_validate_json(numbers.plain(paper.model_dump_json()))
    body = [
        PREAMBLE.rstrip("\n"),
        rf"\title{{{tex_escape(paper.title)}}}",
        r"\author{FARS (automated research pipeline)}",
        r"\begin{document}",
        r"\maketitle",
        r"\begin{abstract}",
        _latex_citations(tex_escape(paper.abstract), paper),
        r"\end{abstract}",
    ]
    anchor = _table_anchor(paper)
    for index, section in [(-1, None), *enumerate(paper.sections)]:
        if section is not None:
            body += [
                rf"\section{{{tex_escape(section.heading)}}}",
                _latex_citations(tex_escape(section.body), paper),
                "",
            ]
            if section.table is not None:
                # a section's table (the setup's) may float to the next page's top while the text goes on: held
                # here, the relay run's tall Table 1 left most of page 2 empty; it still comes well before the
                # references, which the results table and figures are held to precede. Not on a float page of its
                # own ("p"): there it stood alone over half a white page, the results table held to the next
                body += _latex_table(section.table, "!htb")
        if index == anchor:
            body += _latex_table(paper.table)
            for fig in paper.figures:
                path = _graphic_path(fig)
                if path is None:
                    continue
                body += [
                    r"\begin{figure}[H]",
                    r"\centering",
                    rf"\includegraphics[width=0.85\linewidth]{{{path}}}",
                    rf"\caption{{{tex_escape(fig.caption)}}}",
                    r"\end{figure}",
                ]
    if paper.bibliography:
        body.append(r"\begin{thebibliography}{" + str(len(paper.bibliography)) + "}")
        for entry in paper.bibliography:
            url = rf" \url{{{entry.url}}}" if entry.url and _SAFE_URL.fullmatch(entry.url) else ""
            body.append(rf"\bibitem{{{entry.key}}} {tex_escape(reference_line(entry))}{url}")
        body.append(r"\end{thebibliography}")
    if paper.appendix:
        body.append(r"\appendix")
        for section in paper.appendix:
            body += [
                rf"\section{{{tex_escape(section.heading)}}}",
                _latex_citations(tex_escape(section.body), paper),
                "",
            ]
            if section.code:
                body += [r"\begin{Verbatim}[fontsize=\scriptsize]", verbatim_safe(section.code), r"\end{Verbatim}"]
    body.append(r"\end{document}")
    return "\n".join(body) + "\n"


_SAFE_URL = re.compile(r"https?://[A-Za-z0-9\-._~:/?=&+]+")


def verbatim_safe(code: str) -> str:
    """Text for a Verbatim block: printable ASCII only, no line that could end the block, long lines cut."""
    lines = []
    for line in code.splitlines()[:400]:
        line = "".join(ch if 32 <= ord(ch) < 127 else ("    " if ch == "\t" else "?") for ch in line)[:110]
        lines.append(line.replace("\\end{Verbatim}", "\\end {Verbatim}"))
    return "\n".join(lines)
