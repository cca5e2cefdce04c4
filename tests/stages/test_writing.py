"""The Writing stage: planted model errors are repaired or flagged, citations resolve, the PDF compiles."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from fars.literature.offline import OfflineCorpus
from fars.paper.grounding import UNVERIFIED_MARK
from fars.paper.latex import LatexError, compile_latex, find_tex_engine, pdf_page_count
from fars.run.contracts import (
    Condition,
    ExperimentOutput,
    HypothesisRecord,
    IdeationOutput,
    LiteratureInfo,
    NoveltyVerdict,
    Plan,
    PlanningOutput,
    StageOutput,
    WritingOutput,
)
from fars.stages.ideation import related_entry
from tests.conftest import compose, run_stage, services_for, stage_context
from tests.paper.test_document import RESULTS

PLANTED = {  # what a capable model might write, with a wrong number, invented citations and an overclaim
    "title": "SGD with a cosine schedule in modular addition",
    "abstract": (
        "We study SGD with momentum and a cosine learning-rate schedule on modular addition. "
        "It reached an accuracy of 0.9731 on held-out pairs. Results are in the tables."
    ),
    "introduction": (
        "Grokking has been studied before (Smith et al., 2019). Our work builds on [@invented2020]. "
        "We test whether the optimizer and the schedule together change validation accuracy."
    ),
    "discussion": (
        "The sgd and cosine method outperforms the baseline on validation accuracy. "
        "Without the schedule, the method still improves accuracy. The effect holds within the range tested."
    ),
}
DEGENERATE = {  # what the embedded 135M model writes: the schema echoed back
    "title": "Hypothesis: A testable hypothesis.",
    "abstract": "Theoretical Framework: A Testable Hypothesis. Theoretical Framework: A Testable Hypothesis.",
    "introduction": "The Proposal: A New Approach to the Proposal and the approach of the proposal.",
    "discussion": "title: abstract introduction discussion strengths_1 weaknesses_1 of the paper.",
}


def stage_inputs(
    statement: str = "A higher learning rate speeds up generalisation.",
    queries: tuple[str, str] = ("learning rate schedule decay", "modular arithmetic generalization"),
) -> list[StageOutput]:
    """Outputs of the stages before writing: a chosen hypothesis with related works from the corpus."""
    corpus = OfflineCorpus.load()
    text = f"Learning rate. {statement}"
    related = [related_entry(h, text) for h in corpus.search_now(queries[0], 3)]
    area = [related_entry(h, text) for h in corpus.search_now(queries[1], 2)]
    chosen = HypothesisRecord(
        title="Learning rate",
        statement=statement,
        written_by="model",
        rationale="Larger steps.",
        related=related,
        novelty=NoveltyVerdict(
            checked=True, novel=True, reason="novel", max_similarity=related[0].similarity, nearest=related[0].id
        ),
    )
    idea = IdeationOutput(
        hypotheses=[chosen],
        scores=[],
        overall=[],
        screened=1,
        novel=1,
        related=area,
        literature=LiteratureInfo(backend="offline"),
        template="modadd",
        focus="lr",
        chosen=chosen,
    )
    plan = Plan(
        template="modadd", design="components", seeds=[0, 1], steps=30,
        conditions=[
            Condition(name="baseline", role="baseline"),
            Condition(name="method", role="method", components={"optimizer": "sgd", "schedule": "cosine"}),
            Condition(name="method-without-schedule", role="ablation", components={"optimizer": "sgd"}, of="method",
                      removed="schedule"),
        ],
    )  # fmt: skip
    return [idea, PlanningOutput(plan=plan), ExperimentOutput(results=RESULTS)]


def run_writing(
    tmp_path: Path, *paper: str, draft: dict[str, str] = PLANTED, inputs: list[StageOutput] | None = None
) -> tuple[WritingOutput, Path]:
    """Run the Writing stage with a scripted model replying ``draft`` (by default planted errors)."""
    cfg = compose("llm=scripted", f"llm.scripted.outputs=[{json.dumps(json.dumps(draft))}]", *paper)
    services = services_for(cfg, tmp_path)
    ctx = stage_context(services, "writing", inputs or stage_inputs())
    output = run_stage("writing", cfg, ctx, services)
    assert isinstance(output, WritingOutput)
    return output, ctx.project_dir


def test_planted_number_and_citations_are_repaired_and_recorded(tmp_path: Path) -> None:
    output, folder = run_writing(tmp_path, "paper.compile=never")
    grounding = output.grounding
    assert grounding.before.numbers_ungrounded == 1 and grounding.before.citations_unverified == 2
    repairs = "\n".join(grounding.repairs)
    assert "0.9731" in repairs and "Smith et al., 2019" in repairs and "invented2020" in repairs
    assert output.grounded_number_rate == 1.0 and output.verified_citation_rate == 1.0
    assert not grounding.flagged and grounding.unmarked == 0
    md = (folder / "paper.md").read_text()
    assert "0.9731" not in md and "Smith" not in md and "invented2020" not in md
    assert "novelty bar" not in md and "cosine similarity" not in md  # the harness's bookkeeping stays out
    assert "experiment." not in md and "scale ci" not in md and "bundled corpus" not in md  # nor its config's words
    assert "We test whether the optimizer and the schedule together change validation accuracy." in md  # kept
    assert output.degenerate == {}  # a capable model's prose is its own
    # the overclaim (the ablation's difference is not significant) was caught, named and dropped
    assert output.claims_before.overclaims == 1 and output.claims_before.supported >= 1
    assert any("still improves" in r for r in grounding.repairs) and "still improves" not in md
    assert output.claims.problems == [] and output.claim_grounding_rate == 1.0
    tex = (folder / "paper.tex").read_text()
    assert "\\cite{" in tex and "\\begin{thebibliography}" in tex and grounding.latex_citation_problems == []
    saved = json.loads((folder / "grounding.json").read_text())
    assert saved["references"] and all(
        r["verified"] and asyncio.run(OfflineCorpus.load().get(r["record_id"])) for r in saved["references"]
    )
    assert output.pdf is None


def test_flag_mode_marks_what_it_cannot_verify(tmp_path: Path) -> None:
    output, folder = run_writing(tmp_path, "paper.compile=never", "paper.on_ungrounded=flag")
    grounding = output.grounding
    assert grounding.flagged and grounding.unmarked == 0
    assert output.grounded_number_rate < 1.0 and output.verified_citation_rate < 1.0
    md = (folder / "paper.md").read_text()
    assert f"0.9731 {UNVERIFIED_MARK}" in md and f"[@invented2020] {UNVERIFIED_MARK}" in md
    assert any("0.9731" in p for p in grounding.problems)


def test_a_produced_paper_compiles_to_a_pdf_with_pages(tmp_path: Path) -> None:
    """CI installs a TeX engine and sets FARS_REQUIRE_TEX (.ci/run), so there this never skips."""
    if find_tex_engine() is None:
        if os.environ.get("FARS_REQUIRE_TEX"):
            pytest.fail("FARS_REQUIRE_TEX is set but no TeX engine is installed; apt-get install texlive-latex-base")
        pytest.skip("no TeX engine here (pdflatex/xelatex/lualatex); CI installs texlive-latex-base")
    output, folder = run_writing(tmp_path, "paper.compile=always")
    assert output.pdf is not None and output.pdf_pages is not None
    pdf = tmp_path / output.pdf
    assert pdf.is_file() and output.pdf_pages >= 1 and pdf_page_count(pdf) == output.pdf_pages
    assert pdf.read_bytes().startswith(b"%PDF")
    again = compile_latex(folder / "paper.tex", out_path=tmp_path / "again.pdf")  # the saved .tex alone compiles
    assert again.pages == output.pdf_pages


def test_tex_cannot_read_outside_its_folder_or_run_commands(tmp_path: Path) -> None:
    if find_tex_engine() is None:
        pytest.skip("no TeX engine here; CI installs one")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    paper = tmp_path / "paper" / "paper.tex"
    paper.parent.mkdir()
    paper.write_text("\\documentclass{article}\\begin{document}\\input{" + str(secret) + "}\\end{document}\n")
    with pytest.raises(LatexError, match="not found"):  # paranoid file access: no absolute paths
        compile_latex(paper)
    paper.write_text("\\documentclass{article}\\begin{document}x\\immediate\\write18{touch pwned}\\end{document}\n")
    assert compile_latex(paper).pages == 1  # shell escape off: \\write18 is inert
    assert not list(tmp_path.rglob("pwned"))


def test_a_missing_tex_engine_is_reported_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    import fars.paper.latex
    from fars.cli import preflight

    monkeypatch.setattr(fars.paper.latex.shutil, "which", lambda name: None)
    level, notice = fars.paper.latex.engine_notice("auto")
    assert level == logging.WARNING and "NOT compiled to PDF" in notice and "texlive-latex-base" in notice
    assert fars.paper.latex.engine_notice("never")[0] == logging.INFO
    problems = preflight([["llm=scripted", "paper.compile=always"]])  # refused before anything runs
    assert len(problems) == 1 and "paper.compile=always but no TeX engine" in problems[0]


def test_degenerate_prose_is_replaced_by_the_records_and_counted(tmp_path: Path) -> None:
    output, folder = run_writing(tmp_path, "paper.compile=never", draft=DEGENERATE)
    assert set(output.degenerate) == {"title", "abstract", "introduction", "discussion"}
    assert output.degenerate_fields == 4 and output.fields_checked == 4
    md = (folder / "paper.md").read_text()
    assert "Testable Hypothesis" not in md and "Proposal" not in md and "strengths_1" not in md
    title = md.splitlines()[0]
    assert title.startswith("# ") and "sgd optimizer" in title.lower() and "significantly improves" in title
    assert "significantly better than the baseline" in md  # the abstract states the corrected test
    assert output.grounded_number_rate == 1.0 and output.claims.problems == []


def test_a_hypothesis_stating_its_own_numbers_is_not_marked(tmp_path: Path) -> None:
    statement = (
        "SGD with a cosine schedule raises validation accuracy on the fixed 360-pair split by at least 0.5 points."
    )
    restated = (
        "Our hypothesis is that pairing SGD with a cosine schedule lifts validation accuracy on the fixed 360-pair "
        "split, by at least 0.5 points."
    )
    draft = {**PLANTED, "introduction": restated}
    output, folder = run_writing(tmp_path, "paper.compile=never", draft=draft, inputs=stage_inputs(statement))
    md = (folder / "paper.md").read_text()
    hypothesis = md.split("## Hypothesis", 1)[1].split("\n## ", 1)[0]
    assert "fixed 360-pair split by at least 0.5 points" in hypothesis and UNVERIFIED_MARK not in hypothesis
    assert restated in md  # the model's restatement is kept, not dropped
    assert not any("360" in p or "0.5" in p for p in output.grounding.problems)


# the digits case of issue 29: a capable model's introduction whose opening sentences fail the checks
MID_ARGUMENT = {
    **PLANTED,
    "introduction": (
        "Optimizer and schedule choices are known to speed up grokking by 40% on modular arithmetic [@nanda2023]. "
        "Their value is less clear in very small problems, where a few hundred examples are seen many times. "
        "We test whether the optimizer and the schedule together change validation accuracy."
    ),
}


def test_a_dropped_sentence_is_replaced_by_the_records_sentence_not_left_as_a_gap(tmp_path: Path) -> None:
    output, folder = run_writing(tmp_path, "paper.compile=never", draft=MID_ARGUMENT)
    md = (folder / "paper.md").read_text()
    intro = md.split("## Introduction", 1)[1].split("\n## ", 1)[0].strip()
    assert intro.startswith("This paper asks whether")  # the harness's opening, not "Their value is ..."
    opening = intro.split(". ", 1)[0]
    assert "(optimizer:" not in opening and " change the final" in opening  # the method's short name, not its spec
    assert "Their value is less clear in very small problems" in intro and "40%" not in md
    assert any(r.startswith("introduction: replaced") and "40%" in r for r in output.grounding.repairs)
    assert not output.grounding.flagged and UNVERIFIED_MARK not in intro


def test_an_unrelated_corpus_hit_is_not_cited(tmp_path: Path) -> None:
    inputs = stage_inputs(queries=("sparse fine-tuning code translation", "neural network repair verification"))
    output, folder = run_writing(tmp_path, "paper.compile=never", draft=DEGENERATE, inputs=inputs)
    md = (folder / "paper.md").read_text()
    related = md.split("## Related Work", 1)[1].split("\n## ", 1)[0]
    assert "found no work on this study's topic close enough to cite" in related and "[@" not in md
    assert output.grounding.bibliography == 0


def test_the_setup_table_lists_the_runs_settings(tmp_path: Path) -> None:
    _, folder = run_writing(tmp_path, "paper.compile=never")
    md, tex = (folder / "paper.md").read_text(), (folder / "paper.tex").read_text()
    setup = md.split("## Experimental Setup", 1)[1].split("\n## ", 1)[0]
    assert "Table 1 lists every setting" in setup and "*Table 1: Settings every condition ran with" in setup
    for row in (
        "| lr | 0.01 |",
        "| batch_size | 256 |",
        "| optimizer |",
        "| steps | 30 | set for this study's size |",  # not the config's word for it ("scale ci")
        "| seeds per condition | 2 |",
    ):
        assert row in setup, row
    assert "| condition method | SGD optimizer" in setup  # what the method changes from the template's defaults
    assert "*Table 2:" in md  # the results table follows it
    assert "lr & 0.01 & template default" in tex.replace("\\_", "_")
    # the setup table may float to the next page's top (held in place, a tall one left a page mostly empty); the
    # results table stays where it is
    assert tex.index("\\begin{table}[!htb]") < tex.index("\\begin{table}[H]")


def test_related_work_names_each_cited_work_by_its_title() -> None:
    """The relay run's reviewers called 'The earlier work closest to our hypothesis is [1], [2] and [3]' boilerplate:
    the sentence now says what each work is, a title with digits too (they are the title's, not claims of ours)."""
    from fars.paper.grounding import BibEntry, Sources, check_text
    from fars.run.contracts import RelatedEntry
    from fars.stages.writing import _cite_list

    works = [RelatedEntry(id="a", title="SGDR: Stochastic Gradient Descent with Warm Restarts"),
             RelatedEntry(id="b", title="Scaling Vision Transformers to 22 Billion Parameters")]  # fmt: skip
    text = _cite_list(works, {"a": "loshchilov2017", "b": "dehghani2023"})
    assert text == (
        "*SGDR: Stochastic Gradient Descent with Warm Restarts* [@loshchilov2017] and "
        "*Scaling Vision Transformers to 22 Billion Parameters* [@dehghani2023]"
    )
    entries = [BibEntry(key="loshchilov2017", title=works[0].title, verified=True, record_id="a"),
               BibEntry(key="dehghani2023", title=works[1].title, verified=True, record_id="b")]  # fmt: skip
    report = check_text(f"Work on this topic includes {text}.", Sources(), entries)
    assert report.ok and not [n for n in report.numbers if n.kind == "ungrounded"], report.numbers
    rendered = "Work on this topic includes *Scaling Vision Transformers to 22 Billion Parameters* [2]."  # numbered
    assert check_text(rendered, Sources(), entries).ok
    # the same digits outside a matching cited title are claims of this paper's and must trace
    assert not check_text("Our model scales to 22 billion parameters [@dehghani2023].", Sources(), entries).ok


def test_a_title_whose_claim_is_cut_becomes_the_harness_title_not_a_fragment(tmp_path: Path) -> None:
    """The relay run's model titled an inconclusive study 'X Does Not Help ...: An Inconclusive Test'; cutting
    the claim left "An Inconclusive Test". A title whose claim fails is the harness's, which states the result."""
    from experiments.spec import load_template
    from fars.paper.prose import harness_title

    draft = {**PLANTED, "title": "Without the schedule, the method still improves accuracy. An Inconclusive Test"}
    output, folder = run_writing(tmp_path, "paper.compile=never", draft=draft)
    title = (folder / "paper.md").read_text().splitlines()[0].removeprefix("# ")
    plan = next(i for i in stage_inputs() if hasattr(i, "plan")).plan  # type: ignore[attr-defined]
    assert title == harness_title(load_template(plan.template), plan, RESULTS) != "An Inconclusive Test"
    assert any(r.startswith("title: ") for r in output.grounding.repairs)


def test_only_the_work_the_model_named_closest_is_called_the_closest() -> None:
    from fars.run.contracts import HypothesisRecord, NoveltyEvidence, NoveltyVerdict, RelatedEntry
    from fars.stages.writing import related_work_text

    works = [RelatedEntry(id=i, title=t) for i, t in (("a", "Batch Adaptive Training"), ("b", "Transformer Search"))]
    evidence = [NoveltyEvidence(id=w.id, title=w.title, similarity=0.2) for w in works]

    def said(closest: int) -> str:
        novelty = NoveltyVerdict(
            checked=True, novel=True, reason="novel", evidence=evidence, model={"novel": True, "closest": closest}
        )
        chosen = HypothesisRecord.model_validate(
            {
                "title": "t",
                "statement": "s",
                "related": [w.model_dump() for w in works],
                "novelty": novelty.model_dump(),
            }
        )
        return related_work_text(chosen, [], {"a": "lee2020", "b": "kim2021"}, "offline")

    assert said(1).startswith("The earlier work closest to our hypothesis is *Batch Adaptive Training* [@lee2020].")
    assert "Other work on this topic includes" in said(1) and "[@kim2021]" in said(1)
    # said as a paper says it, not as the search's bookkeeping (every reviewer of a relay run named those words)
    assert "found in" not in said(1) and "retrieved" not in said(1) and "corpus" not in said(1)
    # the model named none close: nothing is called the closest, the works are listed as work on the topic
    assert "closest" not in said(0) and said(0).startswith("Work on this topic includes")
    assert "[@lee2020]" in said(0) and "[@kim2021]" in said(0)


def test_a_hypothesis_quoting_the_pilots_baseline_says_so_beside_the_studys_own() -> None:
    """Both reviewers of a relay run read the hypothesis's quoted baseline 0.9769 against the results' 0.9733 as a
    stale number; it is the pilot's, measured before the plan, and the Hypothesis section now says so."""
    from types import SimpleNamespace

    from fars.paper.grounding import Numbers
    from fars.run.contracts import Pilot, Stat
    from fars.stages.writing import pilot_note

    pilot = Pilot(seeds=[0, 1, 2], steps=300, values=[0.975, 0.9778, 0.9778], mean=0.9769, sd=0.0016)
    base = SimpleNamespace(metric=Stat(mean=0.9733, std=0.004, n=5))
    numbers = Numbers()
    m = SimpleNamespace(plan=SimpleNamespace(pilot=pilot), results=SimpleNamespace(conditions={"baseline": base}),
                        numbers=numbers)  # fmt: skip
    said = numbers.plain(pilot_note("A CNN beats the MLP's 0.9769 by at least 0.5 points.", m))  # type: ignore[arg-type]
    assert said == (
        " (The baseline's 0.9769 quoted here is its pilot over 3 seeds, run before the plan; its 5 runs in the study "
        "reached 0.9733.)"
    )
    assert pilot_note("A CNN beats the MLP by at least 0.5 points.", m) == ""  # type: ignore[arg-type]
    assert pilot_note("The MLP's 97.69% is beaten by a CNN.", m) != ""  # type: ignore[arg-type]


def test_the_drafting_prompt_names_conditions_in_words_and_lists_the_figures() -> None:
    """A relay run's abstract named "followup-label-smoothing-0p3" and "the method condition", and its reviewers
    asked for the training loss and accuracy the records held but the model was never shown."""
    from fars.run.contracts import Condition, FigureFile, Plan, Stat
    from fars.stages.writing import condition_glossary, figure_list
    from tests.paper.test_document import RESULTS

    results = RESULTS.model_copy(deep=True)
    results.conditions["method"].secondary = {"train_loss": Stat(mean=0.0950376, std=0.01, n=2)}
    results.figures = [FigureFile(caption="Training and validation loss over steps.", png="figures/loss.png")]
    plan = Plan(template="modadd", design="components", seeds=[0, 1], steps=30, conditions=[
        Condition(name="baseline", role="baseline", description="every setting at the template's default"),
        Condition(name="method", role="method", description="AdamW with a cosine schedule"),
    ])  # fmt: skip
    text = condition_glossary(plan, results)
    assert (
        "never by its label" in text
        and "- method: AdamW with a cosine schedule (final means: train_loss 0.095)" in text
    )
    unplanned = next(n for n in results.conditions if n not in ("baseline", "method"))
    assert f"- {unplanned}: the baseline with " in text or f"- {unplanned}: the baseline's settings" in text
    assert figure_list(results) == (
        "Figures the paper shows (refer to them where they bear on the findings):\n"
        "Figure 1: Training and validation loss over steps.\n"
    )


def test_a_stand_in_says_what_the_dropped_sentence_said_or_none_stands_in() -> None:
    """A relay abstract's ablation sentence was replaced by the harness's statement of the hypothesis, predicted
    numbers and all, because the two shared a couple of words."""
    from fars.stages.writing import _stand_in

    harness = [
        "We test a hypothesis about digits: a CNN with shifts raises val_accuracy from 0.977 to 0.989.",
        "Removing the shift augmentation from the CNN lowered val_accuracy against the full method.",
    ]
    ablation = "Removing the shift augmentation from the CNN lowered val_accuracy by a margin the tests confirm."
    assert _stand_in(ablation, harness, first=False) == harness[1]
    unrelated = "Both parts of the change contribute, and neither explains the gain alone on digits."
    assert _stand_in(unrelated, harness[:1], first=False) is None
    assert _stand_in(unrelated, harness, first=True) == harness[0]  # an opening is never left empty
