"""Paper rendering: model text is escaped so LaTeX can never run it; numbers come from results."""

from __future__ import annotations

from fars.contracts import ConditionResult, EngineInfo, Results, Stat
from fars.paper import Paper, Section, render_latex, render_markdown, results_table, tex_escape


def _stat(mean: float, std: float) -> Stat:
    return Stat(mean=mean, std=std, n=2)


RESULTS = Results(
    template="modadd",
    metric="val_accuracy",
    higher_is_better=True,
    knob="lr",
    steps=30,
    best="lr=0.03",
    engine=EngineInfo(name="plain"),
    conditions={
        "baseline": ConditionResult(
            overrides={"lr": 0.01},
            metric=_stat(0.5, 0.1),
            val_loss=_stat(1.0, 0.2),
            train_loss=_stat(0.9, 0.2),
            seeds=[0, 1],
            values=[0.43, 0.57],
        ),
        "lr=0.03": ConditionResult(
            overrides={"lr": 0.03},
            metric=_stat(0.75, 0.05),
            val_loss=_stat(0.5, 0.1),
            train_loss=_stat(0.45, 0.1),
            seeds=[0, 1],
            values=[0.715, 0.785],
            p_vs_baseline=0.0312,
        ),
    },
)


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
