"""Paper rendering: model text is escaped so LaTeX can never run it; numbers come from results, traced."""

from __future__ import annotations

import numpy as np

from fars.paper.document import (
    Paper,
    ResultsTable,
    Section,
    render_latex,
    render_markdown,
    results_table,
    tex_escape,
    verbatim_safe,
)
from fars.paper.grounding import Numbers
from fars.run.contracts import ConditionResult, EngineInfo, Results, Stat


def _stat(mean: float, std: float) -> Stat:
    return Stat(mean=mean, std=std, n=2)


RESULTS = Results(
    template="modadd",
    metric="val_accuracy",
    higher_is_better=True,
    knob="lr",
    steps=30,
    best="method",
    engine=EngineInfo(name="plain", parameters=34331),
    conditions={
        "baseline": ConditionResult(
            role="baseline",
            metric=_stat(0.5, 0.1),
            ci_low=0.43,
            ci_high=0.57,
            secondary={"val_loss": _stat(1.0, 0.2), "train_loss": _stat(0.9, 0.2)},
            seeds=[0, 1],
            values=[0.43, 0.57],
            verdict="baseline",
        ),
        "method": ConditionResult(
            role="method",
            components={"optimizer": "sgd", "schedule": "cosine"},
            metric=_stat(0.75, 0.05),
            ci_low=0.715,
            ci_high=0.785,
            secondary={"val_loss": _stat(0.5, 0.1), "train_loss": _stat(0.45, 0.1)},
            seeds=[0, 1],
            values=[0.715, 0.785],
            difference=0.25,
            p_vs_baseline=0.0156,
            p_adjusted=0.0312,
            effect_size=2.31,
            verdict="better",
        ),
        "method-without-schedule": ConditionResult(
            role="ablation",
            components={"optimizer": "sgd"},
            metric=_stat(0.55, 0.05),
            ci_low=0.515,
            ci_high=0.585,
            seeds=[0, 1],
            values=[0.515, 0.585],
            difference=0.05,
            p_vs_baseline=0.61,
            p_adjusted=0.61,
            effect_size=0.4,
            verdict="no significant difference",
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


def test_results_table_is_filled_from_results_with_each_numbers_field() -> None:
    numbers = Numbers()
    table = results_table(RESULTS, numbers)
    row = [numbers.plain(cell) for cell in table.rows[1]]
    assert row[:4] == ["method", "method", "0.7500 ± 0.0500", "[0.7150, 0.7850]"]
    assert row[4:] == ["+0.2500", "2.31", "0.0312", "2 (0.7150, 0.7850)", "better"]  # each seed shown
    paper = Paper(title="T_1", abstract="A", sections=[Section(heading="Results", body="R")], table=table)
    md, spans = render_markdown(paper, numbers)
    assert "| method | method | 0.7500 ± 0.0500 |" in md
    traced = {md[s.start : s.end]: s.path for s in spans}
    assert traced["0.7500"] == "results.conditions.method.metric.mean"
    assert traced["0.0312"] == "results.conditions.method.p_adjusted"
    tex = render_latex(paper, numbers)
    assert "T\\_1" in tex and "0.7500 $\\pm$ 0.0500" in tex and tex.rstrip().endswith("\\end{document}")
    assert "\ue000" not in tex and "\ue000" not in md  # every provenance marker resolved


def test_an_appendix_with_code_renders_in_both_and_cannot_end_its_block() -> None:
    hostile = "+ x = 1\n\\end{Verbatim}\\input{/etc/passwd}\n\u00e9\t"
    paper = Paper(
        title="T", abstract="A", sections=[], table=results_table(RESULTS, Numbers()),
        appendix=[Section(heading="The winning diff", body="What the model changed.", code=hostile)],
    )  # fmt: skip
    md, _ = render_markdown(paper)
    assert "## Appendix: The winning diff" in md and "```\n+ x = 1" in md
    tex = render_latex(paper)
    assert "\\appendix" in tex and "\\begin{Verbatim}" in tex
    assert tex.count("\\end{Verbatim}") == 1  # the planted one was defused
    assert "\\end {Verbatim}" in verbatim_safe(hostile) and "?" in verbatim_safe(hostile)


def test_figures_stay_beside_the_results_and_before_the_references() -> None:
    """Figures floated after, or inside, the references; without a "Results" section they vanished."""
    from fars.paper.document import Figure
    from fars.paper.figures import band_limits
    from fars.paper.grounding import BibEntry

    table = results_table(RESULTS, Numbers())
    figures = [Figure(caption="Curves.", png="figures/curve.png", pdf="figures/curve.pdf")]
    bib = [BibEntry(key="smith2021", record_id="r1", title="A work", authors=["A. Smith"], year=2021)]
    for heading in ("Results", "Findings"):  # the named section, or the last one when none has the name
        sections = [
            Section(heading="Method", body="M"),
            Section(heading=heading, body="R"),
            Section(heading="Discussion", body="D"),
        ]
        paper = Paper(title="T", abstract="A", sections=sections, table=table, figures=figures, bibliography=bib)
        tex = render_latex(paper)
        assert tex.count("\\begin{figure}[H]") == 1 and "\\usepackage{float}" in tex  # [H]: here, not floated
        assert tex.index("\\begin{figure}") < tex.index("\\begin{thebibliography}")
        md, _ = render_markdown(paper)
        assert md.index("![Figure 1](figures/curve.png)") < md.index("## References")
        after = "\\section{Results}" if heading == "Results" else "\\section{Discussion}"
        assert tex.index(after) < tex.index("\\begin{table}[H]") < tex.index("\\begin{figure}")
    # the bands of the curves stay inside the quantity's range: accuracies in [0, 1], losses above 0
    assert band_limits(np.array([0.2, 0.97, 1.0])) == (0.0, 1.0)
    assert band_limits(np.array([0.01, 2.3])) == (0.0, float("inf"))
    assert band_limits(np.array([-0.5, 2.3])) == (-float("inf"), float("inf"))


def test_a_grouped_citation_is_split_into_the_form_the_bibliography_reads() -> None:
    """The relay run's frontier model wrote Pandoc's '[@fixing2018; @zou2023]'; it stayed raw text in the paper."""
    from fars.paper.document import split_citations

    text = "as shown [@fixing2018; @zou2023], see [@a,@b] and [@single]; [not a cite]."
    assert split_citations(text) == "as shown [@fixing2018] [@zou2023], see [@a] [@b] and [@single]; [not a cite]."


def test_no_appendix_on_a_search_whose_model_wrote_no_code_and_a_sentence_where_versions_failed() -> None:
    from pathlib import Path

    from fars.run.contracts import CodeNode, CodeSearchSummary
    from fars.stages.writing import code_appendix

    judged = "the model wrote no code: it judged that the method's settings already implement the idea"
    none = CodeNode(id="n0", kind="draft", verdict="buggy", error="no edit found in the reply")
    results = RESULTS.model_copy(update={"code": CodeSearchSummary(nodes=[none], reason=judged)})
    assert code_appendix(results, Path("."), Numbers()) == []  # the relay run printed "asked ... 1 time(s)"
    failed = CodeNode(id="n1", kind="draft", verdict="buggy", error="NaN loss", edits=["train.py: 3 lines"])
    results = RESULTS.model_copy(update={"code": CodeSearchSummary(nodes=[failed], reason="no version ran")})
    numbers = Numbers()
    [section] = code_appendix(results, Path("."), numbers)
    assert numbers.plain(section.body) == (
        "The search over programs tried 1 version of the template's code, of which 1 failed to run or was refused. "
        "No version ran."
    )


def test_a_table_with_a_long_cell_wraps_it_instead_of_shrinking_to_unreadable() -> None:
    from fars.paper.document import _latex_table

    long = "19 seeds would give 80% power to detect an effect of 0.25, but the seed budget caps them at 2: 33.6% power"
    table = ResultsTable(caption="Settings", header=["Setting", "Value", "Source"], rows=[["seeds", "2", long]])
    tex = "\n".join(_latex_table(table))
    assert r"\begin{tabular}{llp{0.5\linewidth}}" in tex  # the sentence wraps in its own column
    assert r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}" in tex  # never enlarged, shrunk if still wide
    short = ResultsTable(caption="c", header=["a", "b"], rows=[["1", "2"]])
    assert r"\begin{tabular}{ll}" in "\n".join(_latex_table(short))
    assert tex_escape("Δ vs baseline") == r"$\Delta$ vs baseline"  # was printed as '? vs baseline'


def test_a_wide_results_table_wraps_its_widest_columns_to_fit_the_line_at_its_own_size() -> None:
    """The third relay run's results table (9 columns with per-seed values) was shrunk to about half size."""
    from fars.paper.document import TABLE_CHARS, _latex_table, _wrapped_widths, table_chars

    numbers = Numbers()
    table = results_table(RESULTS, numbers)
    tex = "\n".join(_latex_table(table))
    spec = tex.split(r"\begin{tabular}{", 1)[1].split("}\n", 1)[0]
    assert spec.count(r"p{0.") >= 2 and r">{\raggedright\arraybackslash}" in spec
    longest = [40, 8, 17, 16, 7, 5, 17, 27, 25]  # the relay run's columns, in printed characters
    widths = _wrapped_widths(longest, None)
    fitted = {i: widths.get(i, n) for i, n in enumerate(longest)}
    assert all(w >= 12 for w in widths.values()) and set(widths) == {0, 2, 3, 6, 7, 8}
    # nine columns do not fit at the text's size even wrapped: a smaller font (8/9) and a shrink of at most 0.8
    assert TABLE_CHARS < table_chars(fitted) <= TABLE_CHARS * 9 / 8 / 0.8
    assert r"\centering\footnotesize" in tex
    assert _wrapped_widths([5, 10, 8], None) == {}  # a narrow table is left as it is


def test_wrapped_columns_take_the_room_the_line_has_left() -> None:
    """The fifth relay run's Table 1 wrapped its value column to 12 characters with room left on the line."""
    from fars.paper.document import TABLE_CHARS, _wrapped_widths, table_chars

    longest = [41, 140, 300]  # setting, value (five conditions' parameters), source (the seed design's sentence)
    widths = _wrapped_widths(longest, 2)
    fitted = {i: widths.get(i, TABLE_CHARS // 2 if i == 2 else n) for i, n in enumerate(longest)}
    assert widths[1] > 12 and TABLE_CHARS - 3 <= table_chars(fitted) <= TABLE_CHARS


def test_a_reference_line_tidies_corpus_authors() -> None:
    """A relay answerer listed a reference with an author twice, one with a lower-case name, and one ending
    "et al..": corpus records as they come."""
    from fars.paper.document import reference_line
    from fars.paper.grounding import BibEntry

    names = ["Zhiqiang Shen", "Zhiqiang Shen", "xue wang", "A Li", "B Xu", "C Wu", "D Ma", "E Qi"]
    line = reference_line(
        BibEntry(key="k", record_id="r", title="A study.", authors=names, venue="ICLR 2021", year=2021)
    )
    assert line == "Zhiqiang Shen, Xue Wang, A Li, B Xu, C Wu, D Ma et al. A study. ICLR 2021.", line
    bare = reference_line(BibEntry(key="k", record_id="r", title="A study", authors=[], venue="ICLR 2021", year=2021))
    assert bare == "A study. ICLR 2021."


def test_the_results_state_the_other_final_values_once_where_equal() -> None:
    """Relay reviewers read "every condition fits the training set" in a discussion whose numbers were nowhere in
    the paper: the runs' other final values are stated, a value equal in every condition once."""
    from fars.paper.prose import other_values

    results = RESULTS.model_copy(deep=True)
    for i, row in enumerate(results.conditions.values()):
        row.secondary = {
            "train_accuracy": Stat(mean=1.0, std=0.0, n=2),
            "train_loss": Stat(mean=0.01 * (i + 1), std=0.0, n=2),
        }
    numbers = Numbers()
    [said] = [numbers.plain(s) for s in other_values(results, numbers)]
    assert said.startswith("Other final values, as means over seeds: train_accuracy 1 in every condition; train_loss ")
    assert "0.01 (baseline)" in said and "0.02 (method)" in said


def test_a_statement_continued_after_that_lowers_only_a_common_word() -> None:
    """A relay paper's abstract opened "We test a hypothesis about handwritten digit classification (image
    classification): ..." (read as pasted boilerplate); it now continues "we test the prediction that ...", with the
    statement's first word lowered only where the template writes it in lower case."""
    from experiments.spec import load_template
    from fars.paper.prose import after_colon, template_words

    words = template_words(load_template("digits"))
    assert after_colon("Cosine decay with a higher peak raises accuracy", words).startswith("cosine decay")
    assert after_colon("Adam with dropout raises accuracy", words).startswith("Adam with")
    assert after_colon("CNN with shifts beats an MLP", words).startswith("CNN with")
