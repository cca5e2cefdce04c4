"""Paper rendering: model text is escaped so LaTeX can never run it; numbers come from results."""

from __future__ import annotations

from fars.paper import Paper, Section, render_latex, render_markdown, results_table, tex_escape

RESULTS = {
    "metric": "val_accuracy",
    "higher_is_better": True,
    "steps": 30,
    "conditions": {
        "baseline": {
            "val_accuracy": {"mean": 0.5, "std": 0.1, "n": 2},
            "val_loss": {"mean": 1.0, "std": 0.2, "n": 2},
            "p_vs_baseline": None,
        },
        "lr=0.03": {
            "val_accuracy": {"mean": 0.75, "std": 0.05, "n": 2},
            "val_loss": {"mean": 0.5, "std": 0.1, "n": 2},
            "p_vs_baseline": 0.0312,
        },
    },
}


def test_tex_injection_is_printed_not_executed() -> None:
    hostile = r"\input{/etc/passwd} \immediate\write18{rm -rf /} $x^2$ 100% #1 a_b {}"
    escaped = tex_escape(hostile)
    assert "\\input" not in escaped.replace("\\textbackslash{}input", "")
    assert "\\write18" not in escaped.replace("\\textbackslash{}write18", "")
    for raw in ("$", "%", "#", "_", "{", "}"):
        assert f"\\{raw}" in escaped


def test_results_table_is_filled_from_results() -> None:
    table = results_table(RESULTS)
    assert table.rows[0] == ["baseline", "0.5000 ± 0.1000", "1.0000 ± 0.2000", "2", "—"]
    assert table.rows[1][-1] == "0.0312"
    paper = Paper(title="T_1", abstract="A", sections=[Section(heading="Results", body="R")], table=table)
    md = render_markdown(paper)
    assert "| lr=0.03 | 0.7500 ± 0.0500 |" in md
    tex = render_latex(paper)
    assert "T\\_1" in tex and "0.7500 $\\pm$ 0.0500" in tex and tex.rstrip().endswith("\\end{document}")
