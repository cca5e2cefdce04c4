"""The paper as data, and its two renderings: Markdown and LaTeX.

Prose comes from the model; every number (setup, results table, test statistics) is written by the
harness from the plan and ``results.json``. Model text is escaped before it enters LaTeX, so it can
never run TeX code.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field


class Section(BaseModel):
    """A titled section of prose."""

    heading: str
    body: str


class ResultsTable(BaseModel):
    """A table of numbers filled from results, with its caption."""

    caption: str
    header: list[str]
    rows: list[list[str]]


class Paper(BaseModel):
    """A short paper: title, abstract, sections and one results table after a named section."""

    title: str
    abstract: str
    sections: list[Section]
    table: ResultsTable
    table_after: str = "Results"
    metadata: dict[str, Any] = Field(default_factory=dict)


def results_table(results: dict[str, Any]) -> ResultsTable:
    """The results table: one row per condition, mean ± std over seeds, p-value against baseline."""
    metric = results["metric"]
    rows = []
    for name, cond in results["conditions"].items():
        m, loss = cond[metric], cond["val_loss"]
        p = cond["p_vs_baseline"]
        rows.append(
            [
                name,
                f"{m['mean']:.4f} ± {m['std']:.4f}",
                f"{loss['mean']:.4f} ± {loss['std']:.4f}",
                str(m["n"]),
                "—" if p is None else f"{p:.3g}",
            ]
        )
    direction = "higher" if results["higher_is_better"] else "lower"
    return ResultsTable(
        caption=(
            f"Final {metric} ({direction} is better) and validation loss after {results['steps']} steps, "
            "mean ± standard deviation over seeds; p: two-sided Welch t-test against the baseline."
        ),
        header=["condition", metric, "val_loss", "seeds", "p"],
        rows=rows,
    )


def render_markdown(paper: Paper) -> str:
    """The paper as Markdown."""
    out = [f"# {paper.title}", "", "## Abstract", "", paper.abstract, ""]
    for section in paper.sections:
        out += [f"## {section.heading}", "", section.body, ""]
        if section.heading == paper.table_after:
            t = paper.table
            out += ["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
            out += ["| " + " | ".join(row) + " |" for row in t.rows]
            out += ["", f"*Table 1: {t.caption}*", ""]
    return "\n".join(out)


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
_TEX_RE = re.compile("|".join(re.escape(k) for k in _TEX_SPECIAL))


def tex_escape(text: str) -> str:
    """Escape text so LaTeX prints it literally (no commands, no math, no file access)."""
    return _TEX_RE.sub(lambda m: _TEX_SPECIAL[m.group(0)], text)


def render_latex(paper: Paper) -> str:
    """The paper as a standalone LaTeX article (compiles with pdflatex, no shell escape needed)."""
    body = [
        r"\documentclass[11pt]{article}",
        r"\usepackage[margin=1in]{geometry}",
        r"\usepackage{booktabs}",
        r"\usepackage[T1]{fontenc}",
        r"\usepackage[utf8]{inputenc}",
        rf"\title{{{tex_escape(paper.title)}}}",
        r"\author{FARS (automated research pipeline)}",
        r"\date{}",
        r"\begin{document}",
        r"\maketitle",
        r"\begin{abstract}",
        tex_escape(paper.abstract),
        r"\end{abstract}",
    ]
    for section in paper.sections:
        body += [rf"\section{{{tex_escape(section.heading)}}}", tex_escape(section.body), ""]
        if section.heading == paper.table_after:
            t = paper.table
            body += [
                r"\begin{table}[h]",
                r"\centering",
                r"\begin{tabular}{" + "l" * len(t.header) + "}",
                r"\toprule",
                " & ".join(tex_escape(h) for h in t.header) + r" \\",
                r"\midrule",
                *[" & ".join(tex_escape(c) for c in row) + r" \\" for row in t.rows],
                r"\bottomrule",
                r"\end{tabular}",
                rf"\caption{{{tex_escape(t.caption)}}}",
                r"\end{table}",
            ]
    body.append(r"\end{document}")
    return "\n".join(body) + "\n"
